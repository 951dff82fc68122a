//! Off the hot loop: every interval, ClickHouse is pinged (for `/readyz`) and the lag of every assigned
//! partition is measured — high watermark − committed offset — on a blocking thread, because librdkafka's
//! `committed` and `query_watermark_offsets` wait on the network. A refresh that fails leaves the previous
//! values in place; the consume loop never waits for one.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::warehouse::Warehouse;

/// Longest a lag query may wait on a broker.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

/// The consumer's librdkafka context: tells the metrics at once when partitions are assigned or revoked.
pub struct MeteringContext {
    pub metrics: Arc<Metrics>,
}

impl ClientContext for MeteringContext {}

impl ConsumerContext for MeteringContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.metrics.assigned(tpl.count());
            }
            Rebalance::Revoke(_) => {
                tracing::info!("partitions revoked");
                self.metrics.assigned(0);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

pub type MeteringConsumer = StreamConsumer<MeteringContext>;

/// Refreshes readiness facts and lag every `interval` until `stop`. With `owner_topic` (this consumer runs
/// the budget owner) it also checks that the owner sees every partition of that usage topic: the owner counts
/// spend from the rows this consumer stores, so rows stored by other consumers never reach its alerts (the
/// overspend bound does not depend on them: leases count at least at their grant).
pub async fn run(
    consumer: Arc<MeteringConsumer>,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    interval: Duration,
    owner_topic: Option<String>,
    stop: CancellationToken,
) {
    let mut missing_before = 0;
    loop {
        if warehouse.ping().await.is_ok() {
            metrics.clickhouse_answered();
        }
        let c = consumer.clone();
        match tokio::task::spawn_blocking(move || partition_lags(&c)).await {
            Ok(Ok((assigned, lags))) => {
                metrics.assigned(assigned);
                metrics.set_lag(&lags);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "consumer lag refresh failed"),
            Err(e) => tracing::warn!(error = %e, "consumer lag refresh panicked"),
        }
        if let Some(topic) = &owner_topic {
            let (c, t) = (consumer.clone(), topic.clone());
            if let Ok(Ok(missing)) =
                tokio::task::spawn_blocking(move || partitions_not_assigned(&c, &t)).await
            {
                metrics.owner_partitions_missing(missing);
                if missing > 0 && missing != missing_before {
                    tracing::warn!(
                        topic = %topic,
                        missing,
                        "the budget owner's consumer does not store every partition of the usage topic: \
                         threshold alerts miss the spend in the others (run the owner's consumer alone in its \
                         group, or give the topic one partition)"
                    );
                }
                missing_before = missing;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// How many partitions of `topic` are not assigned to this consumer.
fn partitions_not_assigned(consumer: &MeteringConsumer, topic: &str) -> KafkaResult<usize> {
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    let total = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let assigned = consumer
        .assignment()?
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .count();
    Ok(total.saturating_sub(assigned))
}

/// The number of assigned partitions and each one's lag: the high watermark minus the committed offset, or
/// minus the low watermark when the group has committed nothing yet (the consumer starts at the earliest).
fn partition_lags(consumer: &MeteringConsumer) -> KafkaResult<(usize, Vec<(i32, i64)>)> {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok((0, Vec::new()));
    }
    let committed = consumer.committed_offsets(assignment, KAFKA_TIMEOUT)?;
    let mut lags = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), KAFKA_TIMEOUT)?;
        let from = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        lags.push((e.partition(), (high - from).max(0)));
    }
    Ok((committed.count(), lags))
}
