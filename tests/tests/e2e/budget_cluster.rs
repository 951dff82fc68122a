//! A cluster budget with two gateway replicas, the metering consumer as budget owner, real Kafka and ClickHouse:
//! many concurrent clients on both replicas, mixing streams and plain requests, some overshooting their
//! `max_tokens` → the spend ClickHouse records stays within limit + the stated bound, and later requests get the
//! budget 429 on both replicas.
//!
//! Needs `scripts/services.sh`; `#[ignore]`d in a plain `cargo test`, run by `scripts/test.sh` with `--ignored`.

use crate::pipeline_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use pipeline_support::{ch_u64, metric, Pipeline, ADMIN_KEY, TENANT_KEYS};
use serde_json::{json, Value};

/// gpt-4o-mini from the shipped table, nano-USD per output token.
const OUTPUT_NANOS_PER_TOKEN: u64 = 600;
const LIMIT: u64 = 3_000_000;
const OVERSHOOT: u64 = 20;

async fn ask(client: &reqwest::Client, base: &str, key: &str, i: u64) -> (u16, bool, String) {
    let max_tokens = 10 + (i * 37) % 90;
    let overshoots = i.is_multiple_of(5);
    let stream = i % 2 == 1;
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
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": format!("cluster probe {i} {directive}")}]}),
        )
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, overshoots, r.text().await.unwrap_or_default())
}

const ALERT_SECRET: &str = "whsec-cluster-test";

/// A webhook receiver recording (signature, body) of every alert.
async fn receiver() -> (Arc<Mutex<Vec<(String, String)>>>, String) {
    let calls: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let state = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let signature = headers["x-tollgate-signature"]
                    .to_str()
                    .unwrap_or_default()
                    .to_string();
                state.lock().expect("lock").push((signature, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (calls, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn two_replicas_never_overspend_a_budget_by_more_than_the_stated_bound() {
    let (alerts, hook) = receiver().await;
    // The consumer reads the secret from this variable (inherited by the child process).
    std::env::set_var("TOLLGATE_TEST_ALERT_SECRET", ALERT_SECRET);
    // The owner starts after this and answers nothing but "not yet" for lease TTL + grace = 6 s.
    let started = std::time::Instant::now();
    let warm_up = Duration::from_millis(6_000);
    let p = Pipeline::start_with(
        "budget_cluster",
        &[
            "--budget-owner",
            "--lease-ttl-ms",
            "2000",
            "--lease-grace-ms",
            "4000",
            "--alert-webhook-url",
            &hook,
            "--alert-webhook-secret-env",
            "TOLLGATE_TEST_ALERT_SECRET",
        ],
    )
    .await;
    let (mut replica, b) = p.start_replica().await;
    let a = p.url("");
    let client = p.client.clone();
    let r = client
        .put(format!("{a}/admin/budgets/acme-cluster"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"subject": "tenant:acme", "period": "monthly", "limit": "0.003"}))
        .send()
        .await
        .expect("put budget");
    assert_eq!(r.status(), 200);
    // The owner grants nothing until lease TTL + grace after its start: meanwhile a hard-budgeted request is
    // refused as "owner unavailable" (503, retry soon), not as a spent budget.
    // (Replica `a`, which applied the budget before answering the PUT; `b` may take up to 2 s.)
    let r = client
        .post(format!("{a}/v1/chat/completions"))
        .bearer_auth(TENANT_KEYS[0].1)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 10,
            "messages": [{"role": "user", "content": "during the owner's warm-up"}]}))
        .send()
        .await
        .expect("request");
    let answered_at = started.elapsed();
    let status = r.status().as_u16();
    let retry_after: Option<u64> = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body: Value = r.json().await.expect("json");
    if answered_at < warm_up {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "budget_unavailable", "{body}");
        assert!(
            retry_after.is_some_and(|s| (1..=6).contains(&s)),
            "{retry_after:?}"
        );
    } else {
        eprintln!(
            "set-up took {answered_at:?}, past the owner's warm-up: its answer is not checked"
        );
    }
    tokio::time::sleep(warm_up.saturating_sub(started.elapsed()) + Duration::from_millis(500))
        .await;

    let key = TENANT_KEYS[0].1;
    let bases = Arc::new([a.clone(), b.clone()]);
    let mut tasks = Vec::new();
    for worker in 0..12u64 {
        let (client, bases) = (client.clone(), bases.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in 0..15u64 {
                let i = worker * 100 + n;
                let base = &bases[usize::try_from(i % 2).unwrap_or(0)];
                out.push(ask(&client, base, key, i).await);
            }
            out
        }));
    }
    let (mut ok, mut refused, mut overshooting_admitted) = (0u64, 0u64, 0u64);
    for t in tasks {
        for (status, overshoots, text) in t.await.expect("task") {
            match status {
                200 => {
                    ok += 1;
                    overshooting_admitted += u64::from(overshoots);
                }
                429 => {
                    refused += 1;
                    let body: Value = serde_json::from_str(&text).expect("json");
                    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                }
                other => panic!("unexpected {other}: {text}"),
            }
        }
    }
    assert!(ok > 0, "nothing was admitted");
    assert!(
        refused > 0,
        "the budget never ran out: the test is too small"
    );
    // Leases expire and come back; then both replicas refuse once what is left cannot cover a request.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for base in [&a, &b] {
        let mut last = 0;
        for i in 0..60 {
            let (status, overshoots, _) = ask(&client, base, key, 10_000 + i).await;
            last = status;
            if status == 429 {
                break;
            }
            ok += 1;
            overshooting_admitted += u64::from(overshoots);
        }
        assert_eq!(last, 429, "{base} never refused");
    }
    // Every answered request's row is in ClickHouse; their spend is within the bound.
    // (+1: the refused warm-up probe.)
    p.wait_rows(ok + refused + 1, Duration::from_secs(30)).await;
    let spent = ch_u64(&format!(
        "SELECT toUInt64(sum(reporting_cost_nanos)) FROM {} WHERE tenant = 'acme'",
        p.table("usage_events")
    ))
    .await;
    let bound = overshooting_admitted * OVERSHOOT * OUTPUT_NANOS_PER_TOKEN;
    assert!(
        spent <= LIMIT + bound,
        "spent {spent} > limit {LIMIT} + bound {bound} (two replicas)"
    );
    assert!(spent > LIMIT / 2, "budget barely used: {spent}");

    // Alerts for the cluster come from the owner: a soft budget on globex, spent through both replicas, alerts
    // exactly once per threshold, signed.
    let r = client
        .put(format!("{b}/admin/budgets/globex-soft"))
        .bearer_auth(ADMIN_KEY)
        .json(
            &json!({"subject": "tenant:globex", "period": "daily", "limit": "0.0002",
            "hard": false, "alert_at": [50, 100]}),
        )
        .send()
        .await
        .expect("put budget");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let globex = TENANT_KEYS[1].1;
    for i in 0..16u64 {
        let base = if i % 2 == 0 { &a } else { &b };
        let (status, _, text) = ask(&client, base, globex, 20_000 + i * 5 + 1).await;
        assert_eq!(status, 200, "a soft budget refused: {text}");
    }
    let globex_spent = ch_u64(&format!(
        "SELECT toUInt64(sum(reporting_cost_nanos)) FROM {} WHERE tenant = 'globex'",
        p.table("usage_events")
    ))
    .await;
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = alerts.lock().expect("lock").clone();
        if calls.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_after = alerts.lock().expect("lock").clone();
    assert_eq!(
        calls_after.len(),
        2,
        "alerts: {calls_after:?} (globex spent {globex_spent})"
    );
    let mut thresholds = Vec::new();
    for (signature, body) in &calls {
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .expect("signature format");
        let mut mac = Hmac::<Sha256>::new_from_slice(ALERT_SECRET.as_bytes()).expect("hmac");
        mac.update(format!("{t}.{body}").as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), v1);
        let alert: Value = serde_json::from_str(body).expect("json");
        assert_eq!(
            (alert["budget_id"].as_str(), alert["subject"].as_str()),
            (Some("globex-soft"), Some("globex"))
        );
        thresholds.push(alert["threshold_percent"].as_u64().expect("threshold"));
    }
    thresholds.sort_unstable();
    assert_eq!(thresholds, [50, 100]);
    Pipeline::terminate(&mut replica);
    p.cleanup().await;
}

/// Milliseconds from `now_ms` to the next UTC midnight.
fn until_midnight(now_ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    DAY - now_ms.rem_euclid(DAY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn a_spent_daily_budget_admits_again_in_the_next_period() {
    let p = Pipeline::start_with(
        "budget_period",
        &[
            "--budget-owner",
            "--lease-ttl-ms",
            "1000",
            "--lease-grace-ms",
            "500",
        ],
    )
    .await;
    // A replica in this process, so the test can move its budget clock across midnight.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let text = p.config_on(port).replace("spool\"", "spool-inproc\"");
    let config =
        tollgate_gateway::config::Config::from_toml(&text, &tollgate_gateway::config::ProcessEnv)
            .expect("config");
    let gateway = tollgate_gateway::Gateway::try_new(&config).expect("gateway");
    let budgets = gateway.state().budgets.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    let base = format!("http://127.0.0.1:{port}");
    let client = p.client.clone();
    let r = client
        .put(format!("{base}/admin/budgets/acme-daily"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"subject": "tenant:acme", "period": "daily", "limit": "0.00015"}))
        .send()
        .await
        .expect("put budget");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let key = TENANT_KEYS[0].1;
    let mut refused = false;
    for i in 0..60u64 {
        let (status, _, text) = ask(&client, &base, key, i * 5 + 2).await;
        if status == 429 {
            let body: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(body["error"]["code"], "budget_exceeded");
            refused = true;
            break;
        }
        assert_eq!(status, 200, "{text}");
    }
    assert!(refused, "the daily budget never ran out");
    // Tomorrow (UTC) the budget starts over: the owner grants a lease for the new window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    budgets.shift_clock(until_midnight(now) + 1_000);
    let (status, _, text) = ask(&client, &base, key, 7).await;
    assert_eq!(status, 200, "not re-admitted in the next period: {text}");
    let _ = stop.send(());
    let _ = server.await;
    p.cleanup().await;
}

/// The owner counts spend from the rows its own consumer stores: once another consumer of the group takes
/// some of the usage topic's partitions (3 here), the owner says so in a gauge, and says 0 while it has all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka and ClickHouse (scripts/services.sh)"]
async fn the_owner_reports_usage_partitions_it_does_not_see() {
    let mut p = Pipeline::start_with("owner_view", &["--budget-owner"]).await;
    // Traffic makes the usage topic exist (the broker creates it with its default 3 partitions).
    let r = p
        .client
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(TENANT_KEYS[0].1)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    p.wait_rows(1, Duration::from_secs(30)).await;
    let gauge = "tollgate_metering_budget_owner_partitions_missing";
    let text = p
        .wait_consumer_metrics(Duration::from_secs(20), |t| {
            metric(t, "tollgate_metering_assigned_partitions") == Some(3.0)
                && metric(t, gauge) == Some(0.0)
        })
        .await;
    assert_eq!(metric(&text, gauge), Some(0.0), "{text}");

    // A second consumer joins the group: the partitions are shared, the owner no longer sees them all.
    let (owner, owner_port) = (p.consumer.take(), p.consumer_port);
    p.start_consumer(&[]);
    let second = p.consumer.take().map(pipeline_support::Spawned);
    p.consumer = owner;
    p.consumer_port = owner_port;
    let text = p
        .wait_consumer_metrics(Duration::from_secs(60), |t| {
            let assigned = metric(t, "tollgate_metering_assigned_partitions").unwrap_or(-1.0);
            metric(t, gauge).is_some_and(|m| m > 0.0 && m + assigned == 3.0)
        })
        .await;
    let missing = metric(&text, gauge).unwrap_or(0.0);
    let assigned = metric(&text, "tollgate_metering_assigned_partitions").unwrap_or(-1.0);
    assert!(missing > 0.0, "{text}");
    assert_eq!(missing + assigned, 3.0, "{text}");
    if let Some(mut c) = second {
        Pipeline::terminate(&mut c);
    }
    p.cleanup().await;
}

/// `budget_owner_active` of the consumer listening on `port` (`None` while it does not answer).
async fn owner_active(client: &reqwest::Client, port: u16) -> Option<f64> {
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric(&text, "tollgate_metering_budget_owner_active")
}

/// Asks until a hard-budgeted request is admitted (503 `budget_unavailable` meanwhile); how long it took.
async fn until_admitted(client: &reqwest::Client, base: &str, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    let mut i = 0;
    loop {
        let (status, _, text) = ask(client, base, TENANT_KEYS[0].1, 50_000 + i).await;
        if status == 200 {
            return start.elapsed();
        }
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("budget_unavailable"), "{text}");
        assert!(
            start.elapsed() < within,
            "not admitted within {within:?}: {text}"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two owner candidates: exactly one is the owner; when it stops, the other takes over and, after its
/// warm-up, grants leases again — hard budgets keep working without anyone restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka and ClickHouse (scripts/services.sh)"]
async fn a_second_owner_candidate_takes_over_when_the_owner_stops() {
    let flags = [
        "--budget-owner",
        "--lease-ttl-ms",
        "2000",
        "--lease-grace-ms",
        "1000",
    ];
    let mut p = Pipeline::start_with("owner_failover", &flags).await;
    let (first, first_port) = (p.consumer.take(), p.consumer_port);
    p.start_consumer(&flags);
    // Killed when dropped (at the end, or on failure).
    let mut second = p.consumer.take().map(pipeline_support::Spawned);
    let second_port = p.consumer_port;
    p.consumer = first;
    p.consumer_port = first_port;
    let base = p.url("");
    let client = p.client.clone();
    let r = client
        .put(format!("{base}/admin/budgets/acme-ha"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"subject": "tenant:acme", "period": "monthly", "limit": "1"}))
        .send()
        .await
        .expect("put budget");
    assert_eq!(r.status(), 200);
    until_admitted(&client, &base, Duration::from_secs(30)).await;

    // Exactly one candidate is the owner.
    let (a, b) = (
        owner_active(&client, first_port).await,
        owner_active(&client, second_port).await,
    );
    assert!(
        matches!((a, b), (Some(1.0), Some(0.0)) | (Some(0.0), Some(1.0))),
        "owner_active: first {a:?}, second {b:?}"
    );
    // Stop the owner; the other candidate takes over.
    let standby_port = if a == Some(1.0) {
        if let Some(mut c) = p.consumer.take() {
            Pipeline::terminate(&mut c);
        }
        p.consumer_port = second_port;
        second_port
    } else {
        if let Some(mut s) = second.take() {
            Pipeline::terminate(&mut s);
        }
        first_port
    };
    let start = std::time::Instant::now();
    while owner_active(&client, standby_port).await != Some(1.0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the standby never became the owner"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The replica may still spend what the old owner leased it, until those leases expire (TTL 2 s). After
    // that, an admitted request needs a lease only the new owner can have granted (after its warm-up, lease
    // TTL + grace = 3 s from the takeover; 503 budget_unavailable meanwhile).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    until_admitted(&client, &base, Duration::from_secs(20)).await;
    p.cleanup().await;
}
