//! Rate limits at the edge: RPM, TPM and in-flight per key, per team and per model, and the provider's own
//! per-key quota — 429s with `Retry-After` and OpenAI's `x-ratelimit-*` headers.

use crate::common;

use std::time::Duration;

use common::{request_id, user, Harness};
use serde_json::{json, Value};
use tollgate_gateway::auth::KeyHash;
use tollgate_schemas::Outcome;

const RPM_KEY: &str = "tg-test-rpm-3";
const INFLIGHT_KEY: &str = "tg-test-inflight-1";
const TPM_KEY: &str = "tg-test-tpm-500";
const TEAM_KEY_1: &str = "tg-test-team-1";
const TEAM_KEY_2: &str = "tg-test-team-2";

fn config() -> String {
    let key = |name: &str, raw: &str, extra: &str| {
        format!(
            "[keys.{name}]\nsha256 = \"{}\"\nmodels = [\"*\"]\n{extra}\n\n",
            KeyHash::of(raw).to_hex()
        )
    };
    let mut c = String::new();
    c += &key("rpm3", RPM_KEY, "limits = { rpm = 3 }");
    c += &key("inflight1", INFLIGHT_KEY, "limits = { max_in_flight = 1 }");
    c += &key("tpm500", TPM_KEY, "limits = { tpm = 500 }");
    c += &key("team1", TEAM_KEY_1, "team = \"small\"");
    c += &key("team2", TEAM_KEY_2, "team = \"small\"");
    c += r#"
[teams.small]
rpm = 2

[providers.quota]
kind = "openai-compatible"
base_url = "{mock_openai}"
api_keys = ["sk-quota"]
key_limits = { rpm = 2 }

[models."limited-upstream"]
deployments = [{ provider = "quota", model = "gpt-4o-mini" }]

[models."model-capped"]
deployments = [{ provider = "mock", model = "gpt-4o-mini" }]
limits = { rpm = 1 }
"#;
    c
}

async fn call(
    h: &Harness,
    key: &str,
    model: &str,
    content: &str,
    max_tokens: Option<u32>,
) -> reqwest::Response {
    let mut body = json!({"model": model, "messages": user(content)});
    if let Some(m) = max_tokens {
        body["max_tokens"] = json!(m);
    }
    h.client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn rpm_refuses_with_retry_after_and_openai_rate_limit_headers() {
    let h = Harness::start_with(&config()).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = call(&h, RPM_KEY, "gpt-4o-mini", "hi", Some(16)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        remaining.push(header(&r, "x-ratelimit-remaining-requests").unwrap());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = call(&h, RPM_KEY, "gpt-4o-mini", "hi", Some(16)).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&r, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    assert!(header(&r, "x-ratelimit-reset-requests").is_some());
    assert!(
        header(&r, "x-should-retry").is_none(),
        "a rate limit is worth retrying later"
    );
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("key rpm3"));
    assert_eq!(
        h.mock.requests().len(),
        3,
        "the refused request never reached the upstream"
    );
    let e = h.event(&id).await;
    assert_eq!((e.outcome, e.http_status), (Outcome::ClientError, 429));
}

#[tokio::test]
async fn in_flight_limit_refuses_the_second_concurrent_request() {
    let h = Harness::start_with(&config()).await;
    let slow = call(
        &h,
        INFLIGHT_KEY,
        "gpt-4o-mini",
        "[mock:latency_ms=400]",
        Some(16),
    );
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(&h, INFLIGHT_KEY, "gpt-4o-mini", "hi", Some(16)).await
    };
    let (first, second) = tokio::join!(slow, second);
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 429);
    // The slot is free again once the first finished.
    assert_eq!(
        call(&h, INFLIGHT_KEY, "gpt-4o-mini", "hi", Some(16))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn tpm_charges_the_worst_case_and_settles_to_the_real_count() {
    let h = Harness::start_with(&config()).await;
    // Worst case ~ body/3 + 400 output tokens: fits once into 500, not twice...
    assert_eq!(
        call(&h, TPM_KEY, "gpt-4o-mini", "hi", Some(400))
            .await
            .status(),
        200
    );
    // ...but the first used only ~8 tokens, and settling gave the rest back: a second fits.
    assert_eq!(
        call(&h, TPM_KEY, "gpt-4o-mini", "hi", Some(400))
            .await
            .status(),
        200
    );
    // Two requests whose worst case cannot both fit at once are refused on tokens.
    let big = call(&h, TPM_KEY, "gpt-4o-mini", "hi", Some(490)).await;
    let status = big.status();
    let body: Value = big.json().await.unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens"),
        "{body}"
    );
}

#[tokio::test]
async fn a_team_limit_is_shared_by_its_keys_and_a_model_limit_by_everyone() {
    let h = Harness::start_with(&config()).await;
    assert_eq!(
        call(&h, TEAM_KEY_1, "gpt-4o-mini", "hi", Some(16))
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&h, TEAM_KEY_2, "gpt-4o-mini", "hi", Some(16))
            .await
            .status(),
        200
    );
    let r = call(&h, TEAM_KEY_1, "gpt-4o-mini", "hi", Some(16)).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team small"),
        "{body}"
    );

    assert_eq!(
        call(&h, RPM_KEY, "model-capped", "hi", Some(16))
            .await
            .status(),
        200
    );
    let r = call(&h, common::KEY, "model-capped", "hi", Some(16)).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model model-capped"),
        "{body}"
    );
}

#[tokio::test]
async fn an_upstream_keys_own_quota_is_respected() {
    let h = Harness::start_with(&config()).await;
    for _ in 0..2 {
        assert_eq!(
            call(&h, common::KEY, "limited-upstream", "hi", Some(16))
                .await
                .status(),
            200
        );
    }
    let r = call(&h, common::KEY, "limited-upstream", "hi", Some(16)).await;
    assert_eq!(r.status(), 503, "the only upstream key is at its quota");
    assert!(header(&r, "retry-after").is_some());
    assert_eq!(
        h.mock.requests().len(),
        2,
        "the upstream never saw more than its quota"
    );
}
