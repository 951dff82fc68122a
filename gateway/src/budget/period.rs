//! Budget periods: daily, weekly (Monday first), monthly or total, aligned to the calendar of a configured time
//! zone (IANA name, daylight-saving aware: a "day" in New York is 23 or 25 hours twice a year).

use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// How often a budget starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    /// Never resets.
    Total,
}

impl Period {
    /// `daily`, `weekly`, `monthly`, `total`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "daily" => Self::Daily,
            "weekly" => Self::Weekly,
            "monthly" => Self::Monthly,
            "total" => Self::Total,
            _ => return None,
        })
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Total => "total",
        }
    }

    /// The window `[start, end)` holding `now`, in epoch milliseconds (`end` = `i64::MAX` for a total budget).
    #[must_use]
    pub fn window(self, now_ms: i64, tz: Tz) -> (i64, i64) {
        if self == Self::Total {
            return (i64::MIN, i64::MAX);
        }
        let now = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_default()
            .with_timezone(&tz);
        let today = now.date_naive();
        let (first, next) = match self {
            Self::Daily => (today, today + Days::days(1)),
            Self::Weekly => {
                let monday = today - Days::days(i64::from(today.weekday().num_days_from_monday()));
                (monday, monday + Days::days(7))
            }
            _ => {
                let first =
                    NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
                let next = if today.month() == 12 {
                    NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
                }
                .unwrap_or(today);
                (first, next)
            }
        };
        (local_midnight(first, tz), local_midnight(next, tz))
    }
}

/// Epoch milliseconds of the first instant of `date` in `tz` (a midnight skipped by a DST jump resolves to the
/// first instant that exists that day).
fn local_midnight(date: NaiveDate, tz: Tz) -> i64 {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc).timestamp_millis();
        }
        t += Days::minutes(30);
    }
    DateTime::<Utc>::from_naive_utc_and_offset(t, Utc).timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn windows_follow_the_local_calendar() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        // 2026-11-26 17:00 UTC is already the 27th in Shanghai.
        let now = ms("2026-11-26T17:00:00Z");
        assert_eq!(
            Period::Daily.window(now, shanghai),
            (ms("2026-11-26T16:00:00Z"), ms("2026-11-27T16:00:00Z"))
        );
        assert_eq!(
            Period::Monthly.window(now, chrono_tz::UTC),
            (ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z"))
        );
        // Thursday 26 Nov 2026 → Monday 23 Nov.
        assert_eq!(
            Period::Weekly.window(now, chrono_tz::UTC),
            (ms("2026-11-23T00:00:00Z"), ms("2026-11-30T00:00:00Z"))
        );
        let dec = ms("2026-12-31T23:59:59Z");
        assert_eq!(
            Period::Monthly.window(dec, chrono_tz::UTC).1,
            ms("2027-01-01T00:00:00Z")
        );
        assert_eq!(Period::Total.window(now, shanghai), (i64::MIN, i64::MAX));
    }

    #[test]
    fn a_dst_day_is_23_hours_long() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let (start, end) = Period::Daily.window(ms("2026-03-08T12:00:00Z"), ny);
        assert_eq!(end - start, 23 * 3_600_000);
    }
}
