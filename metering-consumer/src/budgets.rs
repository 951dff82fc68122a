//! The `budgets` table: budgets as the control log states them, for dashboards' burn-down against limits.
//!
//! One row per `BudgetSet` / `BudgetDeleted` with `version` = the event's time (written by
//! [`crate::control_projection`]). The table is a ReplacingMergeTree by `version`, so replays and duplicates
//! converge on the latest state per budget.

use clickhouse::Row;
use serde::Serialize;
use tollgate_schemas::control::{ControlChange, ControlEvent};

/// One row of `budgets` (see `schemas/migrations/clickhouse/0007_budgets.sql`).
#[derive(Debug, Clone, Row, Serialize, PartialEq, Eq)]
pub struct BudgetRow {
    pub budget_id: String,
    pub tenant: String,
    pub subject_kind: String,
    pub subject: String,
    pub period: String,
    pub timezone: String,
    pub limit_nanos: i64,
    pub currency: String,
    pub hard: u8,
    pub deleted: u8,
    pub version: u64,
}

/// The row an event writes, if it is about a budget.
#[must_use]
pub fn row(event: &ControlEvent) -> Option<BudgetRow> {
    let version = u64::try_from(event.at_ms).unwrap_or(0);
    match &event.change {
        ControlChange::BudgetSet {
            budget_id,
            subject,
            period,
            limit_nanos,
            currency,
            hard,
            ..
        } => {
            let (kind, value) = subject.split_once(':').unwrap_or(("", subject));
            Some(BudgetRow {
                budget_id: budget_id.clone(),
                tenant: if kind == "tenant" {
                    value.to_string()
                } else {
                    String::new()
                },
                subject_kind: kind.to_string(),
                subject: value.to_string(),
                period: period.clone(),
                timezone: String::new(),
                limit_nanos: i64::try_from(*limit_nanos).unwrap_or(i64::MAX),
                currency: currency.clone(),
                hard: u8::from(*hard),
                deleted: 0,
                version,
            })
        }
        ControlChange::BudgetDeleted { budget_id } => Some(BudgetRow {
            budget_id: budget_id.clone(),
            tenant: String::new(),
            subject_kind: String::new(),
            subject: String::new(),
            period: String::new(),
            timezone: String::new(),
            limit_nanos: 0,
            currency: String::new(),
            hard: 0,
            deleted: 1,
            version,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_events_become_versioned_rows_and_others_none() {
        let set = ControlEvent::new(
            ControlChange::BudgetSet {
                budget_id: "b".into(),
                subject: "tenant:acme".into(),
                period: "monthly".into(),
                limit_nanos: 5,
                currency: "USD".into(),
                hard: true,
                alert_at: vec![],
            },
            42,
        );
        let r = row(&set).unwrap();
        assert_eq!(
            (
                r.tenant.as_str(),
                r.subject_kind.as_str(),
                r.subject.as_str(),
                r.version,
                r.hard
            ),
            ("acme", "tenant", "acme", 42, 1)
        );
        let del = ControlEvent::new(
            ControlChange::BudgetDeleted {
                budget_id: "b".into(),
            },
            43,
        );
        assert_eq!(row(&del).unwrap().deleted, 1);
        let key = ControlEvent::new(
            ControlChange::KeyRevoked {
                key_id: "k".into(),
                tenant: None,
                team: None,
            },
            1,
        );
        assert!(row(&key).is_none());
    }
}
