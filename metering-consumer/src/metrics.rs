//! The consumer's Prometheus series (served at `GET /metrics` by [`crate::http`]) and the facts `/readyz`
//! decides on.
//!
//! Series (prefix `tollgate_metering_`): `records_consumed_total`, `rows_inserted_total`,
//! `duplicates_dropped_total{stage}` (`batch`: twice in one batch, `recent`: in the recent-ids set,
//! `clickhouse`: already stored), `dead_lettered_total{reason}` (`invalid_json`, `invalid_event`),
//! `batches_total`, `insert_duration_seconds` (histogram of successful INSERTs), `insert_failures_total`,
//! `insert_retries_total`, `commits_total{result}`, `consumer_lag{partition}` (high watermark − committed
//! offset, refreshed by [`crate::monitor`]), `pipeline_lag_seconds` (histogram of a row's `inserted_at_ms` −
//! its event's `finished_at_ms`), `assigned_partitions` and `clickhouse_up`.
//!
//! Everything is recorded per batch or per record with atomic adds; the hot loop never waits on a scrape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// ClickHouse counts as up while it answered within this long (three lag refreshes at the default interval).
pub const CLICKHOUSE_FRESH: Duration = Duration::from_secs(15);

/// Where a duplicate was caught.
#[derive(Debug, Clone, Copy)]
pub enum DedupeStage {
    /// The same id twice in one batch.
    Batch,
    /// An id inserted recently by this process.
    Recent,
    /// An id ClickHouse already holds.
    ClickHouse,
}

impl DedupeStage {
    const ALL: [Self; 3] = [Self::Batch, Self::Recent, Self::ClickHouse];

    fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Recent => "recent",
            Self::ClickHouse => "clickhouse",
        }
    }
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy)]
pub enum DeadLetterReason {
    /// Not JSON (or cut short).
    InvalidJson,
    /// JSON, but not a usage event of this schema.
    InvalidEvent,
}

impl DeadLetterReason {
    const ALL: [Self; 2] = [Self::InvalidJson, Self::InvalidEvent];

    /// The reason serde gives, reduced to a bounded label.
    #[must_use]
    pub fn of(e: &serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Data => Self::InvalidEvent,
            _ => Self::InvalidJson,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidEvent => "invalid_event",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// Readiness facts, also exposed as gauges.
#[derive(Debug, Default)]
struct Facts {
    /// Milliseconds since the epoch of ClickHouse's last answer; 0 = never.
    clickhouse_ok_ms: AtomicU64,
    /// Partitions currently assigned to this consumer; -1 until the first assignment is known.
    assigned: AtomicI64,
}

impl Facts {
    fn clickhouse_up(&self, now_ms: u64) -> bool {
        let ok = self.clickhouse_ok_ms.load(Ordering::Relaxed);
        ok != 0
            && now_ms.saturating_sub(ok) <= u64::try_from(CLICKHOUSE_FRESH.as_millis()).unwrap_or(0)
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// ClickHouse answered within [`CLICKHOUSE_FRESH`].
    pub clickhouse_up: bool,
    /// Milliseconds since ClickHouse last answered; `None` if it never did.
    pub clickhouse_last_ok_ms_ago: Option<u64>,
    pub assigned_partitions: i64,
    /// Sum of the per-partition lag at the last refresh.
    pub consumer_lag: i64,
}

pub struct Metrics {
    registry: Registry,
    consumed: Counter,
    inserted: Counter,
    duplicates: [Counter; DedupeStage::ALL.len()],
    dead_lettered: [Counter; DeadLetterReason::ALL.len()],
    batches: Counter,
    insert_duration: Histogram,
    insert_failures: Counter,
    insert_retries: Counter,
    commits_ok: Counter,
    commits_failed: Counter,
    lag: Family<PartitionLabel, Gauge>,
    pipeline_lag: Histogram,
    owner_partitions_missing: Gauge,
    owner_active: Gauge,
    facts: std::sync::Arc<Facts>,
    /// The partitions (and lags) of the last refresh, to remove revoked ones and to sum for `/readyz`.
    known: Mutex<HashMap<i32, i64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series (labelled ones with each label value, so they show at zero).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tollgate_metering");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let consumed = counter(
            &mut registry,
            "records_consumed",
            "Kafka records received (usage events and undecodable records)",
        );
        let inserted = counter(
            &mut registry,
            "rows_inserted",
            "Rows inserted into usage_events",
        );
        let batches = counter(
            &mut registry,
            "batches",
            "Batches stored (inserted, or all duplicates) and committed",
        );
        let insert_failures = counter(
            &mut registry,
            "insert_failures",
            "Failed attempts to store a batch (dedupe lookup or INSERT)",
        );
        let insert_retries = counter(
            &mut registry,
            "insert_retries",
            "Attempts to store a batch again after a failure",
        );
        let duplicates = Family::<StageLabel, Counter>::default();
        registry.register(
            "duplicates_dropped",
            "Usage events dropped as duplicates of a stored event, by where they were caught",
            duplicates.clone(),
        );
        let dead_lettered = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "dead_lettered",
            "Records written to the dead-letter topic, by reason",
            dead_lettered.clone(),
        );
        let commits = Family::<ResultLabel, Counter>::default();
        registry.register(
            "commits",
            "Kafka offset commits after a stored batch, by result",
            commits.clone(),
        );
        let insert_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "insert_duration_seconds",
            "Duration of successful INSERTs into ClickHouse",
            insert_duration.clone(),
        );
        let pipeline_lag = Histogram::new(exponential_buckets(0.005, 2.0, 18));
        registry.register(
            "pipeline_lag_seconds",
            "From a request's end (finished_at_ms) to its row's insert (inserted_at_ms)",
            pipeline_lag.clone(),
        );
        let lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Records not yet committed per assigned partition (high watermark - committed offset)",
            lag.clone(),
        );
        let owner_partitions_missing = Gauge::default();
        registry.register(
            "budget_owner_partitions_missing",
            "Budget owner only: usage-topic partitions stored by other consumers, whose rows its alerts cannot \
             see (should be 0)",
            owner_partitions_missing.clone(),
        );
        let owner_active = Gauge::default();
        registry.register(
            "budget_owner_active",
            "1 while this consumer is the budget owner (of the candidates started with --budget-owner)",
            owner_active.clone(),
        );
        let facts = std::sync::Arc::new(Facts {
            clickhouse_ok_ms: AtomicU64::new(0),
            assigned: AtomicI64::new(-1),
        });
        registry.register_collector(Box::new(FactsCollector(facts.clone())));
        let commits_ok = commits.get_or_create(&ResultLabel { result: "ok" }).clone();
        let commits_failed = commits
            .get_or_create(&ResultLabel { result: "error" })
            .clone();
        Self {
            duplicates: DedupeStage::ALL.map(|s| {
                duplicates
                    .get_or_create(&StageLabel { stage: s.as_str() })
                    .clone()
            }),
            dead_lettered: DeadLetterReason::ALL.map(|r| {
                dead_lettered
                    .get_or_create(&ReasonLabel { reason: r.as_str() })
                    .clone()
            }),
            commits_ok,
            commits_failed,
            registry,
            consumed,
            inserted,
            batches,
            insert_duration,
            insert_failures,
            insert_retries,
            lag,
            pipeline_lag,
            owner_partitions_missing,
            owner_active,
            facts,
            known: Mutex::new(HashMap::new()),
        }
    }

    pub fn consumed(&self) {
        self.consumed.inc();
    }

    pub fn duplicates(&self, stage: DedupeStage, n: usize) {
        if n > 0 {
            self.duplicates[stage as usize].inc_by(n as u64);
        }
    }

    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.dead_lettered[reason as usize].inc();
    }

    /// A successful INSERT of `rows` rows that took `took`; `lags_ms` are the rows' request → insert lags.
    pub fn inserted(&self, rows: usize, took: Duration, lags_ms: impl Iterator<Item = u64>) {
        self.inserted.inc_by(rows as u64);
        self.insert_duration.observe(took.as_secs_f64());
        for ms in lags_ms {
            #[expect(clippy::cast_precision_loss, reason = "milliseconds to seconds")]
            self.pipeline_lag.observe(ms as f64 / 1000.0);
        }
    }

    pub fn insert_failed(&self) {
        self.insert_failures.inc();
    }

    pub fn insert_retried(&self) {
        self.insert_retries.inc();
    }

    pub fn batch_stored(&self) {
        self.batches.inc();
    }

    pub fn committed(&self, ok: bool) {
        if ok {
            self.commits_ok.inc();
        } else {
            self.commits_failed.inc();
        }
    }

    /// ClickHouse answered just now.
    pub fn clickhouse_answered(&self) {
        self.facts
            .clickhouse_ok_ms
            .store(now_ms(), Ordering::Relaxed);
    }

    /// The partitions assigned to this consumer changed.
    pub fn assigned(&self, partitions: usize) {
        self.facts.assigned.store(
            i64::try_from(partitions).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The budget owner's view of spend: how many usage-topic partitions it does not store itself.
    pub fn owner_partitions_missing(&self, missing: usize) {
        self.owner_partitions_missing
            .set(i64::try_from(missing).unwrap_or(i64::MAX));
    }

    /// Whether this consumer is the budget owner now.
    pub fn budget_owner_active(&self, active: bool) {
        self.owner_active.set(i64::from(active));
    }

    /// Replaces the per-partition lag: partitions no longer assigned disappear.
    pub fn set_lag(&self, lags: &[(i32, i64)]) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        for p in known.keys() {
            if !lags.iter().any(|(q, _)| q == p) {
                self.lag.remove(&PartitionLabel { partition: *p });
            }
        }
        known.clear();
        for (partition, lag) in lags {
            self.lag
                .get_or_create(&PartitionLabel {
                    partition: *partition,
                })
                .set(*lag);
            known.insert(*partition, *lag);
        }
    }

    /// What `/readyz` reports: ready when ClickHouse answered recently and partitions are assigned.
    #[must_use]
    pub fn readiness(&self) -> Readiness {
        let now = now_ms();
        let ok = self.facts.clickhouse_ok_ms.load(Ordering::Relaxed);
        let clickhouse_up = self.facts.clickhouse_up(now);
        let assigned = self.facts.assigned.load(Ordering::Relaxed);
        let consumer_lag = self.known.lock().map_or(0, |k| k.values().sum());
        Readiness {
            ready: clickhouse_up && assigned > 0,
            clickhouse_up,
            clickhouse_last_ok_ms_ago: (ok != 0).then(|| now.saturating_sub(ok)),
            assigned_partitions: assigned.max(0),
            consumer_lag,
        }
    }

    /// The OpenMetrics text of every series.
    ///
    /// # Errors
    /// Only if formatting fails (it writes to a `String`).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Readiness facts as gauges, read at scrape time.
#[derive(Debug)]
struct FactsCollector(std::sync::Arc<Facts>);

impl Collector for FactsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let assigned = ConstGauge::new(self.0.assigned.load(Ordering::Relaxed).max(0));
        assigned.encode(encoder.encode_descriptor(
            "assigned_partitions",
            "Kafka partitions assigned to this consumer",
            None,
            assigned.metric_type(),
        )?)?;
        let up = ConstGauge::new(i64::from(self.0.clickhouse_up(now_ms())));
        up.encode(encoder.encode_descriptor(
            "clickhouse_up",
            "1 while ClickHouse answered within the last 15 s",
            None,
            up.metric_type(),
        )?)?;
        Ok(())
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_a_fresh_clickhouse_answer_and_an_assignment() {
        let m = Metrics::new();
        let r = m.readiness();
        assert!(!r.ready && !r.clickhouse_up && r.clickhouse_last_ok_ms_ago.is_none());
        m.clickhouse_answered();
        assert!(!m.readiness().ready, "no partitions assigned yet");
        m.assigned(3);
        let r = m.readiness();
        assert!(r.ready && r.clickhouse_up && r.assigned_partitions == 3);
        m.facts.clickhouse_ok_ms.store(
            now_ms() - u64::try_from(CLICKHOUSE_FRESH.as_millis()).unwrap() - 1_000,
            Ordering::Relaxed,
        );
        assert!(
            !m.readiness().ready,
            "a stale ClickHouse answer is not enough"
        );
        m.clickhouse_answered();
        m.assigned(0);
        assert!(!m.readiness().ready, "revoked");
    }

    #[test]
    fn lag_series_follow_the_assignment() {
        let m = Metrics::new();
        m.set_lag(&[(0, 5), (1, 7)]);
        let text = m.render().unwrap();
        assert!(
            text.contains("tollgate_metering_consumer_lag{partition=\"0\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_metering_consumer_lag{partition=\"1\"} 7"),
            "{text}"
        );
        assert_eq!(m.readiness().consumer_lag, 12);
        m.set_lag(&[(1, 2)]);
        let text = m.render().unwrap();
        assert!(
            !text.contains("partition=\"0\""),
            "revoked partition still exposed: {text}"
        );
        assert!(text.contains("tollgate_metering_consumer_lag{partition=\"1\"} 2"));
        assert_eq!(m.readiness().consumer_lag, 2);
    }

    #[test]
    fn counters_and_histograms_are_exposed() {
        let m = Metrics::new();
        m.consumed();
        m.duplicates(DedupeStage::ClickHouse, 2);
        m.inserted(3, Duration::from_millis(20), [100, 200, 40_000].into_iter());
        m.committed(true);
        let text = m.render().unwrap();
        for line in [
            "tollgate_metering_records_consumed_total 1",
            "tollgate_metering_rows_inserted_total 3",
            "tollgate_metering_duplicates_dropped_total{stage=\"clickhouse\"} 2",
            "tollgate_metering_duplicates_dropped_total{stage=\"batch\"} 0",
            "tollgate_metering_dead_lettered_total{reason=\"invalid_json\"} 0",
            "tollgate_metering_commits_total{result=\"ok\"} 1",
            "tollgate_metering_insert_duration_seconds_count 1",
            "tollgate_metering_pipeline_lag_seconds_count 3",
            "tollgate_metering_assigned_partitions 0",
            "tollgate_metering_clickhouse_up 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn dead_letter_reasons_are_bounded() {
        let not_json =
            serde_json::from_slice::<tollgate_schemas::UsageEvent>(b"{nope").unwrap_err();
        let wrong_shape =
            serde_json::from_slice::<tollgate_schemas::UsageEvent>(b"{\"a\":1}").unwrap_err();
        assert!(matches!(
            DeadLetterReason::of(&not_json),
            DeadLetterReason::InvalidJson
        ));
        assert!(matches!(
            DeadLetterReason::of(&wrong_shape),
            DeadLetterReason::InvalidEvent
        ));
    }
}
