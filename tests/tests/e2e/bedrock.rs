//! The Bedrock conformance list: an OpenAI client through `bedrock`-kind providers (Converse /
//! ConverseStream) — plain, stream, tools, multi-turn tool results, images, usage with cache reads / writes
//! and its cost, SigV4 (long-term and session credentials, verified by the mock) and Bedrock API keys, each
//! error class, in-stream exceptions, a cut stream, and failover on throttling.

use crate::common;

use common::provider::{
    assert_cache_usage, assert_chat_success, assert_mock_completion, assert_openai_stream,
    assert_paris_weather_call, assert_stream_cut, assert_stream_error, assert_upstream_auth_failed,
    assert_usd_cost, delta_text, finish_reasons, paris_and_rome_turns, read_ok, stream_chunks,
    streamed_arguments, streamed_calls, tokens, usage_chunks, weather_tools, CACHE_DIRECTIVES,
    CACHE_USAGE, SONNET_CACHE_COST,
};
use common::{request_id, user, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Outcome, UsageSource};
use tollgate_tests::mock_upstream::bedrock::{
    ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_ACCESS_KEY_ID, SESSION_TOKEN,
};

const SONNET: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

fn config() -> String {
    format!(
        r#"
[providers.bedrock]
kind = "bedrock"
base_url = "{{mock_bedrock}}"
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500
aws = {{ region = "us-east-1", access_key_id = "{ACCESS_KEY_ID}", secret_access_key = "{SECRET_ACCESS_KEY}" }}

[providers.bedrock-sts]
kind = "bedrock"
base_url = "{{mock_bedrock}}"
aws = {{ region = "eu-west-3", access_key_id = "{SESSION_ACCESS_KEY_ID}", secret_access_key = "{SECRET_ACCESS_KEY}", session_token = "{SESSION_TOKEN}" }}

[providers.bedrock-key]
kind = "bedrock"
base_url = "{{mock_bedrock}}"
api_keys = ["ABSKbW9jay1iZWRyb2NrLWFwaS1rZXk="]
aws = {{ region = "us-west-2" }}

[providers.bedrock-wrong]
kind = "bedrock"
base_url = "{{mock_bedrock}}"
aws = {{ region = "us-east-1", access_key_id = "{ACCESS_KEY_ID}", secret_access_key = "not-the-secret-0123456789" }}

[models."sonnet"]
deployments = [{{ provider = "bedrock", model = "{SONNET}" }}]

[models."sonnet-once"]
deployments = [{{ provider = "bedrock", model = "{SONNET}" }}]
max_attempts = 1

[models."nova-sts"]
deployments = [{{ provider = "bedrock-sts", model = "us.amazon.nova-pro-v1:0" }}]

[models."nova-key"]
deployments = [{{ provider = "bedrock-key", model = "amazon.nova-lite-v1:0" }}]

[models."wrong-secret"]
deployments = [{{ provider = "bedrock-wrong", model = "{SONNET}" }}]

[models."throttled-then-nova"]
tiers = [[{{ provider = "bedrock", model = "{SONNET}?status=429" }}], [{{ provider = "bedrock-key", model = "amazon.nova-pro-v1:0" }}]]

[models."unavailable-then-nova"]
tiers = [[{{ provider = "bedrock", model = "{SONNET}?status=503" }}], [{{ provider = "bedrock-key", model = "amazon.nova-pro-v1:0" }}]]

[models."invalid-no-failover"]
tiers = [[{{ provider = "bedrock", model = "{SONNET}?status=400&message=Malformed+input" }}], [{{ provider = "bedrock-key", model = "amazon.nova-pro-v1:0" }}]]
"#
    )
}

async fn harness() -> Harness {
    Harness::start_with(&config()).await
}

/// The model id as one percent-encoded path segment, as it goes on the wire.
const SONNET_PATH: &str = "/bedrock/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0";

#[tokio::test]
async fn plain_chat_is_translated_signed_and_priced() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "sonnet", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the gateway"}],
            "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "user": "alice", "seed": 7}))
        .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(body["model"], SONNET);
    // The mock counts words of the messages (+3): "Say hello to the gateway".
    assert_mock_completion(&body, 5 + 3);

    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, format!("{SONNET_PATH}/converse"));
    let auth = sent.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")),
        "{auth}"
    );
    assert!(auth.contains(
        "/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
    ));
    assert!(sent.header("x-amz-date").is_some());
    assert_eq!(sent.header("x-amz-security-token"), None);
    assert_eq!(
        sent.body,
        json!({"system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "Say hello to the gateway"}]}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}})
    );

    let e = h.event(&id).await;
    assert_chat_success(&e, "bedrock", "bedrock");
    assert_eq!(e.usage, tokens(8, 4));
    // anthropic.claude-sonnet-4-5 on Bedrock from the shipped table: $3 / $15 per Mtok.
    assert_usd_cost(&e, 8 * 3000 + 4 * 15000);
}

#[tokio::test]
async fn stream_is_openai_sse_with_usage_only_when_asked() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "sonnet", "stream": true,
            "messages": user("count [mock:chunks=6]")}))
        .await;
    let (id, c) = assert_openai_stream(r).await;
    assert_eq!(delta_text(&c, "content"), "tok0 tok1 tok2 tok3 tok4 tok5 ");
    assert!(usage_chunks(&c).is_empty(), "no usage chunk unless asked");
    assert_eq!(finish_reasons(&c), ["stop"]);
    assert_eq!(
        h.mock.requests()[0].path,
        format!("{SONNET_PATH}/converse-stream")
    );
    let e = h.wait_event(&id).await;
    assert_eq!(
        (e.outcome, e.usage_source, e.usage.completion_tokens),
        (Outcome::Success, UsageSource::Provider, 6)
    );

    let r = h
        .chat(
            &json!({"model": "sonnet", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("count")}),
        )
        .await;
    let (c, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let usage = usage_chunks(&c);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 4);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn cache_reads_and_writes_fold_into_prompt_tokens_and_are_priced_each() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "sonnet", "messages": user(CACHE_DIRECTIVES)}))
        .await;
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_cache_usage(&body["usage"]);
    let e = h.event(&id).await;
    // Each token class at its own price.
    assert_eq!((e.usage, e.cost.nanos), (CACHE_USAGE, SONNET_CACHE_COST));

    // Streamed: the usage comes from the `metadata` event.
    let r = h
        .chat(
            &json!({"model": "sonnet", "stream": true, "stream_options": {"include_usage": true},
            "messages": user(CACHE_DIRECTIVES)}),
        )
        .await;
    let id = request_id(&r);
    let (c, _) = stream_chunks(&r.text().await.unwrap());
    assert_cache_usage(&usage_chunks(&c)[0]["usage"]);
    let e = h.wait_event(&id).await;
    assert_eq!((e.usage, e.cost.nanos), (CACHE_USAGE, SONNET_CACHE_COST));
}

#[tokio::test]
async fn tool_calls_plain_and_streamed() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "sonnet", "tools": weather_tools(), "tool_choice": "required",
            "messages": user("Weather in Paris?")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_mock_1");
    assert_paris_weather_call(call);
    let sent = &h.mock.requests()[0].body;
    assert_eq!(
        sent["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
            "toolChoice": {"any": {}}})
    );

    let r = h
        .chat(
            &json!({"model": "sonnet", "stream": true, "tools": weather_tools(),
            "messages": user("Weather in Paris?")}),
        )
        .await;
    let (c, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let calls = streamed_calls(&c);
    assert_eq!(calls[0][0]["id"], "tooluse_mock_1");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert_eq!(streamed_arguments(&c), json!({"city": "Paris"}));
    assert_eq!(finish_reasons(&c), ["tool_calls"]);
}

#[tokio::test]
async fn multi_turn_tool_results_go_back_as_one_user_turn() {
    let h = harness().await;
    let history = paris_and_rome_turns(["tooluse_a", "tooluse_b"]);
    // With the tools declared, and without (Bedrock then needs a placeholder toolConfig, else it answers 400).
    for with_tools in [true, false] {
        let mut req = json!({"model": "sonnet", "messages": history});
        if with_tools {
            req["tools"] = weather_tools();
        }
        let r = h.chat(&req).await;
        assert_eq!(r.status(), 200, "with tools: {with_tools}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "tok0 tok1 tok2 tok3 "
        );
    }
    let sent = h.mock.requests();
    for request in &sent {
        let m = request.body["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"],
            json!([{"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "18C"}], "status": "success"}},
                {"toolResult": {"toolUseId": "tooluse_b", "content": [{"text": "21C"}], "status": "success"}}])
        );
        assert_eq!(
            m[1]["content"][1]["toolUse"]["input"],
            json!({"city": "Rome"})
        );
        assert_eq!(
            request.body["toolConfig"]["tools"][0]["toolSpec"]["name"],
            "get_weather"
        );
    }
}

#[tokio::test]
async fn images_go_as_bytes_and_remote_urls_are_refused() {
    let h = harness().await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let r = h
        .chat(&json!({"model": "sonnet", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.mock.requests()[0].body["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": png}}})
    );
    let r = h
        .chat(
            &json!({"model": "sonnet", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        h.mock.requests().len(),
        1,
        "refused before any upstream call"
    );
}

#[tokio::test]
async fn session_credentials_and_api_keys_authenticate() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "nova-sts", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = h
        .chat(&json!({"model": "nova-key", "stream": true, "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let (_, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let sent = h.mock.requests();
    assert_eq!(
        sent[0].path,
        "/bedrock/model/us.amazon.nova-pro-v1%3A0/converse"
    );
    assert_eq!(sent[0].header("x-amz-security-token"), Some(SESSION_TOKEN));
    let auth = sent[0].header("authorization").unwrap();
    assert!(auth.contains(&format!("Credential={SESSION_ACCESS_KEY_ID}/")));
    assert!(auth.contains("/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
    assert_eq!(
        sent[1].header("authorization"),
        Some("Bearer ABSKbW9jay1iZWRyb2NrLWFwaS1rZXk=")
    );
    assert_eq!(
        sent[1].header("x-amz-date"),
        None,
        "API keys are not signed"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_failure_that_names_no_secret() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "wrong-secret", "messages": user("hi")}))
        .await;
    assert_upstream_auth_failed(&h, r, &["not-the-secret", "Signature"]).await;
    assert_eq!(h.mock.requests().len(), 1, "an auth failure is not retried");
}

#[tokio::test]
async fn error_classes() {
    for (directive, status, name, retryable) in [
        (
            "status=400&message=Malformed+input+request",
            400,
            Some("ValidationException"),
            false,
        ),
        ("status=403", 403, Some("AccessDeniedException"), false),
        ("status=404", 404, Some("ResourceNotFoundException"), false),
        ("status=424", 424, Some("ModelErrorException"), false),
        ("status=429", 429, Some("ThrottlingException"), true),
        ("status=408", 408, Some("ModelTimeoutException"), true),
        ("status=503", 502, None, true),
        ("status=500", 502, None, true),
    ] {
        // A fresh gateway per case: a retryable failure cools the key down.
        let h = harness().await;
        let req = json!({"model": "sonnet-once",
            "messages": user(&format!("x [mock:{directive}]"))});
        let r = h.chat(&req).await;
        assert_eq!(r.status(), status, "{directive}");
        let body: Value = r.json().await.unwrap();
        match name {
            Some(name) => {
                assert_eq!(body["error"]["type"], name, "{directive}");
                assert_eq!(body["error"]["code"], name, "{directive}");
            }
            None => assert_eq!(
                body["error"]["code"], "upstream_error",
                "{directive}: {body}"
            ),
        }
        if directive.starts_with("status=400") {
            assert_eq!(body["error"]["message"], "Malformed input request");
        }
        assert_eq!(h.mock.requests().len(), 1, "{directive}");
        // Retryable failures cool the key (the next request fails fast without an upstream call); client
        // errors do not.
        let r = h.chat(&req).await;
        if retryable {
            assert_eq!(r.status(), 503, "{directive}");
            assert_eq!(h.mock.requests().len(), 1, "{directive}");
        } else {
            assert_eq!(r.status(), status, "{directive}");
            assert_eq!(h.mock.requests().len(), 2, "{directive}");
        }
    }
}

#[tokio::test]
async fn throttling_and_unavailability_fail_over_validation_does_not() {
    let h = harness().await;
    for model in ["throttled-then-nova", "unavailable-then-nova"] {
        let r = h
            .chat(&json!({"model": model, "messages": user("hi")}))
            .await;
        assert_eq!(r.status(), 200, "{model}");
        let id = request_id(&r);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"], "amazon.nova-pro-v1:0");
        let e = h.event(&id).await;
        assert_eq!(e.provider, "bedrock-key");
        // amazon.nova-pro: $0.80 / $3.20 per Mtok; "hi" is 1 word + 3.
        assert_eq!(e.cost.nanos, 4 * 800 + 4 * 3200);
    }
    let paths: Vec<String> = h.mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 4);
    assert!(paths[0].contains("status%3D429") && paths[1].contains("amazon.nova-pro"));

    let r = h
        .chat(&json!({"model": "invalid-no-failover", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        h.mock.requests().len(),
        5,
        "a ValidationException is not retried elsewhere"
    );
}

#[tokio::test]
async fn in_stream_exception_becomes_an_error_chunk() {
    let h = harness().await;
    for (directive, ty) in [
        ("error_after=2", "modelStreamErrorException"),
        (
            "error_after=1&type=throttlingException",
            "throttlingException",
        ),
    ] {
        let r = h
            .chat(&json!({"model": "sonnet", "stream": true,
                "messages": user(&format!("[mock:{directive}]"))}))
            .await;
        let (_, error) = assert_stream_error(&h, r, ty).await;
        assert_eq!(error["error"]["type"], ty, "{directive}");
    }
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_truncated_and_estimated() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "sonnet", "stream": true,
            "messages": user("[mock:cut_after=2]")}))
        .await;
    let (c, e) = assert_stream_cut(&h, r).await;
    assert_eq!(delta_text(&c, "content"), "tok0 tok1 ");
    assert_eq!(e.usage_source, UsageSource::Estimated);
    assert!(e.usage.completion_tokens >= 2);
}

#[tokio::test]
async fn guardrail_and_length_stops_map_to_openai_finish_reasons() {
    let h = harness().await;
    for (finish, expected) in [
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
    ] {
        let r = h
            .chat(&json!({"model": "sonnet", "messages": user(&format!("[mock:finish={finish}]"))}))
            .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], expected, "{finish}");
        let r = h
            .chat(&json!({"model": "sonnet", "stream": true, "messages": user(&format!("[mock:finish={finish}]"))}))
            .await;
        let (c, _) = stream_chunks(&r.text().await.unwrap());
        assert_eq!(finish_reasons(&c), [expected], "{finish}");
    }
}

#[tokio::test]
async fn embeddings_are_refused_before_any_upstream_call() {
    let h = harness().await;
    let r = h
        .post("/v1/embeddings", &json!({"model": "sonnet", "input": "x"}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(h.mock.requests().is_empty());
}
