//! One budget subject's books for its current period: what is spent, what is reserved by requests in flight.
//!
//! The invariant a hard budget keeps: a reservation is granted only if `spent + reserved + amount ≤ limit`,
//! and a request's reservation is its worst-case cost. So `spent` can pass `limit` only by what requests in
//! flight cost beyond their reservation (an upstream ignoring `max_tokens`, a prompt above the byte bound) —
//! the stated overspend bound (README, "Budgets").

use std::sync::Mutex;

use chrono_tz::Tz;

use super::period::Period;

/// A reservation held against a ledger: its amount and the period it was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub amount: u64,
    window_start: i64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub spent: u64,
    pub reserved: u64,
    /// End of the current period (epoch ms; `i64::MAX` for a total budget).
    pub window_end: i64,
}

/// Thresholds (percent of the limit) that a settlement carried `spent` across, for alerts.
pub type Crossed = Vec<u8>;

#[derive(Debug)]
struct Books {
    window: (i64, i64),
    spent: u64,
    reserved: u64,
    limit: u64,
    thresholds: Vec<u8>,
    /// Thresholds already alerted in this window.
    alerted: Vec<u8>,
}

/// The books of one (budget, subject).
#[derive(Debug)]
pub struct Ledger {
    period: Period,
    tz: Tz,
    books: Mutex<Books>,
}

impl Ledger {
    /// A ledger whose current period already holds `spent` (recovered from the usage store at start); the
    /// thresholds that spend has already crossed count as alerted (no repeat after a restart).
    #[must_use]
    pub fn new(
        limit: u64,
        period: Period,
        tz: Tz,
        thresholds: Vec<u8>,
        now_ms: i64,
        spent: u64,
    ) -> Self {
        let alerted = thresholds
            .iter()
            .copied()
            .filter(|t| reached(spent, limit, *t))
            .collect();
        Self {
            period,
            tz,
            books: Mutex::new(Books {
                window: period.window(now_ms, tz),
                spent,
                reserved: 0,
                limit,
                thresholds,
                alerted,
            }),
        }
    }

    fn books(&self, now_ms: i64) -> std::sync::MutexGuard<'_, Books> {
        let mut b = self
            .books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now_ms >= b.window.1 {
            // A new period: spend starts over; reservations of requests still in flight stay held.
            b.window = self.period.window(now_ms, self.tz);
            b.spent = 0;
            b.alerted.clear();
        }
        b
    }

    /// Reserves `amount`; a hard budget refuses when it does not fit, a soft one always grants.
    ///
    /// # Errors
    /// [`Refusal`] with the books as they stood.
    pub fn reserve(&self, amount: u64, hard: bool, now_ms: i64) -> Result<Hold, Refusal> {
        let mut b = self.books(now_ms);
        let committed = b.spent.saturating_add(b.reserved);
        if hard && committed.saturating_add(amount) > b.limit {
            return Err(Refusal {
                spent: b.spent,
                reserved: b.reserved,
                window_end: b.window.1,
            });
        }
        b.reserved = b.reserved.saturating_add(amount);
        Ok(Hold {
            amount,
            window_start: b.window.0,
        })
    }

    /// Replaces a reservation with the actual cost. A request that started in an earlier period releases its
    /// reservation but is not charged to the new period (its usage event is dated in the old one).
    pub fn settle(&self, hold: Hold, actual: u64, now_ms: i64) -> Crossed {
        let mut b = self.books(now_ms);
        if hold.window_start == b.window.0 {
            b.reserved = b.reserved.saturating_sub(hold.amount);
            b.spent = b.spent.saturating_add(actual);
        } else {
            // The reservation was carried into this window; release it.
            b.reserved = b.reserved.saturating_sub(hold.amount);
        }
        let mut crossed = Vec::new();
        for t in b.thresholds.clone() {
            if reached(b.spent, b.limit, t) && !b.alerted.contains(&t) {
                b.alerted.push(t);
                crossed.push(t);
            }
        }
        crossed
    }

    /// A changed limit or thresholds, kept with the spend and reservations already booked.
    pub fn update(&self, limit: u64, thresholds: Vec<u8>) {
        let mut b = self
            .books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        b.limit = limit;
        b.thresholds = thresholds;
    }

    /// The current limit.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .limit
    }

    /// `(spent, reserved, window)` now.
    #[must_use]
    pub fn snapshot(&self, now_ms: i64) -> (u64, u64, (i64, i64)) {
        let b = self.books(now_ms);
        (b.spent, b.reserved, b.window)
    }
}

/// Whether `spent` is at least `percent` % of `limit` (exact integer arithmetic).
#[must_use]
pub fn reached(spent: u64, limit: u64, percent: u8) -> bool {
    u128::from(spent) * 100 >= u128::from(limit) * u128::from(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn ledger(limit: u64) -> Ledger {
        Ledger::new(
            limit,
            Period::Daily,
            chrono_tz::UTC,
            vec![50, 80, 100],
            0,
            0,
        )
    }

    #[test]
    fn hard_budgets_admit_only_what_fits_with_everything_in_flight() {
        let l = ledger(100);
        let a = l.reserve(60, true, 1).unwrap();
        assert_eq!(l.reserve(41, true, 1).unwrap_err().reserved, 60);
        let b = l.reserve(40, true, 1).unwrap();
        // Settling below the reservation frees the difference.
        assert_eq!(l.settle(a, 10, 2), Vec::<u8>::new());
        assert_eq!(l.snapshot(2), (10, 40, (0, DAY)));
        assert!(l.reserve(50, true, 2).is_ok());
        assert!(l.reserve(1, true, 2).is_err());
        // A soft budget never refuses.
        assert!(l.reserve(1_000, false, 2).is_ok());
        let _ = b;
    }

    #[test]
    fn thresholds_alert_once_per_period_and_periods_reset_spend() {
        let l = ledger(100);
        let h = l.reserve(55, true, 1).unwrap();
        assert_eq!(l.settle(h, 55, 1), vec![50]);
        let h = l.reserve(45, true, 1).unwrap();
        assert_eq!(l.settle(h, 45, 1), vec![80, 100]);
        let h = l.reserve(0, false, 1).unwrap();
        assert_eq!(l.settle(h, 5, 1), Vec::<u8>::new());
        // Next day: spend starts over and alerts may fire again.
        assert_eq!(l.snapshot(DAY + 1).0, 0);
        let h = l.reserve(60, true, DAY + 1).unwrap();
        assert_eq!(l.settle(h, 60, DAY + 1), vec![50]);
    }

    #[test]
    fn a_request_spanning_midnight_releases_its_hold_without_charging_the_new_day() {
        let l = ledger(100);
        let h = l.reserve(70, true, DAY - 1).unwrap();
        assert_eq!(l.snapshot(DAY + 1), (0, 70, (DAY, 2 * DAY)));
        l.settle(h, 70, DAY + 2);
        assert_eq!(l.snapshot(DAY + 2), (0, 0, (DAY, 2 * DAY)));
    }

    #[test]
    fn recovered_spend_counts_and_its_thresholds_do_not_repeat() {
        let l = Ledger::new(100, Period::Monthly, chrono_tz::UTC, vec![50, 80], 0, 85);
        assert!(l.reserve(16, true, 1).is_err());
        let h = l.reserve(10, true, 1).unwrap();
        assert_eq!(l.settle(h, 10, 1), Vec::<u8>::new());
    }
}
