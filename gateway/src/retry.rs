//! Pacing retries — the only user of the `backoff` crate — and reading the provider's own retry hints.
//!
//! A retry always moves on (next key, then next tier), so the pause between attempts is short: exponential
//! from 20 ms with ±50 % jitter, capped at 1 s, and never past the request's deadline. A provider's
//! `retry-after` / `retry-after-ms` / rate-limit reset is applied to the key that sent it (as its cooldown),
//! not slept on.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use http::HeaderMap;

use crate::rate_limit::parse_reset;

/// Spacing between the attempts of one request.
pub struct RetryPacer(ExponentialBackoff);

impl RetryPacer {
    pub const INITIAL: Duration = Duration::from_millis(20);
    pub const MAX: Duration = Duration::from_secs(1);

    #[must_use]
    pub fn new() -> Self {
        Self(ExponentialBackoff {
            initial_interval: Self::INITIAL,
            current_interval: Self::INITIAL,
            randomization_factor: 0.5,
            multiplier: 2.0,
            max_interval: Self::MAX,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        })
    }

    /// The pause before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next_backoff().unwrap_or(Self::MAX)
    }
}

impl Default for RetryPacer {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest a provider hint can rest a key (a quota reset a day away is still only this long).
pub const MAX_HINT: Duration = crate::routing::health::QUOTA_COOLDOWN;

/// When the provider says this key can be used again: `retry-after-ms`, then `retry-after` (seconds; an
/// HTTP date is ignored), then the later of OpenAI's `x-ratelimit-reset-requests` / `-tokens`. Upstream
/// numbers are untrusted: anything unrepresentable is ignored, anything huge is capped at [`MAX_HINT`].
#[must_use]
pub fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| header_text(headers, name);
    let secs = |s: f64| {
        (s.is_finite() && s >= 0.0).then(|| {
            if s >= MAX_HINT.as_secs_f64() {
                MAX_HINT
            } else {
                Duration::from_secs_f64(s)
            }
        })
    };
    if let Some(d) = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| secs(ms / 1000.0))
    {
        return Some(d);
    }
    if let Some(d) = text("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(secs)
    {
        return Some(d);
    }
    let requests = text("x-ratelimit-reset-requests").and_then(parse_reset);
    let tokens = text("x-ratelimit-reset-tokens").and_then(parse_reset);
    requests.max(tokens).map(|d| d.min(MAX_HINT))
}

/// `x-ratelimit-remaining-requests: 0` (or tokens) on an answer: the key is spent until its reset (capped).
#[must_use]
pub fn exhausted_until_reset(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| header_text(headers, name);
    let spent = |remaining: &str, reset: &str| {
        (text(remaining).and_then(|v| v.parse::<u64>().ok()) == Some(0))
            .then(|| text(reset).and_then(parse_reset))
            .flatten()
    };
    spent(
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    )
    .max(spent(
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ))
    .map(|d| d.min(MAX_HINT))
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn pauses_grow_with_jitter_and_stay_capped() {
        let mut pacer = RetryPacer::new();
        let first = pacer.next_delay();
        assert!(
            first >= Duration::from_millis(10) && first <= Duration::from_millis(30),
            "{first:?}"
        );
        for _ in 0..20 {
            assert!(pacer.next_delay() <= RetryPacer::MAX.mul_f64(1.5));
        }
    }

    #[test]
    fn reads_every_retry_hint_in_order_of_precision() {
        assert_eq!(
            retry_hint(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_hint(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(
            retry_hint(&headers(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s")
            ])),
            Some(Duration::from_secs(360))
        );
        assert_eq!(retry_hint(&HeaderMap::new()), None);
        // Hostile or broken upstream values never panic and never rest a key for longer than the cap.
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "1e20")])),
            Some(MAX_HINT)
        );
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "99999999999999999999")])),
            Some(MAX_HINT)
        );
        assert_eq!(retry_hint(&headers(&[("retry-after", "1e400")])), None);
        assert_eq!(retry_hint(&headers(&[("retry-after-ms", "inf")])), None);
        assert_eq!(retry_hint(&headers(&[("retry-after", "-3")])), None);
    }

    #[test]
    fn a_spent_key_is_rested_until_its_reset() {
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "12ms"),
        ]);
        assert_eq!(exhausted_until_reset(&h), Some(Duration::from_millis(12)));
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-reset-requests", "12ms"),
        ]);
        assert_eq!(exhausted_until_reset(&h), None);
    }
}
