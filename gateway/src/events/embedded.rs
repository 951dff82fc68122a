//! The embedded store: usage events in a local SQLite file, written in batches by a dedicated thread.
//!
//! `event_id` is the primary key and rows are inserted with `INSERT OR IGNORE`, so writing a batch twice
//! (after a failed commit, or a replay) never doubles a row. A batch that fails is kept and retried.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};
use tollgate_schemas::{embedded::MIGRATIONS, UsageEvent};

use super::{EventSink, SinkMessage, SinkStats, SinkWorker, QUEUE_CAPACITY};
use crate::error::GatewayError;

/// Most events written in one transaction.
const MAX_BATCH: usize = 1024;

/// Opens (creating and migrating) the store at `path` and starts its writer thread.
///
/// # Errors
/// [`GatewayError::Internal`] when the file cannot be opened or migrated.
pub fn start(path: &Path) -> Result<(EventSink, SinkWorker), GatewayError> {
    let conn = open(path)?;
    let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let stats = Arc::new(SinkStats::default());
    stats.healthy.store(true, Ordering::Relaxed);
    let writer_stats = stats.clone();
    let path = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("tollgate-usage-writer".into())
        .spawn(move || {
            Writer {
                conn,
                path,
                stats: writer_stats,
            }
            .run(&rx)
        })
        .map_err(|e| GatewayError::Internal(format!("cannot start the usage writer: {e}")))?;
    Ok((
        EventSink {
            tx: tx.clone(),
            stats,
        },
        SinkWorker { handle, tx },
    ))
}

/// Opens the store and applies pending migrations (recorded in `PRAGMA user_version`).
///
/// # Errors
/// [`GatewayError::Internal`] with the path and SQLite's message.
pub fn open(path: &Path) -> Result<Connection, GatewayError> {
    let fail =
        |e: rusqlite::Error| GatewayError::Internal(format!("usage store {}: {e}", path.display()));
    let conn = Connection::open(path).map_err(fail)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(fail)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(sql).map_err(fail)?;
        conn.pragma_update(None, "user_version", i + 1)
            .map_err(fail)?;
    }
    Ok(conn)
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    stats: Arc<SinkStats>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<SinkMessage>) {
        let mut batch: Vec<UsageEvent> = Vec::with_capacity(MAX_BATCH);
        let mut flushes = Vec::new();
        let mut closing = false;
        // `recv` fails only when every sender is gone and the queue is empty: then we are done too.
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    SinkMessage::Event(e) => batch.push(*e),
                    SinkMessage::Flush(done) => flushes.push(done),
                    SinkMessage::Close => closing = true,
                }
                // When closing, take everything already queued.
                if batch.len() < MAX_BATCH || closing {
                    next = rx.try_recv().ok();
                }
            }
            let busy = !batch.is_empty();
            self.write_until_done(&mut batch);
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if closing {
                return;
            }
            if busy {
                // Under load, gather the next burst while asleep instead of being woken once per event.
                std::thread::sleep(super::GATHER);
            }
        }
    }

    /// Writes the batch, retrying with a capped backoff while the store refuses: events are never dropped
    /// here; if the store stays down the queue fills and `emit` counts the drops.
    fn write_until_done(&mut self, batch: &mut Vec<UsageEvent>) {
        let mut delay = Duration::from_millis(50);
        while !batch.is_empty() {
            match self.write(batch) {
                Ok(()) => {
                    self.stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.stats.healthy.store(true, Ordering::Relaxed);
                    batch.clear();
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.stats.healthy.store(false, Ordering::Relaxed);
                    tracing::error!(target: "tollgate::events", store = %self.path.display(), error = %e,
                        "writing usage events failed; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn write(&mut self, batch: &[UsageEvent]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            let mut id = uuid::Uuid::encode_buffer();
            for e in batch {
                insert.execute(params![
                    &*e.event_id.hyphenated().encode_lower(&mut id),
                    e.schema_version,
                    e.started_at_ms,
                    e.finished_at_ms,
                    e.tenant,
                    e.team,
                    e.key_id,
                    e.end_user,
                    e.endpoint.as_str(),
                    e.model,
                    e.provider,
                    e.provider_kind,
                    e.deployment,
                    e.upstream_model,
                    e.stream,
                    e.outcome.as_str(),
                    e.http_status,
                    e.error_code,
                    e.attempts,
                    e.latency_ms,
                    e.ttft_ms,
                    e.usage.prompt_tokens,
                    e.usage.completion_tokens,
                    e.usage.cached_read_tokens,
                    e.usage.cache_write_tokens,
                    e.usage.reasoning_tokens,
                    e.usage_source.as_str(),
                    e.cost.nanos,
                    e.cost.currency,
                    e.cost.reporting_nanos,
                    e.cost.reporting_currency,
                    e.cost.price_version,
                    e.cost.price_missing,
                    tags_json(&e.tags),
                    leases_text(&e.budget_leases),
                ])?;
            }
        }
        tx.commit()
    }
}

const INSERT: &str = "INSERT OR IGNORE INTO usage_events (event_id, schema_version, started_at_ms, finished_at_ms, \
    tenant, team, key_id, end_user, endpoint, model, provider, provider_kind, deployment, upstream_model, stream, \
    outcome, http_status, error_code, attempts, latency_ms, ttft_ms, prompt_tokens, completion_tokens, \
    cached_read_tokens, cache_write_tokens, reasoning_tokens, usage_source, cost_nanos, currency, \
    reporting_cost_nanos, reporting_currency, price_version, price_missing, tags, budget_leases) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, \
    ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35)";

/// Budget leases as stored: ids separated by commas, or NULL when there are none.
fn leases_text(leases: &[uuid::Uuid]) -> Option<String> {
    (!leases.is_empty()).then(|| {
        leases
            .iter()
            .map(uuid::Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Tags as stored: a JSON object, or NULL when there are none.
fn tags_json(tags: &std::collections::BTreeMap<String, String>) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

const SELECT: &str = "SELECT event_id, schema_version, started_at_ms, finished_at_ms, tenant, team, key_id, \
    end_user, endpoint, model, provider, provider_kind, deployment, upstream_model, stream, outcome, http_status, \
    error_code, attempts, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_read_tokens, \
    cache_write_tokens, reasoning_tokens, usage_source, cost_nanos, currency, reporting_cost_nanos, \
    reporting_currency, price_version, price_missing, tags, budget_leases FROM usage_events ORDER BY event_id";

/// One stored event's attribution and reporting cost, for recovering budget spend at start.
#[derive(Debug, Clone)]
pub struct SpendRow {
    pub tenant: String,
    pub team: String,
    pub key_id: String,
    pub end_user: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    pub started_at_ms: i64,
    pub reporting_cost_nanos: u64,
}

/// Spend rows of events started at or after `since_ms`, each at its cost plus its re-pricing corrections
/// (a full scan: run once at start).
///
/// # Errors
/// When the store cannot be read.
pub fn spend_since(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<SpendRow>> {
    let mut stmt = conn.prepare(
        "SELECT tenant, team, key_id, end_user, tags, started_at_ms, cost FROM (\
           SELECT tenant, team, key_id, end_user, tags, started_at_ms, reporting_cost_nanos + \
             COALESCE((SELECT sum(c.delta_reporting_cost_nanos) FROM cost_corrections c \
                       WHERE c.event_id = usage_events.event_id), 0) AS cost \
           FROM usage_events WHERE started_at_ms >= ?1) WHERE cost > 0",
    )?;
    let rows = stmt.query_map([since_ms], |r| {
        let tags: Option<String> = r.get(4)?;
        Ok(SpendRow {
            tenant: r.get(0)?,
            team: r.get(1)?,
            key_id: r.get(2)?,
            end_user: r.get(3)?,
            tags: tags
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            started_at_ms: r.get(5)?,
            reporting_cost_nanos: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Every stored event, oldest first, rebuilt from its columns.
///
/// # Errors
/// When the store cannot be read or holds a value no `UsageEvent` can have.
pub fn read_all(conn: &Connection) -> rusqlite::Result<Vec<UsageEvent>> {
    fn name<T: serde::de::DeserializeOwned>(i: usize, s: String) -> rusqlite::Result<T> {
        serde_json::from_value(serde_json::Value::String(s)).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    }
    let mut stmt = conn.prepare(SELECT)?;
    let rows = stmt.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok(UsageEvent {
            event_id: uuid::Uuid::parse_str(&id).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            schema_version: r.get(1)?,
            started_at_ms: r.get(2)?,
            finished_at_ms: r.get(3)?,
            tenant: r.get(4)?,
            team: r.get(5)?,
            key_id: r.get(6)?,
            end_user: r.get(7)?,
            endpoint: name(8, r.get(8)?)?,
            model: r.get(9)?,
            provider: r.get(10)?,
            provider_kind: r.get(11)?,
            deployment: r.get(12)?,
            upstream_model: r.get(13)?,
            stream: r.get(14)?,
            outcome: name(15, r.get(15)?)?,
            http_status: r.get(16)?,
            error_code: r.get(17)?,
            attempts: r.get(18)?,
            latency_ms: r.get(19)?,
            ttft_ms: r.get(20)?,
            usage: tollgate_schemas::UsageVector {
                prompt_tokens: r.get(21)?,
                completion_tokens: r.get(22)?,
                cached_read_tokens: r.get(23)?,
                cache_write_tokens: r.get(24)?,
                reasoning_tokens: r.get(25)?,
            },
            usage_source: name(26, r.get(26)?)?,
            cost: tollgate_schemas::Cost {
                nanos: r.get(27)?,
                currency: r.get(28)?,
                reporting_nanos: r.get(29)?,
                reporting_currency: r.get(30)?,
                price_version: r.get(31)?,
                price_missing: r.get(32)?,
            },
            tags: match r.get::<_, Option<String>>(33)? {
                Some(json) => serde_json::from_str(&json).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        33,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                None => std::collections::BTreeMap::new(),
            },
            budget_leases: r
                .get::<_, Option<String>>(34)?
                .map(|s| {
                    s.split(',')
                        .filter_map(|id| uuid::Uuid::parse_str(id).ok())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_schemas::{Endpoint, Outcome, UsageSource, UsageVector};

    fn event(n: u64) -> UsageEvent {
        UsageEvent {
            schema_version: 1,
            event_id: uuid::Uuid::now_v7(),
            started_at_ms: 1,
            finished_at_ms: 2,
            tenant: "acme".into(),
            team: "t".into(),
            key_id: "k".into(),
            end_user: None,
            endpoint: Endpoint::ChatCompletions,
            model: "m".into(),
            provider: "p".into(),
            provider_kind: "openai".into(),
            deployment: "p/m".into(),
            upstream_model: "m".into(),
            stream: false,
            outcome: Outcome::Success,
            http_status: 200,
            error_code: None,
            attempts: 1,
            latency_ms: 3,
            ttft_ms: Some(2),
            usage: UsageVector {
                prompt_tokens: n,
                completion_tokens: 2 * n,
                ..UsageVector::default()
            },
            usage_source: UsageSource::Provider,
            cost: tollgate_schemas::Cost::default(),
            tags: std::collections::BTreeMap::new(),
            budget_leases: Vec::new(),
        }
    }

    #[tokio::test]
    async fn writes_every_event_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let (sink, worker) = start(&path).unwrap();
        let events: Vec<_> = (1..=2500).map(event).collect();
        for e in &events {
            sink.emit(e.clone());
        }
        // A replayed event must not double.
        sink.emit(events[0].clone());
        sink.flush().await;
        let stats = sink.stats();
        assert_eq!(
            (stats.emitted, stats.written, stats.dropped),
            (2501, 2501, 0)
        );
        drop(sink);
        worker.close();

        let conn = open(&path).unwrap();
        let (rows, prompt): (i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(prompt_tokens) FROM usage_events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(rows, 2500);
        assert_eq!(prompt, (1..=2500).sum::<i64>());
        let stored = read_all(&conn).unwrap();
        assert_eq!(stored.len(), 2500);
        assert_eq!(stored[7], events[7]);
    }
}
