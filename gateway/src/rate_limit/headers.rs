//! OpenAI's `x-ratelimit-*` headers: choosing the reading to show, and the reset durations they carry.
//!
//! OpenAI writes resets as Go's `time.Duration` strings ("1s", "6m0s", "12ms", "1h2m3.5s"); so does this
//! module, rounded up to the millisecond so a client never comes back early.

use std::cmp::Reverse;
use std::time::Duration;

use super::bucket::Reading;
use super::subject::Readings;

pub const LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
pub const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
pub const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
pub const LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
pub const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
pub const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";

/// Headers for the most constrained reading of each kind. Requests and tokens are chosen separately: each
/// triple of headers stands on its own.
pub(super) fn most_constrained(
    all: impl IntoIterator<Item = Readings>,
) -> Vec<(&'static str, String)> {
    let chosen = all
        .into_iter()
        .fold(Readings::default(), |acc, r| Readings {
            requests: tighter(acc.requests, r.requests),
            tokens: tighter(acc.tokens, r.tokens),
        });
    render(chosen)
}

/// The reading with the fewest remaining, then the latest reset.
fn tighter(a: Option<Reading>, b: Option<Reading>) -> Option<Reading> {
    a.into_iter()
        .chain(b)
        .min_by_key(|r| (r.remaining, Reverse(r.reset)))
}

/// The headers of one subject's readings (absent limits send no headers).
pub(super) fn render(readings: Readings) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(6);
    if let Some(r) = readings.requests {
        headers.push((LIMIT_REQUESTS, r.limit.to_string()));
        headers.push((REMAINING_REQUESTS, r.remaining.to_string()));
        headers.push((RESET_REQUESTS, format_reset(r.reset)));
    }
    if let Some(r) = readings.tokens {
        headers.push((LIMIT_TOKENS, r.limit.to_string()));
        headers.push((REMAINING_TOKENS, r.remaining.to_string()));
        headers.push((RESET_TOKENS, format_reset(r.reset)));
    }
    headers
}

/// `d` as OpenAI (Go) writes it, rounded up to the millisecond: "0s", "12ms", "1.5s", "6m0s", "1h2m3.5s".
#[must_use]
pub fn format_reset(d: Duration) -> String {
    let millis = d.as_nanos().div_ceil(1_000_000);
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, fraction) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// Parses a reset as providers send it in `x-ratelimit-reset-*`: a Go duration ("1s", "6m0s", "12ms",
/// "1h2m3.5s", "0.5s", units h/m/s/ms/us/µs/ns) or a bare number of seconds ("20", "0.5").
/// `None` for anything else (negative, empty, unknown unit, or beyond `u64` nanoseconds).
#[must_use]
pub fn parse_reset(s: &str) -> Option<Duration> {
    let s = s.trim();
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    if s.is_empty() {
        return None;
    }
    if s.chars().all(is_number) {
        return scaled(s, NANOS_PER_SECOND);
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let (number, tail) =
            rest.split_at(rest.find(|c: char| !is_number(c)).unwrap_or(rest.len()));
        let (unit, next) = tail.split_at(tail.find(is_number).unwrap_or(tail.len()));
        let per_unit = match unit {
            "h" => 3600 * NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "s" => NANOS_PER_SECOND,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        total = total.checked_add(scaled(number, per_unit)?)?;
        rest = next;
    }
    Some(total)
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// `number` (digits, at most one '.') times `per_unit` nanoseconds, without floating point.
fn scaled(number: &str, per_unit: u64) -> Option<Duration> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(per_unit)?;
    let mut place = per_unit;
    for digit in fraction.chars() {
        place /= 10;
        nanos = nanos.checked_add(u64::from(digit.to_digit(10)?) * place)?;
    }
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_reset_strings() {
        let ms = Duration::from_millis;
        assert_eq!(parse_reset("1s"), Some(ms(1000)));
        assert_eq!(parse_reset("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_reset("12ms"), Some(ms(12)));
        assert_eq!(parse_reset("1h2m3.5s"), Some(ms(3_723_500)));
        assert_eq!(parse_reset("0.5s"), Some(ms(500)));
        assert_eq!(parse_reset("0s"), Some(Duration::ZERO));
        assert_eq!(parse_reset(" 17.999s "), Some(ms(17_999)));
        assert_eq!(parse_reset("1.5µs"), Some(Duration::from_nanos(1500)));
        assert_eq!(
            parse_reset("20"),
            Some(ms(20_000)),
            "a bare number is seconds"
        );
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "s",
            "1x",
            "-1s",
            "1.2.3s",
            "1s2",
            "abc",
            "1 s",
            ".s",
            "99999999999h",
        ] {
            assert_eq!(parse_reset(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_resets_like_openai() {
        let ms = Duration::from_millis;
        assert_eq!(format_reset(Duration::ZERO), "0s");
        assert_eq!(
            format_reset(Duration::from_nanos(1)),
            "1ms",
            "rounds up, never early"
        );
        assert_eq!(format_reset(ms(12)), "12ms");
        assert_eq!(format_reset(ms(1000)), "1s");
        assert_eq!(format_reset(ms(1500)), "1.5s");
        assert_eq!(format_reset(ms(360_000)), "6m0s");
        assert_eq!(format_reset(ms(3_723_500)), "1h2m3.5s");
        assert_eq!(format_reset(ms(3_600_000)), "1h0m0s");
        for d in [ms(12), ms(1500), ms(360_000), ms(3_723_500)] {
            assert_eq!(parse_reset(&format_reset(d)), Some(d));
        }
    }
}
