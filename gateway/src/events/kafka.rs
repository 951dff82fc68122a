//! The Kafka sink: usage events to the usage topic, keyed by tenant, through an idempotent producer
//! (`acks=all`, lz4, a short linger). When Kafka is away or slow, events go to the disk [`Spool`] and are
//! replayed in order once it answers again.
//!
//! All of it runs on one writer thread; the request path only does `EventSink::emit` (a non-blocking
//! `try_send`). Events move: queue → producer (librdkafka buffers and retries up to `message_timeout`) →
//! delivered, or on failure → spool (fsync'd every 50 ms). While the spool holds anything, new events are
//! appended behind it so the topic receives them in the order they were emitted. Replay sends spool records in
//! batches and moves the spool's cursor only when a whole batch is acknowledged; a record acknowledged in a
//! failed batch is sent again, and the metering consumer drops the duplicate by `event_id`.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use tollgate_schemas::UsageEvent;

use super::spool::{Position, Spool, SpoolError};
use super::{EventSink, SinkMessage, SinkStats, SinkWorker, QUEUE_CAPACITY};
use crate::config::KafkaConfig;
use crate::error::GatewayError;

const SPOOL_SYNC_EVERY: Duration = Duration::from_millis(50);
const REPLAY_BATCH: usize = 2_000;
const REPLAY_BACKOFF_MAX: Duration = Duration::from_secs(5);
const CLOSE_FLUSH: Duration = Duration::from_secs(15);

/// Where a produced record came from, carried through librdkafka to its delivery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Live,
    Replay,
}

struct Report {
    origin: Origin,
    ok: bool,
    /// For failures: the record, to spool.
    record: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Default)]
struct Reports(Mutex<Vec<Report>>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Self::DeliveryOpaque) {
        let report = match result {
            Ok(_) => Report {
                origin: *origin,
                ok: true,
                record: None,
            },
            Err((_, message)) => Report {
                origin: *origin,
                ok: false,
                record: Some((
                    message.key().unwrap_or_default().to_vec(),
                    message.payload().unwrap_or_default().to_vec(),
                )),
            },
        };
        if let Ok(mut reports) = self.0.lock() {
            reports.push(report);
        }
    }
}

/// Starts the Kafka sink's writer thread.
///
/// # Errors
/// When the producer cannot be created or the spool directory cannot be opened.
pub fn start(config: &KafkaConfig) -> Result<(EventSink, SinkWorker), GatewayError> {
    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        // A broker that stops answering mid-request (a shutdown, a stall) must not hold in-flight events for
        // librdkafka's default 30 s: they fail within the message timeout and go to the spool.
        .set(
            "request.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(Reports::default())
        .map_err(|e| GatewayError::Internal(format!("cannot create the Kafka producer: {e}")))?;
    let spool = Spool::open(&config.spool_dir, config.spool_max_bytes).map_err(|e| {
        GatewayError::Internal(format!(
            "cannot open the event spool {}: {e}",
            config.spool_dir.display()
        ))
    })?;
    let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let stats = Arc::new(SinkStats::default());
    stats.healthy.store(true, Ordering::Relaxed);
    stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
    let writer = KafkaWriter {
        producer,
        topic: config.topic.clone(),
        spool,
        stats: stats.clone(),
        replay: None,
        replay_backoff: Duration::from_millis(200),
        next_replay: Instant::now(),
    };
    let handle = std::thread::Builder::new()
        .name("tollgate-kafka-writer".into())
        .spawn(move || writer.run(&rx))
        .map_err(|e| GatewayError::Internal(format!("cannot start the Kafka writer: {e}")))?;
    Ok((
        EventSink {
            tx: tx.clone(),
            stats,
        },
        SinkWorker { handle, tx },
    ))
}

/// A replay batch in flight.
struct Replay {
    end: Position,
    outstanding: usize,
    failed: bool,
    sent: usize,
    /// Records in this batch's range that failed their checksum: lost once the cursor passes them.
    corrupt: u64,
}

struct KafkaWriter {
    producer: BaseProducer<Reports>,
    topic: String,
    spool: Spool,
    stats: Arc<SinkStats>,
    replay: Option<Replay>,
    replay_backoff: Duration,
    next_replay: Instant,
}

impl KafkaWriter {
    fn run(mut self, rx: &Receiver<SinkMessage>) {
        let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
        let mut busy = false;
        loop {
            let mut closing = false;
            // Busy: nap and then take what gathered (no wake-up per event); idle: wait on the queue.
            let received = if busy {
                std::thread::sleep(super::GATHER);
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(Duration::from_millis(10))
            };
            busy = received.is_ok();
            match received {
                Ok(first) => {
                    let mut next = Some(first);
                    let mut taken = 0;
                    while let Some(message) = next.take() {
                        match message {
                            SinkMessage::Event(e) => self.live(&e),
                            SinkMessage::Flush(done) => flushes.push(done),
                            SinkMessage::Close => closing = true,
                        }
                        taken += 1;
                        if taken < 10_000 {
                            next = rx.try_recv().ok();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            self.producer.poll(Duration::ZERO);
            self.settle();
            self.replay_step();
            if !flushes.is_empty() || closing {
                self.drain_producer(if closing {
                    CLOSE_FLUSH
                } else {
                    Duration::from_secs(10)
                });
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
            if let Err(e) = self.spool.sync_if_due(SPOOL_SYNC_EVERY) {
                tracing::error!(target: "tollgate::events", error = %e, "event spool fsync failed");
            }
            self.stats
                .spool_bytes
                .store(self.spool.bytes(), Ordering::Relaxed);
            if closing {
                // Whatever librdkafka still holds would be purged silently when the producer drops: purge it
                // now, so its failure reports come back here and the events land in the spool for the next
                // start to replay.
                self.producer
                    .purge(PurgeConfig::default().queue().inflight());
                self.producer.poll(Duration::ZERO);
                self.settle();
                if let Err(e) = self.spool.sync() {
                    tracing::error!(target: "tollgate::events", error = %e, "event spool fsync failed at close");
                }
                return;
            }
        }
    }

    /// Waits (bounded) for everything handed to librdkafka to be delivered or spooled.
    fn drain_producer(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        let _ = self.producer.flush(limit);
        self.settle();
        while self.replay.is_some() && Instant::now() < until {
            self.producer.poll(Duration::from_millis(50));
            self.settle();
        }
        if let Err(e) = self.spool.sync() {
            tracing::error!(target: "tollgate::events", error = %e, "event spool fsync failed");
        }
    }

    fn live(&mut self, event: &UsageEvent) {
        let payload = match serde_json::to_vec(event) {
            Ok(p) => p,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "tollgate::events", error = %e, "usage event could not be encoded");
                return;
            }
        };
        let key = event.tenant.as_bytes();
        if !self.spool.is_empty() || self.replay.is_some() {
            // Keep emission order: nothing overtakes what waits in the spool.
            self.spool_record(key, &payload);
            return;
        }
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(Origin::Live))
            .key(key)
            .payload(&payload);
        if let Err((e, _)) = self.producer.send(record) {
            if !matches!(
                e,
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
            ) {
                tracing::warn!(target: "tollgate::events", error = %e, "kafka produce refused; spooling");
            }
            self.spool_record(key, &payload);
        }
    }

    fn spool_record(&mut self, key: &[u8], payload: &[u8]) {
        match self.spool.append(key, payload) {
            Ok(()) => {
                self.stats.spooled.fetch_add(1, Ordering::Relaxed);
            }
            Err(SpoolError::Full(cap)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.healthy.store(false, Ordering::Relaxed);
                tracing::error!(target: "tollgate::events", cap, "usage event dropped: the event spool is full");
            }
            Err(SpoolError::Io(e)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.healthy.store(false, Ordering::Relaxed);
                tracing::error!(target: "tollgate::events", error = %e, "usage event dropped: the event spool cannot be written");
            }
        }
    }

    /// Applies delivery reports: count successes, spool failures, account replay batches.
    fn settle(&mut self) {
        let reports = match self.producer.context().0.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        for report in reports {
            match (report.origin, report.ok) {
                (Origin::Live, true) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                }
                (Origin::Live, false) => {
                    if let Some((key, payload)) = report.record {
                        self.spool_record(&key, &payload);
                    }
                }
                (Origin::Replay, ok) => {
                    if let Some(replay) = &mut self.replay {
                        replay.outstanding = replay.outstanding.saturating_sub(1);
                        replay.failed |= !ok;
                    }
                }
            }
        }
        self.finish_replay_batch();
    }

    fn finish_replay_batch(&mut self) {
        let Some(replay) = &self.replay else { return };
        if replay.outstanding > 0 {
            return;
        }
        let replay = self.replay.take();
        let Some(replay) = replay else { return };
        if replay.failed {
            self.next_replay = Instant::now() + self.replay_backoff;
            self.replay_backoff = (self.replay_backoff * 2).min(REPLAY_BACKOFF_MAX);
            return;
        }
        match self.spool.commit(replay.end) {
            Ok(()) => {
                if replay.corrupt > 0 {
                    // Lost to a disk fault: counted and alarmed, never silent.
                    self.stats
                        .dropped
                        .fetch_add(replay.corrupt, Ordering::Relaxed);
                    tracing::error!(target: "tollgate::events", records = replay.corrupt,
                        "usage events lost: spool records failed their checksum");
                }
                self.stats
                    .replayed
                    .fetch_add(replay.sent as u64, Ordering::Relaxed);
                self.stats
                    .written
                    .fetch_add(replay.sent as u64, Ordering::Relaxed);
                self.replay_backoff = Duration::from_millis(200);
                self.stats.healthy.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(target: "tollgate::events", error = %e, "event spool cursor could not be saved")
            }
        }
    }

    /// Sends the next spool batch when none is in flight and the backoff allows.
    fn replay_step(&mut self) {
        if self.replay.is_some() || self.spool.is_empty() || Instant::now() < self.next_replay {
            return;
        }
        let corrupt_before = self.spool.corrupt;
        let read = self.spool.read_batch(REPLAY_BATCH);
        let corrupt = self.spool.corrupt - corrupt_before;
        let (records, end) = match read {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(target: "tollgate::events", error = %e, "event spool cannot be read");
                self.next_replay = Instant::now() + REPLAY_BACKOFF_MAX;
                return;
            }
        };
        let mut replay = Replay {
            end,
            outstanding: 0,
            failed: false,
            sent: records.len(),
            corrupt,
        };
        for record in &records {
            let r = BaseRecord::with_opaque_to(&self.topic, Box::new(Origin::Replay))
                .key(&record.key)
                .payload(&record.payload);
            match self.producer.send(r) {
                Ok(()) => replay.outstanding += 1,
                Err(_) => {
                    replay.failed = true;
                    break;
                }
            }
        }
        self.replay = Some(replay);
        self.finish_replay_batch();
    }
}
