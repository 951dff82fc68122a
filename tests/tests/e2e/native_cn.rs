//! The conformance list for the native Chinese APIs — Tencent Hunyuan API 3.0 (`hunyuan-native`, TC3-signed),
//! Baidu Qianfan v1 (`qianfan-v1`, access token in the query) and Alibaba DashScope native
//! (`dashscope-native`) — each behind an OpenAI client: plain, stream, tools and multi-turn tool results,
//! usage and its cost in CNY with the reporting conversion, every error class including the HTTP-200 error
//! bodies, in-stream errors, cut streams, failover on throttling, Qianfan's token cache and refresh, and no
//! secret or token in any event, log line or error.
//!
//! The mock checks each request's credentials itself: it recomputes the TC3 signature from the test secret,
//! accepts only tokens its own token endpoint issued, and wants a DashScope bearer.

use crate::common;

use common::provider::{
    assert_mock_completion, assert_openai_stream, assert_stream_cut, assert_stream_error,
    assert_upstream_auth_failed, delta_text, read_ok, stream_chunks, tokens, usage_chunks,
    weather_tool_turns, weather_tools,
};
use common::{request_id, user, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Outcome, UsageEvent, UsageSource, UsageVector};
use tollgate_tests::mock_upstream::native_cn::{QIANFAN_KEYS, TC3_KEYS};

const CONFIG: &str = r#"
[providers.hy]
kind = "hunyuan-native"
base_url = "{mock_hunyuan}"
# SecretId:SecretKey pairs; the first key's secret comes from the environment.
api_keys = ["AKIDmockTollgateA:${TEST_TC3_SECRET_A}", "AKIDmockTollgateB:tc3-mock-secret-key-b"]
region = "ap-guangzhou"
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[providers.hy_bad]
kind = "hunyuan-native"
base_url = "{mock_hunyuan}"
api_keys = ["AKIDmockTollgateA:not-the-secret"]

[providers.qf]
kind = "qianfan-v1"
base_url = "{mock_qianfan}"
api_keys = ["qf-mock-ak-a:qf-mock-sk-a", "qf-mock-ak-b:qf-mock-sk-b"]
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[providers.qf_one]
kind = "qianfan-v1"
base_url = "{mock_qianfan}"
api_keys = ["qf-mock-ak-a:qf-mock-sk-a"]

[providers.qf_bad]
kind = "qianfan-v1"
base_url = "{mock_qianfan}"
api_keys = ["qf-mock-ak-a:not-the-secret"]

[providers.dsn]
kind = "dashscope-native"
base_url = "{mock_dashscope}"
api_keys = ["sk-dsn-a", "sk-dsn-b"]
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[models."hunyuan"]
deployments = [{ provider = "hy", model = "hunyuan-turbo" }]

[models."hunyuan-once"]
deployments = [{ provider = "hy", model = "hunyuan-turbo" }]
max_attempts = 1

[models."hunyuan-bad"]
deployments = [{ provider = "hy_bad", model = "hunyuan-turbo" }]

[models."ernie"]
deployments = [{ provider = "qf", model = "completions_pro" }]

[models."ernie-once"]
deployments = [{ provider = "qf", model = "completions_pro" }]
max_attempts = 1

[models."ernie-one-key"]
deployments = [{ provider = "qf_one", model = "completions_pro" }]
max_attempts = 1

[models."ernie-bad"]
deployments = [{ provider = "qf_bad", model = "completions_pro" }]

[models."qwen-native"]
deployments = [{ provider = "dsn", model = "qwen-plus" }]

[models."qwen-native-once"]
deployments = [{ provider = "dsn", model = "qwen-plus" }]
max_attempts = 1
"#;

async fn harness() -> Harness {
    Harness::start_with(CONFIG).await
}

/// A chat to `model` with one user turn: the status, the JSON body and the request id.
async fn ask(h: &Harness, model: &str, text: &str) -> (u16, Value, String) {
    let r = h
        .chat(&json!({"model": model, "messages": user(text)}))
        .await;
    let status = r.status().as_u16();
    let id = request_id(&r);
    (status, r.json().await.unwrap(), id)
}

/// CNY nano-units → the reporting USD at the test config's rate (0.14), rounded half up.
fn usd(cny: u64) -> u64 {
    (cny * 14 + 50) / 100
}

/// A price applied, in CNY: `cny` nano-CNY, reported as [`usd`] of it.
fn assert_cny_cost(e: &UsageEvent, cny: u64) {
    assert!(!e.cost.price_missing);
    assert_eq!((e.cost.nanos, e.cost.currency.as_str()), (cny, "CNY"));
    assert_eq!(
        (e.cost.reporting_nanos, e.cost.reporting_currency.as_str()),
        (usd(cny), "USD")
    );
}

/// A stream's tool call assembled from its deltas: (function name, arguments, last finish reason).
fn streamed_tool_call(chunks: &[Value]) -> (String, String, Option<String>) {
    let mut name = String::new();
    let mut args = String::new();
    let mut finish = None;
    for c in chunks {
        if let Some(calls) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            for call in calls {
                name.push_str(call["function"]["name"].as_str().unwrap_or_default());
                args.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    (name, args, finish)
}

/// Each `(directive, status, code)` to `model` (one attempt), plain and streamed, on a fresh gateway each (a
/// retryable failure cools the key, a refused key rests): the client gets `status` with error `code`, and
/// the event records `code` after one attempt.
async fn assert_error_classes(model: &str, cases: &[(&str, u16, &str)]) {
    for &(directive, status, code) in cases {
        for stream in [false, true] {
            let h = harness().await;
            let r = h
                .chat(&json!({"model": model, "stream": stream,
                    "messages": user(&format!("[mock:{directive}]"))}))
                .await;
            assert_eq!(r.status().as_u16(), status, "{directive} stream={stream}");
            let id = request_id(&r);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{directive} stream={stream}");
            let e = h.event(&id).await;
            assert_eq!(e.error_code.as_deref(), Some(code), "{directive}");
            assert_eq!(e.attempts, 1);
        }
    }
}

/// The streamed tool call every dialect here must assemble: `get_weather({"city":"Paris"})`, then
/// `tool_calls`.
fn paris_weather_call() -> (String, String, Option<String>) {
    (
        "get_weather".into(),
        "{\"city\":\"Paris\"}".into(),
        Some("tool_calls".into()),
    )
}

// ---- Tencent Hunyuan native ------------------------------------------------------------------------------

#[tokio::test]
async fn hunyuan_plain_is_tc3_signed_pascal_case_and_costed_in_cny() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "hunyuan", "max_tokens": 50, "temperature": 0.5, "stop": ["END"],
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the gateway"}]}))
        .await;
    let (id, body) = read_ok(r).await;
    // 2 + 5 words + 3.
    assert_mock_completion(&body, 10);

    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, "/hunyuan/");
    assert_eq!(sent.header("x-tc-action"), Some("ChatCompletions"));
    assert_eq!(sent.header("x-tc-version"), Some("2023-09-01"));
    assert_eq!(sent.header("x-tc-region"), Some("ap-guangzhou"));
    let auth = sent.header("authorization").unwrap();
    assert!(
        auth.starts_with("TC3-HMAC-SHA256 Credential=AKIDmockTollgateA/"),
        "{auth}"
    );
    assert!(auth
        .contains("/hunyuan/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature="));
    assert_eq!(sent.body["Model"], "hunyuan-turbo");
    assert_eq!(sent.body["Stream"], false);
    assert_eq!(
        sent.body["Messages"],
        json!([{"Role": "system", "Content": "Be brief."}, {"Role": "user", "Content": "Say hello to the gateway"}])
    );
    assert_eq!(
        (sent.body["Temperature"].as_f64(), sent.body["Stop"].clone()),
        (Some(0.5), json!(["END"]))
    );
    assert!(
        sent.body.get("max_tokens").is_none(),
        "Hunyuan has no output cap"
    );

    let e = h.event(&id).await;
    assert_eq!(
        (e.provider.as_str(), e.provider_kind.as_str()),
        ("hy", "hunyuan-native")
    );
    assert_eq!(
        (e.outcome, e.usage_source),
        (Outcome::Success, UsageSource::Provider)
    );
    assert_eq!(e.usage, tokens(10, 4));
    // hunyuan-turbo: 15 CNY in, 50 CNY out per Mtok.
    assert_cny_cost(&e, 10 * 15_000 + 4 * 50_000);

    // The mock recomputes the signature: a wrong SecretKey is refused (HTTP 200 AuthFailure → 502).
    let r = h
        .chat(&json!({"model": "hunyuan-bad", "messages": user("hi")}))
        .await;
    assert_upstream_auth_failed(&h, r, &["not-the-secret"]).await;
}

#[tokio::test]
async fn hunyuan_stream_keeps_the_last_usage_and_ends_with_done() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "hunyuan", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("[mock:chunks=5&prompt_tokens=30&cached_tokens=10]")}),
        )
        .await;
    let (id, chunks) = assert_openai_stream(r).await;
    assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 tok2 tok3 tok4 ");
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1, "one usage chunk, the last upstream value");
    assert_eq!(usage[0]["usage"]["completion_tokens"], 5);
    assert_eq!(
        usage[0]["usage"]["prompt_tokens_details"]["cached_tokens"],
        10
    );
    assert_eq!(h.mock.requests()[0].body["Stream"], true);
    let e = h.wait_event(&id).await;
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 30,
            completion_tokens: 5,
            cached_read_tokens: 10,
            ..UsageVector::default()
        }
    );
    assert_eq!(e.usage_source, UsageSource::Provider);
}

#[tokio::test]
async fn hunyuan_tools_plain_streamed_and_multi_turn_tool_results() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "hunyuan", "tools": weather_tools(), "tool_choice": "auto",
            "messages": user("Weather in Paris?")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let sent = &h.mock.requests()[0].body;
    assert_eq!(sent["Tools"][0]["Function"]["Name"], "get_weather");
    assert!(sent["Tools"][0]["Function"]["Parameters"].is_string());
    assert_eq!(sent["ToolChoice"], "auto");

    let r = h
        .chat(&json!({"model": "hunyuan", "stream": true, "tools": weather_tools(), "messages": user("Weather in Paris?")}))
        .await;
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(streamed_tool_call(&chunks), paris_weather_call());

    // The tool result goes back as a `tool` turn after the assistant's ToolCalls; the mock checks the order.
    let r = h
        .chat(&json!({"model": "hunyuan", "tools": weather_tools(),
            "messages": weather_tool_turns("sunny, 21C")}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    let sent = &h.mock.requests()[2].body["Messages"];
    assert_eq!(sent[1]["ToolCalls"][0]["Id"], "call_1");
    assert_eq!(
        sent[2],
        json!({"Role": "tool", "Content": "sunny, 21C", "ToolCallId": "call_1"})
    );
}

#[tokio::test]
async fn hunyuan_http_200_errors_map_to_each_class() {
    assert_error_classes(
        "hunyuan-once",
        &[
            ("status=429", 429, "RequestLimitExceeded"),
            ("status=429&code=LimitExceeded", 429, "LimitExceeded"),
            ("status=401", 502, "upstream_auth_failed"),
            (
                "status=400&code=InvalidParameterValue.Model",
                400,
                "InvalidParameterValue.Model",
            ),
            ("status=402", 402, "upstream_quota_exhausted"),
            ("status=500", 502, "upstream_error"),
        ],
    )
    .await;
    // Upstream throttling on the first key: the second key (signed with its own secret) answers.
    let h = harness().await;
    let (status, _, id) = ask(
        &h,
        "hunyuan",
        "[mock:status=429&only_key=AKIDmockTollgateA]",
    )
    .await;
    assert_eq!(status, 200);
    let e = h.event(&id).await;
    assert_eq!((e.attempts, e.outcome), (2, Outcome::Success));
    let last = h.mock.requests().pop().unwrap();
    assert!(last
        .header("authorization")
        .unwrap()
        .contains("Credential=AKIDmockTollgateB/"));
    // Quota is not retried on the other key.
    let (status, _, id) = ask(&h, "hunyuan", "[mock:status=402]").await;
    assert_eq!((status, h.event(&id).await.attempts), (402, 1));
}

#[tokio::test]
async fn hunyuan_stream_faults_error_chunk_cut_and_failover_before_the_first_byte() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "hunyuan", "stream": true, "messages": user("[mock:error_after=2]")}),
        )
        .await;
    let (chunks, _) = assert_stream_error(&h, r, "2001").await;
    assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 ");

    let r = h
        .chat(&json!({"model": "hunyuan", "stream": true, "messages": user("[mock:cut_after=2]")}))
        .await;
    let (_, e) = assert_stream_cut(&h, r).await;
    // Hunyuan repeats its cumulative usage on every chunk: the count so far is the provider's, not a guess.
    assert_eq!(e.usage_source, UsageSource::Provider);

    let r = h
        .chat(&json!({"model": "hunyuan", "stream": true,
            "messages": user("[mock:reset_after=0&only_key=AKIDmockTollgateA]")}))
        .await;
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(
        (delta_text(&chunks, "content").as_str(), last.as_deref()),
        ("tok0 tok1 tok2 tok3 ", Some("[DONE]"))
    );
    assert_eq!(h.wait_event(&id).await.attempts, 2);
}

// ---- Baidu Qianfan v1 ------------------------------------------------------------------------------------

#[tokio::test]
async fn qianfan_plain_uses_a_cached_token_in_the_query_and_is_costed_in_cny() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "ernie", "max_completion_tokens": 100, "temperature": 1.5, "user": "alice",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]}))
        .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let sent = &h.mock.requests()[0];
    let token = &h.mock.qianfan_tokens()[0];
    assert_eq!(
        sent.path,
        format!("/qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/completions_pro?access_token={token}")
    );
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    assert_eq!(sent.body["max_output_tokens"], 100);
    assert_eq!(sent.body["temperature"], 1.0, "clamped to v1's (0, 1]");
    assert_eq!(sent.body["user_id"], "alice");
    assert!(sent.header("authorization").is_none());
    let e = h.event(&id).await;
    assert_eq!(e.provider_kind, "qianfan-v1");
    // 2 + 2 words + 3 prompt tokens, 4 completion; completions_pro (ERNIE-4.0-8K): 30 / 90 CNY per Mtok.
    assert_eq!(e.usage, tokens(7, 4));
    assert_cny_cost(&e, 7 * 30_000 + 4 * 90_000);

    for _ in 0..3 {
        assert_eq!(ask(&h, "ernie", "again").await.0, 200);
    }
    assert_eq!(
        h.mock.qianfan_token_fetches(),
        2,
        "one token per key (two keys, round robin), reused by every request"
    );

    // Credentials the token endpoint refuses: upstream_auth_failed, the secret nowhere.
    let r = h
        .chat(&json!({"model": "ernie-bad", "messages": user("hi")}))
        .await;
    assert_upstream_auth_failed(&h, r, &["not-the-secret"]).await;
}

#[tokio::test]
async fn qianfan_stream_functions_and_multi_turn_function_results() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "ernie", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("[mock:chunks=3&prompt_tokens=12]")}),
        )
        .await;
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 tok2 ");
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (
            usage[0]["usage"]["prompt_tokens"].as_u64(),
            usage[0]["usage"]["completion_tokens"].as_u64()
        ),
        (Some(12), Some(3))
    );
    assert_eq!(h.wait_event(&id).await.usage.completion_tokens, 3);

    let r = h
        .chat(&json!({"model": "ernie", "tools": weather_tools(), "messages": user("Weather in Paris?")}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(
        (
            call["function"]["name"].as_str(),
            call["function"]["arguments"].as_str()
        ),
        (Some("get_weather"), Some("{\"city\":\"Paris\"}"))
    );
    assert_eq!(
        h.mock.requests()[1].body["functions"][0]["name"],
        "get_weather"
    );

    let r = h
        .chat(&json!({"model": "ernie", "stream": true, "tools": weather_tools(), "messages": user("Weather in Paris?")}))
        .await;
    let (chunks, _) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(streamed_tool_call(&chunks), paris_weather_call());

    let mut messages = vec![json!({"role": "system", "content": "Use tools."})];
    messages.extend(weather_tool_turns("sunny"));
    let r = h
        .chat(&json!({"model": "ernie", "tools": weather_tools(), "messages": messages}))
        .await;
    assert_eq!(r.status(), 200);
    let sent = &h.mock.requests()[3].body["messages"];
    assert_eq!(sent[1]["function_call"]["name"], "get_weather");
    assert_eq!(
        sent[2],
        json!({"role": "function", "name": "get_weather", "content": "sunny"})
    );
}

#[tokio::test]
async fn qianfan_http_200_errors_map_to_each_class_and_throttling_fails_over() {
    assert_error_classes(
        "ernie-once",
        &[
            ("status=429", 429, "18"),
            ("status=429&code=336501", 429, "336501"),
            ("status=402", 402, "upstream_quota_exhausted"),
            ("status=402&code=19", 402, "upstream_quota_exhausted"),
            ("status=400", 400, "336003"),
            ("status=401", 502, "upstream_auth_failed"),
            ("status=500", 502, "upstream_error"),
        ],
    )
    .await;
    let h = harness().await;
    let (status, _, id) = ask(&h, "ernie", "[mock:status=429&only_key=qf-mock-ak-a]").await;
    assert_eq!((status, h.event(&id).await.attempts), (200, 2));
    let (status, _, id) = ask(&h, "ernie", "[mock:status=402&code=17]").await;
    assert_eq!(
        (status, h.event(&id).await.attempts),
        (402, 1),
        "a spent daily quota is not retried"
    );

    let h = harness().await;
    let r = h
        .chat(&json!({"model": "ernie", "stream": true, "messages": user("[mock:error_after=1]")}))
        .await;
    let (_, error) = assert_stream_error(&h, r, "336100").await;
    assert_eq!(error["error"]["code"], "336100");
    let r = h
        .chat(&json!({"model": "ernie", "stream": true, "messages": user("[mock:cut_after=1]")}))
        .await;
    assert_stream_cut(&h, r).await;
}

#[tokio::test]
async fn qianfan_expired_token_is_refetched_once_and_a_refused_one_ends_in_auth_failure() {
    let h = harness().await;
    assert_eq!(ask(&h, "ernie-one-key", "hi").await.0, 200);
    let first = h.mock.qianfan_tokens();
    assert_eq!((first.len(), h.mock.qianfan_token_fetches()), (1, 1));

    // 111 (expired): dropped, fetched again, the same attempt succeeds.
    h.mock.expire_qianfan_tokens();
    let (status, _, id) = ask(&h, "ernie-one-key", "hi").await;
    assert_eq!(status, 200);
    assert_eq!(h.mock.qianfan_token_fetches(), 2);
    assert_eq!(h.event(&id).await.attempts, 1);
    let tokens = h.mock.qianfan_tokens();
    let fresh = tokens.iter().find(|t| !first.contains(t)).unwrap();
    let paths: Vec<String> = h.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths[1].ends_with(&first[0]) && paths[2].ends_with(fresh.as_str()),
        "{paths:?}"
    );

    // The stream path too.
    h.mock.expire_qianfan_tokens();
    let r = h
        .chat(&json!({"model": "ernie-one-key", "stream": true, "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(h.mock.qianfan_token_fetches(), 3);

    // 110 on every call: one refetch, then upstream_auth_failed (no loop).
    let (status, body, _) = ask(&h, "ernie-one-key", "[mock:status=401&code=110]").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed"))
    );
    assert_eq!(h.mock.qianfan_token_fetches(), 4);
}

#[tokio::test]
async fn no_token_or_secret_in_any_event_log_or_error() {
    let capture = common::log_capture::Capture::start();
    let h = harness().await;
    let mut bodies = Vec::new();
    for (model, text, stream) in [
        ("ernie", "hi", false),
        ("ernie", "hi", true),
        ("ernie-once", "[mock:status=429]", false),
        ("ernie-once", "[mock:status=401&code=111]", false),
        ("ernie-once", "[mock:reset_after=0]", true),
        ("ernie-once", "[mock:reset_after=1]", true),
        ("ernie-bad", "hi", false),
        ("hunyuan", "hi", false),
        ("hunyuan-once", "[mock:status=401]", true),
        ("hunyuan-bad", "hi", false),
        ("qwen-native-once", "[mock:status=401]", false),
    ] {
        let r = h
            .chat(&json!({"model": model, "stream": stream, "messages": user(text)}))
            .await;
        bodies.push(r.text().await.unwrap());
    }
    h.mock.expire_qianfan_tokens();
    bodies.push(ask(&h, "ernie", "hi").await.1.to_string());
    let events = h.wait_events(12).await;
    assert_eq!(events.len(), 12);
    let events = serde_json::to_string(&events).unwrap();
    let logs = capture.text();
    assert!(
        logs.contains("access token"),
        "the refresh is logged (without the token)"
    );
    let tokens = h.mock.qianfan_tokens();
    assert!(tokens.len() >= 3);
    let mut secrets: Vec<String> = tokens;
    secrets.extend(QIANFAN_KEYS.iter().map(|(_, s)| (*s).to_string()));
    secrets.extend(TC3_KEYS.iter().map(|(_, s)| (*s).to_string()));
    secrets.extend([
        "not-the-secret".to_string(),
        "sk-dsn-a".to_string(),
        "access_token=".to_string(),
    ]);
    for secret in &secrets {
        assert!(!events.contains(secret.as_str()), "an event holds {secret}");
        assert!(!logs.contains(secret.as_str()), "the logs hold {secret}");
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "an answer holds {secret}: {body}"
            );
        }
    }
}

// ---- Alibaba DashScope native ----------------------------------------------------------------------------

#[tokio::test]
async fn dashscope_plain_envelope_bearer_cached_usage_and_cost() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "qwen-native", "max_tokens": 64, "temperature": 0.7, "seed": 1,
            "messages": [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "[mock:prompt_tokens=1000&cached_tokens=400&completion_tokens=20]"}]}))
        .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 400);
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer sk-dsn-a"));
    assert_eq!(
        sent.header("x-dashscope-sse"),
        None,
        "plain requests do not ask for SSE"
    );
    assert_eq!(sent.body["model"], "qwen-plus");
    assert_eq!(
        sent.body["input"]["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent.body["parameters"]["result_format"], "message");
    assert_eq!(sent.body["parameters"]["max_tokens"], 64);
    assert_eq!(sent.body["parameters"]["seed"], 1);
    assert!(sent.body["parameters"].get("incremental_output").is_none());
    let e = h.event(&id).await;
    assert_eq!(e.provider_kind, "dashscope-native");
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 1000,
            completion_tokens: 20,
            cached_read_tokens: 400,
            ..UsageVector::default()
        }
    );
    // qwen-plus: 0.80 in (cached reads at the input price), 2.00 out per Mtok.
    assert_cny_cost(&e, 1000 * 800 + 20 * 2000);
}

#[tokio::test]
async fn dashscope_streams_incremental_or_cumulative_give_the_same_deltas() {
    let h = harness().await;
    for cumulative in ["", "&cumulative=1"] {
        let r = h
            .chat(&json!({"model": "qwen-native", "stream": true, "stream_options": {"include_usage": true},
                "messages": user(&format!("[mock:chunks=4&prompt_tokens=9{cumulative}]"))}))
            .await;
        let (id, chunks) = assert_openai_stream(r).await;
        assert_eq!(
            delta_text(&chunks, "content"),
            "tok0 tok1 tok2 tok3 ",
            "{cumulative}"
        );
        let usage = usage_chunks(&chunks);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0]["usage"]["completion_tokens"], 4);
        let e = h.wait_event(&id).await;
        assert_eq!(e.usage, tokens(9, 4));
    }
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.header("x-dashscope-sse"), Some("enable"));
    assert_eq!(sent.body["parameters"]["incremental_output"], true);
}

#[tokio::test]
async fn dashscope_tools_and_multi_turn_tool_results() {
    let h = harness().await;
    let r = h.chat(&json!({"model": "qwen-native", "tools": weather_tools(), "messages": user("Weather in Paris?")})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        h.mock.requests()[0].body["parameters"]["tools"][0]["function"]["name"],
        "get_weather"
    );
    let r = h
        .chat(&json!({"model": "qwen-native", "stream": true, "tools": weather_tools(), "messages": user("Weather in Paris?")}))
        .await;
    let (chunks, _) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(streamed_tool_call(&chunks), paris_weather_call());
    let r = h
        .chat(&json!({"model": "qwen-native", "tools": weather_tools(),
            "messages": weather_tool_turns("sunny")}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    let sent = &h.mock.requests()[2].body["input"]["messages"];
    assert_eq!(
        sent[2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    );
}

#[tokio::test]
async fn dashscope_errors_map_to_each_class_and_throttling_fails_over() {
    assert_error_classes(
        "qwen-native-once",
        &[
            ("status=429", 429, "Throttling.RateQuota"),
            ("status=401", 502, "upstream_auth_failed"),
            ("status=402", 402, "upstream_quota_exhausted"),
            ("status=400", 400, "InvalidParameter"),
            (
                "status=400&code=DataInspectionFailed",
                400,
                "content_filter",
            ),
            ("status=500", 502, "upstream_error"),
        ],
    )
    .await;
    let h = harness().await;
    let (status, _, id) = ask(&h, "qwen-native", "[mock:status=429&only_key=sk-dsn-a]").await;
    assert_eq!((status, h.event(&id).await.attempts), (200, 2));
    assert_eq!(
        h.mock.requests().pop().unwrap().header("authorization"),
        Some("Bearer sk-dsn-b")
    );
    let (status, _, id) = ask(&h, "qwen-native", "[mock:status=402]").await;
    assert_eq!(
        (status, h.event(&id).await.attempts),
        (402, 1),
        "arrears are not retried"
    );

    let h = harness().await;
    let r = h.chat(&json!({"model": "qwen-native", "stream": true, "messages": user("[mock:error_after=2]")})).await;
    let (chunks, error) = assert_stream_error(&h, r, "InternalError").await;
    assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 ");
    assert_eq!(error["error"]["code"], "InternalError");
    let r = h
        .chat(
            &json!({"model": "qwen-native", "stream": true, "messages": user("[mock:cut_after=3]")}),
        )
        .await;
    assert_stream_cut(&h, r).await;
}
