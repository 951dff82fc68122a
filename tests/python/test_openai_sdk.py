"""The official Python `openai` SDK against a running Tollgate gateway (mock upstream behind it).

Covers: plain chat (content, usage incl. cached/reasoning details, the SQLite usage row found by the
response's `x-request-id`: tenant/team/key/end_user/tokens/usage_source), streaming with and without
`stream_options.include_usage` (one trailing usage chunk vs. none, provider usage metered either way), tool
calls (plain and streamed, typed), embeddings (string and list input; what reaches the upstream), `models.list()`
per key, the SDK's typed errors (401, 403, 404, upstream 400 passed through, upstream 429 plain and streamed,
upstream 500 -> 502) with their usage rows, SDK retries metered once each, and "exactly one usage row per
metered request" over the whole session (the last test; it counts every HTTP request the SDK sent).

Run (after `cargo build -p tollgate-gateway -p tollgate-tests`):
    .venv/bin/pytest tests/python -q
The Node SDK suite lives next door: `node --test tests/node/`.
"""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageToolCall

from conftest import (
    ANTHROPIC_MODELS,
    AZURE_MODELS,
    BEDROCK_MODELS,
    FULL_KEY,
    GEMINI_MODELS,
    KEY_IDENTITY,
    LIMITED_KEY,
    LIMITED_MODELS,
    MODELS,
    NATIVE_CN_FAILING,
    NATIVE_CN_MODELS,
    WRONG_KEY,
    Gateway,
)

# Mock upstream: prompt_tokens = words in all message contents + 3; 4 content chunks "tok0 ".."tok3 ",
# completion_tokens = chunks.
MESSAGES = [
    {"role": "system", "content": "You are terse."},  # 3 words
    {"role": "user", "content": "Say hello to the gateway"},  # 5 words
]
PROMPT_TOKENS = 3 + 5 + 3
COMPLETION_TOKENS = 4
CONTENT = "tok0 tok1 tok2 tok3 "

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def assert_row(
    gw: Gateway,
    event_id: str | None,
    *,
    key: str = FULL_KEY,
    endpoint: str = "chat_completions",
    model: str = "gpt-4o-mini",
    stream: bool = False,
    outcome: str = "success",
    http_status: int = 200,
    prompt: int = 0,
    completion: int = 0,
    cached: int = 0,
    reasoning: int = 0,
    usage_source: str = "provider",
    end_user: str | None = None,
    error_code: str | None = None,
) -> None:
    assert event_id, "the response carries no x-request-id"
    row = gw.row(event_id)
    key_id, tenant, team = KEY_IDENTITY[key]
    expected = {
        "tenant": tenant,
        "team": team,
        "key_id": key_id,
        "end_user": end_user,
        "endpoint": endpoint,
        "model": model,
        "provider": "mock",
        "upstream_model": MODELS[model],
        "stream": int(stream),
        "outcome": outcome,
        "http_status": http_status,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_read_tokens": cached,
        "cache_write_tokens": 0,
        "reasoning_tokens": reasoning,
        "usage_source": usage_source,
    }
    got = {k: row[k] for k in expected}
    assert got == expected
    if error_code is not None:
        assert row["error_code"] == error_code
    elif outcome == "success":
        assert row["error_code"] is None


# --- chat -----------------------------------------------------------------------------------------------


def test_chat_completion_content_usage_and_usage_row(gateway: Gateway) -> None:
    client = gateway.client()
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="end-user-42")

    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == CONTENT
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert completion.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS

    assert_row(
        gateway,
        completion._request_id,
        prompt=PROMPT_TOKENS,
        completion=COMPLETION_TOKENS,
        end_user="end-user-42",
    )


def test_chat_completion_without_user_has_no_end_user(gateway: Gateway) -> None:
    completion = gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two [mock:chunks=2]"}]
    )
    assert completion.choices[0].message.content == "tok0 tok1 "
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3 + 3, 2)
    assert_row(gateway, completion._request_id, prompt=6, completion=2, end_user=None)


def test_cached_and_reasoning_tokens_are_typed_and_metered(gateway: Gateway) -> None:
    completion = gateway.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "[mock:prompt_tokens=120&cached_tokens=64&reasoning_tokens=3]"}],
    )
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (120, 4)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 64
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 3
    assert_row(gateway, completion._request_id, prompt=120, completion=4, cached=64, reasoning=3)


def test_stream_with_include_usage_ends_with_one_usage_chunk(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    request_id = stream.response.headers.get("x-request-id")
    chunks = list(stream)

    assert chunks, "the stream was empty"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == CONTENT
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]

    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1, f"expected one usage chunk, got {len(with_usage)}"
    usage_chunk = with_usage[0]
    assert usage_chunk is chunks[-1], "the usage chunk must be the last one"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == PROMPT_TOKENS
    assert usage_chunk.usage.completion_tokens == COMPLETION_TOKENS
    assert usage_chunk.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    # Every other chunk carries choices (OpenAI sends `choices: []` only on the usage chunk).
    assert all(c.choices for c in chunks[:-1])

    assert_row(gateway, request_id, stream=True, prompt=PROMPT_TOKENS, completion=COMPLETION_TOKENS)


def test_stream_without_include_usage_shows_no_usage_but_is_metered(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Count please [mock:chunks=6]"}],
        stream=True,
        user="streamer",
    )
    request_id = stream.response.headers.get("x-request-id")
    chunks = list(stream)

    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "tok0 tok1 tok2 tok3 tok4 tok5 "
    assert [c.usage for c in chunks if c.usage is not None] == []
    assert all(c.choices for c in chunks), "a chunk with empty choices (a usage chunk) leaked to the client"

    # The gateway asked the upstream for usage itself: the row has the provider's numbers, not an estimate.
    assert_row(
        gateway, request_id, stream=True, prompt=3 + 3, completion=6, usage_source="provider", end_user="streamer"
    )


# --- tools ----------------------------------------------------------------------------------------------


def test_tool_call_plain(gateway: Gateway) -> None:
    completion = gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert isinstance(call, ChatCompletionMessageToolCall)
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert_row(gateway, completion._request_id, prompt=3 + 3, completion=COMPLETION_TOKENS)


def test_tool_call_streamed(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        stream=True,
    )
    request_id = stream.response.headers.get("x-request-id")
    ids: list[str] = []
    names: list[str] = []
    arguments = ""
    finish = []
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.id:
                    ids.append(call.id)
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    arguments += call.function.arguments
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert len(ids) == 1
    assert names == ["get_weather"]
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == ["tool_calls"]
    assert_row(gateway, request_id, stream=True, prompt=3 + 3, completion=COMPLETION_TOKENS)


# --- embeddings -----------------------------------------------------------------------------------------


def test_embeddings_single_string(gateway: Gateway) -> None:
    # No encoding_format: the SDK asks for base64 and decodes it, but accepts floats too (the mock answers
    # floats whatever was asked).
    response = gateway.client().embeddings.create(model="text-embedding-3-small", input="hello tollgate world")
    assert response.object == "list"
    assert len(response.data) == 1
    vector = response.data[0].embedding
    assert response.data[0].index == 0
    assert len(vector) == 8 and all(isinstance(x, float) for x in vector)
    assert response.usage.prompt_tokens == 3  # the mock counts words for embeddings, without the +3
    assert response.usage.total_tokens == 3
    assert_row(
        gateway, response._request_id, endpoint="embeddings", model="text-embedding-3-small", prompt=3, completion=0
    )
    # The request reached the upstream as the SDK sent it, with the provider's key instead of the virtual key.
    upstream = [r for r in gateway.upstream_requests() if r["body"].get("input") == "hello tollgate world"]
    assert len(upstream) == 1
    assert upstream[0]["path"] == "/openai/v1/embeddings"
    assert upstream[0]["body"]["encoding_format"] == "base64"
    assert dict(upstream[0]["headers"]).get("authorization") == "Bearer sk-upstream-test"


def test_embeddings_list_input(gateway: Gateway) -> None:
    inputs = ["first text", "the second text", "third"]
    response = gateway.client().embeddings.create(
        model="text-embedding-3-small", input=inputs, user="embedder", encoding_format="float"
    )
    assert [d.index for d in response.data] == [0, 1, 2]
    assert all(len(d.embedding) == 8 for d in response.data)
    # Different texts get different (deterministic) vectors.
    assert len({tuple(d.embedding) for d in response.data}) == 3
    assert response.usage.prompt_tokens == 2 + 3 + 1
    assert_row(
        gateway,
        response._request_id,
        endpoint="embeddings",
        model="text-embedding-3-small",
        prompt=6,
        completion=0,
        end_user="embedder",
    )


# --- models ---------------------------------------------------------------------------------------------


def test_models_list_for_a_key_allowed_everything(gateway: Gateway) -> None:
    models = list(gateway.client().models.list())
    assert sorted(m.id for m in models) == sorted(
        [*MODELS, *ANTHROPIC_MODELS, *AZURE_MODELS, *BEDROCK_MODELS, *GEMINI_MODELS, *NATIVE_CN_MODELS, *NATIVE_CN_FAILING]
    )
    assert all(m.object == "model" for m in models)


def test_models_list_for_a_restricted_key(gateway: Gateway) -> None:
    models = list(gateway.client(LIMITED_KEY).models.list())
    assert [m.id for m in models] == LIMITED_MODELS


def test_restricted_key_may_use_its_model(gateway: Gateway) -> None:
    completion = gateway.client(LIMITED_KEY).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == CONTENT
    assert_row(gateway, completion._request_id, key=LIMITED_KEY, prompt=PROMPT_TOKENS, completion=COMPLETION_TOKENS)


# --- typed errors ---------------------------------------------------------------------------------------


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    client = gateway.client(WRONG_KEY)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_unknown_model_is_not_found(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        gateway.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.status_code == 404
    assert "no-such-model" in info.value.message
    row = gateway.row(info.value.request_id or "")
    assert (row["model"], row["outcome"], row["http_status"], row["error_code"]) == (
        "no-such-model",
        "client_error",
        404,
        "model_not_found",
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (0, 0, "none")


def test_restricted_key_other_model_is_permission_denied(gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        gateway.client(LIMITED_KEY).embeddings.create(model="text-embedding-3-small", input="nope")
    assert info.value.status_code == 403
    row = gateway.row(info.value.request_id or "")
    assert (row["key_id"], row["team"], row["outcome"], row["http_status"], row["error_code"]) == (
        "limited",
        "ads",
        "client_error",
        403,
        "model_not_allowed",
    )


def test_upstream_400_passes_through_as_bad_request(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().chat.completions.create(model="bad-request", messages=MESSAGES, tools=TOOLS)
    assert info.value.status_code == 400
    assert info.value.message.endswith("Invalid value for tools"), info.value.message
    assert isinstance(info.value.body, dict) and info.value.body.get("message") == "Invalid value for tools"
    assert_row(
        gateway,
        info.value.request_id,
        model="bad-request",
        outcome="upstream_error",
        http_status=400,
        usage_source="none",
        error_code="upstream_400",
    )


def test_upstream_429_is_rate_limit_error(gateway: Gateway) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        gateway.client(max_retries=0).chat.completions.create(model="always-429", messages=MESSAGES)
    assert info.value.status_code == 429
    assert info.value.response.headers.get("retry-after") == "0"
    assert_row(
        gateway,
        info.value.request_id,
        model="always-429",
        outcome="upstream_error",
        http_status=429,
        usage_source="none",
    )


def test_streamed_request_to_a_failing_upstream_raises_before_any_chunk(gateway: Gateway) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        gateway.client(max_retries=0).chat.completions.create(
            model="always-429-stream", messages=MESSAGES, stream=True
        )
    assert info.value.status_code == 429
    assert_row(
        gateway,
        info.value.request_id,
        model="always-429-stream",
        stream=True,
        outcome="upstream_error",
        http_status=429,
        usage_source="none",
    )


def test_upstream_500_is_502_internal_server_error(gateway: Gateway) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        gateway.client(max_retries=0).chat.completions.create(model="upstream-500", messages=MESSAGES)
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.status_code == 502
    assert "mock upstream exploded" in info.value.message
    assert_row(
        gateway,
        info.value.request_id,
        model="upstream-500",
        outcome="upstream_error",
        http_status=502,
        usage_source="none",
        error_code="upstream_error",
    )


def test_sdk_retries_are_each_metered(gateway: Gateway) -> None:
    """With the SDK's default retries, a 502 is sent 3 times: the gateway must meter 3 attempts, not 1.
    (After the first failure the deployment's key cools down, so the SDK's retries get the gateway's
    fail-fast 503 — also a server error the SDK retries.)"""
    before = gateway.sent[FULL_KEY]
    client = gateway.client(max_retries=2)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="upstream-500-retried", messages=[{"role": "user", "content": "retry me"}], timeout=10
        )
    assert gateway.sent[FULL_KEY] - before == 3


# --- metering: one row per request ----------------------------------------------------------------------


def test_exactly_one_usage_row_per_metered_request(gateway: Gateway) -> None:
    """Runs last in this file: every HTTP request the SDK clients sent to /v1/chat/completions,
    /v1/embeddings or /v1/messages with a configured key (retries included; test_anthropic_sdk.py runs first)
    must have exactly one row, under that key."""
    expected = {KEY_IDENTITY[k][0]: n for k, n in gateway.sent.items() if k in KEY_IDENTITY}
    total = sum(expected.values())
    assert total > 0, "no metered requests were made"

    def rows_by_key() -> dict[str, int]:
        return {r["key_id"]: r["n"] for r in gateway.query("SELECT key_id, count(*) AS n FROM usage_events GROUP BY key_id")}

    # Wait until the writer caught up, then make sure nothing more arrives (a duplicate would come late).
    gateway.wait_for(lambda: sum(rows_by_key().values()) >= total, f"{total} usage rows")
    time.sleep(0.3)
    assert rows_by_key() == expected
    distinct = gateway.query("SELECT count(DISTINCT event_id) AS n, count(*) AS total FROM usage_events")[0]
    assert distinct["n"] == distinct["total"] == total
    # Requests with the wrong key were sent (counted in `sent` under WRONG_KEY) but are not in `expected`:
    # the equality above proves they left no row.
