//! One per-minute bucket (requests or tokens): governor's GCRA over a state store we can read and move.
//!
//! governor decides, but it has no dry run and no refund, while admission must be all-or-nothing across up
//! to six buckets and settling must give back what an estimate over-charged. The state of a direct governor
//! limiter is one number: the theoretical arrival time (TAT), in nanoseconds since the limiter started
//! (0 = never used); each cell moves it forward by the replenish interval T, and a check at time t admits
//! `n` cells when `t ≥ TAT + (n−1)·T − (limit−1)·T`, then sets `TAT = max(TAT, t) + n·T`. Keeping that
//! number in [`SharedState`] lets this module
//! - snapshot it before a charge and restore it when another bucket refuses (`Charges`) — exact, because
//!   callers hold one lock around every mutation, so nobody charges in between;
//! - refund `n` cells by moving the TAT back `n·T` — exactly GCRA's own accounting, and the bucket still
//!   never holds more than its limit (a TAT behind "now" counts as "now");
//! - charge a debt the bucket cannot hold, by moving the TAT forward.
//!
//! This relies on governor 0.10's state layout (pinned in Cargo.toml); the tests here and in `tests.rs`
//! break if a release changes it.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::Quota;

use super::clock::TokioClock;

/// Retry hint of a bucket whose limit is 0: nothing will ever fit, so ask for the longest sensible wait.
const CLOSED_RETRY: Duration = Duration::from_secs(60);

type Gcra = governor::RateLimiter<NotKeyed, SharedState, TokioClock, StateInformationMiddleware>;

/// governor's state of a direct limiter (the TAT, see the module docs), shared with [`Bucket`].
#[derive(Debug, Default, Clone)]
struct SharedState(Arc<AtomicU64>);

impl StateStore for SharedState {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, decide: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The compare-and-swap loop of governor's own `InMemoryState`.
        let mut seen = self.0.load(Ordering::Acquire);
        loop {
            let (outcome, next) = decide(NonZeroU64::new(seen).map(|tat| Nanos::from(tat.get())))?;
            match self.0.compare_exchange_weak(
                seen,
                next.as_u64(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(outcome),
                Err(now_seen) => seen = now_seen,
            }
        }
    }
}

/// A bucket's state, saved before a charge that may have to be undone.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot(u64);

/// What OpenAI's `x-ratelimit-*` headers say about one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reading {
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// `limit` cells per minute, refilled continuously, bursting up to `limit`.
pub(super) struct Bucket {
    limit: u32,
    /// T: one cell's share of the minute.
    cell: Duration,
    state: SharedState,
    /// `None` when the limit is 0: everything is refused.
    gcra: Option<Gcra>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    pub(super) fn per_minute(limit: u32) -> Self {
        let state = SharedState::default();
        let quota = NonZeroU32::new(limit).map(Quota::per_minute);
        Self {
            limit,
            cell: quota.map_or(CLOSED_RETRY, |q| q.replenish_interval()),
            gcra: quota.map(|q| governor::RateLimiter::new(q, state.clone(), TokioClock)),
            state,
        }
    }

    /// Takes `n` cells now, or tells how long until they fit. A request larger than the whole bucket is
    /// clamped to it: it waits for a full bucket and settles the rest as debt. Returns the cells taken.
    pub(super) fn take(&self, n: u32) -> Result<u32, Duration> {
        let Some(gcra) = &self.gcra else {
            return Err(CLOSED_RETRY);
        };
        let Some(cells) = NonZeroU32::new(n.min(self.limit)) else {
            return Ok(0);
        };
        match gcra.check_n(cells) {
            Ok(Ok(_)) => Ok(cells.get()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(gcra.clock().now())),
            // Unreachable: `cells` never exceeds the burst.
            Err(_insufficient) => Err(self.cell.saturating_mul(cells.get())),
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot(self.state.0.load(Ordering::Acquire))
    }

    pub(super) fn restore(&self, snapshot: Snapshot) {
        self.state.0.store(snapshot.0, Ordering::Release);
    }

    /// Reads the bucket without changing it: takes one cell (and, if that fits, probes for a full bucket) to
    /// learn governor's answer, then restores the state. Callers hold the lock that serialises charges.
    pub(super) fn peek(&self) -> Reading {
        let Some(gcra) = &self.gcra else {
            return Reading {
                limit: 0,
                remaining: 0,
                reset: CLOSED_RETRY,
            };
        };
        let before = self.snapshot();
        let now = gcra.clock().now();
        let one_less = self.cell.saturating_mul(self.limit.saturating_sub(1));
        let reading = match gcra.check() {
            // One cell is available after `wait`; the other limit−1 follow at one per T.
            Err(not_until) => Reading {
                limit: self.limit,
                remaining: 0,
                reset: not_until.wait_time_from(now).saturating_add(one_less),
            },
            Ok(after_one) => {
                // With our probe cell taken, a full bucket fits once the TAT is back to now: probe + real.
                let until_full = NonZeroU32::new(self.limit).map_or(Duration::ZERO, |full| {
                    match gcra.check_n(full) {
                        Ok(Err(not_until)) => not_until.wait_time_from(now),
                        Ok(Ok(_)) | Err(_) => Duration::ZERO,
                    }
                });
                Reading {
                    limit: self.limit,
                    remaining: after_one
                        .remaining_burst_capacity()
                        .saturating_add(1)
                        .min(self.limit),
                    reset: until_full.saturating_sub(self.cell),
                }
            }
        };
        self.restore(before);
        reading
    }

    /// Gives back `n` cells charged earlier (an estimate above the actual count).
    pub(super) fn refund(&self, n: u32) {
        let back = self.nanos_of(n);
        self.shift(|tat| tat.saturating_sub(back));
    }

    /// Charges `n` cells whether or not they fit (tokens already spent), leaving the bucket in debt.
    pub(super) fn charge_debt(&self, n: u32) {
        let Some(gcra) = &self.gcra else { return };
        let Some(first) = NonZeroU32::new(n.min(self.limit)) else {
            return;
        };
        // Either this takes `first` cells, or it refuses because the bucket is not full; both leave the TAT
        // ahead of now, where moving it by k·T charges exactly k cells.
        let carried = match gcra.check_n(first) {
            Ok(Ok(_)) => n - first.get(),
            Ok(Err(_)) | Err(_) => n,
        };
        let forward = self.nanos_of(carried);
        self.shift(|tat| tat.saturating_add(forward));
    }

    fn nanos_of(&self, cells: u32) -> u64 {
        let total = self.cell.as_nanos().saturating_mul(u128::from(cells));
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    /// Moves a used bucket's TAT; a never-used one (0) is full and stays so.
    fn shift(&self, by: impl Fn(u64) -> u64) {
        let _ = self
            .state
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                (tat != 0).then(|| by(tat))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining(bucket: &Bucket) -> u32 {
        bucket.peek().remaining
    }

    #[tokio::test(start_paused = true)]
    async fn peeking_reads_without_charging() {
        let bucket = Bucket::per_minute(60);
        assert_eq!(
            bucket.peek(),
            Reading {
                limit: 60,
                remaining: 60,
                reset: Duration::ZERO
            }
        );
        assert_eq!(bucket.take(3), Ok(3));
        let reading = bucket.peek();
        assert_eq!(
            reading,
            Reading {
                limit: 60,
                remaining: 57,
                reset: Duration::from_secs(3)
            }
        );
        assert_eq!(bucket.peek(), reading);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(
            bucket.peek().reset,
            Duration::from_millis(1500),
            "reset is exact, not rounded to cells"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refunds_never_overfill_the_bucket() {
        let bucket = Bucket::per_minute(100);
        assert_eq!(bucket.take(30), Ok(30));
        bucket.refund(20);
        assert_eq!(remaining(&bucket), 90);
        bucket.refund(1000);
        assert_eq!(remaining(&bucket), 100);
        assert_eq!(
            bucket.take(101),
            Ok(100),
            "a request larger than the bucket takes all of it"
        );
        assert!(bucket.take(1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn debt_beyond_the_limit_delays_the_next_cell() {
        let bucket = Bucket::per_minute(60);
        bucket.charge_debt(90);
        // 60 cells of capacity plus 30 of debt: the next cell fits after 31 s.
        assert_eq!(bucket.take(1), Err(Duration::from_secs(31)));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(bucket.take(1), Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_limit_refuses_everything() {
        let bucket = Bucket::per_minute(0);
        assert_eq!(bucket.take(1), Err(CLOSED_RETRY));
        assert_eq!(bucket.peek().remaining, 0);
    }
}
