//! Routing under failure: round-robin evenness, failover across keys and tiers, cooldown and recovery,
//! Retry-After, deadlines, strategies and residency constraints — against the fault-injecting mock upstream.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{request_id, user, Harness, KEY};
use serde_json::{json, Value};
use tollgate_gateway::auth::KeyHash;
use tollgate_schemas::Outcome;

const EU_KEY: &str = "tg-test-eu-only";
const MARS_KEY: &str = "tg-test-mars-only";
/// A key with no constraint of its own, in a tenant restricted to the EU.
const EU_TENANT_KEY: &str = "tg-test-eu-tenant";

fn routing_config() -> String {
    format!(
        r#"
[providers.us]
kind = "openai-compatible"
base_url = "{{mock_openai}}"
api_keys = ["sk-us-1"]
tags = {{ region = "us", residency = "us" }}

[providers.eu]
kind = "openai-compatible"
base_url = "{{mock_openai}}"
api_keys = ["sk-eu-1", "sk-eu-2"]
tags = {{ region = "eu", residency = "eu" }}

[models."tiered"]
tiers = [[{{ provider = "us", model = "primary" }}], [{{ provider = "eu", model = "backup" }}]]

[models."solo"]
deployments = [{{ provider = "us", model = "primary" }}]

[models."weighted"]
strategy = "weighted"
deployments = [{{ provider = "eu", model = "heavy", weight = 3 }}, {{ provider = "us", model = "light", weight = 1 }}]

[models."fastest"]
strategy = "lowest-latency"
deployments = [{{ provider = "us", model = "slow?latency_ms=150" }}, {{ provider = "eu", model = "fast" }}]

[models."cheapest"]
strategy = "lowest-cost"
deployments = [
  {{ provider = "us", model = "pricey", price = {{ input_per_mtok = "5.00", output_per_mtok = "15.00" }} }},
  {{ provider = "eu", model = "cheap", price = {{ input_per_mtok = "0.15", output_per_mtok = "0.60" }} }},
]

[models."deadline"]
total_timeout_ms = 1500
first_byte_timeout_ms = 600
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[keys.eu-only]
tenant = "eu-bank"
sha256 = "{eu}"
models = ["*"]
require_tags = {{ residency = "eu" }}

[keys.eu-tenant]
tenant = "eu-bank"
sha256 = "{eu_tenant}"
models = ["*"]

[tenants.eu-bank]
require_tags = {{ residency = "eu" }}

[keys.mars]
sha256 = "{mars}"
models = ["*"]
require_tags = {{ region = "mars" }}
"#,
        eu = KeyHash::of(EU_KEY).to_hex(),
        mars = KeyHash::of(MARS_KEY).to_hex(),
        eu_tenant = KeyHash::of(EU_TENANT_KEY).to_hex(),
    )
}

async fn routed() -> Harness {
    Harness::start_with(&routing_config()).await
}

/// Requests the mock received, counted by the key that signed them.
fn by_key(h: &Harness) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in h.mock.requests() {
        let key = r
            .header("authorization")
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_string();
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Requests the mock received, counted by upstream model name (directives cut off).
fn by_model(h: &Harness) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in h.mock.requests() {
        let model = r.body["model"]
            .as_str()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string();
        *counts.entry(model).or_insert(0) += 1;
    }
    counts
}

/// One request that must succeed.
async fn ok(h: &Harness, model: &str, content: &str) {
    let r = h
        .chat(&json!({"model": model, "messages": user(content)}))
        .await;
    assert_eq!(r.status(), 200, "{model}: {content}");
}

async fn chat_as(h: &Harness, key: &str, body: &Value) -> reqwest::Response {
    h.client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn round_robin_spreads_300_requests_evenly_over_3_keys() {
    let h = routed().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                let r = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts = by_key(&h);
    assert_eq!(counts.values().sum::<usize>(), 300);
    for key in ["sk-upstream-a", "sk-upstream-b", "sk-upstream-c"] {
        let n = counts[key];
        assert!((99..=101).contains(&n), "{key}: {n} of 300 ({counts:?})");
    }
}

#[tokio::test]
async fn fails_over_to_the_next_key_on_429_500_503_timeout_and_reset_plain_and_streamed() {
    for fault in [
        "status=429",
        "status=500",
        "status=503",
        "latency_ms=2500",
        "reset_after=0",
    ] {
        for stream in [false, true] {
            let h = routed().await;
            let content = format!("hi [mock:{fault}&only_key=sk-upstream-a]");
            let mut attempts = 0;
            for _ in 0..3 {
                let r = h.chat(&json!({"model": "gpt-4o-mini", "messages": user(&content), "stream": stream})).await;
                assert_eq!(r.status(), 200, "{fault} stream={stream}");
                let id = request_id(&r);
                let body = r.text().await.unwrap();
                if stream {
                    assert!(
                        body.ends_with("data: [DONE]\n\n") && !body.contains("\"error\""),
                        "{fault}: {body}"
                    );
                }
                let e = h.wait_event(&id).await;
                assert_eq!(e.outcome, Outcome::Success, "{fault}");
                assert_ne!(e.deployment, "", "{fault}");
                attempts += e.attempts;
            }
            // Key a failed once and then cooled down: exactly one retry across the three requests.
            assert_eq!(attempts, 4, "{fault} stream={stream}");
            assert_eq!(
                by_key(&h).get("sk-upstream-a"),
                Some(&1),
                "{fault} stream={stream}: a was tried once"
            );
        }
    }
}

#[tokio::test]
async fn does_not_retry_400_401_or_quota_errors() {
    for (directive, status) in [
        ("status=400", 400),
        ("status=401", 502),
        ("status=429&code=insufficient_quota", 429),
        ("status=404", 404),
    ] {
        let h = routed().await;
        let r = h
            .chat(
                &json!({"model": "gpt-4o-mini", "messages": user(&format!("[mock:{directive}]"))}),
            )
            .await;
        assert_eq!(r.status(), status, "{directive}");
        let id = request_id(&r);
        assert_eq!(h.mock.requests().len(), 1, "{directive} was retried");
        assert_eq!(h.event(&id).await.attempts, 1);
    }
}

#[tokio::test]
async fn retry_after_keeps_a_key_out_until_then_and_a_probe_brings_it_back() {
    let h = routed().await;
    // Key a answers 429 with retry-after: 2 once; the request moves on to b.
    let directive = "[mock:status=429&retry_after=2&only_key=sk-upstream-a]";
    for _ in 0..3 {
        assert_eq!(
            h.chat(&json!({"model": "gpt-4o-mini", "messages": user(directive)}))
                .await
                .status(),
            200
        );
    }
    let started = Instant::now();
    for _ in 0..12 {
        ok(&h, "gpt-4o-mini", "hi").await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the check ran inside the 2 s window"
    );
    assert_eq!(
        by_key(&h)["sk-upstream-a"],
        1,
        "a got nothing while it rested"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..6 {
        ok(&h, "gpt-4o-mini", "hi").await;
    }
    assert!(
        by_key(&h)["sk-upstream-a"] >= 2,
        "a recovered after its cooldown: {:?}",
        by_key(&h)
    );
}

#[tokio::test]
async fn when_everything_is_cooling_it_fails_fast_with_503_and_retry_after_then_recovers() {
    let h = routed().await;
    let r = h
        .chat(&json!({"model": "solo", "messages": user("[mock:status=500]")}))
        .await;
    assert_eq!(r.status(), 502);
    let started = Instant::now();
    let r = h
        .chat(&json!({"model": "solo", "messages": user("hi")}))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "fail fast, no upstream call"
    );
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "all_deployments_cooling_down");
    assert_eq!(h.mock.requests().len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        h.chat(&json!({"model": "solo", "messages": user("hi")}))
            .await
            .status(),
        200,
        "the probe succeeded"
    );
    ok(&h, "solo", "hi").await;
}

#[tokio::test]
async fn fails_over_to_the_next_tier_and_records_who_served() {
    let h = routed().await;
    let r = h
        .chat(&json!({"model": "tiered", "messages": user("[mock:status=503&only_key=sk-us-1]")}))
        .await;
    assert_eq!(r.status(), 200);
    let e = h.event(&request_id(&r)).await;
    assert_eq!(
        (e.attempts, e.deployment.as_str(), e.provider.as_str()),
        (2, "eu/backup", "eu")
    );
}

#[tokio::test]
async fn a_residency_restricted_key_never_leaves_its_tag_even_on_failover() {
    let h = routed().await;
    for _ in 0..4 {
        let r = chat_as(
            &h,
            EU_KEY,
            &json!({"model": "tiered", "messages": user("hi")}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    // Every eu deployment failing: the request fails rather than going to the us tier.
    let r = chat_as(
        &h,
        EU_KEY,
        &json!({"model": "tiered", "messages": user("[mock:status=503]")}),
    )
    .await;
    assert_eq!(r.status(), 502);
    assert!(
        !by_key(&h).contains_key("sk-us-1"),
        "a us key was used: {:?}",
        by_key(&h)
    );
    let r = chat_as(
        &h,
        MARS_KEY,
        &json!({"model": "tiered", "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_eligible_deployment");
}

#[tokio::test]
async fn weighted_strategy_splits_by_weight() {
    let h = routed().await;
    for _ in 0..400 {
        ok(&h, "weighted", "hi").await;
    }
    let counts = by_model(&h);
    assert_eq!((counts["heavy"], counts["light"]), (300, 100));
}

#[tokio::test]
async fn lowest_latency_and_lowest_cost_pick_the_expected_deployment() {
    let h = routed().await;
    for _ in 0..2 {
        // Both get measured once (unmeasured deployments go first).
        ok(&h, "fastest", "hi").await;
    }
    let before = by_model(&h).get("fast").copied().unwrap_or(0);
    for _ in 0..10 {
        ok(&h, "fastest", "hi").await;
    }
    assert_eq!(by_model(&h)["fast"] - before, 10, "{:?}", by_model(&h));
    for _ in 0..10 {
        ok(&h, "cheapest", "hi").await;
    }
    assert_eq!(by_model(&h).get("cheap"), Some(&10));
    assert_eq!(by_model(&h).get("pricey"), None);
}

#[tokio::test]
async fn no_request_is_retried_past_its_deadline() {
    let h = routed().await;
    let started = Instant::now();
    let r = h
        .chat(&json!({"model": "deadline", "messages": user("[mock:latency_ms=1000]")}))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(r.status(), 504);
    let e = h.event(&request_id(&r)).await;
    assert!(
        elapsed < Duration::from_millis(1800),
        "{elapsed:?} past the 1.5 s deadline"
    );
    assert!(
        elapsed >= Duration::from_millis(1400),
        "{elapsed:?}: it should use its time"
    );
    assert!((2..=3).contains(&e.attempts), "{} attempts", e.attempts);
}
