//! The gateway's limiter: admits a request against its key, team and model, all or nothing.
//!
//! Why one lock around admission: governor answers one bucket at a time, and a request touches up to six
//! (requests and tokens of three subjects) plus three in-flight counts. Admission charges buckets in order
//! and, when one refuses, restores the ones already charged ([`Charges`]). Restoring a snapshot is exact only
//! if nobody charged the bucket in between, so every charge, restore and settlement happens under
//! `gate` — a few atomic operations per bucket, far below a request's cost. Releasing an in-flight slot
//! needs no lock: it only ever makes room.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::admission::{Admission, Held};
use super::charges::Charges;
use super::headers;
use super::subject::{Dimension, Subject, IN_FLIGHT_RETRY};
use super::{Limits, RateLimited};

/// The serialising lock of one [`RateLimiter`]; it guards no data, only the order of charges.
#[derive(Debug, Default)]
pub(super) struct Gate(Mutex<()>);

impl Gate {
    pub(super) fn enter(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a panic elsewhere leaves nothing inconsistent behind.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per-key, per-team and per-model limits of one gateway. `Send + Sync`; share it by reference or `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    gate: Arc<Gate>,
    /// Swapped whole when the admin API changes a key's limits.
    keys: arc_swap::ArcSwap<HashMap<String, Arc<Subject>>>,
    teams: HashMap<String, Arc<Subject>>,
    models: HashMap<String, Arc<Subject>>,
}

/// Which subject refused, which of its limits, and when that limit could admit the request.
struct Refusal {
    subject: usize,
    dimension: Dimension,
    retry_after: Duration,
}

impl RateLimiter {
    /// `keys`: virtual key name → limits; `teams`: team name → limits; `models`: public model name → limits.
    /// Subjects whose limits are all unset are dropped: they are free and cost nothing per request.
    #[must_use]
    pub fn new(
        keys: HashMap<String, Limits>,
        teams: HashMap<String, Limits>,
        models: HashMap<String, Limits>,
    ) -> Self {
        let build =
            |kind: &str, limits: HashMap<String, Limits>| -> HashMap<String, Arc<Subject>> {
                limits
                    .into_iter()
                    .filter_map(|(name, l)| {
                        Some((name.clone(), Arc::new(Subject::new(kind, &name, l)?)))
                    })
                    .collect()
            };
        Self {
            gate: Arc::default(),
            keys: arc_swap::ArcSwap::from_pointee(build("key", keys)),
            teams: build("team", teams),
            models: build("model", models),
        }
    }

    /// Sets (or, with no limit set, removes) a key's limits — for keys issued through the admin API. A key
    /// whose limits change starts with fresh buckets.
    pub fn set_key(&self, key: &str, limits: Limits) {
        let mut next = (**self.keys.load()).clone();
        match Subject::new("key", key, limits) {
            Some(subject) => {
                next.insert(key.to_string(), Arc::new(subject));
            }
            None => {
                next.remove(key);
            }
        }
        self.keys.store(Arc::new(next));
    }

    /// Admits one request of about `estimated_tokens` (prompt estimate + max output tokens): one request and
    /// the tokens against each of the key's, the team's and the model's per-minute limits, and one in-flight
    /// slot against each `max_in_flight`. Unknown or unlimited subjects are free.
    ///
    /// # Errors
    /// [`RateLimited`] when any limit refuses; then nothing is charged anywhere. Among several refusals it
    /// names the one that lasts longest, so that retrying after `retry_after` has a chance.
    pub fn admit(
        &self,
        key: &str,
        team: &str,
        model: &str,
        estimated_tokens: u32,
    ) -> Result<Admission, RateLimited> {
        let keys = self.keys.load();
        let subjects: Vec<Arc<Subject>> =
            [keys.get(key), self.teams.get(team), self.models.get(model)]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        if subjects.is_empty() {
            return Ok(Admission::free());
        }
        let _order = self.gate.enter();
        let tokens = match charge_all(&subjects, estimated_tokens) {
            Ok(tokens) => tokens,
            Err(refusal) => {
                // The charges are already rolled back, so the readings show the state the client faces.
                let subject = &subjects[refusal.subject];
                return Err(RateLimited {
                    subject: subject.label().to_owned(),
                    what: subject.describe(refusal.dimension),
                    retry_after: refusal.retry_after,
                    headers: headers::render(subject.readings()),
                });
            }
        };
        let shown = headers::most_constrained(subjects.iter().map(|s| s.readings()));
        let held = subjects
            .into_iter()
            .zip(tokens)
            .map(|(subject, tokens)| {
                subject.enter();
                Held { subject, tokens }
            })
            .collect();
        Ok(Admission::new(Arc::clone(&self.gate), held, shown))
    }

    #[cfg(test)]
    pub(super) fn limited_subjects(&self) -> usize {
        self.keys.load().len() + self.teams.len() + self.models.len()
    }
}

/// Charges every bucket of every subject, committing only if none refuses. Returns the tokens charged per
/// subject (a request larger than a bucket is clamped to it). Call under the gate.
fn charge_all(subjects: &[Arc<Subject>], estimated_tokens: u32) -> Result<Vec<u32>, Refusal> {
    let mut charges = Charges::default();
    let mut refusals = Vec::new();
    let mut tokens = Vec::with_capacity(subjects.len());
    for (index, subject) in subjects.iter().enumerate() {
        let mut refuse = |dimension, retry_after| {
            refusals.push(Refusal {
                subject: index,
                dimension,
                retry_after,
            });
        };
        if !subject.has_room_in_flight() {
            refuse(Dimension::InFlight, IN_FLIGHT_RETRY);
        }
        if let Some(bucket) = &subject.requests {
            if let Err(wait) = charges.take(bucket, 1) {
                refuse(Dimension::Requests, wait);
            }
        }
        let charged = match &subject.tokens {
            Some(bucket) => charges
                .take(bucket, estimated_tokens)
                .unwrap_or_else(|wait| {
                    refuse(Dimension::Tokens, wait);
                    0
                }),
            None => 0,
        };
        tokens.push(charged);
    }
    // The longest wait binds; on a tie, the first subject (key, then team, then model) is named.
    match refusals.into_iter().min_by_key(|r| Reverse(r.retry_after)) {
        Some(refusal) => Err(refusal), // dropping `charges` restores every bucket
        None => {
            charges.commit();
            Ok(tokens)
        }
    }
}
