"""The official Python `anthropic` SDK against a running Tollgate gateway's `/v1/messages`, and the `openai` SDK
through an `anthropic`-kind provider (the mock upstream's Anthropic dialect behind both).

Covers: `messages.create` to an OpenAI upstream and to an Anthropic upstream (typed `Message`, content, usage,
the usage row with endpoint `messages` and its cost), `messages.stream` (text events, `get_final_message`,
usage), tools (typed `ToolUseBlock`, then the tool result sent back), thinking blocks with their signature,
the SDK's typed errors (401, 404, upstream 429 with retry-after) in Anthropic's error shape; and the `openai`
SDK's chat completions (plain, streamed, tools, cache usage) on a Claude deployment.

Run (after `cargo build -p tollgate-gateway -p tollgate-tests`): `.venv/bin/pytest tests/python -q`.
"""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ThinkingBlock, ToolUseBlock

from conftest import ANTHROPIC_MODELS, FULL_KEY, WRONG_KEY, Gateway

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
CONTENT = "tok0 tok1 tok2 tok3 "


def row_of(gw: Gateway, request_id: str | None) -> dict:
    assert request_id, "no x-request-id"
    return dict(gw.row(request_id))


def test_messages_to_an_openai_upstream(gateway: Gateway) -> None:
    client = gateway.anthropic_client()
    raw = client.messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello to the gateway"}],
    )
    message = raw.parse()
    assert isinstance(message, Message)
    assert message.role == "assistant"
    assert [type(b) for b in message.content] == [TextBlock]
    assert message.content[0].text == CONTENT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3 + 5 + 3, 4)
    row = row_of(gateway, raw.headers.get("x-request-id"))
    assert (row["endpoint"], row["provider_kind"], row["outcome"]) == ("messages", "openai-compatible", "success")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 4)
    # What reached the upstream is an OpenAI chat request with the system prompt first.
    sent = [r for r in gateway.upstream_requests() if r["path"] == "/openai/v1/chat/completions"][-1]
    assert sent["body"]["messages"][0] == {"role": "system", "content": "You are terse."}


def test_messages_to_an_anthropic_upstream_with_cache_usage_and_cost(gateway: Gateway) -> None:
    raw = gateway.anthropic_client().messages.with_raw_response.create(
        model="claude",
        max_tokens=64,
        system=[{"type": "text", "text": "Shared context", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "[mock:prompt_tokens=1000&cached_tokens=600&cache_write_tokens=100]"}],
    )
    message = raw.parse()
    assert message.content[0].text == CONTENT
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (300, 600, 100)
    row = row_of(gateway, raw.headers.get("x-request-id"))
    assert (row["provider"], row["upstream_model"], row["endpoint"]) == ("claude", "claude-sonnet-4-5", "messages")
    assert (row["prompt_tokens"], row["cached_read_tokens"], row["cache_write_tokens"]) == (1000, 600, 100)
    # Shipped prices for claude-sonnet-4-5 (USD per Mtok): 3 in, 0.30 cached read, 3.75 cache write, 15 out.
    assert row["price_missing"] == 0
    assert row["cost_nanos"] == 300 * 3000 + 600 * 300 + 100 * 3750 + 4 * 15000
    # The client's body went upstream unchanged (cache_control kept), only the model renamed.
    sent = [r for r in gateway.upstream_requests() if r["path"] == "/anthropic/v1/messages"][-1]
    assert sent["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["body"]["model"] == "claude-sonnet-4-5"
    assert sent["headers"] and dict(sent["headers"]).get("x-api-key") == "sk-ant-test"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude"])
def test_messages_stream(gateway: Gateway, model: str) -> None:
    client = gateway.anthropic_client()
    with client.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Count please [mock:chunks=6]"}]
    ) as stream:
        request_id = stream.response.headers.get("x-request-id")
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "tok0 tok1 tok2 tok3 tok4 tok5 "
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens == 3 + 3
    row = row_of(gateway, request_id)
    assert (row["endpoint"], row["stream"], row["completion_tokens"], row["usage_source"]) == (
        "messages",
        1,
        6,
        "provider",
    )


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude"])
def test_messages_tools_and_tool_result(gateway: Gateway, model: str) -> None:
    client = gateway.anthropic_client()
    question = {"role": "user", "content": "Weather in Paris?"}
    message = client.messages.create(model=model, max_tokens=64, tools=TOOLS, messages=[question])
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if isinstance(b, ToolUseBlock)]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].input == {"city": "Paris"}
    follow_up = client.messages.create(
        model=model,
        max_tokens=64,
        tools=TOOLS,
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "18C"}]},
        ],
    )
    if model == "claude":
        # The Anthropic mock answers a tool result with text (and refuses results without their tool_use).
        assert follow_up.stop_reason == "end_turn"
        assert follow_up.content[-1].text.startswith("tok0")
    else:
        # The OpenAI mock calls the tool whenever tools are offered; what matters is the result went up.
        sent = gateway.upstream_requests()[-1]["body"]["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"}
        assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_messages_tool_use_streamed(gateway: Gateway) -> None:
    with gateway.anthropic_client().messages.stream(
        model="claude", max_tokens=64, tools=TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}]
    ) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if isinstance(b, ToolUseBlock)]
    assert [c.input for c in calls] == [{"city": "Paris"}]
    assert final.stop_reason == "tool_use"


def test_messages_thinking_keeps_its_signature(gateway: Gateway) -> None:
    client = gateway.anthropic_client()
    message = client.messages.create(
        model="claude",
        max_tokens=256,
        thinking={"type": "enabled", "budget_tokens": 128},
        messages=[{"role": "user", "content": "Think first"}],
    )
    thinking = [b for b in message.content if isinstance(b, ThinkingBlock)]
    assert len(thinking) == 1 and thinking[0].signature == "sig-mock-thinking"
    with client.messages.stream(
        model="claude",
        max_tokens=256,
        thinking={"type": "enabled", "budget_tokens": 128},
        messages=[{"role": "user", "content": "Think first"}],
    ) as stream:
        final = stream.get_final_message()
    streamed = [b for b in final.content if isinstance(b, ThinkingBlock)]
    assert [b.signature for b in streamed] == ["sig-mock-thinking"]
    assert streamed[0].thinking == thinking[0].thinking


def test_messages_typed_errors(gateway: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        gateway.anthropic_client(WRONG_KEY).messages.create(
            model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert auth.value.status_code == 401
    assert auth.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as missing:
        gateway.anthropic_client().messages.create(
            model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.body["type"] == "error"
    assert "no-such-model" in missing.value.body["error"]["message"]
    with pytest.raises(anthropic.RateLimitError) as limited:
        gateway.anthropic_client().messages.create(
            model="claude-429", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert limited.value.status_code == 429
    assert limited.value.response.headers.get("retry-after") == "0"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    row = row_of(gateway, limited.value.response.headers.get("x-request-id"))
    assert (row["endpoint"], row["outcome"], row["http_status"]) == ("messages", "upstream_error", 429)


# --- the openai SDK on a Claude deployment --------------------------------------------------------------


def test_openai_sdk_through_an_anthropic_provider(gateway: Gateway) -> None:
    client = gateway.client()
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello [mock:cached_tokens=2]"}],
    )
    assert completion.choices[0].message.content == CONTENT
    assert completion.choices[0].finish_reason == "stop"
    # The mock counts message words (the system prompt is top-level upstream, not counted) + 3.
    assert completion.usage is not None and completion.usage.prompt_tokens == 3 + 3
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    row = row_of(gateway, completion._request_id)
    assert (row["provider_kind"], row["upstream_model"], row["endpoint"]) == ("anthropic", ANTHROPIC_MODELS["claude"], "chat_completions")
    assert row["cost_nanos"] > 0 and row["price_missing"] == 0

    stream = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi [mock:chunks=3]"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 "
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [3]

    tools = [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}} for t in TOOLS]
    completion = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools
    )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
