//! Cost and attribution on usage events: exact nano-unit cost from the shipped table, config prices and
//! currencies; `price_missing` for unpriced deployments; end user and tags from headers and `metadata`.

use crate::common;

use common::{request_id, user, Harness, KEY};
use serde_json::{json, Value};

#[tokio::test]
async fn every_event_carries_its_exact_cost_end_user_and_tags() {
    let h = Harness::start().await;
    // gpt-4o-mini from the shipped table: 0.15 USD in, 0.60 USD out per million tokens.
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-tollgate-tags", "feature=summarize, env=prod")
        .header("x-tollgate-end-user", "alice@example.com")
        .json(&json!({"model": "gpt-4o-mini", "messages": user("two words"), "user": "ignored-by-header",
            "metadata": {"env": "dev", "ticket": "T-9", "count": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    let (p, c) = (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let e = h.event(&id).await;
    assert_eq!(e.cost.nanos, p * 150 + c * 600);
    assert_eq!(
        (e.cost.currency.as_str(), e.cost.reporting_currency.as_str()),
        ("USD", "USD")
    );
    assert_eq!(e.cost.reporting_nanos, e.cost.nanos);
    assert_eq!(
        e.cost.price_version,
        tollgate_schemas::price::PriceTable::seed().unwrap().version
    );
    assert!(!e.cost.price_missing);
    assert_eq!(e.end_user.as_deref(), Some("alice@example.com"));
    let tags: Vec<(&str, &str)> = e
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [("env", "prod"), ("feature", "summarize"), ("ticket", "T-9")]
    );
}

#[tokio::test]
async fn cny_prices_are_kept_and_converted_unpriced_models_are_flagged() {
    let h = Harness::start().await;
    // qwen-plus from the shipped table: 0.80 CNY in, 2.00 CNY out; the test config sets CNY = 0.14 USD.
    let r = h
        .chat(&json!({"model": "qwen", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    let (p, c) = (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let e = h.event(&id).await;
    let cny = p * 800 + c * 2_000;
    assert_eq!((e.cost.nanos, e.cost.currency.as_str()), (cny, "CNY"));
    // Exact conversion, rounded half up once.
    assert_eq!(e.cost.reporting_nanos, (cny * 14 + 50) / 100);

    // glm-4 is not in the table and has no price in the config: zero cost, flagged, and counted.
    let r = h
        .chat(&json!({"model": "glm", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let e = h.event(&request_id(&r)).await;
    assert!(e.cost.price_missing);
    assert_eq!(
        (e.cost.nanos, e.cost.reporting_currency.as_str()),
        (0, "USD")
    );
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
        metrics.contains("tollgate_price_missing_total{model=\"glm\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tollgate_cost_nanos_total{model=\"qwen\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_tags_are_refused_before_the_upstream_and_still_metered() {
    let h = Harness::start().await;
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-tollgate-tags", "feature")
        .json(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("key=value"),
        "{body}"
    );
    assert!(h.mock.requests().is_empty());
    let e = h.event(&id).await;
    assert_eq!(e.http_status, 400);
    assert_eq!(e.cost.nanos, 0);
}
