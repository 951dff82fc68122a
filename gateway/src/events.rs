//! Usage-event emission: a non-blocking hand-off from the request path to a store.
//!
//! [`EventSink::emit`] never waits: it puts the event on a bounded queue and returns. A writer on its own
//! thread drains the queue in batches into the configured store: the embedded SQLite store ([`embedded`]) or
//! Kafka ([`kafka`], with its disk [`spool`] for when Kafka is away).
//! A full queue is the only way to lose an event; it is counted (`dropped`) and logged, never silent.

pub mod embedded;
pub mod kafka;
pub mod spool;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use tollgate_schemas::UsageEvent;

/// How long a busy writer sleeps between batches. A writer blocked on the queue must be woken (a futex call
/// and a context switch) by every `emit`; one that naps between batches is never woken under load and takes
/// the whole burst at once. Costs at most this much extra delay before an event is stored.
pub(crate) const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Capacity of the hand-off queue: a few seconds of traffic at tens of thousands of requests per second.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Counters of a sink, readable at any time.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub emitted: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Kafka sink: events put in the disk spool, events replayed from it, bytes waiting in it.
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// False while the store refuses writes (the writer keeps the batch and retries) or the spool is full.
    pub healthy: AtomicBool,
}

/// A snapshot of [`SinkStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SinkSnapshot {
    pub emitted: u64,
    pub written: u64,
    pub dropped: u64,
    pub write_errors: u64,
    pub spooled: u64,
    pub replayed: u64,
    pub spool_bytes: u64,
    pub healthy: bool,
}

impl SinkStats {
    #[must_use]
    pub fn snapshot(&self) -> SinkSnapshot {
        SinkSnapshot {
            emitted: self.emitted.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            spool_bytes: self.spool_bytes.load(Ordering::Relaxed),
            healthy: self.healthy.load(Ordering::Relaxed),
        }
    }
}

pub(crate) enum SinkMessage {
    Event(Box<UsageEvent>),
    /// Answered once everything queued before it is written.
    Flush(mpsc::Sender<()>),
    /// Write everything queued, then stop.
    Close,
}

/// The request path's handle on event emission. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    tx: SyncSender<SinkMessage>,
    stats: Arc<SinkStats>,
}

/// Owns the writer thread; [`SinkWorker::close`] drains and joins it.
pub struct SinkWorker {
    handle: JoinHandle<()>,
    tx: SyncSender<SinkMessage>,
}

impl EventSink {
    /// Hands `event` to the writer without blocking.
    pub fn emit(&self, event: UsageEvent) {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(SinkMessage::Event(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "tollgate::events", "usage event dropped: the sink queue is full or closed");
            }
        }
    }

    /// The live counters, for a metrics collector.
    #[must_use]
    pub fn stats_handle(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    #[must_use]
    pub fn stats(&self) -> SinkSnapshot {
        self.stats.snapshot()
    }

    /// Waits (on a blocking thread) until every event emitted before this call is written.
    pub async fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(SinkMessage::Flush(done_tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || done_rx.recv()).await;
        }
    }
}

impl SinkWorker {
    /// Writes everything queued so far, stops the writer and waits for it. Events emitted afterwards are
    /// counted as dropped — call it once the server has finished its requests.
    pub fn close(self) {
        // A full queue makes this wait for room, which the writer is making.
        let _ = self.tx.send(SinkMessage::Close);
        if self.handle.join().is_err() {
            tracing::error!(target: "tollgate::events", "the usage writer thread panicked");
        }
    }
}
