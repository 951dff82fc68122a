//! `tollgate-pipeline-bench`: the helpers of `bench/pipeline.sh` (run by hand, never in CI).
//!
//! - `producer` — emits synthetic [`UsageEvent`]s through the gateway's real Kafka sink
//!   (`tollgate_gateway::events::kafka`) into a fresh topic and reports events/s, from the first `emit` to
//!   the moment the sink's `flush` says everything is delivered (or spooled).
//! - `wait-rows` — polls `SELECT count()` on a ClickHouse table every `--interval-ms` until it holds
//!   `--expect` rows; reports when the first and the last rows became visible.
//! - `create-topics`, `topic-count`, `cleanup` — Kafka admin chores (fresh topics; messages in a topic; delete
//!   the topics and consumer groups a run created).
//!
//! Every command prints one machine-readable `key=value` line on stdout; diagnostics go to stderr.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use tollgate_gateway::config::KafkaConfig;
use tollgate_schemas::usage::USAGE_SCHEMA_VERSION;
use tollgate_schemas::{Endpoint, Outcome, UsageEvent, UsageSource, UsageVector};

#[derive(Parser, Debug)]
#[command(
    name = "tollgate-pipeline-bench",
    about = "Usage-pipeline benchmark helpers (bench/pipeline.sh)"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Emit synthetic usage events through the gateway's Kafka sink; report events/s.
    Producer {
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 300_000)]
        events: u64,
        /// The topic is created with this many partitions before the clock starts (0: let the broker
        /// auto-create it on the first record, inside the measurement).
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// The sink's disk spool (used only if Kafka refuses or times out).
        #[arg(long)]
        spool_dir: std::path::PathBuf,
        /// Distinct tenants (the record key: spreads events over partitions).
        #[arg(long, default_value_t = 16)]
        tenants: usize,
        /// At most this many events between `emit` and delivery; keeps the sink's 65,536-slot queue from
        /// overflowing (a full queue drops events).
        #[arg(long, default_value_t = 40_000)]
        window: u64,
        /// The sink's per-event delivery timeout (after it an event goes to the spool).
        #[arg(long, default_value_t = 5_000)]
        message_timeout_ms: u64,
    },
    /// Poll `SELECT count() FROM <table>` until it reaches `--expect`.
    WaitRows {
        #[arg(long, default_value = "http://127.0.0.1:18123")]
        clickhouse_url: String,
        /// `database.table`.
        #[arg(long)]
        table: String,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Unix epoch ms the measured phase started (e.g. just before the consumer was started); default: now.
        #[arg(long)]
        started_at_ms: Option<u64>,
        /// Give up as soon as this process (the consumer) has exited.
        #[arg(long)]
        watch_pid: Option<u32>,
    },
    /// Create topics (fails if one already exists).
    CreateTopics {
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Count the messages in a topic (sum over partitions of high - low watermark).
    TopicCount {
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        #[arg(long)]
        topic: String,
    },
    /// Delete topics and consumer groups (missing ones are reported, not an error).
    Cleanup {
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        #[arg(long = "topic")]
        topics: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate-pipeline-bench: cannot start tokio: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args.command)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("tollgate-pipeline-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Producer {
            brokers,
            topic,
            events,
            partitions,
            spool_dir,
            tenants,
            window,
            message_timeout_ms,
        } => {
            if partitions > 0 {
                create_topics(&brokers, partitions, std::slice::from_ref(&topic)).await?;
            }
            producer(
                &KafkaConfig {
                    brokers: brokers.clone(),
                    topic: topic.clone(),
                    control_topic: tollgate_schemas::topics::CONTROL.into(),
                    budget_requests_topic: tollgate_schemas::topics::BUDGET_REQUESTS.into(),
                    budget_decisions_topic: tollgate_schemas::topics::BUDGET_DECISIONS.into(),
                    spool_dir,
                    spool_max_bytes: 1 << 30,
                    message_timeout: Duration::from_millis(message_timeout_ms),
                },
                events,
                tenants.max(1),
                window.max(1),
            )
            .await
        }
        Command::WaitRows {
            clickhouse_url,
            table,
            expect,
            interval_ms,
            timeout_secs,
            started_at_ms,
            watch_pid,
        } => {
            wait_rows(
                &clickhouse_url,
                &table,
                expect,
                Duration::from_millis(interval_ms.max(1)),
                Duration::from_secs(timeout_secs),
                started_at_ms.unwrap_or_else(now_ms),
                watch_pid,
            )
            .await
        }
        Command::CreateTopics {
            brokers,
            partitions,
            topics,
        } => {
            create_topics(&brokers, partitions, &topics).await?;
            println!("created={}", topics.join(","));
            Ok(true)
        }
        Command::TopicCount { brokers, topic } => {
            let (messages, partitions) = topic_count(&brokers, &topic)?;
            println!("topic={topic} partitions={partitions} messages={messages}");
            Ok(true)
        }
        Command::Cleanup {
            brokers,
            topics,
            groups,
        } => cleanup(&brokers, &topics, &groups).await,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// False once `pid` has exited (gone, or a zombie its parent has not reaped yet).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// CPU seconds (user + system, all threads) this process has used; assumes the usual 100 ticks/s.
fn own_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(") ")?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After "(comm) ": state is field 0, utime field 11, stime field 12.
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn admin(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create the Kafka admin client")
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))
}

async fn create_topics(brokers: &str, partitions: i32, topics: &[String]) -> anyhow::Result<()> {
    let admin = admin(brokers)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &admin_options().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .context("CreateTopics failed")?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("cannot create topic {topic}: {code}");
        }
    }
    // Wait until every partition has a leader, so the first produce does not pay for the election.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a metadata client")?;
    let until = Instant::now() + Duration::from_secs(30);
    for topic in topics {
        loop {
            let ready = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics().first().map(|t| {
                        t.error().is_none()
                            && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none())
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > until {
                bail!("topic {topic} has no leader for every partition after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Messages in `topic` and its partition count.
fn topic_count(brokers: &str, topic: &str) -> anyhow::Result<(i64, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a metadata client")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata request failed")?;
    let Some(t) = metadata.topics().first() else {
        bail!("no metadata for topic {topic}");
    };
    if let Some(e) = t.error() {
        bail!("topic {topic}: {e:?}");
    }
    let mut total = 0_i64;
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
        total += high - low;
    }
    Ok((total, t.partitions().len()))
}

async fn cleanup(brokers: &str, topics: &[String], groups: &[String]) -> anyhow::Result<bool> {
    let admin = admin(brokers)?;
    let mut deleted = Vec::new();
    let mut absent = Vec::new();
    let mut failed = Vec::new();
    if !groups.is_empty() {
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        match admin.delete_groups(&names, &admin_options()).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(g) => deleted.push(format!("group:{g}")),
                        Err((g, RDKafkaErrorCode::GroupIdNotFound)) => {
                            absent.push(format!("group:{g}"))
                        }
                        Err((g, code)) => failed.push(format!("group:{g}({code})")),
                    }
                }
            }
            Err(e) => failed.push(format!("groups({e})")),
        }
    }
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let opts = admin_options().operation_timeout(Some(Duration::from_secs(30)));
        match admin.delete_topics(&names, &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(t) => deleted.push(format!("topic:{t}")),
                        Err((t, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                            absent.push(format!("topic:{t}"))
                        }
                        Err((t, code)) => failed.push(format!("topic:{t}({code})")),
                    }
                }
            }
            Err(e) => failed.push(format!("topics({e})")),
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    println!(
        "deleted={} absent={} not_deleted={}",
        list(&deleted),
        list(&absent),
        list(&failed)
    );
    Ok(failed.is_empty())
}

/// The shipped price of the synthetic events' model, looked up once.
fn seed_price() -> Option<&'static tollgate_schemas::price::Price> {
    static PRICE: std::sync::OnceLock<Option<tollgate_schemas::price::Price>> =
        std::sync::OnceLock::new();
    PRICE
        .get_or_init(|| {
            tollgate_schemas::price::PriceTable::seed()
                .ok()
                .and_then(|t| t.lookup("openai", "gpt-4o-mini-2024-07-18").cloned())
        })
        .as_ref()
}

/// A realistic event: the shape the gateway emits for a successful non-streaming chat completion.
fn synthetic_event(i: u64, tenants: &[(String, String, String)], now_ms: i64) -> UsageEvent {
    let (tenant, team, key) = &tenants[usize::try_from(i).unwrap_or(0) % tenants.len()];
    let prompt = 9 + i % 700;
    let completion = 10 + i % 300;
    let usage = UsageVector {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_read_tokens: prompt / 4,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
    };
    let nanos = seed_price().map_or(0, |p| p.cost_nanos(&usage));
    UsageEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        event_id: uuid::Uuid::now_v7(),
        started_at_ms: now_ms - 120,
        finished_at_ms: now_ms,
        tenant: tenant.clone(),
        team: team.clone(),
        key_id: key.clone(),
        end_user: if i.is_multiple_of(4) {
            Some(format!("user-{}", i % 997))
        } else {
            None
        },
        endpoint: Endpoint::ChatCompletions,
        model: "gpt-4o-mini".into(),
        provider: "openai-eu".into(),
        provider_kind: "openai".into(),
        deployment: "openai-eu/gpt-4o-mini".into(),
        upstream_model: "gpt-4o-mini-2024-07-18".into(),
        stream: i.is_multiple_of(2),
        outcome: Outcome::Success,
        http_status: 200,
        error_code: None,
        attempts: 1,
        latency_ms: 120,
        ttft_ms: Some(45),
        usage,
        usage_source: UsageSource::Provider,
        cost: tollgate_schemas::Cost {
            nanos,
            currency: "USD".into(),
            reporting_nanos: nanos,
            reporting_currency: "USD".into(),
            price_version: "2026-11-01".into(),
            price_missing: false,
        },
        tags: [("feature".to_string(), format!("f{}", i % 5))].into(),
        budget_leases: Vec::new(),
    }
}

async fn producer(
    config: &KafkaConfig,
    events: u64,
    tenants: usize,
    window: u64,
) -> anyhow::Result<bool> {
    let tenants: Vec<(String, String, String)> = (0..tenants)
        .map(|t| {
            (
                format!("tenant-{t:02}"),
                format!("team-{}", t % 4),
                format!("key-{t:02}"),
            )
        })
        .collect();
    let (sink, worker) = tollgate_gateway::events::kafka::start(config)
        .map_err(|e| anyhow::anyhow!("cannot start the Kafka sink: {e}"))?;
    // Build the events first: the clock measures the sink (encode, produce, deliver), not the generator.
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let batch: Vec<UsageEvent> = (0..events)
        .map(|i| synthetic_event(i, &tenants, now))
        .collect();

    let cpu_before = own_cpu_secs();
    let started = Instant::now();
    let mut waits = 0_u64;
    for (i, event) in batch.into_iter().enumerate() {
        if i % 1024 == 0 {
            // Bound what is between emit and delivery (the queue plus librdkafka's buffers).
            loop {
                let s = sink.stats();
                let settled = s.written + s.dropped + s.spooled.saturating_sub(s.replayed);
                if s.emitted.saturating_sub(settled) < window {
                    break;
                }
                waits += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        sink.emit(event);
    }
    let emitted_after = started.elapsed();
    sink.flush().await;
    let elapsed = started.elapsed();
    let cpu_s = own_cpu_secs() - cpu_before;
    let stats = sink.stats();
    drop(sink);
    tokio::task::spawn_blocking(move || worker.close())
        .await
        .context("closing the sink")?;
    let (in_topic, partitions) = match topic_count(&config.brokers, &config.topic) {
        Ok((n, p)) => (n.to_string(), p.to_string()),
        Err(e) => {
            eprintln!("tollgate-pipeline-bench: cannot count the topic: {e:#}");
            ("?".into(), "?".into())
        }
    };
    let secs = elapsed.as_secs_f64();
    println!(
        "events={events} elapsed_s={secs:.3} emit_s={:.3} events_per_s={:.0} emitted={} written={} dropped={} spooled={} replayed={} spool_bytes={} backpressure_waits={waits} cpu_s={cpu_s:.2} topic_partitions={partitions} topic_messages={in_topic}",
        emitted_after.as_secs_f64(),
        if secs > 0.0 { events as f64 / secs } else { 0.0 },
        stats.emitted,
        stats.written,
        stats.dropped,
        stats.spooled,
        stats.replayed,
        stats.spool_bytes,
    );
    Ok(stats.dropped == 0 && stats.emitted == events)
}

/// `SELECT count()`; `None` while the table does not exist yet (or ClickHouse refuses).
async fn count_rows(client: &reqwest::Client, url: &str, table: &str) -> Option<u64> {
    let response = client
        .post(url)
        .body(format!("SELECT count() FROM {table}"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()?.trim().parse().ok()
}

async fn wait_rows(
    url: &str,
    table: &str,
    expect: u64,
    interval: Duration,
    timeout: Duration,
    started_at_ms: u64,
    watch_pid: Option<u32>,
) -> anyhow::Result<bool> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let deadline = Instant::now() + timeout;
    let mut first: Option<(u64, u64)> = None; // (epoch ms, rows) when count() first was > 0
    let mut last = 0_u64;
    let mut polls = 0_u64;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        polls += 1;
        let at = now_ms();
        if let Some(n) = count_rows(&client, url, table).await {
            last = n;
            if n > 0 && first.is_none() {
                first = Some((at, n));
            }
            if n >= expect {
                let (first_at, first_rows) = first.unwrap_or((at, n));
                let span_ms = at.saturating_sub(first_at);
                let wall_ms = at.saturating_sub(started_at_ms);
                // Rows that became visible after the first poll that saw any, over the time they took:
                // the first batch's rows were inserted before that poll, so they are not counted.
                let rows_per_s = if span_ms > 0 {
                    (n - first_rows) as f64 * 1000.0 / span_ms as f64
                } else {
                    0.0
                };
                let wall_rows_per_s = if wall_ms > 0 {
                    n as f64 * 1000.0 / wall_ms as f64
                } else {
                    0.0
                };
                println!(
                    "rows={n} expect={expect} first_visible_after_ms={} first_visible_rows={first_rows} all_visible_after_ms={wall_ms} first_to_all_ms={span_ms} rows_per_s={rows_per_s:.0} wall_rows_per_s={wall_rows_per_s:.0} polls={polls}",
                    first_at.saturating_sub(started_at_ms),
                );
                return Ok(n == expect);
            }
        }
        let gone = watch_pid.is_some_and(|pid| !alive(pid));
        if gone || Instant::now() > deadline {
            println!(
                "rows={last} expect={expect} gave_up={} after_s={} first_visible_after_ms={} polls={polls}",
                if gone { "watched_process_exited" } else { "timeout" },
                now_ms().saturating_sub(started_at_ms) / 1000,
                first.map_or("-".into(), |(at, _)| at
                    .saturating_sub(started_at_ms)
                    .to_string()),
            );
            return Ok(false);
        }
    }
}
