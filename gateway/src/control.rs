//! The control plane: keys and budgets changed through the admin API, as events every replica applies.
//!
//! The log is the source of truth and state is its projection: an admin change is appended to the log
//! ([`ControlLog::commit`]) and takes effect by being applied from the log ([`apply`]) — on this replica before
//! the admin call returns, on every other replica as it tails the log. A replica starting up replays the whole
//! log first, so all replicas converge on the same keys and budgets.
//!
//! - Embedded default: the store's `control_events` table (one replica; applied under the same lock as the insert).
//! - Kafka: the compacted topic `tollgate.control.v1` ([`kafka`]), one partition, keyed by entity.

pub mod kafka;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;
use tollgate_schemas::control::{ControlChange, ControlEvent};

use crate::auth::{KeyHash, KeyStore};
use crate::budget::{BudgetSpec, Budgets, Period, RecoveredSpend, Subject};
use crate::clock::now_ms;
use crate::config::AllowedModels;
use crate::error::GatewayError;

/// Where control events are kept.
pub enum ControlLog {
    Embedded(EmbeddedLog),
    Kafka(kafka::KafkaLog),
}

/// The embedded store's `control_events` table.
pub struct EmbeddedLog {
    conn: Mutex<Connection>,
}

impl EmbeddedLog {
    /// Opens the store (migrating it) for the control log.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub fn open(path: &Path) -> Result<Self, GatewayError> {
        Ok(Self {
            conn: Mutex::new(crate::events::embedded::open(path)?),
        })
    }

    /// Every event, in the order it was appended.
    ///
    /// # Errors
    /// When the table cannot be read; an undecodable row is skipped with an error log.
    pub fn replay(&self) -> Result<Vec<ControlEvent>, GatewayError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fail = |e: rusqlite::Error| GatewayError::Internal(format!("control log: {e}"));
        let mut stmt = conn
            .prepare("SELECT seq, event FROM control_events ORDER BY seq")
            .map_err(fail)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(fail)?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, json) = row.map_err(fail)?;
            match serde_json::from_str(&json) {
                Ok(e) => events.push(e),
                Err(e) => {
                    tracing::error!(target: "tollgate::control", seq, error = %e, "undecodable control event skipped");
                }
            }
        }
        Ok(events)
    }

    fn append(&self, event: &ControlEvent) -> Result<(), GatewayError> {
        let json = serde_json::to_string(event)
            .map_err(|e| GatewayError::Internal(format!("cannot encode a control event: {e}")))?;
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .execute(
                "INSERT INTO control_events (entity, event) VALUES (?1, ?2)",
                rusqlite::params![event.change.entity(), json],
            )
            .map_err(|e| GatewayError::Internal(format!("control log: {e}")))?;
        Ok(())
    }
}

impl ControlLog {
    /// Appends `change` and returns once it is applied on this replica.
    ///
    /// # Errors
    /// [`GatewayError::Unavailable`] when the log does not take it (Kafka down), or it is not applied in time.
    pub async fn commit(
        &self,
        change: ControlChange,
        keys: &KeyStore,
        budgets: &Budgets,
        limits: &crate::rate_limit::RateLimiter,
        recovered: RecoveredSpend,
    ) -> Result<(), GatewayError> {
        let event = ControlEvent::new(change, now_ms());
        match self {
            Self::Embedded(log) => {
                log.append(&event)?;
                apply(&event, keys, budgets, limits, recovered);
                Ok(())
            }
            Self::Kafka(log) => log.commit(&event).await,
        }
    }
}

/// Applies one event to the projections. Idempotent: applying an event twice leaves the same state.
pub fn apply(
    event: &ControlEvent,
    keys: &KeyStore,
    budgets: &Budgets,
    limits: &crate::rate_limit::RateLimiter,
    recovered: RecoveredSpend,
) {
    match &event.change {
        ControlChange::KeyIssued {
            key_id,
            tenant,
            team,
            sha256,
            models,
            require_tags,
            limits: key_limits,
        } => {
            let Some(hash) = KeyHash::from_hex(sha256) else {
                tracing::error!(target: "tollgate::control", key_id = %key_id, "key event with a bad digest skipped");
                return;
            };
            keys.issue(&crate::auth::NewKey {
                key_id,
                tenant,
                team,
                hash,
                models: allowed_models(models),
                require_tags,
                limits: *key_limits,
            });
            if !keys.is_configured(key_id) {
                limits.set_key(
                    key_id,
                    crate::rate_limit::Limits {
                        rpm: key_limits.rpm,
                        tpm: key_limits.tpm,
                        max_in_flight: key_limits.max_in_flight,
                    },
                );
            }
        }
        ControlChange::KeyRevoked { key_id, .. } => {
            if keys.revoke(key_id) {
                limits.set_key(key_id, crate::rate_limit::Limits::default());
            }
        }
        ControlChange::BudgetSet { .. } => match budget_spec(&event.change) {
            Some(spec) => budgets.set(spec, recovered),
            None => {
                tracing::error!(target: "tollgate::control", entity = %event.change.entity(), "budget event with a bad subject or period skipped");
            }
        },
        ControlChange::BudgetDeleted { budget_id } => {
            budgets.delete(budget_id);
        }
    }
}

/// `["*"]` → all models, else exactly these.
#[must_use]
pub fn allowed_models(models: &[String]) -> AllowedModels {
    if models.iter().any(|m| m == "*") {
        AllowedModels::All
    } else {
        AllowedModels::Only(models.iter().cloned().collect())
    }
}

/// The budget a `BudgetSet` describes (`None` for other changes or a bad subject / period).
#[must_use]
pub fn budget_spec(change: &ControlChange) -> Option<BudgetSpec> {
    let ControlChange::BudgetSet {
        budget_id,
        subject,
        period,
        limit_nanos,
        hard,
        alert_at,
        ..
    } = change
    else {
        return None;
    };
    Some(BudgetSpec {
        id: budget_id.clone(),
        subject: Subject::parse(subject)?,
        period: Period::parse(period)?,
        limit: *limit_nanos,
        hard: *hard,
        alert_at: alert_at.clone(),
    })
}
