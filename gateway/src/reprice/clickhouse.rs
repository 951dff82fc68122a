//! Re-pricing over ClickHouse: events from `usage_events`, corrections inserted into `cost_corrections`
//! (migration 0008), whose materialized view adds them to `cost_by_minute` — so spend read there is the
//! corrected spend.
//!
//! Queries run on 18.16 and current ClickHouse (RowBinary, schema validation off, no server-side parameters:
//! values are bound client-side by the `clickhouse` crate, which escapes them). Events are read in pages by
//! `event_id` (the table's sort key) with a `started_at` bound so only the range's partitions are read.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tollgate_schemas::clickhouse::{COST_CORRECTIONS, USAGE_EVENTS};
use tollgate_schemas::UsageVector;
use uuid::Uuid;

use super::{AppliedCorrection, Attribution, Correction, Selection, StoredEvent};
use crate::error::GatewayError;

/// Where the metering consumer keeps usage (the same flags and environment as `tollgate-metering`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseTarget {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
}

/// A ClickHouse database holding `usage_events` and `cost_corrections`.
pub struct ClickHouseStore {
    client: Client,
    url: String,
    database: String,
}

#[derive(Debug, Row, Deserialize)]
struct EventRow {
    event_id: String,
    started_at_ms: u64,
    tenant: String,
    team: String,
    key_id: String,
    end_user: String,
    model: String,
    provider: String,
    provider_kind: String,
    upstream_model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_read_tokens: u64,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
    cost_nanos: i64,
    currency: String,
    reporting_cost_nanos: i64,
    reporting_currency: String,
    price_version: String,
}

#[derive(Debug, Row, Deserialize)]
struct AppliedRow {
    event_id: String,
    currency: String,
    reporting_currency: String,
    delta_cost_nanos: i64,
    delta_reporting_cost_nanos: i64,
    new_price_version: String,
    created_at_ms: u64,
}

/// A row of `cost_corrections`; field order and types follow its DDL.
#[derive(Debug, Row, Serialize)]
struct CorrectionRow {
    correction_id: String,
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: Uuid,
    /// `DateTime`: seconds since the epoch (the event's start, as in `usage_events`).
    started_at: u32,
    tenant: String,
    team: String,
    key_id: String,
    end_user: String,
    model: String,
    provider: String,
    currency: String,
    reporting_currency: String,
    old_price_version: String,
    new_price_version: String,
    delta_cost_nanos: i64,
    delta_reporting_cost_nanos: i64,
    created_at_ms: u64,
}

/// `started_at` (`DateTime`, whole seconds) bounds that contain every event of the selection.
fn second_bounds(selection: &Selection) -> (u32, u32) {
    let clamp = |s: i64| u32::try_from(s.max(0)).unwrap_or(u32::MAX);
    (
        clamp(selection.from_ms.div_euclid(1000)),
        clamp(selection.to_ms.div_euclid(1000) + 1),
    )
}

impl ClickHouseStore {
    #[must_use]
    pub fn new(target: &ClickHouseTarget) -> Self {
        // 18.16 lacks RowBinaryWithNamesAndTypes, which schema validation needs (notes/clickhouse-18.md).
        let client = Client::default()
            .with_url(&target.url)
            .with_database(&target.database)
            .with_user(&target.user)
            .with_password(&target.password)
            .with_validation(false);
        Self {
            client,
            url: target.url.clone(),
            database: target.database.clone(),
        }
    }

    pub(super) fn describe(&self) -> String {
        format!("clickhouse {} database {}", self.url, self.database)
    }

    fn fail(&self, what: &str, e: &clickhouse::error::Error) -> GatewayError {
        GatewayError::Unavailable(format!(
            "clickhouse {} ({}): {what}: {e}",
            self.url, self.database
        ))
    }

    /// Up to `limit` selected events with an id after `after`, by id (duplicate raw rows, if any, collapse in
    /// the caller).
    pub(super) async fn events(
        &mut self,
        selection: &Selection,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, GatewayError> {
        let (from_s, to_s) = second_bounds(selection);
        let mut sql = format!(
            "SELECT toString(event_id), started_at_ms, tenant, team, key_id, end_user, model, provider, \
             provider_kind, upstream_model, prompt_tokens, completion_tokens, cached_read_tokens, \
             cache_write_tokens, reasoning_tokens, cost_nanos, currency, reporting_cost_nanos, \
             reporting_currency, price_version FROM {}.{USAGE_EVENTS} \
             WHERE started_at >= toDateTime(?) AND started_at <= toDateTime(?) \
             AND started_at_ms >= ? AND started_at_ms < ?",
            self.database
        );
        if after.is_some() {
            sql.push_str(" AND event_id > toUUID(?)");
        }
        if selection.tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        if selection.model.is_some() {
            sql.push_str(" AND (model = ? OR upstream_model = ?)");
        }
        sql.push_str(" ORDER BY event_id LIMIT ?");
        let mut query = self
            .client
            .query(&sql)
            .bind(from_s)
            .bind(to_s)
            .bind(selection.from_ms.max(0))
            .bind(selection.to_ms.max(0));
        if let Some(a) = after {
            query = query.bind(a.to_string());
        }
        if let Some(t) = &selection.tenant {
            query = query.bind(t);
        }
        if let Some(m) = &selection.model {
            query = query.bind(m).bind(m);
        }
        let rows: Vec<EventRow> = query
            .bind(u64::try_from(limit).unwrap_or(u64::MAX))
            .fetch_all()
            .await
            .map_err(|e| self.fail("reading usage_events", &e))?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredEvent {
                    event_id: Uuid::parse_str(&r.event_id).map_err(|e| {
                        GatewayError::Internal(format!(
                            "event id {:?} from clickhouse: {e}",
                            r.event_id
                        ))
                    })?,
                    started_at_ms: i64::try_from(r.started_at_ms).unwrap_or(i64::MAX),
                    attribution: Attribution {
                        tenant: r.tenant,
                        team: r.team,
                        key_id: r.key_id,
                        end_user: r.end_user,
                        model: r.model,
                        provider: r.provider,
                    },
                    provider_kind: r.provider_kind,
                    upstream_model: r.upstream_model,
                    usage: UsageVector {
                        prompt_tokens: r.prompt_tokens,
                        completion_tokens: r.completion_tokens,
                        cached_read_tokens: r.cached_read_tokens,
                        cache_write_tokens: r.cache_write_tokens,
                        reasoning_tokens: r.reasoning_tokens,
                    },
                    cost_nanos: r.cost_nanos,
                    currency: r.currency,
                    reporting_cost_nanos: r.reporting_cost_nanos,
                    reporting_currency: r.reporting_currency,
                    price_version: r.price_version,
                })
            })
            .collect()
    }

    /// Every correction of `events` (a page sorted by id): one id range, within the selection's partitions
    /// (a correction's `started_at` is its event's).
    pub(super) async fn corrections(
        &mut self,
        selection: &Selection,
        events: &[StoredEvent],
    ) -> Result<Vec<AppliedCorrection>, GatewayError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Vec::new());
        };
        let (from_s, to_s) = second_bounds(selection);
        let sql = format!(
            "SELECT toString(event_id), currency, reporting_currency, delta_cost_nanos, \
             delta_reporting_cost_nanos, new_price_version, created_at_ms FROM {}.{COST_CORRECTIONS} \
             WHERE started_at >= toDateTime(?) AND started_at <= toDateTime(?) \
             AND event_id >= toUUID(?) AND event_id <= toUUID(?)",
            self.database
        );
        let rows: Vec<AppliedRow> = self
            .client
            .query(&sql)
            .bind(from_s)
            .bind(to_s)
            .bind(first.event_id.to_string())
            .bind(last.event_id.to_string())
            .fetch_all()
            .await
            .map_err(|e| self.fail("reading cost_corrections", &e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(AppliedCorrection {
                    event_id: Uuid::parse_str(&r.event_id).ok()?,
                    currency: r.currency,
                    reporting_currency: r.reporting_currency,
                    delta_cost_nanos: r.delta_cost_nanos,
                    delta_reporting_cost_nanos: r.delta_reporting_cost_nanos,
                    new_price_version: r.new_price_version,
                    created_at_ms: i64::try_from(r.created_at_ms).unwrap_or(i64::MAX),
                })
            })
            .collect())
    }

    /// Inserts `rows` in one INSERT (the materialized view adds them to `cost_by_minute` in the same block).
    pub(super) async fn record(&mut self, rows: &[Correction]) -> Result<(), GatewayError> {
        let mut insert = self
            .client
            .insert::<CorrectionRow>(COST_CORRECTIONS)
            .await
            .map_err(|e| self.fail("inserting into cost_corrections", &e))?;
        for c in rows {
            let row = CorrectionRow {
                correction_id: c.correction_id.to_string(),
                event_id: c.event_id,
                started_at: u32::try_from(c.started_at_ms.max(0) / 1000).unwrap_or(u32::MAX),
                tenant: c.attribution.tenant.clone(),
                team: c.attribution.team.clone(),
                key_id: c.attribution.key_id.clone(),
                end_user: c.attribution.end_user.clone(),
                model: c.attribution.model.clone(),
                provider: c.attribution.provider.clone(),
                currency: c.currency.clone(),
                reporting_currency: c.reporting_currency.clone(),
                old_price_version: c.old_price_version.clone(),
                new_price_version: c.new_price_version.clone(),
                delta_cost_nanos: c.delta_cost_nanos,
                delta_reporting_cost_nanos: c.delta_reporting_cost_nanos,
                created_at_ms: u64::try_from(c.created_at_ms).unwrap_or(0),
            };
            insert
                .write(&row)
                .await
                .map_err(|e| self.fail("inserting into cost_corrections", &e))?;
        }
        insert
            .end()
            .await
            .map_err(|e| self.fail("inserting into cost_corrections", &e))
    }
}
