//! The control log on Kafka: a compacted, single-partition topic every replica replays at start and then tails.
//!
//! An admin change is produced (idempotent producer, `acks=all`) keyed by its entity and is in effect on this
//! replica once this replica's tail has applied its offset — the admin call waits for that, so the answer never
//! runs ahead of the log. Other replicas apply it when their tail reads it: within the tail's poll interval plus
//! Kafka's delivery latency ([`PROPAGATION_BOUND`] is what the tests hold replicas to).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tollgate_schemas::control::ControlEvent;

use crate::error::GatewayError;
use crate::state::AppState;

/// How long a change may take to be applied on every replica (stated in the README; held in tests).
pub const PROPAGATION_BOUND: Duration = Duration::from_secs(2);
/// How long an admin call waits for Kafka to take its event and for this replica to apply it.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The tail's poll interval: the main part of the propagation delay.
const POLL: Duration = Duration::from_millis(50);

/// The producing side, kept in the shared state.
pub struct KafkaLog {
    producer: FutureProducer,
    topic: String,
    /// Offset of the last event this replica applied (-1 before any).
    applied: watch::Receiver<i64>,
}

/// The consuming side: replays the topic, then tails it on its own thread.
pub struct Tail {
    consumer: BaseConsumer,
    topic: String,
    applied: watch::Sender<i64>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("control log: {what}: {e}"))
}

/// Creates the topic if it is missing (compacted, one partition) and connects both sides.
///
/// # Errors
/// When the clients cannot be created or the topic cannot be created.
pub fn connect(brokers: &str, topic: &str) -> Result<(KafkaLog, Tail), GatewayError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| unavailable("admin client", e))?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let created = futures::executor::block_on(admin.create_topics(
        [&new],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .map_err(|e| unavailable("create topic", e))?;
    for result in created {
        if let Err((name, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(unavailable("create topic", format!("{name}: {code}")));
            }
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .map_err(|e| unavailable("producer", e))?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Never committed: every start replays the whole (compacted) log.
        .set(
            "group.id",
            format!("tollgate-control-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| unavailable("consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| unavailable("assign", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| unavailable("assign", e))?;
    let (tx, rx) = watch::channel(-1);
    Ok((
        KafkaLog {
            producer,
            topic: topic.to_string(),
            applied: rx,
        },
        Tail {
            consumer,
            topic: topic.to_string(),
            applied: tx,
        },
    ))
}

impl KafkaLog {
    /// Publishes the config file's budgets into the log (in the background), so the budget owner knows them;
    /// replicas keep enforcing the file's values (apply ignores configured ids).
    pub fn publish_budgets(&self, specs: &[crate::budget::BudgetSpec], currency: &str) {
        for spec in specs {
            let event = ControlEvent::new(
                tollgate_schemas::control::ControlChange::BudgetSet {
                    budget_id: spec.id.clone(),
                    subject: spec.subject.to_string(),
                    period: spec.period.as_str().into(),
                    limit_nanos: spec.limit,
                    currency: currency.to_string(),
                    hard: spec.hard,
                    alert_at: spec.alert_at.clone(),
                },
                crate::clock::now_ms(),
            );
            let Ok(payload) = serde_json::to_vec(&event) else {
                continue;
            };
            let (producer, topic, key) = (
                self.producer.clone(),
                self.topic.clone(),
                event.change.entity(),
            );
            tokio::spawn(async move {
                let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                if let Err((e, _)) = producer.send(record, COMMIT_TIMEOUT).await {
                    tracing::warn!(target: "tollgate::control", error = %e, "could not publish a config budget");
                }
            });
        }
    }

    /// Produces `event` and waits until this replica has applied it.
    pub(super) async fn commit(&self, event: &ControlEvent) -> Result<(), GatewayError> {
        let payload = serde_json::to_vec(event)
            .map_err(|e| GatewayError::Internal(format!("cannot encode a control event: {e}")))?;
        let key = event.change.entity();
        let offset = self
            .producer
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&payload),
                COMMIT_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| unavailable("produce", e))?
            .offset;
        let mut applied = self.applied.clone();
        tokio::time::timeout(COMMIT_TIMEOUT, applied.wait_for(|a| *a >= offset))
            .await
            .map_err(|_| unavailable("apply", "this replica did not read its own change in time"))?
            .map_err(|e| unavailable("apply", e))?;
        Ok(())
    }
}

impl Tail {
    /// Applies every event already in the log (up to the high watermark at call time).
    ///
    /// # Errors
    /// When the log cannot be read within a minute.
    pub fn replay(&self, state: &AppState) -> Result<usize, GatewayError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // A topic created a moment ago may not be in the metadata yet: ask again until it is.
        let high = loop {
            match self
                .consumer
                .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            {
                Ok((_, high)) => break high,
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(unavailable("watermarks", e))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let mut applied = 0;
        let mut last = -1;
        while last + 1 < high {
            if std::time::Instant::now() > deadline {
                return Err(unavailable(
                    "replay",
                    "the log could not be read to its end",
                ));
            }
            if let Some(offset) = self.poll_once(state, Duration::from_millis(200)) {
                last = offset;
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// Tails the log on its own thread for the life of the process.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn spawn(self, state: Arc<AppState>) -> Result<(), GatewayError> {
        std::thread::Builder::new()
            .name("tollgate-control-tail".into())
            .spawn(move || loop {
                self.poll_once(&state, POLL);
            })
            .map(|_| ())
            .map_err(|e| GatewayError::Internal(format!("cannot start the control tail: {e}")))
    }

    /// Reads and applies at most one event; its offset when there was one.
    fn poll_once(&self, state: &AppState, wait: Duration) -> Option<i64> {
        match self.consumer.poll(wait)? {
            Ok(message) => {
                let offset = message.offset();
                match message
                    .payload()
                    .map(serde_json::from_slice::<ControlEvent>)
                {
                    Some(Ok(event)) => {
                        super::apply(
                            &event,
                            &state.keys,
                            &state.budgets,
                            &state.limits,
                            Default::default(),
                        );
                    }
                    // A tombstone (compaction) or an undecodable record: nothing to apply.
                    Some(Err(e)) => {
                        tracing::error!(target: "tollgate::control", offset, error = %e, "undecodable control event skipped");
                    }
                    None => {}
                }
                self.applied.send_replace(offset);
                Some(offset)
            }
            Err(e) => {
                tracing::warn!(target: "tollgate::control", error = %e, "control log read failed; retrying");
                std::thread::sleep(POLL);
                None
            }
        }
    }
}
