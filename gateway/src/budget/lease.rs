//! Cluster budgets on a replica: spending only out of capacity the budget owner leased to this replica.
//!
//! [`LeaseClient`] asks the owner for capacity over Kafka and waits (briefly) for its decision; [`Leases`] holds
//! one scope's leases on this replica: a request's worst case is reserved against one lease with room, settled
//! with the actual cost, and a lease that expired with nothing in flight is returned with what it settled, so
//! the owner can give the rest to others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tollgate_schemas::lease::{LeaseDecision, LeaseMessage, LeaseScope};
use uuid::Uuid;

use crate::error::GatewayError;

/// How long a request waits for the owner before it is refused.
pub const DECISION_WAIT: Duration = Duration::from_millis(800);
/// A lease asks for this many worst cases at once, so most requests need no round trip to the owner.
pub const LEASE_REQUESTS: u64 = 8;

/// This replica's line to the budget owner.
pub struct LeaseClient {
    pub replica: String,
    producer: FutureProducer,
    requests_topic: String,
    pending: Arc<Mutex<HashMap<Uuid, oneshot::Sender<LeaseDecision>>>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("budget leases: {what}: {e}"))
}

/// Creates the two lease topics (one partition each, so one owner sees a scope's messages in order) unless
/// they exist. Gateways and the budget owner both call it, whichever starts first.
///
/// # Errors
/// When the admin client cannot be created or a topic cannot be created.
pub fn create_topics(
    brokers: &str,
    requests_topic: &str,
    decisions_topic: &str,
) -> Result<(), GatewayError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| unavailable("admin client", e))?;
    let topics = [
        NewTopic::new(requests_topic, 1, TopicReplication::Fixed(1)),
        NewTopic::new(decisions_topic, 1, TopicReplication::Fixed(1)),
    ];
    let created = futures::executor::block_on(admin.create_topics(
        topics.iter(),
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .map_err(|e| unavailable("create topics", e))?;
    for result in created {
        if let Err((name, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(unavailable("create topics", format!("{name}: {code}")));
            }
        }
    }
    Ok(())
}

impl LeaseClient {
    /// Creates the lease topics if missing and starts reading decisions addressed to this replica.
    ///
    /// # Errors
    /// When a Kafka client or topic cannot be created.
    pub fn connect(
        brokers: &str,
        requests_topic: &str,
        decisions_topic: &str,
    ) -> Result<Arc<Self>, GatewayError> {
        create_topics(brokers, requests_topic, decisions_topic)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()
            .map_err(|e| unavailable("producer", e))?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("tollgate-leases-{}", Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| unavailable("consumer", e))?;
        // Start at the partition's current end, resolved now: `Offset::End` is resolved only at the first
        // fetch, and a decision published before that (the answer to this replica's first request) would be
        // skipped.
        // (A topic created a moment ago may have no leader yet: ask again for a few seconds.)
        let mut tries = 0;
        let end = loop {
            match consumer.fetch_watermarks(decisions_topic, 0, Duration::from_secs(5)) {
                Ok((_, end)) => break end,
                Err(e) if tries >= 20 => return Err(unavailable("decisions offset", e)),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(decisions_topic, 0, Offset::Offset(end))
            .map_err(|e| unavailable("assign", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| unavailable("assign", e))?;
        let replica = format!("replica-{}", Uuid::now_v7());
        let pending: Arc<Mutex<HashMap<Uuid, oneshot::Sender<LeaseDecision>>>> = Arc::default();
        let (mine, waiting) = (replica.clone(), pending.clone());
        std::thread::Builder::new()
            .name("tollgate-lease-decisions".into())
            .spawn(move || loop {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let Some(Ok(d)) = m.payload().map(serde_json::from_slice::<LeaseDecision>) else {
                    continue;
                };
                if d.replica != mine {
                    continue;
                }
                let tx = waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&d.request_id);
                if let Some(tx) = tx {
                    let _ = tx.send(d);
                }
            })
            .map_err(|e| unavailable("decision reader", e))?;
        Ok(Arc::new(Self {
            replica,
            producer,
            requests_topic: requests_topic.to_string(),
            pending,
        }))
    }

    async fn send(&self, message: &LeaseMessage) -> bool {
        let Ok(payload) = serde_json::to_vec(message) else {
            return false;
        };
        let key = message.key();
        self.producer
            .send(
                FutureRecord::to(&self.requests_topic)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(2),
            )
            .await
            .is_ok()
    }

    /// Asks for `amount` of `scope`; `None` when the owner did not answer in time.
    pub async fn request(
        &self,
        scope: &LeaseScope,
        window_end_ms: i64,
        amount: u64,
    ) -> Option<LeaseDecision> {
        let request_id = Uuid::now_v7();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request_id, tx);
        let sent = self
            .send(&LeaseMessage::Requested {
                request_id,
                replica: self.replica.clone(),
                scope: scope.clone(),
                window_end_ms,
                amount,
            })
            .await;
        let decision = if sent {
            tokio::time::timeout(DECISION_WAIT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request_id);
        decision
    }

    /// Returns a closed lease (fire and forget: if it is lost, the owner counts the lease at its grant).
    pub async fn give_back(&self, lease_id: Uuid, scope: LeaseScope, settled: u64) {
        let _ = self
            .send(&LeaseMessage::Returned {
                lease_id,
                replica: self.replica.clone(),
                scope,
                settled,
            })
            .await;
    }
}

#[derive(Debug)]
struct LocalLease {
    id: Uuid,
    window_start: i64,
    granted: u64,
    /// Reserved by requests in flight plus settled.
    used: u64,
    settled: u64,
    in_flight: u32,
    expires_at_ms: i64,
}

/// One budget subject's leases on this replica.
#[derive(Debug, Default)]
pub struct Leases {
    leases: Mutex<Vec<LocalLease>>,
}

impl Leases {
    /// Reserves `amount` on a live lease of `window_start` with room; the lease's id.
    pub fn try_reserve(&self, amount: u64, window_start: i64, now_ms: i64) -> Option<Uuid> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let lease = leases.iter_mut().find(|l| {
            l.window_start == window_start
                && l.expires_at_ms > now_ms
                && l.granted.saturating_sub(l.used) >= amount
        })?;
        lease.used = lease.used.saturating_add(amount);
        lease.in_flight += 1;
        Some(lease.id)
    }

    /// Adds a granted lease.
    pub fn add(&self, decision: &LeaseDecision) {
        let Some(id) = decision.lease_id else { return };
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(LocalLease {
                id,
                window_start: decision.scope.window_start_ms,
                granted: decision.granted,
                used: 0,
                settled: 0,
                in_flight: 0,
                expires_at_ms: decision.expires_at_ms,
            });
    }

    /// Replaces a reservation on lease `id` with the actual cost.
    pub fn settle(&self, id: Uuid, reserved: u64, actual: u64) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = leases.iter_mut().find(|l| l.id == id) {
            l.used = l.used.saturating_sub(reserved).saturating_add(actual);
            l.settled = l.settled.saturating_add(actual);
            l.in_flight = l.in_flight.saturating_sub(1);
        }
    }

    /// Removes expired leases with nothing in flight: `(id, window start, settled)` to give back.
    pub fn closed(&self, now_ms: i64) -> Vec<(Uuid, i64, u64)> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        leases.retain(|l| {
            let done = l.expires_at_ms <= now_ms && l.in_flight == 0;
            if done {
                out.push((l.id, l.window_start, l.settled));
            }
            !done
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(granted: u64, expires: i64) -> LeaseDecision {
        LeaseDecision {
            request_id: Uuid::now_v7(),
            replica: "r".into(),
            scope: LeaseScope {
                budget_id: "b".into(),
                subject: "s".into(),
                window_start_ms: 0,
            },
            lease_id: Some(Uuid::now_v7()),
            granted,
            expires_at_ms: expires,
            limit: 0,
            committed: 0,
            unavailable_for_ms: None,
        }
    }

    #[test]
    fn reservations_fit_in_leases_and_expired_idle_leases_are_returned_with_what_they_settled() {
        let l = Leases::default();
        assert!(l.try_reserve(10, 0, 0).is_none());
        l.add(&decision(25, 100));
        let a = l.try_reserve(10, 0, 1).unwrap();
        let b = l.try_reserve(10, 0, 1).unwrap();
        assert!(l.try_reserve(10, 0, 1).is_none(), "only 5 left");
        l.settle(a, 10, 3);
        assert!(
            l.try_reserve(10, 0, 1).is_some(),
            "12 left after settling 3"
        );
        // Expired, but b and the third are in flight: not returned yet.
        assert!(l.closed(200).is_empty());
        l.settle(b, 10, 4);
        assert!(
            l.try_reserve(1, 0, 200).is_none(),
            "expired leases take nothing new"
        );
        let all: Vec<Uuid> = l.leases.lock().unwrap().iter().map(|x| x.id).collect();
        l.settle(all[0], 10, 10);
        let closed = l.closed(200);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].2, 3 + 4 + 10);
    }
}
