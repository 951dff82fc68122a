//! The Gemini and Vertex AI conformance list: an OpenAI client through a `gemini`-kind provider and through a
//! `vertex`-kind provider (both publishers: Gemini and Claude), and Gemini-format clients on
//! `/v1beta/models/{model}:generateContent` to a Gemini upstream and to an OpenAI upstream — plain, stream,
//! tools, multi-turn tool results with thought signatures, usage with cached and thought tokens and its
//! cost, each error class (429 RetryInfo → cooldown / failover, 401 → 502), in-stream errors, cut streams,
//! and Vertex's service-account tokens (cached, refreshed, re-fetched after a 401).

use crate::common;

use common::provider::{
    assert_chat_success, assert_mock_completion, assert_openai_stream, assert_paris_weather_call,
    assert_stream_cut, assert_stream_error, assert_upstream_auth_failed, assert_usd_cost,
    delta_text, finish_reasons, read_ok, stream_chunks, streamed_calls, tokens, upstream_keys,
    usage_chunks, weather_tools, CACHE_DIRECTIVES, CACHE_USAGE, SONNET_CACHE_COST,
};
use common::{request_id, user, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Endpoint, Outcome, UsageSource, UsageVector};
use tollgate_tests::mock_upstream::gemini::SIGNATURE;

const CONFIG: &str = r#"
[providers.gem]
kind = "gemini"
base_url = "{mock_gemini}"
api_keys = ["AIza-a", "AIza-b"]
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[providers.gem-bad-key]
kind = "gemini"
base_url = "{mock_gemini}"
api_keys = ["invalid-key-1"]

[providers.vtx]
kind = "vertex"
base_url = "{mock_vertex}"
project = "proj-1"
region = "us-central1"
service_account_file = "{fixtures}/google-service-account/service-account.json"
token_url = "{mock_token_url}"
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[providers.vtx-short]
kind = "vertex"
base_url = "{mock_vertex}"
project = "proj-1"
region = "europe-west4"
service_account_file = "{fixtures}/google-service-account/service-account.json"
token_url = "{mock_token_url}?expires_in=1"

[providers.vtx-refused]
kind = "vertex"
base_url = "{mock_vertex}"
project = "proj-1"
region = "us-central1"
service_account_file = "{fixtures}/google-service-account/service-account.json"
token_url = "{mock_token_url}?fail=400"

[models."gemini"]
deployments = [{ provider = "gem", model = "gemini-2.5-flash" }]

[models."gemini-once"]
deployments = [{ provider = "gem", model = "gemini-2.5-flash" }]
max_attempts = 1

[models."gemini-bad-key"]
deployments = [{ provider = "gem-bad-key", model = "gemini-2.5-flash" }]

[models."vertex-gemini"]
deployments = [{ provider = "vtx", model = "gemini-2.5-flash" }]

[models."vertex-gemini-once"]
deployments = [{ provider = "vtx", model = "gemini-2.5-flash" }]
max_attempts = 1

[models."vertex-claude"]
deployments = [{ provider = "vtx", model = "claude-sonnet-4-5@20250929" }]
max_attempts = 1

[models."vertex-short"]
deployments = [{ provider = "vtx-short", model = "gemini-2.5-flash" }]

[models."vertex-refused"]
deployments = [{ provider = "vtx-refused", model = "gemini-2.5-flash" }]
"#;

async fn harness() -> Harness {
    Harness::start_with(CONFIG).await
}

/// [`weather_tools`] with `additionalProperties: false`, which Gemini's schema subset refuses: the gateway
/// drops it (see `tool_calls_plain_and_streamed`).
fn tools() -> Value {
    let mut tools = weather_tools();
    tools[0]["function"]["parameters"]["additionalProperties"] = json!(false);
    tools
}

// ---- OpenAI client → Gemini API ---------------------------------------------------------------------------

#[tokio::test]
async fn plain_chat_is_translated_signed_and_metered_with_cost() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gemini", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the gateway"}],
            "stop": "END", "temperature": 0.5, "max_tokens": 64, "user": "alice"}))
        .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(body["model"], "gemini-2.5-flash");
    // The mock counts the words of `contents` (5) + 3.
    assert_mock_completion(&body, 5 + 3);

    let sent = &h.mock.requests()[0];
    assert_eq!(
        sent.path,
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some("AIza-a"));
    assert_eq!(sent.header("authorization"), None);
    // The mock refuses unknown top-level fields: nothing of OpenAI's (model, messages, user…) leaked.
    assert_eq!(
        sent.body,
        json!({"systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Say hello to the gateway"}]}],
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5, "stopSequences": ["END"]}})
    );
    let e = h.event(&id).await;
    assert_chat_success(&e, "gem", "gemini");
    assert_eq!(e.upstream_model, "gemini-2.5-flash");
    // gemini-2.5-flash from the shipped table: $0.30 in / $2.50 out per Mtok.
    assert_usd_cost(&e, 8 * 300 + 4 * 2500);
}

#[tokio::test]
async fn cached_and_thought_tokens_fold_into_usage_and_are_priced() {
    let h = harness().await;
    let directives =
        "[mock:prompt_tokens=1000&cached_tokens=600&completion_tokens=10&reasoning_tokens=20]";
    let r = h
        .chat(&json!({"model": "gemini", "messages": user(directives)}))
        .await;
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["reasoning_content"],
        "Mock thoughts about the question."
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 1000, "completion_tokens": 30, "total_tokens": 1030,
            "prompt_tokens_details": {"cached_tokens": 600}, "completion_tokens_details": {"reasoning_tokens": 20}})
    );
    let expected = UsageVector {
        prompt_tokens: 1000,
        completion_tokens: 30,
        cached_read_tokens: 600,
        cache_write_tokens: 0,
        reasoning_tokens: 20,
    };
    let e = h.event(&id).await;
    assert_eq!(e.usage, expected);
    // 400 fresh × $0.30, 600 cached × $0.03, 10 visible + 20 thought × $2.50 (per Mtok).
    assert_eq!(e.cost.nanos, 400 * 300 + 600 * 30 + 30 * 2500);

    // Streamed: usageMetadata is cumulative on every event; the last one counts.
    let r = h
        .chat(
            &json!({"model": "gemini", "stream": true, "stream_options": {"include_usage": true},
            "messages": user(directives)}),
        )
        .await;
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(
        delta_text(&chunks, "reasoning_content"),
        "Mock thoughts about the question."
    );
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 30);
    assert_eq!(h.wait_event(&id).await.usage, expected);
}

#[tokio::test]
async fn stream_is_openai_sse_with_usage_only_when_asked() {
    let h = harness().await;
    for include_usage in [false, true] {
        let r = h
            .chat(&json!({"model": "gemini", "stream": true, "stream_options": {"include_usage": include_usage},
                "messages": user("a b c [mock:chunks=5]")}))
            .await;
        let (id, chunks) = assert_openai_stream(r).await;
        assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 tok2 tok3 tok4 ");
        assert_eq!(finish_reasons(&chunks), ["stop"]);
        assert_eq!(usage_chunks(&chunks).len(), usize::from(include_usage));
        let e = h.wait_event(&id).await;
        assert_eq!(
            (e.outcome, e.usage_source, e.stream),
            (Outcome::Success, UsageSource::Provider, true)
        );
        assert_eq!(e.usage, tokens(4 + 3, 5));
    }
    assert!(h
        .mock
        .requests()
        .iter()
        .all(|r| r.path == "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"));
}

#[tokio::test]
async fn recorded_fixture_streams_translate() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gemini", "stream": true,
            "messages": user("[mock:fixture=googleai/streaming-success-basic-reply-short]")}))
        .await;
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(
        delta_text(&chunks, "content"),
        "The capital of Wyoming is **Cheyenne**.\n"
    );
    let e = h.wait_event(&id).await;
    assert_eq!(e.usage, tokens(7, 10));
    // A plain answer from a recorded body: the prompt blocked with no candidates.
    let r = h
        .chat(&json!({"model": "gemini", "messages": user("[mock:fixture=googleai/unary-failure-only-prompt-feedback]")}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn tool_calls_plain_and_streamed() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "gemini", "tools": tools(), "tool_choice": "required",
            "messages": user("Weather in Paris?")}),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(
        choice["finish_reason"], "tool_calls",
        "Gemini says STOP; a function call makes it tool_calls"
    );
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(
        call["id"].as_str().unwrap().starts_with("call_"),
        "a made-up id: {call}"
    );
    assert_paris_weather_call(call);
    let sent = &h.mock.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}])
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );

    let r = h
        .chat(&json!({"model": "gemini", "tools": tools(), "stream": true, "messages": user("Weather in Paris?")}))
        .await;
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let calls = streamed_calls(&chunks);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert_eq!(calls[0][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn multi_turn_tool_results_and_thought_signatures_round_trip() {
    let h = harness().await;
    // Thinking on: the mock's functionCall carries a thoughtSignature, and refuses a call sent back without it.
    let r = h
        .chat(
            &json!({"model": "gemini", "tools": tools(), "reasoning_effort": "low",
            "messages": user("Weather in Paris?")}),
        )
        .await;
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    let message = body["choices"][0]["message"].clone();
    assert_eq!(
        message["reasoning_content"],
        "Mock thoughts about the question."
    );
    assert_eq!(h.event(&id).await.usage.reasoning_tokens, 5);
    assert_eq!(
        h.mock.requests()[0].body["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    let call_id = message["tool_calls"][0]["id"].clone();
    // The client sends the assistant message back as it got it, with the tool result.
    let r = h
        .chat(
            &json!({"model": "gemini", "tools": tools(), "reasoning_effort": "low", "messages": [
            {"role": "user", "content": "Weather in Paris?"}, message,
            {"role": "tool", "tool_call_id": call_id, "content": "18C"}]}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "the mock refuses a function call without its signature"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["finish_reason"], "stop",
        "a text answer after the tool result"
    );
    let contents = &h.mock.requests()[1].body["contents"];
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": SIGNATURE}]})
    );
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}]})
    );

    // Without the signature (a client that rebuilt the call), Gemini's 400 is passed on, not retried.
    let r = h
        .chat(
            &json!({"model": "gemini", "tools": tools(), "reasoning_effort": "low", "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"id": "call_x", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_x", "content": "18C"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("thought_signature"));
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(h.event(&id).await.attempts, 1);
}

#[tokio::test]
async fn images_become_inline_data() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "gemini", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.mock.requests()[0].body["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
}

// ---- errors ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_errors_pass_through_without_retry() {
    let h = harness().await;
    for (status, code, ty) in [
        (400, "INVALID_ARGUMENT", "invalid_request_error"),
        (403, "PERMISSION_DENIED", "permission_error"),
        (404, "NOT_FOUND", "not_found_error"),
    ] {
        let r = h
            .chat(&json!({"model": "gemini", "messages": user(&format!("[mock:status={status}&message=nope+{status}]"))}))
            .await;
        assert_eq!(r.status().as_u16(), status);
        let id = request_id(&r);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], format!("nope {status}"));
        assert_eq!(
            (
                body["error"]["code"].as_str(),
                body["error"]["type"].as_str()
            ),
            (Some(code), Some(ty))
        );
        let e = h.event(&id).await;
        assert_eq!(
            (e.attempts, e.outcome, e.http_status),
            (1, Outcome::UpstreamError, status)
        );
    }
}

#[tokio::test]
async fn rate_limit_with_retry_info_fails_over_and_cools_the_key() {
    let h = harness().await;
    // 429 on the first key: the other key answers.
    let r = h
        .chat(&json!({"model": "gemini", "messages": user("[mock:status=429&retry_after=1.5&only_key=AIza-a]")}))
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    assert_eq!(upstream_keys(&h, "x-goog-api-key"), ["AIza-a", "AIza-b"]);
    assert_eq!(h.event(&id).await.attempts, 2);

    // With no other attempt allowed: the 429 passes on, RetryInfo's 1.5s as retry-after 2.
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gemini-once", "messages": user("[mock:status=429&retry_after=30&only_key=AIza-a]")}))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["type"].as_str()
        ),
        (Some("RESOURCE_EXHAUSTED"), Some("rate_limit_error"))
    );
    // The key rests for RetryInfo's 30 s (not the 1 s base cooldown): the next request goes to the other key.
    let r = h
        .chat(&json!({"model": "gemini-once", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.mock.requests().last().unwrap().header("x-goog-api-key"),
        Some("AIza-b")
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = h
        .chat(&json!({"model": "gemini-once", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.mock.requests().last().unwrap().header("x-goog-api-key"),
        Some("AIza-b"),
        "key a still cooling after the base cooldown"
    );

    // A per-day quota is spent until tomorrow: not retried, marked as such.
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gemini", "messages": user("[mock:status=429&code=PerDay&retry_after=5]")}))
        .await;
    assert_eq!(r.status(), 429);
    let id = request_id(&r);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_quota_exhausted"
    );
    assert_eq!(h.event(&id).await.attempts, 1);
}

#[tokio::test]
async fn server_errors_are_retried_on_the_other_key() {
    for status in [500, 503] {
        let h = harness().await;
        let r = h
            .chat(&json!({"model": "gemini", "messages": user(&format!("[mock:status={status}&only_key=AIza-a]"))}))
            .await;
        assert_eq!(r.status(), 200, "{status}");
        let id = request_id(&r);
        assert_eq!(h.event(&id).await.attempts, 2, "{status}");
        let r = h
            .chat(&json!({"model": "gemini-once", "messages": user(&format!("[mock:status={status}&message=overloaded]"))}))
            .await;
        assert_eq!(r.status(), 502, "{status}");
    }
}

#[tokio::test]
async fn refused_gemini_keys_are_502_upstream_auth_failed() {
    let h = harness().await;
    // A plain 401, and Google's own answer to a bad key: 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
    for (model, content) in [
        ("gemini-once", "[mock:status=401&message=bad+key+AIza-a]"),
        ("gemini-bad-key", "hi"),
    ] {
        let r = h
            .chat(&json!({"model": model, "messages": user(content)}))
            .await;
        assert_upstream_auth_failed(&h, r, &["AIza", "invalid-key"]).await;
    }
}

#[tokio::test]
async fn in_stream_error_becomes_an_error_chunk() {
    let h = harness().await;
    for model in ["gemini", "vertex-gemini"] {
        let r = h
            .chat(
                &json!({"model": model, "stream": true, "messages": user("[mock:error_after=2]")}),
            )
            .await;
        let (chunks, error) = assert_stream_error(&h, r, "UNAVAILABLE").await;
        assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 ", "{model}");
        assert_eq!(error["error"]["code"], "UNAVAILABLE", "{model}");
    }
}

#[tokio::test]
async fn a_stream_cut_before_its_finish_reason_is_truncated_and_estimated() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gemini", "stream": true, "messages": user("[mock:cut_after=2]")}))
        .await;
    let (_, e) = assert_stream_cut(&h, r).await;
    assert_eq!(e.usage_source, UsageSource::Estimated);
    assert!(e.usage.completion_tokens >= 2);
}

// ---- Vertex AI -------------------------------------------------------------------------------------------

const VERTEX_PREFIX: &str = "/vertex/v1/projects/proj-1/locations/us-central1/publishers";

#[tokio::test]
async fn vertex_gemini_with_a_cached_service_account_token() {
    let h = harness().await;
    for i in 0..3 {
        let stream = i == 2;
        let r = h
            .chat(&json!({"model": "vertex-gemini", "stream": stream,
                "messages": user("hi [mock:prompt_tokens=100&cached_tokens=40&reasoning_tokens=7]")}))
            .await;
        assert_eq!(r.status(), 200);
        let id = request_id(&r);
        let text = r.text().await.unwrap();
        assert!(text.contains("tok3"), "{text}");
        let e = h.wait_event(&id).await;
        assert_eq!(
            (e.provider_kind.as_str(), e.outcome),
            ("vertex", Outcome::Success)
        );
        assert_eq!(
            e.usage,
            UsageVector {
                prompt_tokens: 100,
                completion_tokens: 4 + 7,
                cached_read_tokens: 40,
                cache_write_tokens: 0,
                reasoning_tokens: 7
            }
        );
        // Vertex rows of the shipped table: Google's list prices for gemini-2.5-flash.
        assert_usd_cost(&e, 60 * 300 + 40 * 30 + 11 * 2500);
    }
    let sent = h.mock.requests();
    assert_eq!(
        sent[0].path,
        format!("{VERTEX_PREFIX}/google/models/gemini-2.5-flash:generateContent")
    );
    assert_eq!(
        sent[2].path,
        format!("{VERTEX_PREFIX}/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    );
    assert!(sent
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer ya29.mock-1")));
    assert!(sent.iter().all(|r| r.header("x-goog-api-key").is_none()));
    assert_eq!(
        h.mock.token_fetches(),
        1,
        "one token for all three requests"
    );
}

#[tokio::test]
async fn vertex_tokens_are_refreshed_before_expiry_and_refetched_after_a_401() {
    let h = harness().await;
    // A token that lives 1 s is refreshed after 0.9 s.
    let r = h
        .chat(&json!({"model": "vertex-short", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.mock.requests()[0].path,
        "/vertex/v1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    let r = h
        .chat(&json!({"model": "vertex-short", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.token_fetches(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = h
        .chat(&json!({"model": "vertex-short", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.token_fetches(), 2);

    // A token the API stops accepting: the 401 drops it, a fresh one is fetched and the request succeeds.
    let r = h
        .chat(&json!({"model": "vertex-gemini", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.token_fetches(), 3);
    h.mock.revoke_tokens();
    let before = h.mock.requests().len();
    let r = h
        .chat(&json!({"model": "vertex-gemini", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    assert_eq!(h.mock.token_fetches(), 4);
    let sent = &h.mock.requests()[before..];
    assert_eq!(
        sent.len(),
        2,
        "the refused send and the one with the fresh token"
    );
    assert_ne!(
        sent[0].header("authorization"),
        sent[1].header("authorization")
    );
    assert_eq!(h.event(&id).await.attempts, 1);

    // Refused every time: 502 upstream_auth_failed after one re-fetch.
    let r = h
        .chat(&json!({"model": "vertex-gemini-once", "messages": user("[mock:status=401]")}))
        .await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_auth_failed"
    );
    assert_eq!(h.mock.token_fetches(), 5);
}

#[tokio::test]
async fn a_refused_service_account_is_502_upstream_auth_failed() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "vertex-refused", "messages": user("hi")}))
        .await;
    assert_upstream_auth_failed(&h, r, &["PRIVATE KEY"]).await;
    assert!(
        h.mock
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/vertex")),
        "no API call without a token"
    );
}

#[tokio::test]
async fn vertex_errors_rate_limits_and_server_errors() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "vertex-gemini-once", "messages": user("[mock:status=404&message=no+such+model]")}))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "NOT_FOUND"
    );
    // Last: the 429 cools the provider's one key slot.
    let r = h
        .chat(&json!({"model": "vertex-gemini-once", "messages": user("[mock:status=429&retry_after=3]")}))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    // Claude on Vertex: Anthropic-shaped errors from the model side.
    let r = h
        .chat(&json!({"model": "vertex-claude", "messages": user("[mock:status=400&message=bad+request]")}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
    let r = h
        .chat(&json!({"model": "vertex-claude", "messages": user("[mock:status=529]")}))
        .await;
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn vertex_claude_plain_stream_tools_and_messages() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "vertex-claude", "max_tokens": 100, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": format!("hi {CACHE_DIRECTIVES}")}]}),
        )
        .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    let sent = &h.mock.requests()[0];
    assert_eq!(
        sent.path,
        format!("{VERTEX_PREFIX}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.mock-1"));
    assert_eq!(sent.header("anthropic-version"), None);
    assert_eq!(sent.body["anthropic_version"], "vertex-2023-10-16");
    assert!(sent.body.get("model").is_none());
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(sent.body["max_tokens"], 100);
    let e = h.event(&id).await;
    assert_eq!(e.usage, CACHE_USAGE);
    // Vertex rows of the shipped table: Anthropic's list prices for claude-sonnet-4-5 (the @version matches).
    assert_usd_cost(&e, SONNET_CACHE_COST);

    let r = h
        .chat(&json!({"model": "vertex-claude", "stream": true, "stream_options": {"include_usage": true},
            "tools": tools(), "messages": user("Weather in Paris?")}))
        .await;
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
    assert_eq!(
        h.mock.requests()[1].path,
        format!("{VERTEX_PREFIX}/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict")
    );
    assert_eq!(h.mock.requests()[1].body["stream"], true);

    // /v1/messages to Claude on Vertex: the client's body, model moved to the URL.
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .header("x-api-key", common::KEY)
        .json(&json!({"model": "vertex-claude", "max_tokens": 32,
            "system": [{"type": "text", "text": "ctx", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "message");
    let sent = &h.mock.requests()[2].body;
    assert_eq!(
        *sent,
        json!({"max_tokens": 32, "system": [{"type": "text", "text": "ctx", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}], "anthropic_version": "vertex-2023-10-16"})
    );
    assert_eq!(h.mock.token_fetches(), 1);
}

// ---- Gemini-native inbound -------------------------------------------------------------------------------

async fn generate(h: &Harness, model_method: &str, body: &Value) -> reqwest::Response {
    h.client
        .post(h.url(&format!("/v1beta/models/{model_method}")))
        .header("x-goog-api-key", common::KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The text of the events' first part, joined.
fn gemini_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect()
}

/// Gemini SSE → the events' JSON.
fn gemini_events(body: &str) -> Vec<Value> {
    body.split("\r\n\r\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

#[tokio::test]
async fn generate_content_to_a_gemini_upstream_is_lossless() {
    let h = harness().await;
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "hi [mock:prompt_tokens=50&cached_tokens=20&reasoning_tokens=6]"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}],
        "generationConfig": {"maxOutputTokens": 64, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 128}}});
    let r = generate(&h, "gemini:generateContent", &request).await;
    let (id, body) = read_ok(r).await;
    // The client's body went upstream unchanged (safety settings, thinking config and all).
    let sent = &h.mock.requests()[0];
    assert_eq!(
        sent.path,
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(sent.body, request);
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(
        candidate["content"]["parts"],
        json!([{"text": "Mock thoughts about the question.", "thought": true}, {"text": "tok0 tok1 tok2 tok3 "}])
    );
    assert_eq!(
        body["usageMetadata"],
        json!({"promptTokenCount": 50, "candidatesTokenCount": 4, "thoughtsTokenCount": 6,
            "cachedContentTokenCount": 20, "totalTokenCount": 60})
    );
    let e = h.event(&id).await;
    assert_eq!(
        (e.endpoint, e.provider_kind.as_str(), e.model.as_str()),
        (Endpoint::GenerateContent, "gemini", "gemini")
    );
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 50,
            completion_tokens: 10,
            cached_read_tokens: 20,
            cache_write_tokens: 0,
            reasoning_tokens: 6
        }
    );
    assert_eq!(e.cost.nanos, 30 * 300 + 20 * 30 + 10 * 2500);

    // Streamed, authenticated with ?key=: Gemini SSE back, usage on the last event.
    let r = h
        .client
        .post(h.url(&format!("/v1beta/models/gemini:streamGenerateContent?alt=sse&key={}", common::KEY)))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "one two [mock:chunks=3]"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let id = request_id(&r);
    let events = gemini_events(&r.text().await.unwrap());
    assert_eq!(gemini_text(&events), "tok0 tok1 tok2 ");
    let last = events.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 3 + 3);
    assert_eq!(
        h.mock.requests()[1].path,
        "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let e = h.wait_event(&id).await;
    assert_eq!(
        (e.endpoint, e.stream, e.usage.completion_tokens),
        (Endpoint::GenerateContent, true, 3)
    );

    // A function call with its thought signature comes back as a Gemini part, signature on it.
    let r = generate(&h, "gemini:generateContent", &json!({"contents": [{"role": "user", "parts": [{"text": "Weather?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": true}}})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][1],
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE})
    );
}

#[tokio::test]
async fn generate_content_to_an_openai_upstream() {
    let h = harness().await;
    let r = generate(
        &h,
        "gpt-4o-mini:generateContent",
        &json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Say hello to the gateway"}]}],
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.2}}),
    )
    .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(
        body["candidates"][0]["content"],
        json!({"role": "model", "parts": [{"text": "tok0 tok1 tok2 tok3 "}]})
    );
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    assert_eq!(body["usageMetadata"]["promptTokenCount"], 2 + 5 + 3);
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 4);
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, "/openai/v1/chat/completions");
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent.body["max_completion_tokens"], 64);
    let e = h.event(&id).await;
    assert_eq!(
        (e.endpoint, e.provider_kind.as_str(), e.outcome),
        (Endpoint::GenerateContent, "openai", Outcome::Success)
    );
    assert!(!e.cost.price_missing && e.cost.nanos > 0);

    // Streamed.
    let r = generate(
        &h,
        "gpt-4o-mini:streamGenerateContent?alt=sse",
        &json!({
        "contents": [{"role": "user", "parts": [{"text": "a [mock:chunks=3]"}]}]}),
    )
    .await;
    let id = request_id(&r);
    let events = gemini_events(&r.text().await.unwrap());
    assert_eq!(gemini_text(&events), "tok0 tok1 tok2 ");
    assert_eq!(
        events.last().unwrap()["usageMetadata"]["candidatesTokenCount"],
        3
    );
    assert_eq!(h.wait_event(&id).await.usage.completion_tokens, 3);

    // Tools, then the function response sent back (matched to the call by name).
    let tools = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]);
    let r = generate(
        &h,
        "gpt-4o-mini:generateContent",
        &json!({"tools": tools,
        "contents": [{"role": "user", "parts": [{"text": "Weather?"}]}]}),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    let call = body["candidates"][0]["content"]["parts"][0].clone();
    assert_eq!(
        call,
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
    );
    let r = generate(&h, "gpt-4o-mini:generateContent", &json!({"tools": tools, "contents": [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": [call]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}]}]})).await;
    assert_eq!(r.status(), 200);
    let sent = h.mock.requests().last().unwrap().body.clone();
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_1_0");
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_1_0", "content": "18C"})
    );
}

#[tokio::test]
async fn generate_content_errors_have_google_shape() {
    let h = harness().await;
    let check = |body: &Value, code: u16, status: &str| {
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["status"], status, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    };
    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]});
    let r = h
        .client
        .post(h.url("/v1beta/models/gemini:generateContent"))
        .header("x-goog-api-key", "tg-wrong")
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    check(&r.json().await.unwrap(), 401, "UNAUTHENTICATED");
    let r = generate(&h, "nope:generateContent", &contents).await;
    assert_eq!(r.status(), 404);
    check(&r.json().await.unwrap(), 404, "NOT_FOUND");
    let r = generate(&h, "gemini:countTokens", &contents).await;
    assert_eq!(r.status(), 404);
    check(&r.json().await.unwrap(), 404, "NOT_FOUND");
    let r = generate(
        &h,
        "gemini:generateContent",
        &json!({"generationConfig": {}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    check(&r.json().await.unwrap(), 400, "INVALID_ARGUMENT");
    let r = generate(&h, "gemini-once:generateContent",
        &json!({"contents": [{"role": "user", "parts": [{"text": "[mock:status=429&retry_after=4]"}]}]})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "4");
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    check(&body, 429, "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["details"][0]["retryDelay"], "4s");
    // In a stream: the upstream's error event comes out as a Google error event.
    let r = generate(
        &h,
        "gemini:streamGenerateContent?alt=sse",
        &json!({"contents": [{"role": "user", "parts": [{"text": "[mock:error_after=1]"}]}]}),
    )
    .await;
    let events = gemini_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap()["error"]["status"], "UNAVAILABLE");
    assert_eq!(events.len(), 2);
}
