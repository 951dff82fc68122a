//! The Azure OpenAI conformance list: an OpenAI client through `azure`-kind providers — deployment URLs
//! with `api-version` and `api-key`, the v1 API, Entra bearer tokens; Azure's stream quirks (empty first
//! chunk with `prompt_filter_results`, filter annotations on chunks, `content_filter` finish), tools,
//! multi-turn, usage and cost (seed rows by deployment name, `[[prices]]` for other names), embeddings,
//! the content-filter 400, 429 with `retry-after-ms` failing over, 401, in-stream errors and a cut stream.

use crate::common;

use common::provider::{
    assert_stream_cut, assert_stream_error, assert_upstream_auth_failed, delta_text,
    finish_reasons, read_ok, stream_chunks, tokens, upstream_keys, usage_chunks,
};
use common::{request_id, user, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Outcome, UsageSource};

const CONFIG: &str = r#"
[providers.az]
kind = "azure"
base_url = "{mock_azure}"
api_keys = ["az-key-a", "az-key-b"]
azure = { api_version = "2024-10-21" }
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[providers.az-v1]
kind = "azure"
base_url = "{mock_azure}/openai/v1"
api_keys = ["az-v1-key"]

[providers.az-entra]
kind = "azure"
base_url = "{mock_azure}"
api_keys = ["eyJ0eXAiOiJKV1QifQ.entra.token"]
azure = { api_version = "2025-04-01-preview", auth = "bearer" }

[[prices]]
provider = "azure"
model = "team-chat"
currency = "USD"
input = "5.00"
output = "15.00"

[models."gpt-4o"]
deployments = [{ provider = "az", model = "gpt-4o-2024-11-20" }]

[models."gpt-4o-2024-11-20"]
deployments = [{ provider = "az", model = "gpt-4o-2024-11-20" }]

[models."gpt-4o-once"]
deployments = [{ provider = "az", model = "gpt-4o-2024-11-20" }]
max_attempts = 1

[models."team-chat"]
deployments = [{ provider = "az-v1", model = "team-chat" }]

[models."entra"]
deployments = [{ provider = "az-entra", model = "gpt-4o-mini" }]

[models."az-embed"]
deployments = [{ provider = "az", model = "text-embedding-3-small" }]
"#;

async fn harness() -> Harness {
    Harness::start_with(CONFIG).await
}

#[tokio::test]
async fn deployment_url_api_key_and_seed_price_by_deployment_name() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gpt-4o", "messages": user("Say hello to the gateway")}))
        .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert!(
        body["prompt_filter_results"].is_array(),
        "Azure's annotations pass through"
    );
    assert!(body["choices"][0]["content_filter_results"].is_object());
    let sent = &h.mock.requests()[0];
    assert_eq!(
        sent.path,
        "/azure/openai/deployments/gpt-4o-2024-11-20/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(sent.header("api-key"), Some("az-key-a"));
    assert_eq!(sent.header("authorization"), None);
    let e = h.event(&id).await;
    assert_eq!(
        (e.provider.as_str(), e.provider_kind.as_str(), e.outcome),
        ("az", "azure", Outcome::Success)
    );
    assert_eq!(e.usage, tokens(8, 4));
    // The deployment `gpt-4o-2024-11-20` takes the azure `gpt-4o` seed row (a version tag): $2.50 / $10 per Mtok.
    assert!(!e.cost.price_missing);
    assert_eq!(e.cost.nanos, 8 * 2500 + 4 * 10_000);
}

#[tokio::test]
async fn the_clients_bytes_go_through_unchanged_when_nothing_needs_rewriting() {
    let h = harness().await;
    let raw = r#"{"model":"gpt-4o-2024-11-20","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"logit_bias":{"50256":-100}}"#;
    let r = h.chat_raw(raw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.mock.requests()[0].raw,
        raw,
        "zero-copy: OpenAI wire, not an adapter"
    );
}

#[tokio::test]
async fn v1_api_names_the_deployment_in_the_body_and_prices_from_config() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "team-chat", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, "/azure/openai/v1/chat/completions");
    assert_eq!(sent.body["model"], "team-chat");
    assert_eq!(sent.header("api-key"), Some("az-v1-key"));
    let e = h.event(&id).await;
    assert_eq!(e.cost.price_version, "config");
    assert_eq!(e.cost.nanos, 4 * 5000 + 4 * 15_000);

    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "az-embed", "input": ["one two", "three"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    assert_eq!(
        h.mock.requests()[1].path,
        "/azure/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
    );
    let e = h.event(&id).await;
    assert_eq!(e.usage.prompt_tokens, 3);
    assert!(!e.cost.price_missing);
}

#[tokio::test]
async fn entra_tokens_go_as_bearer() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "entra", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let sent = &h.mock.requests()[0];
    assert_eq!(
        sent.path,
        "/azure/openai/deployments/gpt-4o-mini/chat/completions?api-version=2025-04-01-preview"
    );
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer eyJ0eXAiOiJKV1QifQ.entra.token")
    );
    assert_eq!(sent.header("api-key"), None);
}

#[tokio::test]
async fn stream_quirks_pass_through_and_usage_is_metered() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gpt-4o", "stream": true,
            "messages": user("count [mock:chunks=5]")}))
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let (c, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    // The empty first chunk, with prompt annotations, reaches the client as Azure sent it.
    assert_eq!(c[0]["choices"], json!([]));
    assert!(c[0]["prompt_filter_results"].is_array());
    assert_eq!(delta_text(&c, "content"), "tok0 tok1 tok2 tok3 tok4 ");
    assert!(c
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .all(|c| c["choices"][0]["content_filter_results"].is_object()));
    assert!(
        usage_chunks(&c).is_empty(),
        "usage was asked upstream for metering, and stripped"
    );
    assert_eq!(
        h.mock.requests()[0].body["stream_options"],
        json!({"include_usage": true})
    );
    let e = h.wait_event(&id).await;
    assert_eq!(
        (
            e.outcome,
            e.usage_source,
            e.usage.completion_tokens,
            e.usage.prompt_tokens
        ),
        (Outcome::Success, UsageSource::Provider, 5, 5)
    );

    let r = h
        .chat(
            &json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("count")}),
        )
        .await;
    let (c, _) = stream_chunks(&r.text().await.unwrap());
    let usage = usage_chunks(&c);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn output_filtering_is_a_content_filter_finish_not_an_error() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gpt-4o", "messages": user("[mock:finish=content_filter]")}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    let r = h
        .chat(&json!({"model": "gpt-4o", "stream": true,
            "messages": user("[mock:finish=content_filter]")}))
        .await;
    let id = request_id(&r);
    let (c, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(finish_reasons(&c), ["content_filter"]);
    assert_eq!(h.wait_event(&id).await.outcome, Outcome::Success);
}

#[tokio::test]
async fn a_filtered_prompt_is_a_400_that_is_not_retried() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "gpt-4o", "messages": user("[mock:status=400&code=content_filter]")}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_filter");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("content management policy"));
    assert_eq!(h.mock.requests().len(), 1, "the other key is not tried");
}

#[tokio::test]
async fn rate_limits_with_retry_after_ms_fail_over_to_the_next_key() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gpt-4o", "messages": user("[mock:status=429&only_key=az-key-a]")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream_keys(&h, "api-key"), ["az-key-a", "az-key-b"]);
    // Key a now rests (its 429's retry-after-ms is the cooldown hint): the next request goes to key b.
    let r = h
        .chat(&json!({"model": "gpt-4o", "messages": user("again")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.requests()[2].header("api-key"), Some("az-key-b"));

    // Every key limited: the client gets the 429 and Azure's retry-after.
    let r = h
        .chat(&json!({"model": "gpt-4o-once", "messages": user("[mock:status=429&retry_after=3]")}))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
}

#[tokio::test]
async fn upstream_401_is_502_and_hides_the_message() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gpt-4o-once", "messages": user("[mock:status=401&message=bad+key+az-key-a]")}))
        .await;
    assert_upstream_auth_failed(&h, r, &["az-key-a"]).await;
}

#[tokio::test]
async fn tools_and_multi_turn_pass_through() {
    let h = harness().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let r = h
        .chat(&json!({"model": "gpt-4o", "tools": tools, "messages": user("Weather?")}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = body["choices"][0]["message"]["tool_calls"][0].clone();
    let r = h
        .chat(&json!({"model": "gpt-4o", "stream": true, "tools": tools,
            "messages": user("Weather?")}))
        .await;
    let (c, _) = stream_chunks(&r.text().await.unwrap());
    let args: String = c
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    let history = json!([{"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_azure_1", "content": "18C"}]);
    let r = h
        .chat(&json!({"model": "gpt-4o", "tools": tools, "messages": history}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(h.mock.requests()[2].body["messages"], history);
}

#[tokio::test]
async fn in_stream_error_and_cut_stream() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "gpt-4o", "stream": true,
            "messages": user("[mock:error_after=2]")}))
        .await;
    let (c, error) = assert_stream_error(&h, r, "mock_stream_error").await;
    assert_eq!(delta_text(&c, "content"), "tok0 tok1 ");
    assert_eq!(error["error"]["code"], "mock_stream_error");

    let r = h
        .chat(&json!({"model": "gpt-4o", "stream": true,
            "messages": user("[mock:cut_after=2]")}))
        .await;
    let (_, e) = assert_stream_cut(&h, r).await;
    assert_eq!(e.usage_source, UsageSource::Estimated);
}
