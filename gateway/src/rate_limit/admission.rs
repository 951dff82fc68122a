//! An admitted request: holds its in-flight slots, settles its token estimate, carries its headers.

use std::sync::Arc;

use super::limiter::Gate;
use super::subject::Subject;

/// What one admission holds on one subject.
#[derive(Debug)]
pub(super) struct Held {
    pub subject: Arc<Subject>,
    /// Tokens charged at admission (the estimate, clamped to the subject's tpm).
    pub tokens: u32,
}

/// Held for the life of the request: dropping it releases the in-flight slots. Settle it with the real
/// token count when the answer's usage is known; an admission dropped unsettled keeps its estimate charged.
#[derive(Debug)]
#[must_use = "dropping an Admission releases its in-flight slots at once"]
pub struct Admission {
    gate: Option<Arc<Gate>>,
    held: Vec<Held>,
    headers: Vec<(&'static str, String)>,
}

impl Admission {
    /// An admission that no limit applies to.
    pub(super) fn free() -> Self {
        Self {
            gate: None,
            held: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub(super) fn new(
        gate: Arc<Gate>,
        held: Vec<Held>,
        headers: Vec<(&'static str, String)>,
    ) -> Self {
        Self {
            gate: Some(gate),
            held,
            headers,
        }
    }

    /// Corrects each subject's tokens-per-minute with `actual_tokens`: charges the difference when the actual
    /// count exceeds the charge (even past the limit: the tokens are spent, so later requests wait), gives it
    /// back when the estimate was higher (later requests of the same subject can use it at once; a bucket
    /// never holds more than its tpm). Then releases the in-flight slots.
    pub fn settle(self, actual_tokens: u32) {
        let Some(gate) = &self.gate else { return };
        let _order = gate.enter();
        for held in &self.held {
            let Some(bucket) = &held.subject.tokens else {
                continue;
            };
            if actual_tokens > held.tokens {
                bucket.charge_debt(actual_tokens - held.tokens);
            } else {
                bucket.refund(held.tokens - actual_tokens);
            }
        }
    }

    /// `x-ratelimit-*` headers for the successful response, read at admission: per kind (requests, tokens)
    /// the most constrained configured subject — the fewest remaining. Empty when no limit applies.
    #[must_use]
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.headers.clone()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for held in &self.held {
            held.subject.leave();
        }
    }
}
