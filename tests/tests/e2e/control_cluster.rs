//! The control plane on Kafka with two gateway replicas and the metering consumer: a key issued on one replica
//! works on the other, a revocation stops it on both within the stated propagation bound, a budget set through
//! one replica is enforced by the other and lands in ClickHouse's `budgets` table (keys in `virtual_keys`), and a replica started later
//! replays every change.
//!
//! Needs `scripts/services.sh`; `#[ignore]`d in a plain `cargo test`, run by `scripts/test.sh` with `--ignored`.

use crate::pipeline_support;

use std::time::{Duration, Instant};

use pipeline_support::{ch_u64, Pipeline, ADMIN_KEY};
use serde_json::{json, Value};

/// `tollgate_gateway::control::kafka::PROPAGATION_BOUND`: what the README promises.
const BOUND: Duration = tollgate_gateway::control::kafka::PROPAGATION_BOUND;

async fn chat(client: &reqwest::Client, base: &str, key: &str) -> u16 {
    client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi [mock:completion_tokens=20]"}]}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls until `base` answers `key` with `status`; the time it took.
async fn until_status(client: &reqwest::Client, base: &str, key: &str, status: u16) -> Duration {
    let start = Instant::now();
    while start.elapsed() < BOUND * 3 {
        if chat(client, base, key).await == status {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{base} never answered {status} for the key");
}

async fn admin(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client.request(method, url).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("admin call");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn admin_changes_reach_every_replica_within_the_bound_and_budgets_reach_clickhouse() {
    // With the budget owner (short lease TTL + grace, so it grants within 3 s of its start): a hard budget on
    // replicas is enforced through leases.
    let p = Pipeline::start_with(
        "control",
        &[
            "--budget-owner",
            "--lease-ttl-ms",
            "2000",
            "--lease-grace-ms",
            "1000",
        ],
    )
    .await;
    let (mut replica, b) = p.start_replica().await;
    let a = p.url("");
    let c = &p.client;

    // Issue on A; usable on B within the bound.
    let (status, issued) = admin(
        c,
        reqwest::Method::POST,
        format!("{a}/admin/keys"),
        Some(json!({"key_id": "svc", "tenant": "wayne", "team": "bots"})),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().unwrap().to_string();
    assert_eq!(
        chat(c, &a, &key).await,
        200,
        "A applied its own change before answering"
    );
    let took = until_status(c, &b, &key, 200).await;
    assert!(took <= BOUND, "issue took {took:?} to reach B");

    // Revoke on A; refused on both within the bound.
    let (status, _) = admin(
        c,
        reqwest::Method::DELETE,
        format!("{a}/admin/keys/svc"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(chat(c, &a, &key).await, 401);
    let took = until_status(c, &b, &key, 401).await;
    assert!(took <= BOUND, "revocation took {took:?} to reach B");

    // A budget set through B is enforced by A and projected into ClickHouse by the consumer.
    let (status, body) = admin(
        c,
        reqwest::Method::PUT,
        format!("{b}/admin/budgets/acme-cap"),
        Some(json!({"subject": "tenant:acme", "period": "monthly", "limit": "0.000001"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let acme = pipeline_support::TENANT_KEYS[0].1;
    let start = Instant::now();
    loop {
        let s = chat(c, &a, acme).await;
        if s == 429 {
            break;
        }
        assert!(
            start.elapsed() < BOUND * 3,
            "A never enforced the budget set on B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let budgets = p.table("budgets");
    let start = Instant::now();
    loop {
        let n = ch_u64(&format!(
            "SELECT count() FROM {budgets} WHERE budget_id = 'acme-cap' AND limit_nanos = 1000 AND deleted = 0"
        ))
        .await;
        if n >= 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "budget row never reached ClickHouse"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The consumer projects the key too: issued then revoked, with its tenant and team, never its hash.
    let keys = p.table("virtual_keys");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    let start = Instant::now();
    let row = loop {
        let row = pipeline_support::ch(&format!(
            "SELECT tenant, team, revoked, issued_at_ms > 0 FROM {keys} FINAL WHERE key_id = 'svc'"
        ))
        .await
        .unwrap_or_default();
        if row.trim() == "wayne\tbots\t1\t1" || start.elapsed() > Duration::from_secs(20) {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        row.trim(),
        "wayne\tbots\t1\t1",
        "virtual_keys row of the revoked key"
    );
    let everything = pipeline_support::ch(&format!("SELECT * FROM {keys} FORMAT TSV"))
        .await
        .expect("keys");
    assert!(!everything.contains(&hash) && !everything.contains(&key));

    // A replica started now replays the log: the revoked key stays refused, the budget applies.
    let (mut late, l) = p.start_replica().await;
    assert_eq!(chat(c, &l, &key).await, 401);
    assert_eq!(chat(c, &l, acme).await, 429);
    let (_, list) = admin(c, reqwest::Method::GET, format!("{l}/admin/budgets"), None).await;
    assert_eq!(list["data"][0]["budget_id"], "acme-cap");

    for child in [&mut replica, &mut late] {
        Pipeline::terminate(child);
    }
    p.cleanup().await;
}
