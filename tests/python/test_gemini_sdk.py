"""The official Python `google-genai` SDK against a running Tollgate gateway's Gemini-format API
(`/v1beta/models/{model}:generateContent` / `:streamGenerateContent?alt=sse`), and the `openai` SDK through a
`gemini`-kind provider (the mock upstream's Gemini dialect behind both).

Covers: `models.generate_content` to a Gemini upstream and to an OpenAI upstream (typed response, text, usage
metadata, the usage row with endpoint `generate_content` and its cost), `models.generate_content_stream`
(text deltas, usage on the last chunk), the SDK's typed errors (401, 404, upstream 429) in Google's error shape;
and the `openai` SDK's chat completions (plain, streamed, tools) and embeddings (the SDK's default base64,
decoded by the SDK; `dimensions`) on a Gemini deployment.

Run (after `cargo build -p tollgate-gateway -p tollgate-tests`): `.venv/bin/pytest tests/python -q`.
"""

from __future__ import annotations

import json
import time

import pytest
from google.genai import errors as genai_errors
from google.genai import types

from conftest import FULL_KEY, GEMINI_MODELS, WRONG_KEY, Gateway

CONTENT = "tok0 tok1 tok2 tok3 "


def row_of(gw: Gateway, request_id: str | None) -> dict:
    assert request_id, "no x-request-id"
    return dict(gw.row(request_id))


def now_ms() -> int:
    return int(time.time() * 1000)


def last_row(gw: Gateway, endpoint: str, since_ms: int) -> dict:
    """The newest row of `endpoint` started at or after `since_ms`, waiting for the usage writer to store it
    (events are written asynchronously, so the previous request's row may be the newest for a moment)."""
    rows = gw.wait_for(
        lambda: gw.query(
            "SELECT * FROM usage_events WHERE endpoint = ? AND started_at_ms >= ? ORDER BY started_at_ms DESC, event_id DESC",
            (endpoint, since_ms),
        ),
        f"a {endpoint} row since {since_ms}",
    )
    return dict(rows[0])


def test_generate_content_to_a_gemini_upstream(gateway: Gateway) -> None:
    since = now_ms()
    client = gateway.genai_client()
    before = len(gateway.upstream_requests())
    response = client.models.generate_content(
        model="gemini",
        contents="Say hello [mock:prompt_tokens=100&cached_tokens=40&reasoning_tokens=6]",
        config=types.GenerateContentConfig(
            system_instruction="Be brief.",
            max_output_tokens=64,
            thinking_config=types.ThinkingConfig(include_thoughts=True),
        ),
    )
    assert isinstance(response, types.GenerateContentResponse)
    assert response.text == CONTENT
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    thoughts = [p for p in response.candidates[0].content.parts if p.thought]
    assert thoughts and thoughts[0].text == "Mock thoughts about the question."
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (100, 40)
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (4, 6)
    # What the SDK wrote went upstream as it was (this SDK writes the thinking config in snake_case, which
    # Google's JSON mapping accepts; the gateway does not rewrite it).
    sent = [r for r in gateway.upstream_requests()[before:] if r["path"].startswith("/gemini/")][-1]
    assert sent["path"] == "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["body"]["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert sent["body"]["generationConfig"]["thinkingConfig"] == {"include_thoughts": True}
    row = last_row(gateway, "generate_content", since)
    assert (row["provider_kind"], row["model"], row["outcome"]) == ("gemini", "gemini", "success")
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_read_tokens"], row["reasoning_tokens"]) == (100, 10, 40, 6)
    # Shipped prices for gemini-2.5-flash (USD per Mtok): 0.30 in, 0.03 cached, 2.50 out (thoughts too).
    assert row["price_missing"] == 0
    assert row["cost_nanos"] == 60 * 300 + 40 * 30 + 10 * 2500


def test_generate_content_stream(gateway: Gateway) -> None:
    since = now_ms()
    # Keep the client referenced: it closes its HTTP client when collected, under a lazy stream.
    client = gateway.genai_client()
    chunks = list(client.models.generate_content_stream(model="gemini", contents="one two [mock:chunks=3]"))
    assert "".join(c.text or "" for c in chunks) == "tok0 tok1 tok2 "
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 3
    row = last_row(gateway, "generate_content", since)
    assert (row["stream"], row["completion_tokens"], row["outcome"]) == (1, 3, "success")


def test_generate_content_to_an_openai_upstream(gateway: Gateway) -> None:
    since = now_ms()
    client = gateway.genai_client()
    response = client.models.generate_content(model="gpt-4o-mini", contents="Say hello to the gateway")
    assert response.text == CONTENT
    assert response.usage_metadata.candidates_token_count == 4
    sent = [r for r in gateway.upstream_requests() if r["path"] == "/openai/v1/chat/completions"][-1]
    assert sent["body"]["messages"] == [{"role": "user", "content": "Say hello to the gateway"}]
    row = last_row(gateway, "generate_content", since)
    assert (row["provider_kind"], row["upstream_model"]) == ("openai-compatible", "gpt-4o-mini")
    chunks = list(client.models.generate_content_stream(model="gpt-4o-mini", contents="a [mock:chunks=2]"))
    assert "".join(c.text or "" for c in chunks) == "tok0 tok1 "


def test_generate_content_typed_errors(gateway: Gateway) -> None:
    wrong, client = gateway.genai_client(WRONG_KEY), gateway.genai_client()
    with pytest.raises(genai_errors.ClientError) as auth:
        wrong.models.generate_content(model="gemini", contents="x")
    assert (auth.value.code, auth.value.status) == (401, "UNAUTHENTICATED")
    with pytest.raises(genai_errors.ClientError) as missing:
        client.models.generate_content(model="no-such-model", contents="x")
    assert (missing.value.code, missing.value.status) == (404, "NOT_FOUND")
    assert "no-such-model" in missing.value.message
    since = now_ms()
    with pytest.raises(genai_errors.ClientError) as limited:
        client.models.generate_content(model="gemini-429", contents="x")
    assert (limited.value.code, limited.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert limited.value.details["error"]["details"][0]["retryDelay"] == "2s"
    row = last_row(gateway, "generate_content", since)
    assert (row["outcome"], row["http_status"], row["error_code"]) == ("upstream_error", 429, "RESOURCE_EXHAUSTED")


# --- the openai SDK on a Gemini deployment --------------------------------------------------------------


def test_openai_sdk_through_a_gemini_provider(gateway: Gateway) -> None:
    client = gateway.client(FULL_KEY)
    completion = client.chat.completions.create(
        model="gemini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello [mock:cached_tokens=2&reasoning_tokens=3]"}],
    )
    assert completion.choices[0].message.content == CONTENT
    assert completion.choices[0].finish_reason == "stop"
    # The mock counts the words of `contents` (the system prompt is systemInstruction upstream) + 3.
    assert completion.usage is not None and completion.usage.prompt_tokens == 3 + 3
    assert completion.usage.completion_tokens == 4 + 3
    assert completion.usage.completion_tokens_details.reasoning_tokens == 3
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    row = row_of(gateway, completion._request_id)
    assert (row["provider_kind"], row["upstream_model"], row["endpoint"]) == ("gemini", GEMINI_MODELS["gemini"], "chat_completions")
    assert row["cost_nanos"] > 0 and row["price_missing"] == 0

    stream = client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "hi [mock:chunks=3]"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 "
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [3]

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    completion = client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools
    )
    message = completion.choices[0].message
    call = message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    # The tool result goes back as a functionResponse; the answer is text.
    completion = client.chat.completions.create(
        model="gemini", tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}, message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "18C"}],
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == CONTENT


def test_openai_sdk_embeddings_through_a_gemini_provider(gateway: Gateway) -> None:
    client = gateway.client(FULL_KEY)
    before = len(gateway.upstream_requests())
    # No encoding_format: the SDK asks for base64 and decodes the little-endian f32 bytes itself.
    response = client.embeddings.create(
        model="gemini-embed", input=["first text [mock:prompt_tokens=9]", "second text"], dimensions=16
    )
    assert response.object == "list"
    assert [d.index for d in response.data] == [0, 1]
    assert all(len(d.embedding) == 16 and all(0.0 <= x <= 1.0 for x in d.embedding) for d in response.data)
    assert response.data[0].embedding != response.data[1].embedding
    assert (response.model, response.usage.prompt_tokens, response.usage.total_tokens) == ("gemini-embedding-001", 9, 9)
    sent = [r for r in gateway.upstream_requests()[before:] if r["path"].startswith("/gemini/")]
    assert [r["path"] for r in sent] == ["/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"]
    assert [q["outputDimensionality"] for q in sent[0]["body"]["requests"]] == [16, 16]
    # Asked as floats explicitly: the same vectors (as f32) the SDK decoded from base64.
    floats = client.embeddings.create(
        model="gemini-embed", input=["first text [mock:prompt_tokens=9]", "second text"], dimensions=16,
        encoding_format="float",
    )
    assert [d.embedding for d in floats.data] == [d.embedding for d in response.data]
    row = row_of(gateway, response._request_id)
    assert (row["provider_kind"], row["upstream_model"], row["endpoint"]) == ("gemini", "gemini-embedding-001", "embeddings")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (9, 0, "provider")

    # Without usageMetadata from the API the gateway estimates, and says so on the row.
    estimated = client.embeddings.create(model="gemini-embed", input="no count from the api")
    assert estimated.usage.prompt_tokens > 0
    row = row_of(gateway, estimated._request_id)
    assert (row["prompt_tokens"], row["usage_source"]) == (estimated.usage.prompt_tokens, "estimated")
