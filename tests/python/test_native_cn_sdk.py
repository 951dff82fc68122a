"""The official `openai` SDK through each native Chinese provider kind — `hunyuan-native` (TC3-signed API 3.0),
`qianfan-v1` (wenxinworkshop, access token in the query) and `dashscope-native` — on the mock upstream's
native dialects, which check every request's signature, token or bearer.

Covers per provider: a plain completion (content, usage, the usage row's kind and its CNY cost converted to
the USD reporting currency), a stream with `include_usage` (deltas, one usage chunk), a tool call and the tool
result sent back, and the SDK's typed errors for errors the upstream reports inside an HTTP 200 (Tencent,
Baidu) or with a status (DashScope): throttling → `RateLimitError`, an account out of money → a 402
`APIStatusError`. Qianfan's access token must appear in no answer and no log line of the gateway.

Run (after `cargo build -p tollgate-gateway -p tollgate-tests`): `.venv/bin/pytest tests/python -q`.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import NATIVE_CN_FAILING, NATIVE_CN_MODELS, TC3_SECRET, Gateway

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


@pytest.mark.parametrize("model", list(NATIVE_CN_MODELS))
def test_plain_stream_and_cost(gateway: Gateway, model: str) -> None:
    client = gateway.client()
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi [mock:prompt_tokens=100&completion_tokens=10]"}],
        temperature=0.5,
    )
    assert completion.choices[0].message.content == CONTENT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 10)
    row = dict(gateway.row(completion._request_id))
    kind, upstream = NATIVE_CN_MODELS[model]
    assert (row["provider_kind"], row["upstream_model"]) == (kind, upstream)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (100, 10)
    assert row["currency"] == "CNY" and row["cost_nanos"] > 0 and row["price_missing"] == 0
    assert row["reporting_currency"] == "USD"
    assert row["reporting_cost_nanos"] == (row["cost_nanos"] * 14 + 50) // 100

    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi [mock:chunks=3]"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 "
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [3]


@pytest.mark.parametrize("model", list(NATIVE_CN_MODELS))
def test_tool_call_and_tool_result(gateway: Gateway, model: str) -> None:
    client = gateway.client()
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]
    completion = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert completion.choices[0].finish_reason == "tool_calls"
    call = completion.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    messages += [
        completion.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    answer = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == CONTENT


@pytest.mark.parametrize("model", list(NATIVE_CN_FAILING))
def test_typed_errors(gateway: Gateway, model: str) -> None:
    client = gateway.client()
    status = NATIVE_CN_FAILING[model][2]
    expected = openai.RateLimitError if status == 429 else openai.APIStatusError
    with pytest.raises(expected) as raised:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == status
    if status == 402:
        assert raised.value.code == "upstream_quota_exhausted"
    row = dict(gateway.row(raised.value.response.headers["x-request-id"]))
    assert (row["outcome"], row["attempts"]) == ("upstream_error", 1)


def test_the_qianfan_token_stays_out_of_answers_and_logs(gateway: Gateway) -> None:
    client = gateway.client()
    completion = client.chat.completions.create(model="ernie-v1", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == CONTENT
    sent = [r for r in gateway.upstream_requests() if r["path"].startswith("/qianfan/")]
    token = sent[-1]["path"].split("access_token=", 1)[1]
    assert token.startswith("24.mocktoken")
    logs = "".join(gateway.logs)
    assert logs, "the gateway logs something"
    for secret in (token, "qf-mock-sk-a", TC3_SECRET, "sk-dsn-python"):
        assert secret not in logs
        assert secret not in completion.model_dump_json()
