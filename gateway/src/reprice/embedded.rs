//! Re-pricing over the embedded store: events from `usage_events`, corrections appended to
//! `cost_corrections` (embedded migration 3) in one transaction per page.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use tollgate_schemas::UsageVector;
use uuid::Uuid;

use super::{AppliedCorrection, Attribution, Correction, Selection, StoredEvent};
use crate::error::GatewayError;

/// The gateway's SQLite usage store, opened (and migrated) for re-pricing.
pub struct EmbeddedStore {
    conn: Connection,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens the existing store at `path` (the config's `[store] path`), applying pending migrations. A
    /// running gateway may keep writing meanwhile (WAL).
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when there is no store at `path` or it cannot be opened.
    pub fn open(path: &Path) -> Result<Self, GatewayError> {
        if !path.is_file() {
            return Err(GatewayError::Internal(format!(
                "no usage store at {} (the config's [store] path)",
                path.display()
            )));
        }
        let conn = crate::events::embedded::open(path)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("embedded {}", self.path.display())
    }

    fn fail(&self, what: &str, e: &rusqlite::Error) -> GatewayError {
        GatewayError::Internal(format!("usage store {}: {what}: {e}", self.path.display()))
    }

    /// Up to `limit` selected events with an id after `after`, by id.
    pub(super) fn events(
        &mut self,
        selection: &Selection,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, GatewayError> {
        let mut stmt = self
            .conn
            .prepare_cached(SELECT_EVENTS)
            .map_err(|e| self.fail("reading events", &e))?;
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows = stmt
            .query_map(
                params![
                    selection.from_ms,
                    selection.to_ms,
                    after,
                    selection.tenant,
                    selection.model,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                ],
                |r| {
                    let id: String = r.get(0)?;
                    Ok((
                        id,
                        StoredEvent {
                            event_id: Uuid::nil(),
                            started_at_ms: r.get(1)?,
                            attribution: Attribution {
                                tenant: r.get(2)?,
                                team: r.get(3)?,
                                key_id: r.get(4)?,
                                end_user: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                                model: r.get(6)?,
                                provider: r.get(7)?,
                            },
                            provider_kind: r.get(8)?,
                            upstream_model: r.get(9)?,
                            usage: UsageVector {
                                prompt_tokens: r.get(10)?,
                                completion_tokens: r.get(11)?,
                                cached_read_tokens: r.get(12)?,
                                cache_write_tokens: r.get(13)?,
                                reasoning_tokens: r.get(14)?,
                            },
                            cost_nanos: r.get(15)?,
                            currency: r.get(16)?,
                            reporting_cost_nanos: r.get(17)?,
                            reporting_currency: r.get(18)?,
                            price_version: r.get(19)?,
                        },
                    ))
                },
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.fail("reading events", &e))?;
        rows.into_iter()
            .map(|(id, mut e)| {
                e.event_id = Uuid::parse_str(&id).map_err(|err| {
                    GatewayError::Internal(format!("stored event id {id:?} is not a UUID: {err}"))
                })?;
                Ok(e)
            })
            .collect()
    }

    /// Every correction of `events` (a page sorted by id, so one index range holds them all).
    pub(super) fn corrections(
        &mut self,
        events: &[StoredEvent],
    ) -> Result<Vec<AppliedCorrection>, GatewayError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Vec::new());
        };
        let mut stmt = self
            .conn
            .prepare_cached(SELECT_CORRECTIONS)
            .map_err(|e| self.fail("reading corrections", &e))?;
        let rows = stmt
            .query_map(
                params![first.event_id.to_string(), last.event_id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        AppliedCorrection {
                            event_id: Uuid::nil(),
                            currency: r.get(1)?,
                            reporting_currency: r.get(2)?,
                            delta_cost_nanos: r.get(3)?,
                            delta_reporting_cost_nanos: r.get(4)?,
                            new_price_version: r.get(5)?,
                            created_at_ms: r.get(6)?,
                        },
                    ))
                },
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.fail("reading corrections", &e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, mut c)| {
                c.event_id = Uuid::parse_str(&id).ok()?;
                Some(c)
            })
            .collect())
    }

    /// Appends `rows` in one transaction.
    pub(super) fn record(&mut self, rows: &[Correction]) -> Result<(), GatewayError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| {
            GatewayError::Internal(format!(
                "usage store {}: writing corrections: {e}",
                path.display()
            ))
        };
        let tx = self.conn.transaction().map_err(fail)?;
        {
            let mut insert = tx.prepare_cached(INSERT_CORRECTION).map_err(fail)?;
            for c in rows {
                insert
                    .execute(params![
                        c.correction_id.to_string(),
                        c.event_id.to_string(),
                        c.started_at_ms,
                        c.attribution.tenant,
                        c.attribution.team,
                        c.attribution.key_id,
                        c.attribution.end_user,
                        c.attribution.model,
                        c.attribution.provider,
                        c.currency,
                        c.reporting_currency,
                        c.old_price_version,
                        c.new_price_version,
                        c.delta_cost_nanos,
                        c.delta_reporting_cost_nanos,
                        c.created_at_ms,
                    ])
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }
}

/// Text ids in the store are lower-case hyphenated UUIDs, so their text order is the id order and `''` sorts
/// before every id.
const SELECT_EVENTS: &str = "SELECT event_id, started_at_ms, tenant, team, key_id, end_user, model, provider, \
    provider_kind, upstream_model, prompt_tokens, completion_tokens, cached_read_tokens, cache_write_tokens, \
    reasoning_tokens, cost_nanos, currency, reporting_cost_nanos, reporting_currency, price_version \
    FROM usage_events \
    WHERE started_at_ms >= ?1 AND started_at_ms < ?2 AND event_id > ?3 \
    AND (?4 IS NULL OR tenant = ?4) AND (?5 IS NULL OR model = ?5 OR upstream_model = ?5) \
    ORDER BY event_id LIMIT ?6";

const SELECT_CORRECTIONS: &str =
    "SELECT event_id, currency, reporting_currency, delta_cost_nanos, \
    delta_reporting_cost_nanos, new_price_version, created_at_ms FROM cost_corrections \
    WHERE event_id >= ?1 AND event_id <= ?2";

const INSERT_CORRECTION: &str =
    "INSERT INTO cost_corrections (correction_id, event_id, started_at_ms, tenant, \
    team, key_id, end_user, model, provider, currency, reporting_currency, old_price_version, \
    new_price_version, delta_cost_nanos, delta_reporting_cost_nanos, created_at_ms) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
