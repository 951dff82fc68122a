//! Replays the control topic from the beginning (a fresh, never-committed group each start) and tails it,
//! projecting budgets into `budgets` ([`crate::budgets`]) and virtual keys into `virtual_keys`
//! ([`crate::keys`]). Both tables are ReplacingMergeTrees by the event's time, so replays and duplicates
//! converge on the latest state. A failed insert is retried with backoff; the next event waits for it, so rows
//! land in log order.

use std::time::Duration;

use clickhouse::{RowOwned, RowWrite};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tollgate_schemas::clickhouse::{BUDGETS, VIRTUAL_KEYS};
use tollgate_schemas::control::ControlEvent;

use crate::error::MeteringError;
use crate::keys::KeyProjection;

/// A consumer of the control topic's single partition from its first record, in a fresh, never-committed
/// group named after `group_prefix` (each start replays the whole log). The budget owner reads it too.
///
/// # Errors
/// When the consumer cannot be created or assigned.
pub fn replay(
    brokers: &str,
    topic: &str,
    group_prefix: &str,
) -> Result<StreamConsumer, MeteringError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("{group_prefix}-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Replays and tails `topic` until `stop`.
///
/// # Errors
/// When the Kafka consumer cannot be created.
pub async fn run(
    brokers: &str,
    topic: &str,
    client: clickhouse::Client,
    stop: CancellationToken,
) -> Result<(), MeteringError> {
    let consumer = replay(brokers, topic, "tollgate-metering-control")?;
    let mut keys = KeyProjection::default();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        let event = match message {
            Ok(m) => match m.payload().map(serde_json::from_slice::<ControlEvent>) {
                Some(Ok(e)) => e,
                _ => continue,
            },
            Err(e) => {
                tracing::warn!(error = %e, "control topic read failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let written = if let Some(row) = crate::budgets::row(&event) {
            write(&client, BUDGETS, &row, &stop).await
        } else if let Some(row) = keys.row(&event) {
            write(&client, VIRTUAL_KEYS, &row, &stop).await
        } else {
            true
        };
        if !written {
            return Ok(());
        }
    }
}

/// Inserts `row` into `table`, retrying with backoff; `false` when stopped first.
async fn write<R: RowOwned + RowWrite>(
    client: &clickhouse::Client,
    table: &str,
    row: &R,
    stop: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        match insert(client, table, row).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, table, "writing a control projection row failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn insert<R: RowOwned + RowWrite>(
    client: &clickhouse::Client,
    table: &str,
    row: &R,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<R>(table).await?;
    insert.write(row).await?;
    insert.end().await
}
