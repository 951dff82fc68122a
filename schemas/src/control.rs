//! Control events: the log every gateway replica and the metering consumer replay to agree on virtual keys and
//! budgets created through the admin API.
//!
//! The log is the source of truth; state is its projection. On Kafka the topic ([`crate::topics::CONTROL`]) is
//! compacted and keyed by [`ControlChange::entity`], so the latest event per key / budget survives compaction
//! and a replay from the beginning rebuilds the same state. In the embedded default the same events are rows
//! of the store's `control_events` table, replayed in order at start. Keys are carried as SHA-256 digests only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version written by this build.
pub const CONTROL_SCHEMA_VERSION: u16 = 1;

/// One change to tenancy or budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEvent {
    pub schema_version: u16,
    /// UUIDv7.
    pub event_id: Uuid,
    /// Unix epoch milliseconds when the change was made.
    pub at_ms: i64,
    #[serde(flatten)]
    pub change: ControlChange,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlChange {
    /// A virtual key was created, or rotated (same `key_id`, new digest: the old key stops working).
    KeyIssued {
        key_id: String,
        tenant: String,
        team: String,
        /// Hex SHA-256 of the key.
        sha256: String,
        /// Public model names, or `["*"]`.
        models: Vec<String>,
        #[serde(default)]
        require_tags: BTreeMap<String, String>,
        /// The key's rate limits (absent: none).
        #[serde(default)]
        limits: KeyLimits,
    },
    /// A virtual key stops working.
    KeyRevoked {
        key_id: String,
        /// The revoked key's tenant and team, so a projection that never saw its issue (compacted away: both
        /// events share the entity key) can still say whose key it was. Absent in events written before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<String>,
    },
    /// A budget was created or changed.
    BudgetSet {
        budget_id: String,
        /// `tenant:acme`, `team:…`, `key:…`, `end_user:…`, `end_user:*`, `tag:k=v`.
        subject: String,
        /// `daily`, `weekly`, `monthly`, `total`.
        period: String,
        /// Nano-units of `currency` (the reporting currency).
        limit_nanos: u64,
        currency: String,
        hard: bool,
        #[serde(default)]
        alert_at: Vec<u8>,
    },
    /// A budget was removed.
    BudgetDeleted { budget_id: String },
}

/// A virtual key's rate limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// Requests at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

impl ControlChange {
    /// The entity the change is about (`key/<id>`, `budget/<id>`): the Kafka message key, so compaction keeps
    /// the latest change of each.
    #[must_use]
    pub fn entity(&self) -> String {
        match self {
            Self::KeyIssued { key_id, .. } | Self::KeyRevoked { key_id, .. } => {
                format!("key/{key_id}")
            }
            Self::BudgetSet { budget_id, .. } | Self::BudgetDeleted { budget_id } => {
                format!("budget/{budget_id}")
            }
        }
    }
}

impl ControlEvent {
    /// A new event for `change`, stamped now.
    #[must_use]
    pub fn new(change: ControlChange, at_ms: i64) -> Self {
        Self {
            schema_version: CONTROL_SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            at_ms,
            change,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_a_type_tag_and_an_entity_key() {
        let e = ControlEvent::new(
            ControlChange::KeyRevoked {
                key_id: "ci".into(),
                tenant: Some("acme".into()),
                team: None,
            },
            5,
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "key_revoked");
        assert_eq!(json["key_id"], "ci");
        let back: ControlEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.change.entity(), "key/ci");
    }
}
