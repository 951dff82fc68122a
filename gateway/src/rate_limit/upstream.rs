//! Limits of one upstream API key, so the gateway stays within a provider's quota instead of collecting 429s.

use std::time::Duration;

use super::bucket::Bucket;
use super::charges::Charges;
use super::limiter::Gate;
use super::Limits;

/// Requests and tokens per minute of one (provider, API key). `max_in_flight` is not enforced here:
/// [`try_acquire`](Self::try_acquire) hands back nothing whose drop could release a slot.
#[derive(Debug)]
pub struct UpstreamKeyLimiter {
    gate: Gate,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

impl UpstreamKeyLimiter {
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            gate: Gate::default(),
            requests: limits.rpm.map(Bucket::per_minute),
            tokens: limits.tpm.map(Bucket::per_minute),
        }
    }

    /// Non-blocking: charges one request and `estimated_tokens` if both fit now (a request larger than the
    /// whole tpm waits for a full bucket).
    ///
    /// # Errors
    /// How long until both would fit, when either does not; nothing is charged then.
    pub fn try_acquire(&self, estimated_tokens: u32) -> Result<(), Duration> {
        let _order = self.gate.enter();
        let mut charges = Charges::default();
        let mut wait: Option<Duration> = None;
        let wanted = [(&self.requests, 1), (&self.tokens, estimated_tokens)];
        for (bucket, n) in wanted {
            if let Some(bucket) = bucket {
                if let Err(w) = charges.take(bucket, n) {
                    wait = Some(wait.map_or(w, |longest| longest.max(w)));
                }
            }
        }
        match wait {
            Some(wait) => Err(wait), // dropping `charges` restores both buckets
            None => {
                charges.commit();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u32>) -> Limits {
        Limits {
            rpm,
            tpm,
            max_in_flight: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_past_the_key_rpm_until_a_request_refills() {
        let key = UpstreamKeyLimiter::new(limits(Some(2), None));
        assert_eq!(key.try_acquire(10), Ok(()));
        assert_eq!(key.try_acquire(10), Ok(()));
        assert_eq!(key.try_acquire(10), Err(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(key.try_acquire(10), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_refusal_does_not_spend_a_request() {
        let key = UpstreamKeyLimiter::new(limits(Some(2), Some(600)));
        assert_eq!(key.try_acquire(500), Ok(()));
        // 100 tokens left; 300 need 200 more, refilled at 10 per second.
        assert_eq!(key.try_acquire(300), Err(Duration::from_secs(20)));
        assert_eq!(
            key.try_acquire(100),
            Ok(()),
            "the refused call took no request"
        );
        assert!(
            key.try_acquire(0).is_err(),
            "two requests used, none refused ones"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reports_the_longer_of_two_waits() {
        let key = UpstreamKeyLimiter::new(limits(Some(1), Some(60)));
        assert_eq!(key.try_acquire(60), Ok(()));
        // Both empty: a request in 60 s, 60 tokens in 60 s, 30 tokens in 30 s.
        assert_eq!(key.try_acquire(30), Err(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_key_is_always_free() {
        let key = UpstreamKeyLimiter::new(Limits::default());
        for _ in 0..1000 {
            assert_eq!(key.try_acquire(u32::MAX), Ok(()));
        }
    }
}
