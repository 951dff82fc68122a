//! UTC calendar fields of a `SystemTime`, formatted the ways the signers put dates on the wire
//! (`20150830T123600Z`, `20150830`, `2015-08-30`, Unix seconds).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::GatewayError;

/// A point in time broken into UTC calendar fields (proleptic Gregorian, second precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcTimestamp {
    unix_seconds: u64,
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl UtcTimestamp {
    /// Truncates `time` to whole seconds.
    ///
    /// # Errors
    /// [`GatewayError::Internal`] for a time before 1970.
    pub(crate) fn from_system_time(time: SystemTime) -> Result<Self, GatewayError> {
        let unix_seconds = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| GatewayError::Internal("cannot sign with a clock before 1970".into()))?
            .as_secs();
        Ok(Self::from_unix_seconds(unix_seconds))
    }

    pub(crate) fn from_unix_seconds(unix_seconds: u64) -> Self {
        let days = i64::try_from(unix_seconds / 86_400).unwrap_or(i64::MAX / 2);
        let second_of_day = unix_seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        // The three values are below 86_400, 60 and 24: the casts cannot truncate.
        Self {
            unix_seconds,
            year,
            month,
            day,
            hour: (second_of_day / 3600) as u32,
            minute: (second_of_day / 60 % 60) as u32,
            second: (second_of_day % 60) as u32,
        }
    }

    pub(crate) fn unix_seconds(&self) -> u64 {
        self.unix_seconds
    }

    /// `YYYYMMDDTHHMMSSZ` (SigV4's `X-Amz-Date`).
    pub(crate) fn compact_date_time(&self) -> String {
        format!(
            "{}T{:02}{:02}{:02}Z",
            self.compact_date(),
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `YYYYMMDD` (SigV4's credential-scope date).
    pub(crate) fn compact_date(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DD` (TC3's credential-scope date).
    pub(crate) fn iso_date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    #[test]
    fn formats_the_sigv4_suite_time() {
        let t = UtcTimestamp::from_unix_seconds(1_440_938_160);
        assert_eq!(t.compact_date_time(), "20150830T123600Z");
        assert_eq!(t.compact_date(), "20150830");
        assert_eq!(t.iso_date(), "2015-08-30");
    }

    #[test]
    fn agrees_with_httpdate_on_random_instants() {
        // httpdate formats `Sun, 30 Aug 2015 12:36:00 GMT` with its own calendar code: an independent check.
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut instants: Vec<u64> = (0..20_000)
            .map(|_| rng.random_range(0..253_402_300_799))
            .collect();
        // Edges: the epoch, leap days, century rules, the last second of 9999.
        instants.extend([
            0,
            951_782_400,
            1_709_164_800,
            4_107_542_399,
            253_402_300_799,
        ]);
        for secs in instants {
            let ours = UtcTimestamp::from_unix_seconds(secs);
            let theirs = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            let fields: Vec<&str> = theirs.split([' ', ':']).collect();
            let expected = format!(
                "{}{:02}{}T{}{}{}Z",
                fields[3],
                MONTHS.iter().position(|m| *m == fields[2]).unwrap() + 1,
                fields[1],
                fields[4],
                fields[5],
                fields[6]
            );
            assert_eq!(ours.compact_date_time(), expected, "{secs} ({theirs})");
        }
    }

    #[test]
    fn refuses_a_time_before_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert!(UtcTimestamp::from_system_time(before).is_err());
    }
}
