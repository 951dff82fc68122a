//! Runs the [`crate::lease_owner::Owner`]: budgets from the control topic, lease requests and returns from the
//! requests topic, spend from the usage rows this consumer stores, decisions to the decisions topic.
//!
//! Enabled with `--budget-owner` on exactly one consumer. Until `lease TTL + grace` after start it grants
//! nothing (leases of an earlier owner may still be spending), then takes each scope's baseline from
//! ClickHouse on its first request.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_schemas::control::{ControlChange, ControlEvent};
use tollgate_schemas::lease::{LeaseDecision, LeaseMessage, LeaseScope};
use uuid::Uuid;

use crate::error::MeteringError;
use crate::lease_owner::{OwnedBudget, Owner, Step};

/// Spend of one stored usage row, for the owner.
#[derive(Debug, Clone)]
pub struct Spent {
    pub leases: Vec<Uuid>,
    pub reporting_cost: u64,
}

/// The owner's settings.
#[derive(Debug, Clone)]
pub struct OwnerSettings {
    pub brokers: String,
    pub control_topic: String,
    pub requests_topic: String,
    pub decisions_topic: String,
    pub database: String,
    pub lease_ttl: Duration,
    pub grace: Duration,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn tail(brokers: &str, topic: &str, from_start: bool) -> Result<StreamConsumer, MeteringError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("tollgate-budget-owner-{}", Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(
        topic,
        0,
        if from_start {
            Offset::Beginning
        } else {
            Offset::End
        },
    )?;
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Single-quoted ClickHouse string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The spend recorded in ClickHouse for one scope's window.
async fn baseline(
    client: &clickhouse::Client,
    database: &str,
    kind: &str,
    scope: &LeaseScope,
    window_end_ms: i64,
) -> Result<u64, clickhouse::error::Error> {
    let subject = match kind {
        "tenant" => format!("tenant = {}", literal(&scope.subject)),
        "team" => format!("team = {}", literal(&scope.subject)),
        "key" => format!("key_id = {}", literal(&scope.subject)),
        "end_user" => format!("end_user = {}", literal(&scope.subject)),
        _ => {
            let (k, v) = scope
                .subject
                .split_once('=')
                .unwrap_or((&scope.subject, ""));
            format!(
                "has(tag_keys, {k}) AND tag_values[indexOf(tag_keys, {k})] = {v}",
                k = literal(k),
                v = literal(v)
            )
        }
    };
    let sql = format!(
        "SELECT toUInt64(greatest(sum(reporting_cost_nanos), 0)) FROM {database}.usage_events \
         WHERE started_at_ms >= {start} AND started_at_ms < {end} AND {subject}",
        start = scope.window_start_ms.max(0),
        end = window_end_ms.max(0),
    );
    client.query(&sql).fetch_one::<u64>().await
}

/// Runs the owner until `stop`.
///
/// # Errors
/// When the Kafka clients cannot be created.
pub async fn run(
    settings: OwnerSettings,
    client: clickhouse::Client,
    mut spent: mpsc::Receiver<Spent>,
    stop: CancellationToken,
) -> Result<(), MeteringError> {
    let control = tail(&settings.brokers, &settings.control_topic, true)?;
    let requests = tail(&settings.brokers, &settings.requests_topic, false)?;
    let decisions: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()?;
    let ready_at = now_ms()
        + i64::try_from((settings.lease_ttl + settings.grace).as_millis()).unwrap_or(i64::MAX);
    tracing::info!(
        ready_in_ms = ready_at - now_ms(),
        "budget owner started; grants open after the lease TTL + grace"
    );
    let mut owner = Owner::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            Some(s) = spent.recv() => owner.observed(&s.leases, s.reporting_cost),
            m = control.recv() => {
                if let Ok(m) = m {
                    if let Some(Ok(event)) = m.payload().map(serde_json::from_slice::<ControlEvent>) {
                        apply_control(&mut owner, &event);
                    }
                }
            }
            m = requests.recv() => {
                let Ok(m) = m else { continue };
                let Some(Ok(message)) = m.payload().map(serde_json::from_slice::<LeaseMessage>) else {
                    continue;
                };
                // Take in every stored row first, so a lease's spend is as current as it can be.
                while let Ok(s) = spent.try_recv() {
                    owner.observed(&s.leases, s.reporting_cost);
                }
                let expires = now_ms()
                    + i64::try_from(settings.lease_ttl.as_millis()).unwrap_or(i64::MAX);
                if let LeaseMessage::Requested { request_id, replica, scope, .. } = &message {
                    if now_ms() < ready_at {
                        let d = LeaseDecision { request_id: *request_id, replica: replica.clone(),
                            scope: scope.clone(), lease_id: None, granted: 0, expires_at_ms: expires,
                            limit: 0, committed: 0 };
                        publish(&decisions, &settings.decisions_topic, &d).await;
                        continue;
                    }
                }
                let mut step = owner.handle(&message, expires);
                if let Some(Step::NeedsBaseline(scope)) = &step {
                    let window_end = match &message {
                        LeaseMessage::Requested { window_end_ms, .. } => *window_end_ms,
                        LeaseMessage::Returned { .. } => i64::MAX,
                    };
                    let kind = owner.budget(&scope.budget_id).map(|b| b.subject_kind.clone()).unwrap_or_default();
                    match baseline(&client, &settings.database, &kind, scope, window_end).await {
                        Ok(sum) => {
                            owner.set_baseline(scope.clone(), sum);
                            step = owner.handle(&message, expires);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "budget baseline query failed; refusing this lease request");
                            step = None;
                        }
                    }
                }
                if let Some(Step::Decided(d)) = step {
                    publish(&decisions, &settings.decisions_topic, &d).await;
                }
            }
        }
    }
}

fn apply_control(owner: &mut Owner, event: &ControlEvent) {
    match &event.change {
        ControlChange::BudgetSet {
            budget_id,
            subject,
            limit_nanos,
            hard,
            ..
        } => owner.set_budget(
            budget_id,
            Some(OwnedBudget {
                subject_kind: subject.split_once(':').map_or("", |(k, _)| k).to_string(),
                limit: *limit_nanos,
                hard: *hard,
            }),
        ),
        ControlChange::BudgetDeleted { budget_id } => owner.set_budget(budget_id, None),
        _ => {}
    }
}

async fn publish(producer: &FutureProducer, topic: &str, d: &LeaseDecision) {
    let Ok(payload) = serde_json::to_vec(d) else {
        return;
    };
    let key = d.replica.clone();
    if let Err((e, _)) = producer
        .send(
            FutureRecord::to(topic).key(&key).payload(&payload),
            Duration::from_secs(5),
        )
        .await
    {
        tracing::warn!(error = %e, "publishing a lease decision failed; the replica will time out and refuse");
    }
}
