//! Health of one upstream API key: healthy, cooling down after failures, or half-open (one probe allowed).
//!
//! A retryable failure cools the key for `BASE × 2^(failures−1)` (capped), or for the provider's own hint
//! (`retry-after`, rate-limit reset) when that is longer. When the cooldown ends the key is half-open: exactly
//! one request probes it; success makes it healthy again, failure cools it for longer. No restart needed.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub const BASE_COOLDOWN: Duration = Duration::from_secs(1);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);
/// How long a key whose account is out of quota is left alone.
pub const QUOTA_COOLDOWN: Duration = Duration::from_secs(600);

/// Whether a key can take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// The cooldown is over: this request is the one probe.
    Probe,
    Cooling(Instant),
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    cooling_until: Option<Instant>,
    probing: bool,
}

#[derive(Debug, Default)]
pub struct KeyHealth {
    state: Mutex<State>,
}

impl KeyHealth {
    /// Checks the key for a request at `now`; claims the probe when half-open.
    pub fn availability(&self, now: Instant) -> Availability {
        let Ok(mut s) = self.state.lock() else {
            return Availability::Ready;
        };
        match s.cooling_until {
            None => Availability::Ready,
            Some(until) if until > now => Availability::Cooling(until),
            Some(_) if s.probing => Availability::Cooling(now + BASE_COOLDOWN),
            Some(_) => {
                s.probing = true;
                Availability::Probe
            }
        }
    }

    /// The key answered: the failure streak ends. A cooldown set meanwhile by another request's failure (or a
    /// provider's `retry-after`) stands, unless this answer was the probe or the cooldown is already over.
    pub fn succeeded(&self) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            let cooling_now = s.cooling_until.is_some_and(|until| until > now);
            if s.probing || !cooling_now {
                *s = State::default();
            } else {
                s.failures = 0;
            }
        }
    }

    /// A retryable failure: cools the key, longer each time in a row. Returns the cooldown applied.
    pub fn failed(&self, now: Instant, hint: Option<Duration>) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return BASE_COOLDOWN;
        };
        s.failures = s.failures.saturating_add(1);
        let exponent = s.failures.saturating_sub(1).min(16);
        let grown = BASE_COOLDOWN
            .saturating_mul(1 << exponent)
            .min(MAX_COOLDOWN);
        let cooldown = hint.map_or(grown, |h| h.max(grown));
        s.cooling_until = Some(now.checked_add(cooldown).unwrap_or(now + MAX_COOLDOWN));
        s.probing = false;
        cooldown
    }

    /// Takes the key out of rotation for `for_how_long` without counting a failure (the provider said its
    /// quota is spent until then).
    pub fn rest(&self, now: Instant, for_how_long: Duration) {
        if let Ok(mut s) = self.state.lock() {
            let until = now
                .checked_add(for_how_long)
                .unwrap_or(now + QUOTA_COOLDOWN);
            s.cooling_until = Some(s.cooling_until.map_or(until, |u| u.max(until)));
            s.probing = false;
        }
    }

    /// A probe that ended without a verdict gives the probe back.
    pub fn release_probe(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cools_down_longer_each_time_then_recovers_through_one_probe() {
        let h = KeyHealth::default();
        let t0 = Instant::now();
        assert_eq!(h.availability(t0), Availability::Ready);
        assert_eq!(h.failed(t0, None), Duration::from_secs(1));
        assert_eq!(
            h.availability(t0),
            Availability::Cooling(t0 + Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        let t1 = Instant::now();
        assert_eq!(h.availability(t1), Availability::Probe);
        assert!(
            matches!(h.availability(t1), Availability::Cooling(_)),
            "only one probe at a time"
        );
        assert_eq!(
            h.failed(t1, None),
            Duration::from_secs(2),
            "second failure in a row: doubled"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let t2 = Instant::now();
        assert_eq!(h.availability(t2), Availability::Probe);
        h.succeeded();
        assert_eq!(h.availability(t2), Availability::Ready);
        assert_eq!(
            h.failed(t2, None),
            Duration::from_secs(1),
            "a success resets the streak"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_provider_hint_wins_and_the_cap_holds() {
        let h = KeyHealth::default();
        let now = Instant::now();
        assert_eq!(
            h.failed(now, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        for _ in 0..20 {
            h.failed(now, None);
        }
        assert_eq!(h.failed(now, None), MAX_COOLDOWN);
        h.rest(now, QUOTA_COOLDOWN);
        assert_eq!(
            h.availability(now),
            Availability::Cooling(now + QUOTA_COOLDOWN)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_success_does_not_cancel_a_cooldown_set_meanwhile() {
        let h = KeyHealth::default();
        let now = Instant::now();
        h.failed(now, Some(Duration::from_secs(30)));
        h.succeeded(); // a long request that started before the 429 comes back fine
        assert_eq!(
            h.availability(now),
            Availability::Cooling(now + Duration::from_secs(30))
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(h.availability(Instant::now()), Availability::Probe);
        h.succeeded();
        assert_eq!(h.availability(Instant::now()), Availability::Ready);
    }
}
