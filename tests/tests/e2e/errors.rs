//! Every failure is an OpenAI-shaped error with the right status, recorded once; nothing panics.

use crate::common;

use common::{request_id, sse_payloads, user, Harness, KEY, NARROW_KEY};
use serde_json::{json, Value};
use tollgate_schemas::{Outcome, UsageSource};

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "status {status}"
    );
    let body: Value = r.json().await.unwrap();
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    (status, body)
}

#[tokio::test]
async fn client_errors_have_their_statuses() {
    let h = Harness::start().await;
    let url = h.url("/v1/chat/completions");
    let c = &h.client;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(&url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body("{\"model\": "),
            400,
            "invalid_json",
        ),
        (
            c.post(&url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body("[1,2]"),
            400,
            "invalid_json",
        ),
        (
            c.post(&url)
                .bearer_auth(KEY)
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "unsupported_content_type",
        ),
        (
            c.post(&url)
                .bearer_auth(KEY)
                .json(&json!({"model": "gpt-4o-mini", "messages": user(&"x".repeat(70_000))})),
            413,
            "body_too_large",
        ),
        (
            c.post(&url).json(&json!({"model": "gpt-4o-mini"})),
            401,
            "missing_api_key",
        ),
        (
            c.post(&url)
                .bearer_auth("tg-nope")
                .json(&json!({"model": "gpt-4o-mini"})),
            401,
            "invalid_api_key",
        ),
        (
            c.post(&url)
                .bearer_auth(NARROW_KEY)
                .json(&json!({"model": "kimi", "messages": user("hi")})),
            403,
            "model_not_allowed",
        ),
        (
            c.post(&url)
                .bearer_auth(KEY)
                .json(&json!({"model": "gpt-9", "messages": user("hi")})),
            404,
            "model_not_found",
        ),
        (
            c.post(&url)
                .bearer_auth(KEY)
                .json(&json!({"messages": user("hi")})),
            400,
            "invalid_request",
        ),
        (
            c.post(&url).bearer_auth(KEY).json(&json!({"model": 5})),
            400,
            "invalid_request",
        ),
        (
            c.post(&url)
                .bearer_auth(KEY)
                .json(&json!({"model": "gpt-4o-mini", "stream": "yes"})),
            400,
            "invalid_request",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
    }
    assert!(
        h.mock.requests().is_empty(),
        "no refused request reaches the upstream"
    );
}

#[tokio::test]
async fn upstream_4xx_passes_through_with_the_upstreams_message() {
    let h = Harness::start().await;
    let r = h.chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:status=400&message=Invalid+value+for+tools&code=invalid_value]")})).await;
    let id = request_id(&r);
    let (status, body) = error_of(r).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Invalid value for tools");
    assert_eq!(body["error"]["code"], "invalid_value");
    let e = h.event(&id).await;
    assert_eq!(
        (e.outcome, e.http_status, e.error_code.as_deref()),
        (Outcome::UpstreamError, 400, Some("invalid_value"))
    );
    assert_eq!(e.usage_source, UsageSource::None);

    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:status=429&retry_after=7]")}))
        .await;
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(
        r.headers().get("x-should-retry").is_none(),
        "a rate limit is worth retrying"
    );
    assert_eq!(error_of(r).await.0, 429);
}

#[tokio::test]
async fn quota_exhaustion_is_not_worth_retrying_and_says_so() {
    // One gateway per case: an exhausted key rests (for every later request), which is the point.
    for (model, directive) in [
        (
            "gpt-4o-mini",
            "status=429&code=insufficient_quota&type=insufficient_quota",
        ),
        ("glm", "status=429&code=1113"),
        ("kimi", "status=429&type=exceeded_current_quota_error"),
        ("qwen", "status=400&code=Arrearage"),
    ] {
        let h = Harness::start().await;
        let r = h
            .chat(&json!({"model": model, "messages": user(&format!("[mock:{directive}]"))}))
            .await;
        assert_eq!(r.headers()["x-should-retry"], "false", "{model}");
        let (_, body) = error_of(r).await;
        assert_eq!(body["error"]["code"], "upstream_quota_exhausted", "{model}");
        assert_eq!(h.mock.requests().len(), 1, "{model}: never retried");
    }
    // An ordinary Zhipu rate limit is not quota exhaustion.
    let h = Harness::start().await;
    let r = h
        .chat(&json!({"model": "glm", "messages": user("[mock:status=429&code=1302]")}))
        .await;
    let (_, body) = error_of(r).await;
    assert_eq!(body["error"]["code"], "1302");
}

#[tokio::test]
async fn upstream_failures_become_502_and_504() {
    let h = Harness::start().await;
    // `once` makes a single attempt, on the next key each time: each case sees one upstream answer.
    let cases = [
        ("once", "[mock:status=500]", 502, "upstream_error"),
        (
            "once",
            "[mock:status=503&retry_after=1]",
            502,
            "upstream_error",
        ),
        ("once", "[mock:latency_ms=2500]", 504, "upstream_timeout"),
        ("once", "[mock:reset_after=0]", 502, "upstream_error"),
        ("unreachable", "hi", 502, "upstream_unreachable"),
    ];
    for (model, content, status, code) in cases {
        let r = h
            .chat(&json!({"model": model, "messages": user(content)}))
            .await;
        let id = request_id(&r);
        let (got, body) = error_of(r).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "{content}: {body}"
        );
        let e = h.event(&id).await;
        assert_eq!(
            (e.outcome, e.http_status),
            (Outcome::UpstreamError, status),
            "{content}"
        );
    }
}

#[tokio::test]
async fn upstream_401_is_the_gateways_fault_and_its_message_is_not_echoed() {
    let h = Harness::start().await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:status=401&message=Incorrect+API+key+provided:+sk-up***-a]")}))
        .await;
    let (status, body) = error_of(r).await;
    assert_eq!(status, 502);
    assert!(!body.to_string().contains("sk-up"), "{body}");
}

#[tokio::test]
async fn failures_after_the_first_byte_end_with_an_error_chunk_and_done() {
    let h = Harness::start().await;
    for (directive, code) in [
        ("cut_after=2", "stream_truncated"),
        ("reset_after=2", "stream_truncated"),
        ("error_after=2", "mock_stream_error"),
        ("chunk_delay_ms=1800", "stream_truncated"),
    ] {
        let r = h
            .chat(&json!({"model": "gpt-4o-mini", "messages": user(&format!("[mock:{directive}]")), "stream": true}))
            .await;
        assert_eq!(r.status(), 200);
        let id = request_id(&r);
        let payloads = sse_payloads(&r.text().await.unwrap());
        assert_eq!(
            payloads.last().map(String::as_str),
            Some("[DONE]"),
            "{directive}"
        );
        let errors: Vec<Value> = payloads
            .iter()
            .filter_map(|p| serde_json::from_str::<Value>(p).ok())
            .filter(|c| c.get("error").is_some())
            .collect();
        assert_eq!(errors.len(), 1, "{directive}: {payloads:?}");
        assert_eq!(errors[0]["error"]["code"], code, "{directive}");
        let e = h.wait_event(&id).await;
        assert_eq!(
            (e.outcome, e.error_code.as_deref()),
            (Outcome::UpstreamError, Some(code)),
            "{directive}"
        );
    }
    // No usage arrived on the cut stream: it is estimated and says so.
    let events = h.events().await;
    let cut = events
        .iter()
        .find(|e| e.error_code.as_deref() == Some("stream_truncated"))
        .unwrap();
    assert_eq!(cut.usage_source, UsageSource::Estimated);
    assert!(cut.usage.completion_tokens >= 2);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_still_metered_from_the_upstream() {
    let h = Harness::start().await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:chunks=6&chunk_delay_ms=100]"), "stream": true}))
        .await;
    let id = request_id(&r);
    let mut body = r.bytes_stream();
    use futures::StreamExt;
    let _first = body.next().await;
    drop(body);
    let e = h.wait_event(&id).await;
    assert_eq!(e.outcome, Outcome::ClientDisconnected);
    assert_eq!(
        e.usage_source,
        UsageSource::Provider,
        "the gateway drained the upstream for its usage"
    );
    assert_eq!(e.usage.completion_tokens, 6);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_openai_shaped() {
    let h = Harness::start().await;
    let (status, _) = error_of(h.client.get(h.url("/v1/nope")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = error_of(
        h.client
            .get(h.url("/v1/chat/completions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn hostile_bodies_get_4xx_and_never_a_panic() {
    let h = Harness::start().await;
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"\"x\"".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        "{\"model\":\"gpt-4o-mini\",\"messages\":"
            .repeat(50)
            .into_bytes(),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        br#"{"model":"gpt-4o-mini","stream":null,"stream_options":"x","messages":7}"#.to_vec(),
        br#"{"model":"\u0000","messages":[]}"#.to_vec(),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..40 {
        let len = (seed % 300) as usize;
        bodies.push(
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed & 0xff) as u8
                })
                .collect(),
        );
    }
    for body in bodies {
        let r = h
            .client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_ne!(status, 500, "internal error for {body:?}");
        let json: Value = r.json().await.unwrap();
        if status != 200 {
            assert!(json["error"]["message"].is_string());
        }
    }
    // Still serving.
    assert_eq!(
        h.chat(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_on_a_plain_request_is_metered_with_the_upstreams_usage() {
    let h = Harness::start().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let sent = client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-4o-mini", "messages": user("slow one [mock:latency_ms=600]")}))
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up first");
    // The upstream call finishes (and is billed by the provider): the gateway records it.
    let events = h.wait_events(1).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.outcome, Outcome::ClientDisconnected);
    assert_eq!(e.usage_source, UsageSource::Provider);
    assert_eq!((e.usage.prompt_tokens, e.usage.completion_tokens), (6, 4));
}
