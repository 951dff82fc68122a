//! The `virtual_keys` table: virtual keys as the control log states them — tenant, team, models, revoked or
//! not; never the key or its hash — so analysts can name and filter keys next to their usage.
//!
//! Rows are versioned by the event's time (ReplacingMergeTree). A revocation row repeats what the replay knows
//! of the key: from its `KeyIssued` event, else from the revocation itself (which carries tenant and team, as
//! compaction may have removed the issue: both events share the key's entity key).

use std::collections::HashMap;

use clickhouse::Row;
use serde::Serialize;
use tollgate_schemas::control::{ControlChange, ControlEvent};

/// One row of `virtual_keys` (see `schemas/migrations/clickhouse/0009_virtual_keys.sql`).
#[derive(Debug, Clone, Row, Serialize, PartialEq, Eq)]
pub struct KeyRow {
    pub key_id: String,
    pub tenant: String,
    pub team: String,
    pub models: Vec<String>,
    pub revoked: u8,
    pub issued_at_ms: u64,
    pub version: u64,
}

/// What the replay has seen of each key.
#[derive(Debug, Default)]
pub struct KeyProjection {
    known: HashMap<String, KeyRow>,
}

impl KeyProjection {
    /// The row `event` writes, if it is about a key.
    pub fn row(&mut self, event: &ControlEvent) -> Option<KeyRow> {
        let version = u64::try_from(event.at_ms).unwrap_or(0);
        let row = match &event.change {
            ControlChange::KeyIssued {
                key_id,
                tenant,
                team,
                models,
                ..
            } => KeyRow {
                key_id: key_id.clone(),
                tenant: tenant.clone(),
                team: team.clone(),
                models: models.clone(),
                revoked: 0,
                issued_at_ms: version,
                version,
            },
            ControlChange::KeyRevoked {
                key_id,
                tenant,
                team,
            } => {
                let mut row = self.known.get(key_id).cloned().unwrap_or_else(|| KeyRow {
                    key_id: key_id.clone(),
                    tenant: String::new(),
                    team: String::new(),
                    models: Vec::new(),
                    revoked: 1,
                    issued_at_ms: 0,
                    version,
                });
                if let Some(tenant) = tenant {
                    row.tenant.clone_from(tenant);
                }
                if let Some(team) = team {
                    row.team.clone_from(team);
                }
                row.revoked = 1;
                row.version = version;
                row
            }
            _ => return None,
        };
        self.known.insert(row.key_id.clone(), row.clone());
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(key_id: &str, at: i64) -> ControlEvent {
        ControlEvent::new(
            ControlChange::KeyIssued {
                key_id: key_id.into(),
                tenant: "acme".into(),
                team: "search".into(),
                sha256: "ab".repeat(32),
                models: vec!["gpt-4o-mini".into()],
                require_tags: Default::default(),
                limits: Default::default(),
            },
            at,
        )
    }

    #[test]
    fn issue_rotation_and_revocation_become_versioned_rows_without_the_hash() {
        let mut keys = KeyProjection::default();
        let first = keys.row(&issued("ci", 10)).unwrap();
        assert_eq!(
            (first.tenant.as_str(), first.team.as_str(), first.revoked),
            ("acme", "search", 0)
        );
        assert_eq!((first.issued_at_ms, first.version), (10, 10));
        // A rotation is a new issue of the same key id.
        assert_eq!(keys.row(&issued("ci", 20)).unwrap().issued_at_ms, 20);
        let revoked = keys
            .row(&ControlEvent::new(
                ControlChange::KeyRevoked {
                    key_id: "ci".into(),
                    tenant: None,
                    team: None,
                },
                30,
            ))
            .unwrap();
        assert_eq!(
            (
                revoked.tenant.as_str(),
                revoked.models.len(),
                revoked.revoked
            ),
            ("acme", 1, 1)
        );
        assert_eq!((revoked.issued_at_ms, revoked.version), (20, 30));
        assert!(!format!("{revoked:?}").contains("abab"));
    }

    #[test]
    fn a_revocation_whose_issue_was_compacted_away_still_names_its_owner() {
        let mut keys = KeyProjection::default();
        let row = keys
            .row(&ControlEvent::new(
                ControlChange::KeyRevoked {
                    key_id: "old".into(),
                    tenant: Some("globex".into()),
                    team: Some("ops".into()),
                },
                7,
            ))
            .unwrap();
        assert_eq!(
            (row.tenant.as_str(), row.team.as_str(), row.revoked),
            ("globex", "ops", 1)
        );
        let budget = ControlEvent::new(
            ControlChange::BudgetDeleted {
                budget_id: "b".into(),
            },
            8,
        );
        assert!(keys.row(&budget).is_none());
    }
}
