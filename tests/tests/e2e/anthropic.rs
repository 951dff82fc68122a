//! The Anthropic conformance list, both directions: an OpenAI client through an `anthropic`-kind provider, and
//! `/v1/messages` clients (Anthropic format) to an OpenAI upstream and to an Anthropic upstream — plain,
//! stream, tools, multi-turn tool results, usage with cache reads / writes and its cost, each error class,
//! in-stream errors, truncation, and thinking with its signature round trip.

use crate::common;

use common::provider::{
    assert_cache_usage, assert_chat_success, assert_mock_completion, assert_openai_stream,
    assert_paris_weather_call, assert_stream_cut, assert_stream_error, assert_upstream_auth_failed,
    assert_usd_cost, delta_text, finish_reasons, paris_and_rome_turns, read_ok, stream_chunks,
    streamed_arguments, streamed_calls, tokens, upstream_keys, usage_chunks, weather_tools,
    CACHE_DIRECTIVES, CACHE_USAGE, SONNET_CACHE_COST,
};
use common::{request_id, user, Harness};
use serde_json::{json, Value};
use tollgate_schemas::{Endpoint, Outcome, UsageSource, UsageVector};
use tollgate_tests::mock_upstream::anthropic::SIGNATURE;

const CONFIG: &str = r#"
[providers.claude]
kind = "anthropic"
base_url = "{mock_anthropic}"
api_keys = ["sk-ant-a", "sk-ant-b"]
first_byte_timeout_ms = 2000
stream_idle_timeout_ms = 1500

[models."claude"]
deployments = [{ provider = "claude", model = "claude-sonnet-4-5" }]

[models."claude-once"]
deployments = [{ provider = "claude", model = "claude-sonnet-4-5" }]
max_attempts = 1
"#;

async fn harness() -> Harness {
    Harness::start_with(CONFIG).await
}

/// Anthropic SSE → (event name, data) pairs; checks each `event:` name matches its data's `type`.
fn anthropic_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap()
                .to_string();
            let data: Value =
                serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

// ---- OpenAI client → Anthropic upstream ------------------------------------------------------------------

#[tokio::test]
async fn plain_chat_is_translated_signed_and_metered_with_cost() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "claude", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the gateway"}],
            "stop": "END", "temperature": 1.5, "user": "alice"}))
        .await;
    let (id, body) = read_ok(r).await;
    assert_mock_completion(&body, 5 + 3);

    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, "/anthropic/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-a"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None, "no bearer to Anthropic");
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Say hello to the gateway"}])
    );
    assert_eq!(sent.body["max_tokens"], 4096, "the documented default");
    assert_eq!(
        sent.body["temperature"], 1.0,
        "clamped to Anthropic's range"
    );
    assert_eq!(sent.body["stop_sequences"], json!(["END"]));
    assert_eq!(sent.body["metadata"]["user_id"], "alice");

    let e = h.event(&id).await;
    assert_chat_success(&e, "claude", "anthropic");
    assert_eq!(e.usage, tokens(8, 4));
    // claude-sonnet-4-5 from the shipped table: $3 / $15 per Mtok → 8×3000 + 4×15000 nano-USD.
    assert_usd_cost(&e, 8 * 3000 + 4 * 15000);
}

#[tokio::test]
async fn cache_reads_and_writes_fold_into_prompt_tokens_and_are_priced_each() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "claude", "messages": user(CACHE_DIRECTIVES)}))
        .await;
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_cache_usage(&body["usage"]);
    let e = h.event(&id).await;
    assert_eq!(e.usage, CACHE_USAGE);
    // Each token class at its own price.
    assert_eq!(e.cost.nanos, SONNET_CACHE_COST);

    // The same numbers streamed: message_start's input / cache counts plus message_delta's output.
    let r = h
        .chat(
            &json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": user(CACHE_DIRECTIVES)}),
        )
        .await;
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let usage = usage_chunks(&chunks);
    assert_eq!(usage.len(), 1);
    assert_cache_usage(&usage[0]["usage"]);
    assert_eq!(h.wait_event(&id).await.usage.cache_write_tokens, 100);
}

#[tokio::test]
async fn stream_is_openai_sse_with_usage_only_when_asked() {
    let h = harness().await;
    for include_usage in [false, true] {
        let r = h.chat(&json!({"model": "claude", "stream": true, "stream_options": {"include_usage": include_usage},
            "messages": user("a b c [mock:chunks=5]")})).await;
        let (id, chunks) = assert_openai_stream(r).await;
        assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 tok2 tok3 tok4 ");
        assert_eq!(finish_reasons(&chunks), ["stop"]);
        let with_usage = usage_chunks(&chunks).len();
        assert_eq!(
            with_usage,
            usize::from(include_usage),
            "include_usage={include_usage}"
        );
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
        .all(|r| r.body["stream"] == true && r.body.get("stream_options").is_none()));
}

#[tokio::test]
async fn recorded_fixture_streams_translate() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "claude", "stream": true, "tools": weather_tools(),
        "messages": user("[mock:fixture=tool_use_response]")}),
        )
        .await;
    let id = request_id(&r);
    let (chunks, _) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(
        delta_text(&chunks, "content"),
        "I'll check the current weather in Paris for you."
    );
    assert_eq!(streamed_arguments(&chunks), json!({"location": "Paris"}));
    let e = h.wait_event(&id).await;
    assert_eq!(e.usage, tokens(377, 65));
}

#[tokio::test]
async fn tool_calls_plain_and_streamed() {
    let h = harness().await;
    let r = h.chat(&json!({"model": "claude", "tools": weather_tools(), "tool_choice": "required", "parallel_tool_calls": false,
        "messages": user("Weather in Paris?")})).await;
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(
        (call["id"].as_str(), call["type"].as_str()),
        (Some("toolu_mock_1"), Some("function"))
    );
    assert_paris_weather_call(call);
    let sent = &h.mock.requests()[0].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );

    let r = h
        .chat(
            &json!({"model": "claude", "tools": weather_tools(), "stream": true,
        "messages": user("Weather in Paris?")}),
        )
        .await;
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let calls = streamed_calls(&chunks);
    assert_eq!(calls[0][0]["id"], "toolu_mock_1");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert_eq!(streamed_arguments(&chunks), json!({"city": "Paris"}));
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn multi_turn_parallel_tool_results_go_back_as_one_user_turn() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "claude", "tools": weather_tools(),
            "messages": paris_and_rome_turns(["toolu_p", "toolu_r"])}))
        .await;
    // The mock refuses tool results that do not answer the previous turn's tool_use ids, as Anthropic does.
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["finish_reason"], "stop",
        "a text answer after the tool results"
    );
    let sent = &h.mock.requests()[0].body;
    let turns = sent["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert_eq!(
        turns[1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_r", "name": "get_weather", "input": {"city": "Rome"}})
    );
    assert_eq!(turns[2]["role"], "user");
    assert_eq!(
        turns[2]["content"],
        json!([
        {"type": "tool_result", "tool_use_id": "toolu_p", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_r", "content": "21C"}])
    );

    // A tool result for an id the assistant never used is the upstream's 400, passed on, not retried.
    let r = h
        .chat(&json!({"model": "claude", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "no tools here"},
        {"role": "tool", "tool_call_id": "toolu_nope", "content": "18C"}]}))
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("toolu_nope"));
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn images_become_image_blocks() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let content = &h.mock.requests()[0].body["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        content[2],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
}

#[tokio::test]
async fn thinking_is_exposed_and_its_signature_round_trips() {
    let h = harness().await;
    let thinking = json!({"type": "enabled", "budget_tokens": 1024});
    let r = h
        .chat(
            &json!({"model": "claude", "tools": weather_tools(), "thinking": thinking,
        "messages": user("Weather in Paris?")}),
        )
        .await;
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    let message = body["choices"][0]["message"].clone();
    assert_eq!(
        message["reasoning_content"],
        "Mock reasoning about the question."
    );
    assert_eq!(message["thinking_blocks"][0]["signature"], SIGNATURE);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        5
    );
    assert_eq!(h.event(&id).await.usage.reasoning_tokens, 5);
    assert_eq!(h.mock.requests()[0].body["thinking"], thinking);

    // The client sends the assistant message back as it got it (thinking_blocks included) with the result.
    let call_id = message["tool_calls"][0]["id"].clone();
    let r = h
        .chat(
            &json!({"model": "claude", "tools": weather_tools(), "thinking": thinking, "messages": [
        {"role": "user", "content": "Weather in Paris?"}, message,
        {"role": "tool", "tool_call_id": call_id, "content": "18C"}]}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "the mock refuses thinking without its signature"
    );
    let sent = &h.mock.requests()[1].body["messages"][1]["content"];
    assert_eq!(
        sent[0],
        json!({"type": "thinking", "thinking": "Mock reasoning about the question.", "signature": SIGNATURE})
    );
    assert_eq!(sent[1]["type"], "tool_use");

    // Streamed: reasoning_content deltas, then the whole block with its signature.
    let r = h
        .chat(
            &json!({"model": "claude", "thinking": thinking, "stream": true,
        "messages": user("hi")}),
        )
        .await;
    let (chunks, _) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(
        delta_text(&chunks, "reasoning_content"),
        "Mock reasoning about the question."
    );
    let blocks: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("thinking_blocks"))
        .collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0][0]["signature"], SIGNATURE);
    assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 tok2 tok3 ");
}

// ---- errors ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_errors_pass_through_without_retry() {
    let h = harness().await;
    for (status, ty) in [
        (400, "invalid_request_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
    ] {
        let r = h
            .chat(&json!({"model": "claude", "messages": user(&format!("[mock:status={status}&message=nope+{status}]"))}))
            .await;
        assert_eq!(r.status().as_u16(), status);
        let id = request_id(&r);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], ty);
        assert_eq!(body["error"]["message"], format!("nope {status}"));
        let e = h.event(&id).await;
        assert_eq!(
            (e.attempts, e.outcome, e.http_status),
            (1, Outcome::UpstreamError, status)
        );
    }
}

#[tokio::test]
async fn upstream_401_is_502_and_hides_the_message() {
    let h = harness().await;
    let r = h
        .chat(
            &json!({"model": "claude-once", "messages": [{"role": "user",
        "content": "[mock:status=401&message=invalid+x-api-key+sk-ant-a]"}]}),
        )
        .await;
    assert_upstream_auth_failed(&h, r, &["sk-ant"]).await;
}

#[tokio::test]
async fn rate_limit_429_and_overload_529_fail_over_to_the_other_key() {
    for (status, retry_after) in [(429, "&retry_after=3"), (529, "")] {
        let h = harness().await;
        let r = h
            .chat(&json!({"model": "claude", "messages": user(&format!("[mock:status={status}{retry_after}&only_key=sk-ant-a]"))}))
            .await;
        assert_eq!(r.status(), 200, "{status}");
        let id = request_id(&r);
        assert_eq!(
            upstream_keys(&h, "x-api-key"),
            ["sk-ant-a", "sk-ant-b"],
            "{status}"
        );
        let e = h.event(&id).await;
        assert_eq!((e.attempts, e.outcome), (2, Outcome::Success), "{status}");
    }
    // With no other attempt allowed: 429 passes on with its retry-after, 529 is a 502.
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "claude-once", "messages": user("[mock:status=429&retry_after=7]")}))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );
    let r = h
        .chat(&json!({"model": "claude-once", "messages": user("[mock:status=529]")}))
        .await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mock anthropic error 529"),
        "{body}"
    );
}

#[tokio::test]
async fn in_stream_error_event_becomes_an_error_chunk() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "claude", "stream": true,
        "messages": user("[mock:error_after=2]")}))
        .await;
    let (chunks, error) = assert_stream_error(&h, r, "overloaded_error").await;
    assert_eq!(delta_text(&chunks, "content"), "tok0 tok1 ");
    assert_eq!(error["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_truncated_and_estimated() {
    let h = harness().await;
    let r = h
        .chat(&json!({"model": "claude", "stream": true,
        "messages": user("[mock:cut_after=2]")}))
        .await;
    let (_, e) = assert_stream_cut(&h, r).await;
    assert_eq!(e.usage_source, UsageSource::Estimated);
    assert!(e.usage.completion_tokens >= 2);
}

// ---- /v1/messages ----------------------------------------------------------------------------------------

async fn messages(h: &Harness, body: &Value) -> reqwest::Response {
    h.client
        .post(h.url("/v1/messages"))
        .header("x-api-key", common::KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn messages_to_an_openai_upstream_plain_stream_and_tools() {
    let h = harness().await;
    let r = messages(
        &h,
        &json!({"model": "gpt-4o-mini", "max_tokens": 64, "system": "Be brief.",
        "messages": user("Say hello to the gateway")}),
    )
    .await;
    let (id, body) = read_ok(r).await;
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "tok0 tok1 tok2 tok3 "}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 2 + 5 + 3);
    assert_eq!(body["usage"]["output_tokens"], 4);
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, "/openai/v1/chat/completions");
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent.body["max_completion_tokens"], 64);
    let e = h.event(&id).await;
    assert_eq!(
        (e.endpoint, e.outcome, e.provider_kind.as_str()),
        (Endpoint::Messages, Outcome::Success, "openai")
    );
    assert_eq!(e.usage.prompt_tokens, 10);
    assert!(!e.cost.price_missing && e.cost.nanos > 0);

    let r = messages(
        &h,
        &json!({"model": "gpt-4o-mini", "max_tokens": 64, "stream": true,
        "messages": user("one two [mock:chunks=3]")}),
    )
    .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let id = request_id(&r);
    let events = anthropic_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    assert_eq!(events[6].1["usage"]["output_tokens"], 3);
    assert_eq!(events[6].1["usage"]["input_tokens"], 3 + 3);
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
    let e = h.wait_event(&id).await;
    assert_eq!(
        (e.endpoint, e.stream, e.usage.completion_tokens),
        (Endpoint::Messages, true, 3)
    );

    let r = messages(&h, &json!({"model": "gpt-4o-mini", "max_tokens": 64,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": user("Weather?")})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"][0],
        json!({"type": "tool_use", "id": "call_mock_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(
        h.mock.requests().last().unwrap().body["tools"][0]["function"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn messages_to_an_anthropic_upstream_is_lossless() {
    let h = harness().await;
    let request = json!({"model": "claude", "max_tokens": 256,
        "system": [{"type": "text", "text": "Long shared context", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 128},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi [mock:prompt_tokens=50&cached_tokens=30&cache_write_tokens=10]",
            "cache_control": {"type": "ephemeral"}}]}]});
    let r = messages(&h, &request).await;
    let (id, body) = read_ok(r).await;
    // What the client wrote reaches Anthropic unchanged but for the model.
    let mut expected = request.clone();
    expected["model"] = json!("claude-sonnet-4-5");
    assert_eq!(h.mock.requests()[0].body, expected);
    assert_eq!(
        body["content"][0],
        json!({"type": "thinking", "thinking": "Mock reasoning about the question.", "signature": SIGNATURE})
    );
    assert_eq!(body["content"][1]["type"], "text");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 10, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 30, "output_tokens": 9})
    );
    let e = h.event(&id).await;
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 50,
            completion_tokens: 9,
            cached_read_tokens: 30,
            cache_write_tokens: 10,
            reasoning_tokens: 5
        }
    );
    assert_eq!(e.endpoint, Endpoint::Messages);

    // Multi-turn: the thinking block goes back with its signature and the tool result after the tool_use.
    let r = messages(&h, &json!({"model": "claude", "max_tokens": 256,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [body["content"][0].clone(),
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "18C"}]}]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["stop_reason"], "end_turn");

    // Streamed, with thinking: the signature comes through as a signature_delta.
    let r = messages(
        &h,
        &json!({"model": "claude", "max_tokens": 256, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 128}, "messages": user("hi")}),
    )
    .await;
    let events = anthropic_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let signatures: Vec<&str> = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["signature"].as_str())
        .collect();
    assert_eq!(signatures, [SIGNATURE]);
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 ");
}

#[tokio::test]
async fn messages_errors_have_anthropic_shape() {
    let h = harness().await;
    let check = |body: &Value, ty: &str| {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], ty, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    };
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .header("x-api-key", "tg-wrong")
        .json(&json!({"model": "claude", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    check(&r.json().await.unwrap(), "authentication_error");
    let r = messages(
        &h,
        &json!({"model": "nope", "max_tokens": 5, "messages": user("x")}),
    )
    .await;
    assert_eq!(r.status(), 404);
    check(&r.json().await.unwrap(), "not_found_error");
    let r = messages(&h, &json!({"model": "claude", "messages": user("x")})).await;
    assert_eq!(r.status(), 400);
    check(&r.json().await.unwrap(), "invalid_request_error");
    let r = messages(&h, &json!({"model": "claude-once", "max_tokens": 5, "messages": user("[mock:status=429&retry_after=4]")})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "4");
    assert!(r.headers().contains_key("x-request-id"));
    check(&r.json().await.unwrap(), "rate_limit_error");
    let r = messages(
        &h,
        &json!({"model": "claude-once", "max_tokens": 5, "messages": user("[mock:status=529]")}),
    )
    .await;
    assert_eq!(r.status(), 502);
    check(&r.json().await.unwrap(), "api_error");
    // In a stream: the upstream's error event comes out as an Anthropic error event.
    let r = messages(&h, &json!({"model": "claude", "max_tokens": 5, "stream": true, "messages": user("[mock:error_after=1]")})).await;
    let events = anthropic_events(&r.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
}
