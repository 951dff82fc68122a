//! Rate limiting: requests per minute, tokens per minute and requests in flight, per virtual key, team and
//! model ([`RateLimiter`]) and per upstream API key ([`UpstreamKeyLimiter`]). The only user of `governor`.
//!
//! ## Layout
//! - `limiter` — [`RateLimiter::admit`]: all-or-nothing admission under one lock (why: see there).
//! - `admission` — [`Admission`]: in-flight slots, [`Admission::settle`] with the real token count, headers.
//! - `upstream` — [`UpstreamKeyLimiter`]: a provider key's quota.
//! - `subject` — one key, team or model and its limits.
//! - `bucket` — one per-minute GCRA bucket on governor, with exact rollback, refund and debt;
//!   `charges` makes several charges all or nothing.
//! - `clock` — governor on tokio's clock, so tests drive limits with paused time.
//! - [`headers`] — OpenAI's `x-ratelimit-*` headers; [`parse_reset`] for providers' reset strings.
//!
//! Every limit is per minute and bursts up to itself: a key with `rpm = 60` may send 60 requests at once, then
//! one per second. Token charges are estimates at admission ([`estimate_prompt_tokens`] plus the request's
//! maximum output), corrected by [`Admission::settle`].

mod admission;
mod bucket;
mod charges;
mod clock;
pub mod headers;
mod limiter;
mod subject;
mod upstream;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use admission::Admission;
pub use headers::parse_reset;
pub use limiter::RateLimiter;
pub use upstream::UpstreamKeyLimiter;

/// Limits of one subject (a virtual key, a team, a model, an upstream API key). All optional; a limit of 0
/// refuses everything it applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<u32>,
    /// Requests running at once.
    pub max_in_flight: Option<u32>,
}

/// A refused admission.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit exceeded for {subject}: {what}")]
pub struct RateLimited {
    /// "key ci", "team search" or "model gpt-4o": names only, never a secret.
    pub subject: String,
    /// The limit that refused, in words: "60 requests per minute".
    pub what: String,
    /// When a retry can succeed as far as this limit knows (in-flight refusals: 1 s).
    pub retry_after: Duration,
    /// The refusing subject's `x-ratelimit-*` headers.
    pub headers: Vec<(&'static str, String)>,
}

/// An upper-bound-ish token estimate of a request body: a third of its bytes, rounded up. English prose runs
/// about four bytes a token; JSON punctuation and other scripts run fewer, hence three.
#[must_use]
pub fn estimate_prompt_tokens(body_bytes: usize) -> u32 {
    u32::try_from(body_bytes.div_ceil(3)).unwrap_or(u32::MAX)
}
