//! The `budgets` table: budgets as the control log states them, for dashboards' burn-down against limits.
//!
//! A task replays the control topic from the beginning (a fresh, never-committed group each start) and tails
//! it, writing one row per `BudgetSet` / `BudgetDeleted` with `version` = the event's time. The table is a
//! ReplacingMergeTree by `version`, so replays and duplicates converge on the latest state per budget.

use std::time::Duration;

use clickhouse::Row;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tollgate_schemas::control::{ControlChange, ControlEvent};

use crate::error::MeteringError;

/// One row of `budgets` (see `schemas/migrations/clickhouse/0007_budgets.sql`).
#[derive(Debug, Clone, Row, Serialize, PartialEq, Eq)]
pub struct BudgetRow {
    pub budget_id: String,
    pub tenant: String,
    pub subject_kind: String,
    pub subject: String,
    pub period: String,
    pub timezone: String,
    pub limit_nanos: i64,
    pub currency: String,
    pub hard: u8,
    pub deleted: u8,
    pub version: u64,
}

/// The row an event writes, if it is about a budget.
#[must_use]
pub fn row(event: &ControlEvent) -> Option<BudgetRow> {
    let version = u64::try_from(event.at_ms).unwrap_or(0);
    match &event.change {
        ControlChange::BudgetSet {
            budget_id,
            subject,
            period,
            limit_nanos,
            currency,
            hard,
            ..
        } => {
            let (kind, value) = subject.split_once(':').unwrap_or(("", subject));
            Some(BudgetRow {
                budget_id: budget_id.clone(),
                tenant: if kind == "tenant" {
                    value.to_string()
                } else {
                    String::new()
                },
                subject_kind: kind.to_string(),
                subject: value.to_string(),
                period: period.clone(),
                timezone: String::new(),
                limit_nanos: i64::try_from(*limit_nanos).unwrap_or(i64::MAX),
                currency: currency.clone(),
                hard: u8::from(*hard),
                deleted: 0,
                version,
            })
        }
        ControlChange::BudgetDeleted { budget_id } => Some(BudgetRow {
            budget_id: budget_id.clone(),
            tenant: String::new(),
            subject_kind: String::new(),
            subject: String::new(),
            period: String::new(),
            timezone: String::new(),
            limit_nanos: 0,
            currency: String::new(),
            hard: 0,
            deleted: 1,
            version,
        }),
        _ => None,
    }
}

/// Replays and tails `topic` until `stop`, writing budget rows; a failed insert is retried.
///
/// # Errors
/// When the Kafka consumer cannot be created.
pub async fn run(
    brokers: &str,
    topic: &str,
    client: clickhouse::Client,
    stop: CancellationToken,
) -> Result<(), MeteringError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("tollgate-metering-control-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
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
        let Some(row) = row(&event) else { continue };
        let mut delay = Duration::from_millis(200);
        loop {
            match insert(&client, &row).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, budget = %row.budget_id, "writing a budget row failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

async fn insert(
    client: &clickhouse::Client,
    row: &BudgetRow,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client
        .insert::<BudgetRow>(tollgate_schemas::clickhouse::BUDGETS)
        .await?;
    insert.write(row).await?;
    insert.end().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_events_become_versioned_rows_and_others_none() {
        let set = ControlEvent::new(
            ControlChange::BudgetSet {
                budget_id: "b".into(),
                subject: "tenant:acme".into(),
                period: "monthly".into(),
                limit_nanos: 5,
                currency: "USD".into(),
                hard: true,
                alert_at: vec![],
            },
            42,
        );
        let r = row(&set).unwrap();
        assert_eq!(
            (
                r.tenant.as_str(),
                r.subject_kind.as_str(),
                r.subject.as_str(),
                r.version,
                r.hard
            ),
            ("acme", "tenant", "acme", 42, 1)
        );
        let del = ControlEvent::new(
            ControlChange::BudgetDeleted {
                budget_id: "b".into(),
            },
            43,
        );
        assert_eq!(row(&del).unwrap().deleted, 1);
        let key = ControlEvent::new(ControlChange::KeyRevoked { key_id: "k".into() }, 1);
        assert!(row(&key).is_none());
    }
}
