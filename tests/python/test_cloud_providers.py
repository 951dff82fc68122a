"""The official `openai` SDK through `azure` and `bedrock` providers, and botocore's verdict on the SigV4
signatures the gateway sent.

The mock upstream already recomputes every SigV4 signature (its own implementation); here botocore — the AWS
SDK for Python — re-signs each request the mock recorded (`/__mock/requests`: path, headers, body as
received) with the test secret at the request's own `X-Amz-Date`, and must produce the very same
`Authorization` header. A wrong secret must not.

Run: `.venv/bin/pytest tests/python/test_cloud_providers.py -q` (after
`cargo build -p tollgate-gateway -p tollgate-tests`).
"""

from __future__ import annotations

import datetime
import json
from typing import Any
from unittest import mock

import openai
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import (
    BEDROCK_ACCESS_KEY_ID,
    BEDROCK_REGION,
    BEDROCK_SECRET_ACCESS_KEY,
    Gateway,
)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_openai_sdk_through_azure(gateway: Gateway) -> None:
    client = gateway.client()
    reply = client.chat.completions.with_raw_response.create(
        model="azure-gpt-4o", messages=[{"role": "user", "content": "Say hello"}])
    completion = reply.parse()
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 "
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    row = gateway.row(reply.headers["x-request-id"])
    assert (row["provider_kind"], row["outcome"]) == ("azure", "success")

    # Azure's empty first chunk (`choices: []` + prompt_filter_results) must not trip the SDK.
    stream = client.chat.completions.create(
        model="azure-gpt-4o", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "tok0 tok1 tok2 tok3 "
    assert usage is not None and usage.completion_tokens == 4

    sent = [r for r in gateway.upstream_requests() if r["path"].startswith("/azure/")]
    assert sent and all(r["path"] == "/azure/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
                        for r in sent)
    assert all(dict(r["headers"]).get("api-key") == "azure-test-key" for r in sent)


def test_openai_sdk_through_bedrock(gateway: Gateway) -> None:
    client = gateway.client()
    reply = client.chat.completions.with_raw_response.create(
        model="bedrock-sonnet", messages=[{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Say hello"}])
    completion = reply.parse()
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 "
    assert completion.model == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    row = gateway.row(reply.headers["x-request-id"])
    assert (row["provider_kind"], row["outcome"], row["price_missing"]) == ("bedrock", "success", 0)

    stream = client.chat.completions.create(
        model="bedrock-sonnet", messages=[{"role": "user", "content": "count [mock:chunks=6]"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "tok0 tok1 tok2 tok3 tok4 tok5 "
    assert usage is not None and usage.completion_tokens == 6

    tool = client.chat.completions.create(
        model="bedrock-sonnet", tools=TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = tool.choices[0].message.tool_calls[0]
    assert tool.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    follow_up = client.chat.completions.create(
        model="bedrock-sonnet", tools=TOOLS, messages=[
            {"role": "user", "content": "Weather in Paris?"},
            tool.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18C"}])
    assert follow_up.choices[0].finish_reason == "stop"

    try:
        client.chat.completions.create(
            model="bedrock-sonnet", messages=[{"role": "user", "content": "x [mock:status=400&message=Malformed+input]"}])
        raise AssertionError("expected a 400")
    except openai.BadRequestError as e:
        assert e.body["type"] == "ValidationException"  # type: ignore[index]


def botocore_authorization(request: dict[str, Any], base_url: str, secret: str) -> str:
    """botocore's Authorization for a recorded request, signed at the request's own X-Amz-Date."""
    headers = dict(request["headers"])
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    # botocore adds host, x-amz-date and the token itself; the other signed headers are passed as sent.
    passed = {name: headers[name] for name in signed if name not in ("host", "x-amz-date", "x-amz-security-token")}
    aws = AWSRequest(method="POST", url=base_url + request["path"], headers=passed, data=request["raw"].encode())
    when = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    credentials = Credentials(BEDROCK_ACCESS_KEY_ID, secret, headers.get("x-amz-security-token"))
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(credentials, "bedrock", BEDROCK_REGION).add_auth(aws)
    return aws.headers["Authorization"]


def test_botocore_verifies_the_signatures_the_gateway_sent(gateway: Gateway) -> None:
    client = gateway.client()
    client.chat.completions.create(model="bedrock-sonnet", messages=[{"role": "user", "content": "é ✓ \"quoted\""}])
    for _ in client.chat.completions.create(
            model="bedrock-sonnet", messages=[{"role": "user", "content": "streamed"}], stream=True):
        pass
    sent = [r for r in gateway.upstream_requests() if r["path"].startswith("/bedrock/")]
    assert len(sent) >= 2
    assert any(r["path"].endswith("%3A0/converse-stream") for r in sent)
    for request in sent:
        recorded = dict(request["headers"])["authorization"]
        assert recorded.startswith(f"AWS4-HMAC-SHA256 Credential={BEDROCK_ACCESS_KEY_ID}/")
        assert botocore_authorization(request, gateway.mock_url, BEDROCK_SECRET_ACCESS_KEY) == recorded, request["path"]
        # The check can fail: another secret gives another signature.
        assert botocore_authorization(request, gateway.mock_url, BEDROCK_SECRET_ACCESS_KEY + "x") != recorded
