//! Budget leases across gateway replicas: the messages between replicas and the budget owner.
//!
//! A replica spends a cluster budget only out of capacity the owner granted it (a lease). It asks with
//! [`LeaseMessage::Requested`] on [`crate::topics::BUDGET_REQUESTS`], gets a [`LeaseDecision`] on
//! [`crate::topics::BUDGET_DECISIONS`], reserves each request's worst case against its leases, and gives back
//! what a lease did not spend with [`LeaseMessage::Returned`] once it expires. The owner grants
//! `min(asked, limit − committed)`, where committed counts every lease at the larger of what it was granted
//! and what usage events show it spent — so the sum of all replicas' reservations never passes the limit, and
//! the recorded spend passes it only by requests whose actual cost exceeded their reservation.
//! Everything is keyed by budget id, subject and period window.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a lease is for: one budget, one subject value, one period window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseScope {
    pub budget_id: String,
    /// The subject value (`acme`, `alice`, `feature=summarize`).
    pub subject: String,
    /// Start of the period window (epoch ms; `i64::MIN` for a total budget).
    pub window_start_ms: i64,
}

/// Replica → owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LeaseMessage {
    /// Asks for `amount` reporting nano-units of capacity.
    Requested {
        request_id: Uuid,
        replica: String,
        scope: LeaseScope,
        /// End of the period window (epoch ms; `i64::MAX` for a total budget), for the owner's baseline.
        window_end_ms: i64,
        amount: u64,
    },
    /// A lease is closed: `settled` is everything its requests cost; the rest goes back to the budget.
    Returned {
        lease_id: Uuid,
        replica: String,
        scope: LeaseScope,
        settled: u64,
    },
}

/// Owner → replica: the answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDecision {
    pub request_id: Uuid,
    pub replica: String,
    pub scope: LeaseScope,
    /// `None` when nothing could be granted (the budget is spent or committed to other leases).
    pub lease_id: Option<Uuid>,
    pub granted: u64,
    /// The lease must not take new reservations after this (epoch ms).
    pub expires_at_ms: i64,
    /// The owner's view when deciding: limit and what was committed before this grant.
    pub limit: u64,
    pub committed: u64,
    /// Set when the owner cannot decide yet (after its start it waits out earlier leases; or ClickHouse did
    /// not answer): no verdict on the budget, ask again after this many milliseconds. Absent in decisions
    /// of owners that predate it, which never sent such answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_for_ms: Option<u64>,
}

impl LeaseMessage {
    /// The Kafka key: the scope, so one owner partition sees a scope's messages in order.
    #[must_use]
    pub fn key(&self) -> String {
        let scope = match self {
            Self::Requested { scope, .. } | Self::Returned { scope, .. } => scope,
        };
        format!("{}/{}", scope.budget_id, scope.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = LeaseMessage::Requested {
            request_id: Uuid::now_v7(),
            replica: "r1".into(),
            scope: LeaseScope {
                budget_id: "b".into(),
                subject: "acme".into(),
                window_start_ms: 5,
            },
            window_end_ms: 9,
            amount: 10,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"type\":\"requested\""));
        assert_eq!(serde_json::from_str::<LeaseMessage>(&json).unwrap(), m);
        assert_eq!(m.key(), "b/acme");
    }
}
