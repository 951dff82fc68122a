//! A governor clock on tokio's time.
//!
//! governor's default clocks read the OS clock, which ignores `#[tokio::test(start_paused = true)]` and
//! `tokio::time::advance`. Reading [`tokio::time::Instant`] instead makes every limiter follow paused time in
//! tests and behave exactly like a monotonic clock in production.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A moment on tokio's clock, as governor's [`Reference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TokioInstant(Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, later: Nanos) -> Self {
        // Nanos spans at most 584 years; `Instant` spans far more on every platform we run on, so the fallback
        // is unreachable in practice (and `Add` cannot report failure).
        self.0.checked_add(Duration::from(later)).map_or(self, Self)
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        let elapsed = self.0.saturating_duration_since(earlier.0);
        u64::try_from(elapsed.as_nanos()).map_or(Nanos::from(u64::MAX), Nanos::from)
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(Duration::from(duration))
            .map_or(*self, Self)
    }
}

/// tokio's clock (`tokio::time::Instant::now`), paused and advanced with the test runtime.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock;
        let before = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        let after = clock.now();
        assert_eq!(
            after.duration_since(before),
            Nanos::from(Duration::from_secs(90))
        );
        assert_eq!(
            before.duration_since(after),
            Nanos::from(0),
            "saturates instead of going negative"
        );
        assert_eq!(before + Nanos::from(Duration::from_secs(90)), after);
    }
}
