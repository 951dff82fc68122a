//! Behaviour of [`RateLimiter`] and [`Admission`], on paused tokio time.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

mod shown_headers;

pub(super) fn limits(rpm: Option<u32>, tpm: Option<u32>, max_in_flight: Option<u32>) -> Limits {
    Limits {
        rpm,
        tpm,
        max_in_flight,
    }
}

pub(super) fn one(name: &str, l: Limits) -> HashMap<String, Limits> {
    HashMap::from([(name.to_owned(), l)])
}

/// A limiter with only key `ci` limited.
pub(super) fn key_limited(l: Limits) -> RateLimiter {
    RateLimiter::new(one("ci", l), HashMap::new(), HashMap::new())
}

pub(super) fn header(headers: &[(&'static str, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
}

/// Admits `ci` on `team` until refused; how many got through.
pub(super) fn admissions_until_refused(limiter: &RateLimiter, team: &str) -> usize {
    (0..20_000)
        .take_while(|_| limiter.admit("ci", team, "gpt-4o", 10).is_ok())
        .count()
}

#[tokio::test(start_paused = true)]
async fn refuses_the_request_past_rpm_until_the_minute_refills() {
    let limiter = key_limited(limits(Some(3), None, None));
    for _ in 0..3 {
        assert!(limiter.admit("ci", "search", "gpt-4o", 10).is_ok());
    }
    let refused = limiter.admit("ci", "search", "gpt-4o", 10).unwrap_err();
    assert_eq!(
        refused.retry_after,
        Duration::from_secs(20),
        "one request refills every 20 s"
    );
    tokio::time::advance(Duration::from_secs(19)).await;
    assert!(limiter.admit("ci", "search", "gpt-4o", 10).is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(limiter.admit("ci", "search", "gpt-4o", 10).is_ok());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        admissions_until_refused(&limiter, "search"),
        3,
        "a quiet minute refills the whole burst"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_of_an_rpm_refusal_is_within_a_minute() {
    for rpm in [1, 7, 60, 10_000] {
        let limiter = key_limited(limits(Some(rpm), None, None));
        admissions_until_refused(&limiter, "search");
        let refused = limiter.admit("ci", "search", "gpt-4o", 10).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO, "rpm {rpm}");
        assert!(refused.retry_after <= Duration::from_secs(60), "rpm {rpm}");
        tokio::time::advance(refused.retry_after).await;
        assert!(
            limiter.admit("ci", "search", "gpt-4o", 10).is_ok(),
            "rpm {rpm}: the hint is honest"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn charges_the_token_estimate_and_refuses_what_does_not_fit() {
    let limiter = key_limited(limits(None, Some(1000), None));
    let _first = limiter.admit("ci", "search", "gpt-4o", 600).unwrap();
    let refused = limiter.admit("ci", "search", "gpt-4o", 500).unwrap_err();
    assert_eq!(refused.what, "1000 tokens per minute");
    assert_eq!(
        refused.retry_after,
        Duration::from_secs(6),
        "100 tokens missing at 1000 per minute"
    );
    assert!(limiter.admit("ci", "search", "gpt-4o", 400).is_ok());
}

#[tokio::test(start_paused = true)]
async fn settling_below_the_estimate_gives_the_difference_back() {
    let limiter = key_limited(limits(None, Some(1000), None));
    let first = limiter.admit("ci", "search", "gpt-4o", 800).unwrap();
    assert!(limiter.admit("ci", "search", "gpt-4o", 500).is_err());
    first.settle(100);
    let later = limiter.admit("ci", "search", "gpt-4o", 500).unwrap();
    assert_eq!(
        header(&later.headers(), headers::REMAINING_TOKENS).as_deref(),
        Some("400")
    );
}

#[tokio::test(start_paused = true)]
async fn settling_above_the_estimate_charges_the_extra() {
    let limiter = key_limited(limits(None, Some(1000), None));
    limiter
        .admit("ci", "search", "gpt-4o", 100)
        .unwrap()
        .settle(900);
    assert!(limiter.admit("ci", "search", "gpt-4o", 200).is_err());
    assert!(limiter.admit("ci", "search", "gpt-4o", 100).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_team_refusal_charges_nothing_to_the_key() {
    let limiter = RateLimiter::new(
        one("ci", limits(Some(3), Some(30), None)),
        one("tight", limits(Some(1), None, None)),
        HashMap::new(),
    );
    assert!(limiter.admit("ci", "tight", "gpt-4o", 10).is_ok());
    for _ in 0..5 {
        let refused = limiter.admit("ci", "tight", "gpt-4o", 10).unwrap_err();
        assert_eq!(refused.subject, "team tight");
    }
    // The key's rpm and tpm each allow 3; only the first admission counted.
    assert_eq!(admissions_until_refused(&limiter, "roomy"), 2);
}

#[tokio::test(start_paused = true)]
async fn an_in_flight_refusal_charges_nothing_either() {
    let limiter = RateLimiter::new(
        one("ci", limits(Some(2), None, None)),
        HashMap::new(),
        one("gpt-4o", limits(None, None, Some(1))),
    );
    let running = limiter.admit("ci", "search", "gpt-4o", 10).unwrap();
    assert!(limiter.admit("ci", "search", "gpt-4o", 10).is_err());
    drop(running);
    assert!(
        limiter.admit("ci", "search", "gpt-4o", 10).is_ok(),
        "the key's second request is still there"
    );
    assert_eq!(
        limiter
            .admit("ci", "search", "gpt-4o", 10)
            .unwrap_err()
            .subject,
        "key ci"
    );
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_refuses_while_n_run_and_admits_when_one_ends() {
    let limiter = key_limited(limits(None, None, Some(2)));
    let first = limiter.admit("ci", "search", "gpt-4o", 10).unwrap();
    let second = limiter.admit("ci", "search", "gpt-4o", 10).unwrap();
    let refused = limiter.admit("ci", "search", "gpt-4o", 10).unwrap_err();
    assert_eq!(refused.what, "2 requests in flight");
    assert_eq!(refused.retry_after, Duration::from_secs(1));
    drop(first);
    let third = limiter.admit("ci", "search", "gpt-4o", 10).unwrap();
    assert!(limiter.admit("ci", "search", "gpt-4o", 10).is_err());
    second.settle(5);
    assert!(
        limiter.admit("ci", "search", "gpt-4o", 10).is_ok(),
        "settling ends the request too"
    );
    drop(third);
}

#[tokio::test(start_paused = true)]
async fn the_longest_refusal_is_reported() {
    let limiter = RateLimiter::new(
        one("ci", limits(Some(60), None, None)),
        one("search", limits(Some(1), None, None)),
        HashMap::new(),
    );
    assert!(limiter.admit("ci", "search", "gpt-4o", 10).is_ok());
    assert_eq!(admissions_until_refused(&limiter, "roomy"), 59);
    // The key refills a request in 1 s, the team in 60 s: only the team's wait is worth telling.
    let refused = limiter.admit("ci", "search", "gpt-4o", 10).unwrap_err();
    assert_eq!(refused.subject, "team search");
    assert_eq!(refused.retry_after, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn subjects_without_limits_are_free() {
    let limiter = RateLimiter::new(
        one("ci", Limits::default()),
        one("search", Limits::default()),
        one("gpt-4o", Limits::default()),
    );
    assert_eq!(limiter.limited_subjects(), 0, "no limiter allocated");
    for _ in 0..10_000 {
        let admitted = limiter.admit("ci", "search", "gpt-4o", u32::MAX).unwrap();
        assert!(admitted.headers().is_empty());
        admitted.settle(u32::MAX);
    }
}

#[test]
fn limits_reject_unknown_fields() {
    assert_eq!(
        toml::from_str::<Limits>("rpm = 60\ntpm = 1000").unwrap(),
        limits(Some(60), Some(1000), None)
    );
    assert!(toml::from_str::<Limits>("rpm = 60\nburst = 5").is_err());
}

#[test]
fn estimates_a_third_of_the_bytes_rounded_up() {
    assert_eq!(estimate_prompt_tokens(0), 0);
    assert_eq!(estimate_prompt_tokens(1), 1);
    assert_eq!(estimate_prompt_tokens(3), 1);
    assert_eq!(estimate_prompt_tokens(4), 2);
    assert_eq!(estimate_prompt_tokens(usize::MAX), u32::MAX);
}

#[test]
fn limiters_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<RateLimiter>();
    shared::<Admission>();
    shared::<UpstreamKeyLimiter>();
}

#[tokio::test(start_paused = true)]
async fn concurrent_admissions_charge_exactly_what_was_admitted() {
    let limiter = RateLimiter::new(
        one("ci", limits(Some(1000), Some(100_000), None)),
        one("tight", limits(Some(10), None, None)),
        HashMap::new(),
    );
    let runtime = tokio::runtime::Handle::current();
    let admitted: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    // Read the paused clock of the test's runtime, as the tasks of a real gateway would.
                    let _clock = runtime.enter();
                    (0..200)
                        .filter(|_| limiter.admit("ci", "tight", "gpt-4o", 10).is_ok())
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(admitted, 10, "the team binds");
    assert_eq!(
        admissions_until_refused(&limiter, "roomy"),
        990,
        "the refusals cost the key nothing"
    );
}
