//! Runs the [`crate::lease_owner::Owner`]: budgets from the control topic, lease requests and returns from the
//! requests topic, spend from the usage rows this consumer stores, decisions to the decisions topic.
//!
//! Enabled with `--budget-owner`; several consumers may run it. They form one Kafka group on the requests
//! topic (one partition), so exactly one of them — the one holding the partition — is the owner at a time;
//! when it goes away (stops, dies: 6 s session timeout) the group hands the partition to another. An owner
//! that just took over forgets every book and grants nothing for `lease TTL + grace` (leases of the previous
//! owner may still be spending), answering "unavailable" meanwhile; then it takes each scope's baseline from
//! ClickHouse on its first request. Candidates that are not the owner answer nothing and send no alerts.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_schemas::control::{ControlChange, ControlEvent};
use tollgate_schemas::lease::{LeaseDecision, LeaseMessage, LeaseScope};
use uuid::Uuid;

use tollgate_gateway::clock::now_ms;
use tollgate_gateway::report::clickhouse::literal;

use crate::error::MeteringError;
use crate::lease_owner::{OwnedBudget, Owner, Step};
use crate::metrics::Metrics;

/// One stored usage row, for the owner: its leases, cost and attribution.
#[derive(Debug, Clone)]
pub struct Spent {
    pub leases: Vec<Uuid>,
    pub reporting_cost: u64,
    pub tenant: String,
    pub team: String,
    pub key_id: String,
    pub end_user: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    pub started_at_ms: i64,
    /// When the consumer inserted it (rows inserted earlier are in a spend baseline).
    pub inserted_at_ms: u64,
}

/// The owner's settings.
#[derive(Debug, Clone)]
pub struct OwnerSettings {
    pub brokers: String,
    pub control_topic: String,
    pub requests_topic: String,
    pub decisions_topic: String,
    /// The Kafka group of owner candidates: the one holding the requests partition is the owner.
    pub group: String,
    pub database: String,
    pub lease_ttl: Duration,
    pub grace: Duration,
    /// Threshold alerts for the whole cluster (gateways with Kafka send none themselves).
    pub alerts: Option<tollgate_gateway::budget::alerts::WebhookConfig>,
    /// The time zone budget periods are aligned to (the gateways' `[budget_settings] timezone`).
    pub timezone: chrono_tz::Tz,
}

/// Since when (epoch ms) this process holds the requests partition, i.e. is the owner; 0 while it does not.
/// Written by the Kafka group's rebalance callbacks, read by the owner loop.
#[derive(Clone, Default)]
pub struct Standing(Arc<AtomicI64>);

impl Standing {
    /// `Some(since)` while this candidate is the owner.
    #[must_use]
    pub fn owner_since(&self) -> Option<i64> {
        let since = self.0.load(Ordering::SeqCst);
        (since > 0).then_some(since)
    }
}

/// The requests consumer's context: the group assigning or revoking the partition makes or unmakes the owner.
struct CandidateContext {
    standing: Standing,
    metrics: Arc<Metrics>,
}

impl ClientContext for CandidateContext {}

impl ConsumerContext for CandidateContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                self.standing.0.store(now_ms().max(1), Ordering::SeqCst);
                self.metrics.budget_owner_active(true);
            }
            Rebalance::Assign(_) | Rebalance::Revoke(_) => {
                self.standing.0.store(0, Ordering::SeqCst);
                self.metrics.budget_owner_active(false);
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "budget owner group rebalance failed")
            }
        }
    }
}

/// Joins the owner candidates' group on the requests topic (one partition: one owner at a time). A short
/// session timeout, so a candidate that dies is replaced within seconds; new requests only (the answer to an
/// old one would come too late).
fn candidate(
    settings: &OwnerSettings,
    standing: Standing,
    metrics: Arc<Metrics>,
) -> Result<StreamConsumer<CandidateContext>, MeteringError> {
    let consumer: StreamConsumer<CandidateContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        // Notice a requests topic created after this subscription within seconds, not librdkafka's 5 min.
        .set("topic.metadata.refresh.interval.ms", "2000")
        .create_with_context(CandidateContext { standing, metrics })?;
    consumer.subscribe(&[&settings.requests_topic])?;
    Ok(consumer)
}

/// The spend recorded in ClickHouse for one scope's window: its raw usage rows plus every re-pricing
/// correction of those rows (`cost_corrections`, joined by `event_id`), so budgets count the same spend as
/// the reports and dashboards. `inserted_before_ms` limits the raw rows to those stored before a moment (the
/// alert baseline; later rows reach the owner one by one). Subject kinds: `tenant`, `team`, `key`,
/// `end_user`, and `tag` (`key=value`).
///
/// # Errors
/// When ClickHouse does not answer or refuses the query.
pub async fn baseline(
    client: &clickhouse::Client,
    database: &str,
    kind: &str,
    scope: &LeaseScope,
    window_end_ms: i64,
    inserted_before_ms: Option<u64>,
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
    let rows = format!(
        "started_at_ms >= {start} AND started_at_ms < {end} AND {subject}",
        start = scope.window_start_ms.max(0),
        end = window_end_ms.max(0),
    );
    let inserted = inserted_before_ms
        .map(|t| format!(" AND inserted_at_ms < {t}"))
        .unwrap_or_default();
    // Scalar subqueries (ClickHouse 18.16 and current both take them); a correction may be negative, so the
    // sum is signed and clamped at zero.
    let sql = format!(
        "SELECT toUInt64(greatest(\
           (SELECT toInt64(sum(reporting_cost_nanos)) FROM {database}.usage_events WHERE {rows}{inserted}) \
         + (SELECT toInt64(sum(delta_reporting_cost_nanos)) FROM {database}.cost_corrections \
            WHERE event_id IN (SELECT event_id FROM {database}.usage_events WHERE {rows})), 0))"
    );
    client.query(&sql).fetch_one::<u64>().await
}

/// How soon a replica may ask again after ClickHouse failed to give a scope's baseline.
const BASELINE_RETRY_MS: u64 = 1_000;

/// The answer to a lease request the owner cannot decide now: nothing granted, no verdict on the budget.
fn unavailable(message: &LeaseMessage, expires_at_ms: i64, retry_ms: u64) -> Option<LeaseDecision> {
    let LeaseMessage::Requested {
        request_id,
        replica,
        scope,
        ..
    } = message
    else {
        return None;
    };
    Some(LeaseDecision {
        request_id: *request_id,
        replica: replica.clone(),
        scope: scope.clone(),
        lease_id: None,
        granted: 0,
        expires_at_ms,
        limit: 0,
        committed: 0,
        unavailable_for_ms: Some(retry_ms.max(1)),
    })
}

/// Runs the owner until `stop`.
///
/// # Errors
/// When the Kafka clients cannot be created.
pub async fn run(
    settings: OwnerSettings,
    client: clickhouse::Client,
    metrics: Arc<Metrics>,
    mut spent: mpsc::Receiver<Spent>,
    stop: CancellationToken,
) -> Result<(), MeteringError> {
    // Gateways create them too; if Kafka is not answering yet, the subscription picks the topic up later.
    if let Err(e) = tollgate_gateway::budget::lease::create_topics(
        &settings.brokers,
        &settings.requests_topic,
        &settings.decisions_topic,
    ) {
        tracing::warn!(error = %e, "could not create the lease topics; waiting for them");
    }
    let control = crate::control_projection::replay(
        &settings.brokers,
        &settings.control_topic,
        "tollgate-budget-owner-control",
    )?;
    let standing = Standing::default();
    let requests = candidate(&settings, standing.clone(), metrics)?;
    let decisions: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()?;
    let warm_up =
        i64::try_from((settings.lease_ttl + settings.grace).as_millis()).unwrap_or(i64::MAX);
    tracing::info!(group = %settings.group, "budget owner candidate started");
    let mut owner = Owner::default();
    // The ownership the books belong to (`None`: not the owner) and when grants open for it.
    let mut held: Option<i64> = None;
    let mut ready_at = i64::MAX;
    let alerts = settings
        .alerts
        .clone()
        .map(tollgate_gateway::budget::alerts::start);
    loop {
        let now_held = standing.owner_since();
        if now_held != held {
            // Taking over or giving up: leases granted meanwhile by another owner are unknown here.
            owner.forget_books();
            held = now_held;
            match held {
                Some(since) => {
                    ready_at = since.saturating_add(warm_up);
                    tracing::info!(ready_in_ms = ready_at - now_ms(),
                        "this consumer is now the budget owner; grants open after the lease TTL + grace");
                }
                None => tracing::info!("this consumer is no longer the budget owner"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            // Re-check the standing at least this often (a rebalance wakes nothing here).
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            Some(s) = spent.recv() => {
                if held.is_none() {
                    continue;
                }
                owner.observed(&s.leases, s.reporting_cost);
                if let Some(sender) = &alerts {
                    alert_on(&mut owner, &s, &settings, &client, sender).await;
                }
            }
            m = control.recv() => {
                if let Ok(m) = m {
                    if let Some(Ok(event)) = m.payload().map(serde_json::from_slice::<ControlEvent>) {
                        apply_control(&mut owner, &event);
                    }
                }
            }
            m = requests.recv() => {
                let Ok(m) = m else { continue };
                if held.is_none() || standing.owner_since() != held {
                    continue;
                }
                let Some(Ok(message)) = m.payload().map(serde_json::from_slice::<LeaseMessage>) else {
                    continue;
                };
                // Take in every stored row first, so a lease's spend is as current as it can be.
                while let Ok(s) = spent.try_recv() {
                    owner.observed(&s.leases, s.reporting_cost);
                    if let Some(sender) = &alerts {
                        alert_on(&mut owner, &s, &settings, &client, sender).await;
                    }
                }
                let expires = now_ms()
                    + i64::try_from(settings.lease_ttl.as_millis()).unwrap_or(i64::MAX);
                if now_ms() < ready_at {
                    // Still waiting out leases granted before this start: no verdict yet.
                    let wait = u64::try_from(ready_at - now_ms()).unwrap_or(0);
                    if let Some(d) = unavailable(&message, expires, wait) {
                        publish(&decisions, &settings.decisions_topic, &d).await;
                    }
                    continue;
                }
                let mut step = owner.handle(&message, expires);
                if let Some(Step::NeedsBaseline(scope)) = &step {
                    let window_end = match &message {
                        LeaseMessage::Requested { window_end_ms, .. } => *window_end_ms,
                        LeaseMessage::Returned { .. } => i64::MAX,
                    };
                    let kind = owner.budget(&scope.budget_id).map(|b| b.subject_kind.clone()).unwrap_or_default();
                    match baseline(&client, &settings.database, &kind, scope, window_end, None).await {
                        Ok(sum) => {
                            owner.set_baseline(scope.clone(), sum);
                            step = owner.handle(&message, expires);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "budget baseline query failed; this lease request gets no verdict");
                            step = unavailable(&message, expires, BASELINE_RETRY_MS)
                                .map(Step::Decided);
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

/// Counts a stored row toward every alerting budget it falls under, sending the thresholds it crossed. A scope
/// seen for the first time starts from ClickHouse's sum of rows inserted before this one.
async fn alert_on(
    owner: &mut Owner,
    s: &Spent,
    settings: &OwnerSettings,
    client: &clickhouse::Client,
    sender: &tollgate_gateway::budget::alerts::AlertSender,
) {
    let row = crate::lease_owner::StoredSpend {
        tenant: &s.tenant,
        team: &s.team,
        key_id: &s.key_id,
        end_user: s.end_user.as_deref(),
        tags: &s.tags,
        started_at_ms: s.started_at_ms,
        reporting_cost: s.reporting_cost,
    };
    for scope in owner.alert_scopes(&row, settings.timezone) {
        if !owner.tracks_spend(&scope) {
            let Some(b) = owner.budget(&scope.budget_id).cloned() else {
                continue;
            };
            let end = b
                .period
                .map_or(i64::MAX, |p| p.window(s.started_at_ms, settings.timezone).1);
            match baseline(
                client,
                &settings.database,
                &b.subject_kind,
                &scope,
                end,
                Some(s.inserted_at_ms),
            )
            .await
            {
                Ok(sum) => owner.set_spend_baseline(scope.clone(), sum),
                Err(e) => {
                    tracing::warn!(error = %e, "alert baseline query failed; this row is not counted for alerts");
                    continue;
                }
            }
        }
        for due in owner.spend(&scope, s.reporting_cost) {
            sender.send(tollgate_gateway::budget::alerts::Alert {
                budget_id: due.budget_id,
                subject_kind: due.subject_kind,
                subject: due.subject,
                period: due.period,
                period_start_ms: due.window_start_ms,
                threshold_percent: due.threshold,
                spent: tollgate_schemas::price::format_nanos(i128::from(due.spent)),
                limit: tollgate_schemas::price::format_nanos(i128::from(due.limit)),
                currency: due.currency,
                hard: due.hard,
            });
        }
    }
}

fn apply_control(owner: &mut Owner, event: &ControlEvent) {
    match &event.change {
        ControlChange::BudgetSet {
            budget_id,
            subject,
            period,
            limit_nanos,
            currency,
            hard,
            alert_at,
        } => owner.set_budget(
            budget_id,
            Some(OwnedBudget {
                subject_kind: subject.split_once(':').map_or("", |(k, _)| k).to_string(),
                limit: *limit_nanos,
                hard: *hard,
                subject: tollgate_gateway::budget::Subject::parse(subject),
                period: tollgate_gateway::budget::Period::parse(period),
                alert_at: alert_at.clone(),
                currency: currency.clone(),
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
