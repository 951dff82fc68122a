//! `GET /metrics` counts what the usage events count.

use crate::common;

use common::{user, Harness};
use serde_json::json;

/// The value of the series whose line starts with `series` (name and labels exactly as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
    })
}

#[tokio::test]
async fn metrics_count_requests_tokens_attempts_and_the_sink() {
    let h = Harness::start().await;
    h.chat(&json!({"model": "gpt-4o-mini", "messages": user("one two")}))
        .await
        .text()
        .await
        .unwrap();
    h.chat(&json!({"model": "gpt-4o-mini", "messages": user("three"), "stream": true}))
        .await
        .text()
        .await
        .unwrap();
    h.chat(&json!({"model": "nope", "messages": user("x")}))
        .await
        .text()
        .await
        .unwrap();
    // Round-robin gives this request key c first, which fails once: one retryable attempt, one retried
    // request, one cooldown.
    h.chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:status=500&only_key=sk-upstream-c]")}))
        .await
        .text()
        .await
        .unwrap();
    h.events().await; // every event is emitted (and so recorded) by now
    let r = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    let ok = r#"tollgate_requests_total{endpoint="chat_completions",model="gpt-4o-mini",outcome="success"}"#;
    assert_eq!(value(&text, ok), Some(3.0), "{text}");
    let unknown = r#"tollgate_requests_total{endpoint="chat_completions",model="(unknown)",outcome="client_error"}"#;
    assert_eq!(
        value(&text, unknown),
        Some(1.0),
        "client input never becomes a label"
    );
    assert!(!text.contains("model=\"nope\""));
    let prompt = r#"tollgate_tokens_total{model="gpt-4o-mini",class="prompt"}"#;
    assert_eq!(value(&text, prompt), Some((5 + 4 + 4) as f64), "{text}");
    let retryable = r#"tollgate_upstream_attempts_total{deployment="mock/gpt-4o-mini",result="retryable_error"}"#;
    assert_eq!(value(&text, retryable), Some(1.0), "{text}");
    assert_eq!(
        value(
            &text,
            r#"tollgate_retried_requests_total{model="gpt-4o-mini"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_cooldowns_total{deployment="mock/gpt-4o-mini"}"#
        ),
        Some(1.0)
    );
    let count = r#"tollgate_request_duration_seconds_count{endpoint="chat_completions",model="gpt-4o-mini"}"#;
    assert_eq!(value(&text, count), Some(3.0), "{text}");
    assert_eq!(
        value(&text, "tollgate_sink_emitted_total"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(value(&text, "tollgate_sink_dropped_total"), Some(0.0));
    assert_eq!(value(&text, "tollgate_sink_healthy"), Some(1.0));
    assert!(text.trim_end().ends_with("# EOF"));
}
