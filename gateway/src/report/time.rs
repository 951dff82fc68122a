//! Times in reports: RFC 3339 / date / epoch-millisecond parsing and UTC formatting, without a date library
//! (civil-date arithmetic from Howard Hinnant's `days_from_civil`).

const MS_PER_DAY: i64 = 86_400_000;

/// Epoch milliseconds from `1767225600000`, `2026-01-01`, `2026-01-01T00:00:00Z`,
/// `2026-01-01T08:00:00.250+08:00` (a space may stand for `T`). `None` for anything else.
#[must_use]
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, rest) = text.split_at_checked(10)?;
    let day_ms = parse_date(date)?.checked_mul(MS_PER_DAY)?;
    if rest.is_empty() {
        return Some(day_ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (clock, zone) = rest.split_at_checked(8)?;
    let [h, m, s] = fields::<3>(clock, ':')?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let (fraction_ms, zone) = match zone.strip_prefix('.') {
        Some(after) => {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let (frac, zone) = after.split_at(digits);
            let padded: String = frac.chars().chain("000".chars()).take(3).collect();
            (padded.parse::<i64>().ok()?, zone)
        }
        None => (0, zone),
    };
    let offset_ms = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let [oh, om] = fields::<2>(zone.get(1..)?, ':')?;
            if zone.len() != 6 || oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3_600_000 + om * 60_000)
        }
    };
    Some(day_ms + h * 3_600_000 + m * 60_000 + s * 1000 + fraction_ms - offset_ms)
}

/// `2026-01-01T00:00:00Z` (milliseconds shown only when not zero).
#[must_use]
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if milli == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<i64> {
    if text.len() != 10 {
        return None;
    }
    let [y, m, d] = fields::<3>(text, '-')?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `N` unsigned decimal fields separated by `sep`.
fn fields<const N: usize>(text: &str, sep: char) -> Option<[i64; N]> {
    let mut out = [0; N];
    let mut parts = text.split(sep);
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_shapes() {
        assert_eq!(parse("1767225600000"), Some(1_767_225_600_000));
        assert_eq!(parse("2026-01-01"), Some(1_767_225_600_000));
        assert_eq!(parse("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(parse("2026-01-01 08:00:00+08:00"), Some(1_767_225_600_000));
        assert_eq!(
            parse("2025-12-31T19:00:00.5-05:00"),
            Some(1_767_225_600_500)
        );
        assert_eq!(parse("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2025-02-29",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0800",
            "2026-01-01T00:00:00.Z",
            "-5",
            "2026-1-1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_utc_and_round_trips() {
        assert_eq!(format_ms(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(format_ms(1_709_208_000_250), "2024-02-29T12:00:00.250Z");
        for ms in [0, 951_782_400_000, 1_767_225_599_999, 4_102_444_800_000] {
            assert_eq!(parse(&format_ms(ms)), Some(ms));
        }
    }
}
