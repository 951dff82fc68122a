//! The usage pipeline end to end with real Kafka and ClickHouse: gateway → Kafka → metering-consumer →
//! ClickHouse, counted after every fault of design §3.
//!
//! These need `scripts/services.sh` and stop/start the services themselves, so they are `#[ignore]`d in a
//! plain `cargo test` and run by `scripts/test.sh` with `--ignored --test-threads=1`.

use crate::pipeline_support;

use std::collections::HashSet;
use std::time::Duration;

use pipeline_support::{ch, ch_u64, metric, metric_sum, service, Pipeline};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Sends `n` requests from `concurrency` tasks, mixing streams and plain calls across tenants. Returns the
/// request ids of the ones answered 200 with a complete body.
async fn traffic(p: &Pipeline, n: usize, concurrency: usize, offset: usize) -> Vec<String> {
    traffic_on(
        p.client.clone(),
        p.url("/v1/chat/completions"),
        n,
        concurrency,
        offset,
    )
    .await
}

async fn traffic_on(
    client: reqwest::Client,
    url: String,
    n: usize,
    concurrency: usize,
    offset: usize,
) -> Vec<String> {
    let mut handles = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        let base = offset;
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut i = worker;
            while i < n {
                let (_, key) = pipeline_support::TENANT_KEYS[(base + i) % 3];
                let stream = (base + i).is_multiple_of(2);
                let body = serde_json::json!({"model": "gpt-4o-mini", "stream": stream,
                    "messages": [{"role": "user", "content": "hello pipeline [mock:chunks=3]"}]});
                if let Ok(r) = client.post(&url).bearer_auth(key).json(&body).send().await {
                    let ok = r.status() == 200;
                    let id = r
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    if let Ok(text) = r.text().await {
                        if ok && (!stream || text.ends_with("data: [DONE]\n\n")) {
                            ids.push(id);
                        }
                    }
                }
                i += concurrency;
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.expect("traffic task"));
    }
    ids
}

async fn stored_ids(p: &Pipeline) -> Vec<String> {
    ch(&format!(
        "SELECT toString(event_id) FROM {} FORMAT TSV",
        p.table("usage_events")
    ))
    .await
    .expect("ids")
    .lines()
    .map(str::to_string)
    .collect()
}

async fn assert_exactly(p: &Pipeline, expected: &[String]) {
    let got = p
        .wait_rows(expected.len() as u64, Duration::from_secs(90))
        .await;
    let ids = stored_ids(p).await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(got, expected.len() as u64, "row count");
    assert_eq!(unique.len(), ids.len(), "a row is stored twice");
    let expected: HashSet<&String> = expected.iter().collect();
    assert_eq!(
        unique, expected,
        "stored ids differ from the requests served"
    );
    p.assert_aggregates_match_raw().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn a_every_request_becomes_exactly_one_row_with_its_tokens() {
    let p = Pipeline::start("a").await;
    let ids = traffic(&p, 300, 8, 0).await;
    assert_eq!(ids.len(), 300, "every request succeeds");
    assert_exactly(&p, &ids).await;
    // Tokens as the mock reports them: "hello pipeline [mock:chunks=3]" = 3 words + 3; 3 chunks.
    let tokens = ch(&format!(
        "SELECT min(prompt_tokens), max(prompt_tokens), min(completion_tokens), max(completion_tokens), \
         countIf(usage_source = 'provider'), uniqExact(tenant) FROM {} FORMAT TSV",
        p.table("usage_events")
    ))
    .await
    .unwrap();
    assert_eq!(tokens.trim(), "6\t6\t3\t3\t300\t3");
    let streamed = ch_u64(&format!(
        "SELECT countIf(stream = 1) FROM {}",
        p.table("usage_events")
    ))
    .await;
    assert_eq!(streamed, 150);
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn b_kafka_down_spools_and_replays_every_event_once() {
    let p = Pipeline::start("b").await;
    let mut ids = traffic(&p, 60, 4, 0).await;
    service("stop", "kafka");
    let during = traffic(&p, 120, 4, 60).await;
    assert_eq!(
        during.len(),
        120,
        "requests keep succeeding while Kafka is down"
    );
    // Past the producer's message timeout (2 s) the events fail over to the spool. On a loaded machine
    // librdkafka's timeout scan can run late, so poll (bounded) rather than sleep a fixed time.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let ready = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = p.gateway_readyz().await;
        if ready["sink"]["spooled"].as_u64().unwrap_or(0) > 0 || std::time::Instant::now() > until {
            break ready;
        }
    };
    assert!(
        ready["sink"]["spooled"].as_u64().unwrap_or(0) > 0,
        "nothing spooled within 20 s of Kafka stopping: {ready}"
    );
    service("start", "kafka");
    ids.extend(during);
    assert_exactly(&p, &ids).await;
    let ready = p.gateway_readyz().await;
    assert_eq!(ready["sink"]["dropped"], 0, "{ready}");
    assert!(
        ready["sink"]["replayed"].as_u64().unwrap_or(0) > 0,
        "{ready}"
    );
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn c_clickhouse_down_holds_offsets_until_it_is_back() {
    let mut p = Pipeline::start("c").await;
    let mut ids = traffic(&p, 50, 4, 0).await;
    p.wait_rows(50, Duration::from_secs(60)).await;
    service("stop", "clickhouse");
    ids.extend(traffic(&p, 100, 4, 50).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A consumer that committed without storing would lose these: replace it while ClickHouse is away.
    p.kill_consumer();
    p.start_consumer(&[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    service("start", "clickhouse");
    assert_exactly(&p, &ids).await;
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn d_consumer_killed_mid_batch_stores_each_row_once() {
    let mut p = Pipeline::start("d").await;
    p.kill_consumer();
    p.start_consumer(&["--batch-rows", "25", "--batch-age-ms", "50"]);
    let load = tokio::spawn(traffic_on(
        p.client.clone(),
        p.url("/v1/chat/completions"),
        400,
        4,
        0,
    ));
    for round in 0..4u64 {
        // Kill while it is inserting and committing small batches.
        tokio::time::sleep(Duration::from_millis(250 + round * 90)).await;
        p.kill_consumer();
        p.start_consumer(&["--batch-rows", "25", "--batch-age-ms", "50"]);
    }
    let ids = load.await.expect("load");
    assert_eq!(ids.len(), 400);
    assert_exactly(&p, &ids).await;
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn e_gateway_sigterm_under_load_keeps_every_answered_request() {
    let mut p = Pipeline::start("e").await;
    let load = {
        let client = p.client.clone();
        let url = p.url("/v1/chat/completions");
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for w in 0..6 {
                let client = client.clone();
                let url = url.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..200 {
                        let (_, key) = pipeline_support::TENANT_KEYS[(w + i) % 3];
                        let stream = i.is_multiple_of(2);
                        let body = serde_json::json!({"model": "gpt-4o-mini", "stream": stream,
                            "messages": [{"role": "user", "content": "slow [mock:chunks=4&chunk_delay_ms=40]"}]});
                        let Ok(r) = client.post(&url).bearer_auth(key).json(&body).send().await else { break };
                        let ok = r.status() == 200;
                        let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                        match r.text().await {
                            Ok(text) if ok && (!stream || text.ends_with("data: [DONE]\n\n")) => ids.push(id),
                            _ => {}
                        }
                    }
                    ids
                }));
            }
            let mut ids = Vec::new();
            for t in tasks {
                ids.extend(t.await.unwrap_or_default());
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut gateway = p.gateway.take().expect("gateway");
    let code = Pipeline::terminate(&mut gateway);
    assert_eq!(code, Some(0), "gateway exits cleanly on SIGTERM");
    let ids = load.await.expect("load");
    assert!(
        ids.len() > 20,
        "some requests were answered before the stop ({})",
        ids.len()
    );
    let got = p.wait_rows(ids.len() as u64, Duration::from_secs(60)).await;
    let stored: HashSet<String> = stored_ids(&p).await.into_iter().collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no row (rows: {got})",
        missing.len()
    );
    assert_eq!(stored.len() as u64, got, "no duplicates");
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn f_replayed_duplicates_are_dropped_and_garbage_is_dead_lettered() {
    let p = Pipeline::start("f").await;
    let ids = traffic(&p, 30, 3, 0).await;
    p.wait_rows(30, Duration::from_secs(60)).await;
    // Re-publish every event (as a spool replay after an uncertain delivery would), byte for byte as the
    // gateway produced it, then a record that is not an event at all.
    let copies = read_topic(&p.topic, 30).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pipeline_support::brokers())
        .create()
        .expect("producer");
    for payload in &copies {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&p.topic)
                    .key("acme")
                    .payload(payload),
                Duration::from_secs(5),
            )
            .await
            .expect("re-publish");
    }
    producer
        .send(
            FutureRecord::<str, str>::to(&p.topic)
                .key("acme")
                .payload("{not json"),
            Duration::from_secs(5),
        )
        .await
        .expect("garbage");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_exactly(&p, &ids).await;
    let dead = read_topic(&format!("{}.dlq", p.topic), 1).await;
    assert_eq!(dead, vec![b"{not json".to_vec()]);
    // The consumer's own account of it: 30 duplicates dropped (by whichever stage caught them), one dead letter.
    let text = p
        .wait_consumer_metrics(Duration::from_secs(10), |t| {
            metric_sum(t, "tollgate_metering_duplicates_dropped_total").0 >= 30.0
        })
        .await;
    assert_eq!(
        metric_sum(&text, "tollgate_metering_duplicates_dropped_total").0,
        30.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "tollgate_metering_rows_inserted_total"),
        Some(30.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"tollgate_metering_dead_lettered_total{reason="invalid_json"}"#
        ),
        Some(1.0),
        "{text}"
    );
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka + ClickHouse (scripts/services.sh); run with --ignored --test-threads=1"]
async fn g_consumer_metrics_and_readiness_follow_the_pipeline() {
    // A consumer that holds its batch (no age or size reached): everything it reads stays uncommitted, so
    // its lag gauge must count every event sent.
    let mut p = Pipeline::start_with("g", &["--batch-age-ms", "600000"]).await;
    let held = traffic(&p, 40, 4, 0).await;
    assert_eq!(held.len(), 40);
    let text = p
        .wait_consumer_metrics(Duration::from_secs(30), |t| {
            metric_sum(t, "tollgate_metering_consumer_lag").0 == 40.0
                && metric(t, "tollgate_metering_records_consumed_total") == Some(40.0)
        })
        .await;
    let (lag, partitions) = metric_sum(&text, "tollgate_metering_consumer_lag");
    assert_eq!(lag, 40.0, "uncommitted events are lag: {text}");
    assert!(partitions > 0, "a lag series per assigned partition");
    assert_eq!(
        metric(&text, "tollgate_metering_rows_inserted_total"),
        Some(0.0)
    );
    let (status, ready) = p.consumer_readyz().await.expect("readyz answers");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["clickhouse_up"], true);
    assert!(
        ready["assigned_partitions"].as_i64().unwrap_or(0) > 0,
        "{ready}"
    );
    assert_eq!(ready["consumer_lag"], 40, "{ready}");
    // SIGTERM stores and commits the held batch.
    let mut held_consumer = p.consumer.take().expect("consumer");
    assert_eq!(Pipeline::terminate(&mut held_consumer), Some(0));
    assert_eq!(p.wait_rows(40, Duration::from_secs(30)).await, 40);

    // A fresh consumer: its counters start at zero and follow the next events exactly.
    p.start_consumer(&[]);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let readyz = p.consumer_readyz().await;
        if readyz.as_ref().is_some_and(|(s, _)| *s == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "consumer never became ready: {readyz:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let more = traffic(&p, 30, 3, 40).await;
    assert_eq!(more.len(), 30);
    let text = p
        .wait_consumer_metrics(Duration::from_secs(30), |t| {
            metric(t, "tollgate_metering_rows_inserted_total") == Some(30.0)
                && metric_sum(t, "tollgate_metering_consumer_lag").0 == 0.0
        })
        .await;
    assert_eq!(
        metric(&text, "tollgate_metering_rows_inserted_total"),
        Some(30.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "tollgate_metering_records_consumed_total"),
        Some(30.0)
    );
    assert_eq!(
        metric_sum(&text, "tollgate_metering_consumer_lag"),
        (0.0, partitions),
        "caught up: {text}"
    );
    assert!(metric(&text, "tollgate_metering_insert_duration_seconds_count").unwrap_or(0.0) > 0.0);
    assert_eq!(
        metric(&text, "tollgate_metering_pipeline_lag_seconds_count"),
        Some(30.0)
    );
    assert!(metric(&text, "tollgate_metering_batches_total").unwrap_or(0.0) > 0.0);
    assert!(metric(&text, r#"tollgate_metering_commits_total{result="ok"}"#).unwrap_or(0.0) > 0.0);
    assert_eq!(
        metric(&text, "tollgate_metering_insert_failures_total"),
        Some(0.0)
    );
    assert_eq!(metric(&text, "tollgate_metering_clickhouse_up"), Some(1.0));
    let mut all = held;
    all.extend(more);
    assert_exactly(&p, &all).await;
    // The healthcheck subcommand asks the same /readyz.
    let check = std::process::Command::new(pipeline_support::binary("tollgate-metering"))
        .args([
            "healthcheck",
            "--http-addr",
            &format!("127.0.0.1:{}", p.consumer_port),
        ])
        .output()
        .expect("healthcheck");
    assert!(check.status.success(), "{check:?}");
    p.kill_consumer();
    let check = std::process::Command::new(pipeline_support::binary("tollgate-metering"))
        .args([
            "healthcheck",
            "--http-addr",
            &format!("127.0.0.1:{}", p.consumer_port),
        ])
        .output()
        .expect("healthcheck");
    assert_eq!(
        check.status.code(),
        Some(1),
        "a dead consumer fails the check"
    );
    p.cleanup().await;
}

async fn read_topic(topic: &str, n: usize) -> Vec<Vec<u8>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", pipeline_support::brokers())
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("timed out reading")
            .expect("recv");
        out.push(m.payload().unwrap_or_default().to_vec());
    }
    out
}
