//! The consume → batch → dedupe → insert → commit loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tollgate_schemas::UsageEvent;
use uuid::Uuid;

use crate::error::MeteringError;
use crate::metrics::{now_ms, DeadLetterReason, DedupeStage, Metrics};
use crate::migrate;
use crate::monitor::{MeteringConsumer, MeteringContext};
use crate::row::UsageRow;
use crate::settings::Settings;
use crate::warehouse::{Backoff, Warehouse};

/// Ids remembered after insert, so a replay seen soon after is dropped without asking ClickHouse.
const RECENT_IDS: usize = 1_000_000;

/// Runs until `shutdown` resolves; then inserts and commits what it holds, and returns. The HTTP listener
/// (`/metrics`, `/healthz`, `/readyz`) is up from the start, so a consumer waiting for ClickHouse is alive
/// but not ready.
///
/// # Errors
/// When the HTTP address cannot be bound, Kafka clients cannot be created or a migration fails for a reason
/// other than ClickHouse being away.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MeteringError> {
    // A token rather than the future itself, so code deep in a step (a dead-letter retry) can see it too.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
    }
    let metrics = Arc::new(Metrics::new());
    crate::http::start(settings.http_addr, metrics.clone(), stop.clone()).await?;
    let warehouse = Warehouse::new(
        &settings.clickhouse_url,
        &settings.database,
        &settings.clickhouse_user,
        &settings.clickhouse_password,
    );
    let mut backoff = Backoff::new();
    loop {
        match migrate::apply(warehouse.client(), &settings.database).await {
            Ok(applied) => {
                metrics.clickhouse_answered();
                tracing::info!(database = %settings.database, ?applied, "clickhouse schema is current");
                break;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "clickhouse not reachable; waiting to migrate");
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff.delay()) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    {
        let (brokers, topic, client, stop) = (
            settings.brokers.clone(),
            settings.control_topic.clone(),
            warehouse.client().clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::control_projection::run(&brokers, &topic, client, stop).await {
                tracing::error!(error = %e, "the control projection (budgets, virtual keys) stopped");
            }
        });
    }
    let owner = if settings.budget_owner {
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        let owner_settings = crate::budget_service::OwnerSettings {
            brokers: settings.brokers.clone(),
            control_topic: settings.control_topic.clone(),
            requests_topic: settings.budget_requests_topic.clone(),
            decisions_topic: settings.budget_decisions_topic.clone(),
            group: settings.budget_owner_group.clone(),
            database: settings.database.clone(),
            lease_ttl: Duration::from_millis(settings.lease_ttl_ms),
            grace: Duration::from_millis(settings.lease_grace_ms),
            alerts: settings.alert_webhook()?,
            timezone: settings.budget_timezone.parse().map_err(|_| {
                MeteringError::Settings(format!(
                    "--budget-timezone {:?} is not an IANA time zone",
                    settings.budget_timezone
                ))
            })?,
        };
        let (client, stop, metrics) = (warehouse.client().clone(), stop.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(e) =
                crate::budget_service::run(owner_settings, client, metrics, rx, stop).await
            {
                tracing::error!(error = %e, "the budget owner stopped");
            }
        });
        Some(tx)
    } else {
        None
    };
    let consumer: Arc<MeteringConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            // A long ClickHouse outage blocks polling; keep the group membership meanwhile.
            .set("max.poll.interval.ms", "3600000")
            .create_with_context(MeteringContext {
                metrics: metrics.clone(),
            })?,
    );
    consumer.subscribe(&[&settings.topic])?;
    let dead_letters: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    tracing::info!(topic = %settings.topic, group = %settings.group, "consuming usage events");
    tokio::spawn(crate::monitor::run(
        consumer.clone(),
        warehouse.clone(),
        metrics.clone(),
        settings.lag_interval(),
        settings.budget_owner.then(|| settings.topic.clone()),
        stop.clone(),
    ));

    let mut state = Loop {
        settings: &settings,
        warehouse,
        consumer: &consumer,
        dead_letters,
        metrics,
        batch: Batch::default(),
        recent: RecentIds::default(),
        stop: stop.clone(),
        owner,
    };
    loop {
        let deadline = state.batch.first_at.map(|t| t + state.settings.batch_age());
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = sleep_until(deadline) => {
                if !state.flush(&stop).await {
                    return Ok(());
                }
            }
            received = consumer.recv() => match received {
                Ok(message) => {
                    state.metrics.consumed();
                    state.take(&message).await;
                    if state.batch.full(state.settings) && !state.flush(&stop).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    // Shutdown: one last attempt to store what is held; if ClickHouse is away, it stays uncommitted and is
    // redelivered to the next consumer.
    let never = CancellationToken::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), state.flush(&never)).await;
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Default)]
struct Batch {
    rows: Vec<UsageRow>,
    bytes: usize,
    first_at: Option<Instant>,
    /// Highest offset taken per partition (rows and dead letters alike).
    offsets: HashMap<i32, i64>,
}

impl Batch {
    fn full(&self, s: &Settings) -> bool {
        self.rows.len() >= s.batch_rows || self.bytes >= s.batch_bytes
    }

    fn note(&mut self, partition: i32, offset: i64, bytes: usize) {
        self.first_at.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        let o = self.offsets.entry(partition).or_insert(offset);
        *o = (*o).max(offset);
    }
}

#[derive(Default)]
struct RecentIds {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl RecentIds {
    fn contains(&self, id: &Uuid) -> bool {
        self.set.contains(id)
    }

    fn remember(&mut self, id: Uuid) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > RECENT_IDS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

struct Loop<'a> {
    settings: &'a Settings,
    warehouse: Warehouse,
    consumer: &'a MeteringConsumer,
    dead_letters: FutureProducer,
    metrics: Arc<Metrics>,
    batch: Batch,
    recent: RecentIds,
    stop: CancellationToken,
    /// The budget owner's feed of stored spend (with `--budget-owner`).
    owner: Option<tokio::sync::mpsc::Sender<crate::budget_service::Spent>>,
}

impl Loop<'_> {
    /// Adds one record to the batch, or dead-letters it with the reason.
    async fn take(&mut self, message: &BorrowedMessage<'_>) {
        let payload = message.payload().unwrap_or_default();
        match serde_json::from_slice::<UsageEvent>(payload) {
            Ok(event) => {
                let row = UsageRow::new(event, message.partition(), message.offset(), now_ms());
                self.batch.rows.push(row);
            }
            Err(e) => {
                let reason = format!("undecodable usage event: {e}");
                if !self.dead_letter(message, &reason).await {
                    // Shutting down before Kafka took it: not noted, so not committed, so redelivered.
                    return;
                }
                self.metrics.dead_lettered(DeadLetterReason::of(&e));
            }
        }
        self.batch
            .note(message.partition(), message.offset(), payload.len());
    }

    /// Writes the record to the dead-letter topic; retried until Kafka takes it, so nothing is lost and the
    /// partition moves on.
    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) -> bool {
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "dead-lettering a record"
        );
        let source = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let mut backoff = Backoff::new();
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "tollgate-reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "tollgate-source",
                    value: Some(&source),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.dead_letter_topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match self
                .dead_letters
                .send(record, Duration::from_secs(10))
                .await
            {
                Ok(_) => return true,
                Err((e, _)) => {
                    tracing::warn!(error = %e, "dead-letter produce failed; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => return false,
                        () = tokio::time::sleep(backoff.delay()) => {}
                    }
                }
            }
        }
    }

    /// Dedupes, inserts (retrying while ClickHouse is away) and commits. Returns false if shutdown came
    /// first — then nothing is committed.
    async fn flush(&mut self, stop: &CancellationToken) -> bool {
        if self.batch.offsets.is_empty() {
            self.batch = Batch::default();
            return true;
        }
        let mut batch = std::mem::take(&mut self.batch);
        let mut in_batch = HashSet::new();
        let recent = &self.recent;
        let (mut seen_recently, mut twice) = (0, 0);
        batch.rows.retain(|r| {
            if recent.contains(&r.event_id) {
                seen_recently += 1;
                false
            } else if !in_batch.insert(r.event_id) {
                twice += 1;
                false
            } else {
                true
            }
        });
        self.metrics.duplicates(DedupeStage::Recent, seen_recently);
        self.metrics.duplicates(DedupeStage::Batch, twice);
        let mut backoff = Backoff::new();
        loop {
            match self.store(&mut batch.rows).await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.insert_failed();
                    tracing::warn!(error = %e, rows = batch.rows.len(), "clickhouse insert failed; retrying without committing");
                    tokio::select! {
                        () = stop.cancelled() => return false,
                        () = tokio::time::sleep(backoff.delay()) => {}
                    }
                    self.metrics.insert_retried();
                }
            }
        }
        self.metrics.batch_stored();
        for row in &batch.rows {
            self.recent.remember(row.event_id);
        }
        if let Some(owner) = &self.owner {
            for row in &batch.rows {
                let spent = crate::budget_service::Spent {
                    leases: row
                        .budget_leases
                        .iter()
                        .filter_map(|l| Uuid::parse_str(l).ok())
                        .collect(),
                    reporting_cost: u64::try_from(row.reporting_cost_nanos).unwrap_or(0),
                    tenant: row.tenant.clone(),
                    team: row.team.clone(),
                    key_id: row.key_id.clone(),
                    end_user: (!row.end_user.is_empty()).then(|| row.end_user.clone()),
                    tags: row
                        .tag_keys
                        .iter()
                        .cloned()
                        .zip(row.tag_values.iter().cloned())
                        .collect(),
                    started_at_ms: i64::try_from(row.started_at_ms).unwrap_or(i64::MAX),
                    inserted_at_ms: row.inserted_at_ms,
                };
                if owner.try_send(spent).is_err() {
                    tracing::warn!("budget owner queue full; its spend view lags (leases count at their grant)");
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &batch.offsets {
            if let Err(e) = offsets.add_partition_offset(
                &self.settings.topic,
                *partition,
                Offset::Offset(offset + 1),
            ) {
                tracing::warn!(error = %e, "cannot build the offset list");
            }
        }
        let committed = self.consumer.commit(&offsets, CommitMode::Sync);
        self.metrics.committed(committed.is_ok());
        if let Err(e) = committed {
            // Rows are stored; a redelivery is deduplicated. Nothing is lost by a failed commit.
            tracing::warn!(error = %e, "offset commit failed (rebalance?); redelivered rows will be deduplicated");
        }
        tracing::debug!(rows = batch.rows.len(), "batch stored and committed");
        true
    }

    /// Drops rows ClickHouse already has (an earlier attempt or a replay), then inserts the rest.
    async fn store(&self, rows: &mut Vec<UsageRow>) -> Result<(), MeteringError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let existing: HashSet<Uuid> = self.warehouse.existing(&ids).await?.into_iter().collect();
        self.metrics.clickhouse_answered();
        if !existing.is_empty() {
            self.metrics
                .duplicates(DedupeStage::ClickHouse, existing.len());
            tracing::info!(duplicates = existing.len(), "skipping rows already stored");
            rows.retain(|r| !existing.contains(&r.event_id));
        }
        if rows.is_empty() {
            return Ok(());
        }
        // Stamped at insert, so `inserted_at_ms - finished_at_ms` is the request → row lag.
        let now = now_ms();
        for row in rows.iter_mut() {
            row.inserted_at_ms = now;
        }
        let started = Instant::now();
        self.warehouse.insert(rows).await?;
        self.metrics.clickhouse_answered();
        self.metrics.inserted(
            rows.len(),
            started.elapsed(),
            rows.iter()
                .map(|r| r.inserted_at_ms.saturating_sub(r.finished_at_ms)),
        );
        Ok(())
    }
}
