//! Wall-clock time as the gateway records it: Unix epoch milliseconds (events, budgets, the control log) and
//! seconds (the `created` of translated answers). Before the epoch reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix epoch milliseconds now.
#[must_use]
pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

/// Unix epoch milliseconds of `t`.
#[must_use]
pub fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix epoch seconds now.
#[must_use]
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
