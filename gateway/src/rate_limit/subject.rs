//! One limited subject — a virtual key, a team or a model — with its buckets and in-flight count.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::bucket::{Bucket, Reading};
use super::Limits;

/// Retry hint for an in-flight refusal: requests usually finish within seconds, and nothing predicts when.
pub(super) const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// Which limit of a subject refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dimension {
    Requests,
    Tokens,
    InFlight,
}

/// A limited subject. Subjects without any limit are never built (see [`Subject::new`]).
#[derive(Debug)]
pub(super) struct Subject {
    /// "key ci", "team search", "model gpt-4o": names only, never a secret.
    label: String,
    limits: Limits,
    pub(super) requests: Option<Bucket>,
    pub(super) tokens: Option<Bucket>,
    in_flight: AtomicU32,
}

/// The header-worthy readings of one subject.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Readings {
    pub requests: Option<Reading>,
    pub tokens: Option<Reading>,
}

impl Subject {
    /// `None` when `limits` sets nothing: an unlimited subject costs no limiter and no lock.
    pub(super) fn new(kind: &str, name: &str, limits: Limits) -> Option<Self> {
        (limits != Limits::default()).then(|| Self {
            label: format!("{kind} {name}"),
            limits,
            requests: limits.rpm.map(Bucket::per_minute),
            tokens: limits.tpm.map(Bucket::per_minute),
            in_flight: AtomicU32::new(0),
        })
    }

    pub(super) fn label(&self) -> &str {
        &self.label
    }

    /// Whether one more request may run now. Callers hold the admission lock, so a "yes" stays true until
    /// they [`enter`](Self::enter).
    pub(super) fn has_room_in_flight(&self) -> bool {
        self.limits
            .max_in_flight
            .is_none_or(|max| self.in_flight.load(Ordering::Acquire) < max)
    }

    pub(super) fn enter(&self) {
        if self.limits.max_in_flight.is_some() {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn leave(&self) {
        if self.limits.max_in_flight.is_some() {
            let _ = self
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// The limit that refused, in words: "60 requests per minute".
    pub(super) fn describe(&self, dimension: Dimension) -> String {
        match dimension {
            Dimension::Requests => format!("{} requests per minute", self.limits.rpm.unwrap_or(0)),
            Dimension::Tokens => format!("{} tokens per minute", self.limits.tpm.unwrap_or(0)),
            Dimension::InFlight => {
                format!(
                    "{} requests in flight",
                    self.limits.max_in_flight.unwrap_or(0)
                )
            }
        }
    }

    /// Current readings; callers hold the admission lock ([`Bucket::peek`] probes).
    pub(super) fn readings(&self) -> Readings {
        Readings {
            requests: self.requests.as_ref().map(Bucket::peek),
            tokens: self.tokens.as_ref().map(Bucket::peek),
        }
    }
}
