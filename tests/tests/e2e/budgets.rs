//! Budgets on the embedded store: the overspend bound under concurrent streams and plain requests with an
//! upstream that overshoots `max_tokens`, the budget 429, per-end-user caps, injected output caps, streams cut at
//! their reservation, and signed threshold alerts delivered once with retries.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{request_id, sse_payloads, user, Harness, KEY, WEBHOOK_SECRET};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// gpt-4o-mini from the shipped table, in nano-USD per token.
const OUTPUT_NANOS_PER_TOKEN: u64 = 600;

async fn spend_of(h: &Harness, tenant: &str) -> u64 {
    h.events()
        .await
        .iter()
        .filter(|e| e.tenant == tenant)
        .map(|e| e.cost.reporting_nanos)
        .sum()
}

#[tokio::test]
async fn concurrent_streams_and_plain_requests_never_exceed_the_budget_by_more_than_the_stated_bound(
) {
    // 0.002 USD = 2,000,000 nano-USD for tenant acme (the harness key `all`).
    let h = Arc::new(
        Harness::start_with(
            r#"
[budgets.acme-daily]
subject = "tenant:acme"
period = "daily"
limit = "0.002"
"#,
        )
        .await,
    );
    const OVERSHOOT: u64 = 25;
    let mut tasks = Vec::new();
    for i in 0..160u64 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let max_tokens = 10 + (i * 37) % 150;
            let overshoots = i % 5 == 0;
            let stream = i % 2 == 0;
            let produced = if overshoots {
                max_tokens + OVERSHOOT
            } else {
                max_tokens / 2 + 1
            };
            let directive = if stream {
                format!("[mock:chunks={produced}]")
            } else {
                format!("[mock:completion_tokens={produced}]")
            };
            let mut body = json!({"model": "gpt-4o-mini", "max_tokens": max_tokens,
                "messages": user(&format!("budget probe {i} {directive}"))});
            if stream {
                body["stream"] = json!(true);
            }
            let r = h.chat(&body).await;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, overshoots, text)
        }));
    }
    let mut refused = 0;
    let mut overshooting_admitted = 0u64;
    for t in tasks {
        let (status, overshoots, text) = t.await.unwrap();
        match status {
            200 => overshooting_admitted += u64::from(overshoots),
            429 => {
                refused += 1;
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                assert_eq!(body["error"]["type"], "insufficient_quota");
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert!(
        refused > 0,
        "the budget never ran out: the test is too small"
    );
    // Reservations of requests in flight refused some that fit in the end: spend what is left, one at a time,
    // until the budget 429 comes (no Retry-After beyond the period, no SDK retry).
    let probe = json!({"model": "gpt-4o-mini", "max_tokens": 50, "messages": user("after [mock:completion_tokens=50]")});
    let mut last = None;
    for _ in 0..200 {
        let r = h.chat(&probe).await;
        if r.status() == 429 {
            last = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = last.expect("the budget never refused a sequential request");
    assert_eq!(r.headers()["x-should-retry"], "false");
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 86_400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tenant acme") && message.contains("0.002 USD"),
        "{message}"
    );
    let spent = spend_of(&h, "acme").await;
    // The stated bound: overspend ≤ Σ over admitted requests of (actual − reserved)⁺. Here only output beyond
    // max_tokens is unreserved (prompt tokens ≤ body bytes), at most OVERSHOOT tokens per overshooting request.
    let bound = overshooting_admitted * OVERSHOOT * OUTPUT_NANOS_PER_TOKEN;
    assert!(
        spent <= 2_000_000 + bound,
        "spent {spent} > limit 2000000 + bound {bound}"
    );
    // It was not refused early: what is left is less than the probe's worst case (≤ 200 body bytes at the input
    // price + 50 output tokens).
    let worst = 200 * 150 + 50 * OUTPUT_NANOS_PER_TOKEN;
    assert!(spent + worst > 2_000_000, "refused with {spent} spent");
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tollgate_budget_refused_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_per_end_user_cap_stops_one_user_and_not_the_others() {
    let h = Harness::start_with(
        r#"
[budgets.per-user]
subject = "end_user:*"
period = "daily"
limit = "0.0002"
"#,
    )
    .await;
    let ask = |who: &'static str| {
        json!({"model": "gpt-4o-mini", "max_tokens": 20, "user": who,
            "messages": user("hello [mock:completion_tokens=20]")})
    };
    let mut alice_refused = false;
    for _ in 0..40 {
        let r = h.chat(&ask("alice")).await;
        if r.status() == 429 {
            let body: Value = r.json().await.unwrap();
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("end_user alice"));
            alice_refused = true;
            break;
        }
        assert_eq!(r.status(), 200);
    }
    assert!(alice_refused);
    assert_eq!(h.chat(&ask("bob")).await.status(), 200);
    // Requests without an end user are not under this budget.
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "max_tokens": 20, "messages": user("anon")}))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_budgeted_request_without_max_tokens_gets_the_default_cap_upstream_and_streams_are_cut_at_it(
) {
    let h = Harness::start_with(
        r#"
[budget_settings]
default_max_tokens = 7
[budgets.acme]
subject = "tenant:acme"
period = "monthly"
limit = "10"
"#,
    )
    .await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("hi [mock:chunks=3]")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.requests()[0].body["max_completion_tokens"], 7);

    // The upstream ignores the cap: the stream is cut with an OpenAI-style error chunk, then [DONE].
    let r = h
        .chat(
            &json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 5,
            "messages": user("long [mock:chunks=40&chunk_delay_ms=5]")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let mut body = String::new();
    let mut stream = r.bytes_stream();
    while let Some(b) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&b.unwrap()));
    }
    let payloads = sse_payloads(&body);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let error: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "budget_exceeded", "{body}");
    let content = payloads
        .iter()
        .filter(|p| p.contains("\"content\""))
        .count();
    assert!(
        content < 40,
        "the stream was not cut: {content} content chunks"
    );
    let e = h.event(&id).await;
    assert_eq!(e.error_code.as_deref(), Some("budget_exceeded"));
    assert!(e.usage.completion_tokens <= 40);
}

/// A webhook receiver that fails its first call, then records every alert with its signature.
#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<(String, String)>>>,
}

async fn start_receiver() -> (Receiver, String) {
    let rx = Receiver::default();
    let state = rx.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let mut calls = state.calls.lock().unwrap();
                let signature = headers["x-tollgate-signature"]
                    .to_str()
                    .unwrap()
                    .to_string();
                calls.push((signature, body));
                if calls.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rx, url)
}

#[tokio::test]
async fn soft_budgets_never_refuse_and_alert_once_per_threshold_signed_and_retried() {
    let (rx, url) = start_receiver().await;
    let h = Harness::start_with(&format!(
        r#"
[budget_settings]
webhook_url = "{url}"
webhook_secret_env = "TEST_WEBHOOK_SECRET"
[budgets.acme-soft]
subject = "tenant:acme"
period = "daily"
limit = "0.0001"
hard = false
alert_at = [50, 100]
"#
    ))
    .await;
    for _ in 0..12 {
        let r = h
            .chat(&json!({"model": "gpt-4o-mini", "max_tokens": 30,
                "messages": user("x [mock:completion_tokens=30]")}))
            .await;
        assert_eq!(r.status(), 200, "a soft budget refused");
    }
    assert!(spend_of(&h, "acme").await > 100_000);
    // Two thresholds, the first delivery failed once: three calls, then nothing more.
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = rx.calls.lock().unwrap().clone();
        if calls.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls_after = rx.calls.lock().unwrap().clone();
    assert_eq!(calls_after.len(), 3, "{calls_after:?}");
    let mut thresholds = Vec::new();
    for (signature, body) in &calls {
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            v1,
            "bad signature"
        );
        let alert: Value = serde_json::from_str(body).unwrap();
        assert_eq!(alert["budget_id"], "acme-soft");
        assert_eq!(alert["subject"], "acme");
        assert_eq!(alert["limit"], "0.0001");
        thresholds.push(alert["threshold_percent"].as_u64().unwrap());
    }
    // The failed first call was retried with the same alert.
    assert_eq!(thresholds, [50, 50, 100]);
    assert!(!KEY.is_empty());
}
