//! The `x-ratelimit-*` headers of admissions and refusals.

use super::{admissions_until_refused, header, key_limited, limits, one};
use crate::rate_limit::{headers, RateLimiter};

#[tokio::test(start_paused = true)]
async fn headers_show_remaining_and_reset_going_down() {
    let limiter = key_limited(limits(Some(60), Some(1000), None));
    let first = limiter
        .admit("ci", "search", "gpt-4o", 100)
        .unwrap()
        .headers();
    let expected =
        |pairs: [(&'static str, &str); 6]| pairs.map(|(n, v)| (n, v.to_owned())).to_vec();
    assert_eq!(
        first,
        expected([
            (headers::LIMIT_REQUESTS, "60"),
            (headers::REMAINING_REQUESTS, "59"),
            (headers::RESET_REQUESTS, "1s"),
            (headers::LIMIT_TOKENS, "1000"),
            (headers::REMAINING_TOKENS, "900"),
            (headers::RESET_TOKENS, "6s"),
        ])
    );
    let second = limiter
        .admit("ci", "search", "gpt-4o", 100)
        .unwrap()
        .headers();
    assert_eq!(
        header(&second, headers::REMAINING_REQUESTS).as_deref(),
        Some("58")
    );
    assert_eq!(
        header(&second, headers::RESET_REQUESTS).as_deref(),
        Some("2s")
    );
    assert_eq!(
        header(&second, headers::REMAINING_TOKENS).as_deref(),
        Some("800")
    );
    assert_eq!(
        header(&second, headers::RESET_TOKENS).as_deref(),
        Some("12s")
    );
}

#[tokio::test(start_paused = true)]
async fn headers_come_from_the_most_constrained_subject() {
    let limiter = RateLimiter::new(
        one("ci", limits(Some(100), Some(500), None)),
        one("search", limits(Some(5), None, None)),
        one("gpt-4o", limits(None, Some(100_000), None)),
    );
    let shown = limiter
        .admit("ci", "search", "gpt-4o", 100)
        .unwrap()
        .headers();
    assert_eq!(
        header(&shown, headers::LIMIT_REQUESTS).as_deref(),
        Some("5"),
        "the team's rpm"
    );
    assert_eq!(
        header(&shown, headers::REMAINING_REQUESTS).as_deref(),
        Some("4")
    );
    assert_eq!(
        header(&shown, headers::LIMIT_TOKENS).as_deref(),
        Some("500"),
        "the key's tpm"
    );
    assert_eq!(
        header(&shown, headers::REMAINING_TOKENS).as_deref(),
        Some("400")
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_names_its_subject_and_carries_its_headers() {
    let limiter = key_limited(limits(Some(2), Some(1000), None));
    admissions_until_refused(&limiter, "search");
    let refused = limiter.admit("ci", "search", "gpt-4o", 10).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "rate limit exceeded for key ci: 2 requests per minute"
    );
    assert_eq!(
        header(&refused.headers, headers::REMAINING_REQUESTS).as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&refused.headers, headers::RESET_REQUESTS).as_deref(),
        Some("1m0s")
    );
    assert_eq!(
        header(&refused.headers, headers::REMAINING_TOKENS).as_deref(),
        Some("980")
    );
}
