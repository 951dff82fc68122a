//! Chat completions through the gateway: plain and streamed, every stream-usage dialect, request shaping.

use crate::common;

use std::time::{Duration, Instant};

use common::{request_id, sse_payloads, user, Harness};
use futures::StreamExt;
use serde_json::{json, Value};
use tollgate_schemas::{Endpoint, Outcome, UsageSource, UsageVector};

#[tokio::test]
async fn plain_chat_passes_the_upstream_answer_and_meters_it() {
    let h = Harness::start().await;
    let r = h
        .chat(
            &json!({"model": "gpt-4o-mini", "messages": user("two words"), "user": "alice",
            "max_completion_tokens": 32, "seed": 7, "logprobs": false, "n": 1,
            "response_format": {"type": "text"}, "metadata": {"x": "y"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 4);

    // Fields the gateway does not own reach the upstream unchanged; the model is the upstream's name.
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.path, "/openai/v1/chat/completions");
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    for field in [
        "seed",
        "logprobs",
        "n",
        "response_format",
        "metadata",
        "user",
        "max_completion_tokens",
        "messages",
    ] {
        assert!(sent.body.get(field).is_some(), "{field} was dropped");
    }
    assert!(sent.body.get("stream_options").is_none());

    let e = h.event(&id).await;
    assert_eq!(
        (e.tenant.as_str(), e.team.as_str(), e.key_id.as_str()),
        ("acme", "search", "all")
    );
    assert_eq!(e.end_user.as_deref(), Some("alice"));
    assert_eq!(e.endpoint, Endpoint::ChatCompletions);
    assert_eq!(
        (
            e.provider.as_str(),
            e.provider_kind.as_str(),
            e.deployment.as_str()
        ),
        ("mock", "openai", "mock/gpt-4o-mini")
    );
    assert_eq!(
        (e.outcome, e.http_status, e.attempts, e.stream),
        (Outcome::Success, 200, 1, false)
    );
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 5,
            completion_tokens: 4,
            ..UsageVector::default()
        }
    );
    assert_eq!(e.usage_source, UsageSource::Provider);
    assert!(e.ttft_ms.is_some() && e.finished_at_ms >= e.started_at_ms);
}

#[tokio::test]
async fn upstream_keys_rotate_round_robin_and_never_leak_the_client_key() {
    let h = Harness::start().await;
    for _ in 0..6 {
        assert_eq!(
            h.chat(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
                .await
                .status(),
            200
        );
    }
    let auth: Vec<String> = h
        .mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(
        auth,
        [
            "sk-upstream-a",
            "sk-upstream-b",
            "sk-upstream-c",
            "sk-upstream-a",
            "sk-upstream-b",
            "sk-upstream-c"
        ]
        .map(|k| format!("Bearer {k}"))
    );
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_but_is_metered() {
    let h = Harness::start().await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("a b c"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let id = request_id(&r);
    let payloads = sse_payloads(&r.text().await.unwrap());
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(
        chunks.len(),
        6,
        "role chunk, 4 content chunks, finish chunk"
    );
    // Not even `"usage": null`: the chunks look as they would had usage never been asked for upstream.
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage leaked: {chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 ");
    // Usage was requested upstream all the same.
    assert_eq!(
        h.mock.requests()[0].body["stream_options"],
        json!({"include_usage": true})
    );
    let e = h.wait_event(&id).await;
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 6,
            completion_tokens: 4,
            ..UsageVector::default()
        }
    );
    assert_eq!(
        (e.outcome, e.usage_source, e.stream),
        (Outcome::Success, UsageSource::Provider, true)
    );
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_one_usage_chunk_then_done() {
    let h = Harness::start().await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("x [mock:cached_tokens=2&reasoning_tokens=1]"),
            "stream": true, "stream_options": {"include_usage": true}}))
        .await;
    let payloads = sse_payloads(&r.text().await.unwrap());
    let n = payloads.len();
    assert_eq!(payloads[n - 1], "[DONE]");
    let usage_chunks: Vec<Value> = payloads[..n - 1]
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    assert_eq!(usage_chunks.len(), 1);
    let last: Value = serde_json::from_str(&payloads[n - 2]).unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["object"], "chat.completion.chunk");
    assert_eq!(last["usage"]["completion_tokens"], 4);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    assert_eq!(
        last["usage"]["completion_tokens_details"]["reasoning_tokens"],
        1
    );
}

/// Each provider dialect puts stream usage somewhere else; the client always gets OpenAI's shape, and
/// cumulative usage is taken from the last chunk, never summed.
#[tokio::test]
async fn every_stream_usage_dialect_is_metered_once_and_normalised() {
    let h = Harness::start().await;
    for model in ["kimi", "pangu", "glm"] {
        for include_usage in [false, true] {
            let r = h
                .chat(&json!({"model": model, "messages": user("one two [mock:chunks=5&cached_tokens=3]"),
                    "stream": true, "stream_options": {"include_usage": include_usage}}))
                .await;
            assert_eq!(r.status(), 200, "{model}");
            let id = request_id(&r);
            let payloads = sse_payloads(&r.text().await.unwrap());
            assert_eq!(
                payloads.last().map(String::as_str),
                Some("[DONE]"),
                "{model}"
            );
            let chunks: Vec<Value> = payloads[..payloads.len() - 1]
                .iter()
                .map(|p| serde_json::from_str(p).unwrap())
                .collect();
            let with_usage: Vec<&Value> = chunks
                .iter()
                .filter(|c| {
                    c.get("usage").is_some_and(|u| !u.is_null())
                        || c["choices"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|ch| ch.get("usage").is_some())
                })
                .collect();
            if include_usage {
                assert_eq!(with_usage.len(), 1, "{model}: {chunks:?}");
                let u = &with_usage[0]["usage"];
                assert_eq!(with_usage[0]["choices"], json!([]), "{model}");
                assert_eq!(
                    (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
                    (Some(6), Some(5)),
                    "{model}"
                );
                assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 3, "{model}");
            } else {
                assert!(
                    with_usage.is_empty(),
                    "{model}: usage leaked {with_usage:?}"
                );
            }
            let content: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ", "{model}");
            let e = h.wait_event(&id).await;
            assert_eq!(
                e.usage,
                UsageVector {
                    prompt_tokens: 6,
                    completion_tokens: 5,
                    cached_read_tokens: 3,
                    ..UsageVector::default()
                },
                "{model}"
            );
            assert_eq!(e.usage_source, UsageSource::Provider);
        }
    }
}

#[tokio::test]
async fn plain_moonshot_usage_is_normalised_for_the_client() {
    let h = Harness::start().await;
    let r = h.chat(&json!({"model": "kimi", "messages": user("hi [mock:cached_tokens=2]"), "max_completion_tokens": 9})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    assert!(body["usage"].get("cached_tokens").is_none());
    let sent = &h.mock.requests()[0];
    assert_eq!(sent.body["max_tokens"], 9, "moonshot takes max_tokens");
    assert!(sent.body.get("max_completion_tokens").is_none());
    assert_eq!(sent.header("authorization"), Some("Bearer sk-moon"));
}

#[tokio::test]
async fn provider_quirks_are_applied_on_the_way_up() {
    let h = Harness::start().await;
    let messages =
        json!([{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    h.chat(&json!({"model": "yi", "messages": messages, "max_completion_tokens": 5}))
        .await;
    h.chat(
        &json!({"model": "glm", "messages": user("hi"), "top_p": 1, "stop": "END", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    h.chat(&json!({"model": "qwen", "messages": user("hi"), "max_completion_tokens": 5}))
        .await;
    let sent = h.mock.requests();
    let yi = &sent[0].body;
    assert_eq!(yi["messages"][0]["role"], "system");
    assert_eq!(yi["max_tokens"], 5);
    let glm = &sent[1].body;
    assert_eq!(glm["top_p"], 0.99);
    assert_eq!(glm["stop"], json!(["END"]));
    assert!(
        glm.get("stream_options").is_none(),
        "zhipu sends stream usage unasked"
    );
    assert_eq!(sent[2].body["max_tokens"], 5);
}

#[tokio::test]
async fn recorded_openai_streams_pass_through_byte_for_byte() {
    let h = Harness::start().await;
    for fixture in [
        "parse_pydantic_tool",
        "parse_multiple_pydantic_tools",
        "content_logprobs_events",
        "parse_pydantic_model_multiple_choices",
    ] {
        let path = format!(
            "{}/fixtures/openai/chat-completions-streaming/{fixture}.sse",
            env!("CARGO_MANIFEST_DIR")
        );
        let recorded = sse_payloads(&std::fs::read_to_string(path).unwrap());
        let r = h
            .chat(&json!({"model": "gpt-4o-mini", "messages": user(&format!("[mock:fixture={fixture}]")), "stream": true,
                "tools": [{"type": "function", "function": {"name": "GetWeatherArgs", "parameters": {}}}]}))
            .await;
        let got = sse_payloads(&r.text().await.unwrap());
        // The fixture ends with a usage-only chunk (the recording asked for usage; this client did not).
        let expected: Vec<&String> = recorded
            .iter()
            .filter(|p| !p.contains("\"choices\":[]"))
            .collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{fixture}");
    }
}

#[tokio::test]
async fn stream_chunks_reach_the_client_as_they_arrive() {
    let h = Harness::start().await;
    let started = Instant::now();
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:chunks=3&chunk_delay_ms=400]"), "stream": true}))
        .await;
    let mut body = r.bytes_stream();
    let mut first_content = None;
    let mut all = String::new();
    while let Some(piece) = body.next().await {
        all.push_str(std::str::from_utf8(&piece.unwrap()).unwrap());
        if first_content.is_none() && all.contains("tok0") {
            first_content = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_content.expect("content arrived");
    assert!(total >= Duration::from_millis(1200), "{total:?}");
    assert!(
        first < total - Duration::from_millis(600),
        "first chunk at {first:?} of {total:?}: buffered"
    );
}

#[tokio::test]
async fn tool_calls_stream_through_with_their_finish_reason() {
    let h = Harness::start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let r = h.chat(&json!({"model": "gpt-4o-mini", "messages": user("weather?"), "tools": tools, "stream": true})).await;
    let payloads = sse_payloads(&r.text().await.unwrap());
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert_eq!(h.mock.requests()[0].body["tools"], tools);
}

#[tokio::test]
async fn embeddings_are_proxied_and_metered() {
    let h = Harness::start().await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["a b", "c d e"], "dimensions": 8}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    let sent = &h.mock.requests()[0];
    assert_eq!(
        (
            sent.path.as_str(),
            sent.body["model"].as_str(),
            sent.body["dimensions"].as_u64()
        ),
        (
            "/openai/v1/embeddings",
            Some("text-embedding-3-small"),
            Some(8)
        )
    );
    let e = h.event(&id).await;
    assert_eq!(e.endpoint, Endpoint::Embeddings);
    assert_eq!(
        e.usage,
        UsageVector {
            prompt_tokens: 5,
            ..UsageVector::default()
        }
    );
}

#[tokio::test]
async fn a_request_that_needs_no_change_reaches_the_upstream_byte_for_byte() {
    let h = Harness::start().await;
    // Odd spacing and key order survive: the gateway forwards the client's bytes.
    let raw = "{ \"messages\" : [{\"role\":\"user\",\"content\":\"hi\"}],\n  \"model\":\"gpt-4o-mini\", \"temperature\": 0.5 }";
    let r = h.chat_raw(raw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.requests()[0].raw, raw);
    // A stream needs `stream_options` added: that one is rewritten.
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("hi"), "stream": true}))
        .await;
    r.text().await.unwrap();
    assert!(h.mock.requests()[1].raw.contains("include_usage"));
}
