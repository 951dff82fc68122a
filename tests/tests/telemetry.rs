//! OpenTelemetry traces end to end: the gateway in-process exports to a local OTLP/HTTP receiver (a small axum
//! server decoding `ExportTraceServiceRequest` protobuf). Every request yields one `request` span (kind
//! server) and one `upstream_attempt` child per upstream attempt (kind client), with the usage facts as
//! attributes — and no attribute anywhere carries the prompt, an upstream API key or the virtual key.
//!
//! Its own test binary (the e2e binary shares the common harness through `#[path]`): the telemetry installs
//! the process's global subscriber.

#[path = "e2e/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{user, Harness, KEY};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use tollgate_gateway::config::TelemetryConfig;

const PROMPT: &str = "PROMPT-TEXT-must-not-leak";
const GOOD_KEY: &str = "sk-pair-good-0123456789";
const BAD_KEY: &str = "sk-pair-bad-9876543210";

type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    received.lock().unwrap().push(request);
    ""
}

async fn receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// Every span received so far.
fn spans(received: &Received) -> Vec<Span> {
    received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.clone())
        .collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => panic!("{key}: expected a string, got {other:?} in {span:?}"),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(AnyValue::IntValue(n)) => *n,
        other => panic!("{key}: expected an int, got {other:?} in {span:?}"),
    }
}

/// Every string an attribute (span, event, link or resource) holds, rendered.
fn all_values(received: &Received) -> Vec<String> {
    fn flatten(kvs: &[KeyValue], out: &mut Vec<String>) {
        for kv in kvs {
            out.push(format!("{}={:?}", kv.key, kv.value));
        }
    }
    let mut out = Vec::new();
    for r in received.lock().unwrap().iter() {
        for rs in &r.resource_spans {
            if let Some(res) = &rs.resource {
                flatten(&res.attributes, &mut out);
            }
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push(s.name.clone());
                    flatten(&s.attributes, &mut out);
                    for e in &s.events {
                        out.push(e.name.clone());
                        flatten(&e.attributes, &mut out);
                    }
                    if let Some(status) = &s.status {
                        out.push(status.message.clone());
                    }
                }
            }
        }
    }
    out
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_per_request_and_attempt_with_facts_and_no_secrets() {
    let (addr, received) = receiver().await;
    let telemetry = tollgate_gateway::telemetry::init(Some(&TelemetryConfig {
        traces_endpoint: format!("http://{addr}/v1/traces").parse().unwrap(),
        service_name: "tollgate-test".into(),
        sample_ratio: 1.0,
    }))
    .expect("telemetry");
    assert!(telemetry.exporting());
    let h = Harness::start_with(&format!(
        r#"
[providers.pair]
kind = "openai"
base_url = "{{mock_openai}}"
api_keys = ["{GOOD_KEY}", "{BAD_KEY}"]

[models."pair"]
deployments = [{{ provider = "pair", model = "gpt-4o-mini" }}]
"#
    ))
    .await;

    let plain = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user(&format!("{PROMPT} plain"))}))
        .await;
    assert_eq!(plain.status(), 200);
    let plain = request_id(&plain);
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user(&format!("{PROMPT} stream")), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    let stream = request_id(&r);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    // The bad key answers 500: whichever request of these meets it first fails over to the good key.
    let mut failover = None;
    for _ in 0..3 {
        let content = format!("{PROMPT} [mock:status=500&only_key={BAD_KEY}]");
        let r = h
            .chat(&json!({"model": "pair", "messages": user(&content)}))
            .await;
        assert_eq!(r.status(), 200);
        let id = request_id(&r);
        if h.wait_event(&id).await.attempts == 2 {
            failover = Some(id);
            break;
        }
    }
    let failover = failover.expect("a request failed over from the bad key to the good one");
    let r = h
        .chat(&json!({"model": "no-such-model", "messages": user(PROMPT)}))
        .await;
    assert_eq!(r.status(), 404);
    let unknown = request_id(&r);
    for id in [&plain, &stream, &failover, &unknown] {
        h.wait_event(id).await;
    }

    // Spans end when their exchange is dropped, just after its event; export is batched: flush until all
    // five request spans are in.
    let telemetry = Arc::new(telemetry);
    let mut requests: HashMap<String, Span> = HashMap::new();
    for _ in 0..50 {
        let t = telemetry.clone();
        tokio::task::spawn_blocking(move || t.flush())
            .await
            .unwrap();
        requests = spans(&received)
            .into_iter()
            .filter(|s| s.name == "request")
            .map(|s| (text(&s, "request_id"), s))
            .collect();
        if [&plain, &stream, &failover, &unknown]
            .iter()
            .all(|id| requests.contains_key(*id))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = spans(&received);
    let children = |parent: &Span| -> Vec<Span> {
        let mut c: Vec<Span> = all
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .cloned()
            .collect();
        c.sort_by_key(|s| int(s, "attempt"));
        c
    };

    // Plain: the request's facts, one attempt.
    let span = requests.get(&plain).expect("plain request span");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert!(span.parent_span_id.is_empty(), "a root span");
    for (key, want) in [
        ("endpoint", "chat_completions"),
        ("model", "gpt-4o-mini"),
        ("tenant", "acme"),
        ("team", "search"),
        ("key_id", "all"),
        ("outcome", "success"),
        ("deployment", "mock/gpt-4o-mini"),
        ("provider", "mock"),
        ("usage_source", "provider"),
    ] {
        assert_eq!(text(span, key), want, "{key}");
    }
    assert_eq!(int(span, "http.response.status_code"), 200);
    assert_eq!(int(span, "attempts"), 1);
    assert!(int(span, "prompt_tokens") > 0 && int(span, "completion_tokens") > 0);
    assert_eq!(attr(span, "stream"), Some(&AnyValue::BoolValue(false)));
    let attempts = children(span);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let a = &attempts[0];
    assert_eq!(a.name, "upstream_attempt");
    assert_eq!(a.kind, SpanKind::Client as i32);
    assert_eq!(a.trace_id, span.trace_id);
    assert_eq!(text(a, "result"), "ok");
    assert_eq!(text(a, "deployment"), "mock/gpt-4o-mini");
    assert_eq!(int(a, "attempt"), 1);
    assert_eq!(int(a, "http.response.status_code"), 200);
    assert!(attr(a, "ttft_ms").is_some());
    assert!(
        a.start_time_unix_nano >= span.start_time_unix_nano
            && a.end_time_unix_nano <= span.end_time_unix_nano,
        "the attempt lies inside its request"
    );

    // Stream: same shape; the request span lasts until the relay finished.
    let span = requests.get(&stream).expect("stream request span");
    assert_eq!(attr(span, "stream"), Some(&AnyValue::BoolValue(true)));
    assert_eq!(text(span, "outcome"), "success");
    assert_eq!(children(span).len(), 1);

    // Failover: the bad key's 500, then the good key; key slots by index, never the key.
    let span = requests.get(&failover).expect("failover request span");
    assert_eq!(int(span, "attempts"), 2);
    assert_eq!(text(span, "deployment"), "pair/gpt-4o-mini");
    let attempts = children(span);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (
            text(&attempts[0], "result"),
            int(&attempts[0], "http.response.status_code"),
            int(&attempts[0], "key_index")
        ),
        ("retryable_error".to_string(), 500, 1),
        "the bad key is slot 1"
    );
    assert_eq!(
        attempts[0].status.as_ref().map(|s| s.code),
        Some(2),
        "error status"
    );
    assert!(!text(&attempts[0], "error_code").is_empty());
    assert_eq!(
        (
            text(&attempts[1], "result"),
            int(&attempts[1], "key_index"),
            int(&attempts[1], "attempt")
        ),
        ("ok".to_string(), 0, 2)
    );
    assert!(attempts.iter().all(|a| a.trace_id == span.trace_id));

    // Refused before routing: a request span, no attempt.
    let span = requests.get(&unknown).expect("unknown-model request span");
    assert_eq!(text(span, "outcome"), "client_error");
    assert_eq!(int(span, "http.response.status_code"), 404);
    assert!(children(span).is_empty());

    // Nothing secret or private anywhere in what was exported.
    let values = all_values(&received);
    assert!(
        values.iter().any(|v| v.contains("tollgate-test")),
        "the service name is a resource attribute"
    );
    for forbidden in [
        PROMPT,
        "PROMPT",
        GOOD_KEY,
        BAD_KEY,
        "sk-upstream",
        KEY,
        "Bearer",
    ] {
        let leaks: Vec<&String> = values.iter().filter(|v| v.contains(forbidden)).collect();
        assert!(leaks.is_empty(), "{forbidden:?} leaked into {leaks:?}");
    }

    h.stop().await;
    let t = Arc::try_unwrap(telemetry).expect("one owner");
    tokio::task::spawn_blocking(move || t.shutdown())
        .await
        .unwrap();
}
