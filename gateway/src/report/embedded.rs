//! Reports over the embedded store: one aggregate `SELECT` on a read-only connection to the SQLite file the
//! writer thread fills (WAL lets readers and the writer work at once), run on the blocking pool. Every value
//! from the request is a bound parameter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::query::{Dimension, UsageQuery, MAX_ROWS};
use super::rows::{Figures, Row};
use crate::error::GatewayError;

/// Reads usage from the embedded store at a path.
#[derive(Debug, Clone)]
pub struct EmbeddedReports {
    path: PathBuf,
    /// Stands in for an event's empty reporting currency (requests refused before a deployment was chosen).
    reporting_currency: String,
}

impl EmbeddedReports {
    #[must_use]
    pub fn new(path: &Path, reporting_currency: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            reporting_currency: reporting_currency.to_string(),
        }
    }

    /// Runs `query` on the blocking pool.
    ///
    /// # Errors
    /// [`GatewayError::Unavailable`] when the store cannot be opened or read, [`GatewayError::InvalidRequest`]
    /// when the answer would exceed [`MAX_ROWS`].
    pub async fn run(&self, query: &UsageQuery) -> Result<Vec<Row>, GatewayError> {
        let this = self.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || this.run_blocking(&query))
            .await
            .map_err(|e| GatewayError::Internal(format!("report task failed: {e}")))?
    }

    /// Runs `query` on the calling thread.
    ///
    /// # Errors
    /// As [`EmbeddedReports::run`].
    pub fn run_blocking(&self, query: &UsageQuery) -> Result<Vec<Row>, GatewayError> {
        let fail = |e: rusqlite::Error| {
            GatewayError::Unavailable(format!(
                "the usage store {} cannot be read: {e}",
                self.path.display()
            ))
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        let (sql, params) = sql(query, &self.reporting_currency);
        let mut stmt = conn.prepare(&sql).map_err(fail)?;
        let dims = query.group_by.len();
        let bucketed = usize::from(query.bucket.is_some());
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(fail)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(fail)? {
            if out.len() == MAX_ROWS {
                return Err(super::too_many_rows());
            }
            let count = |i: usize| -> rusqlite::Result<u64> {
                Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
            };
            let base = bucketed + dims + 1;
            out.push(Row {
                bucket_ms: if bucketed == 1 {
                    Some(r.get(0).map_err(fail)?)
                } else {
                    None
                },
                values: (bucketed..bucketed + dims)
                    .map(|i| r.get::<_, String>(i))
                    .collect::<Result<_, _>>()
                    .map_err(fail)?,
                currency: r.get(base - 1).map_err(fail)?,
                figures: Figures {
                    requests: count(base).map_err(fail)?,
                    errors: count(base + 1).map_err(fail)?,
                    prompt_tokens: count(base + 2).map_err(fail)?,
                    completion_tokens: count(base + 3).map_err(fail)?,
                    cached_read_tokens: count(base + 4).map_err(fail)?,
                    cache_write_tokens: count(base + 5).map_err(fail)?,
                    reasoning_tokens: count(base + 6).map_err(fail)?,
                    price_missing: count(base + 7).map_err(fail)?,
                    cost_nanos: i128::from(r.get::<_, i64>(base + 8).map_err(fail)?),
                },
            });
        }
        Ok(out)
    }
}

/// Numbered parameters (`?1`, `?2`, …), so the text can use them in any order.
#[derive(Default)]
struct Params(Vec<Value>);

impl Params {
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.0.push(value.into());
        format!("?{}", self.0.len())
    }
}

/// The report's SQL and its parameters. Columns: [bucket], dimension values…, currency, requests, errors,
/// five token sums, price_missing, cost.
fn sql(query: &UsageQuery, reporting_currency: &str) -> (String, Vec<Value>) {
    let mut p = Params::default();
    let mut select = Vec::new();
    if let Some(bucket) = query.bucket {
        let width = p.bind(bucket.millis());
        select.push(format!("(started_at_ms / {width}) * {width}"));
    }
    for dimension in &query.group_by {
        select.push(match dimension {
            Dimension::Tag(key) => tag_value(&p.bind(key.clone())),
            other => format!("COALESCE({}, '')", other.column().unwrap_or("NULL")),
        });
    }
    let currency = p.bind(reporting_currency.to_string());
    select.push(format!(
        "CASE WHEN reporting_currency = '' THEN {currency} ELSE reporting_currency END"
    ));
    let groups = select.len();
    select.extend(
        [
            "count(*)",
            "sum(outcome != 'success')",
            "sum(prompt_tokens)",
            "sum(completion_tokens)",
            "sum(cached_read_tokens)",
            "sum(cache_write_tokens)",
            "sum(reasoning_tokens)",
            "sum(price_missing)",
            // Re-pricing corrections count (looked up by the `cost_corrections_by_event` index), as on ClickHouse.
            "sum(reporting_cost_nanos + COALESCE((SELECT sum(c.delta_reporting_cost_nanos) FROM cost_corrections c \
             WHERE c.event_id = usage_events.event_id), 0))",
        ]
        .map(String::from),
    );
    let mut conditions = vec![
        format!("started_at_ms >= {}", p.bind(query.from_ms)),
        format!("started_at_ms < {}", p.bind(query.to_ms)),
    ];
    for (column, value) in query.filters.columns() {
        conditions.push(format!(
            "COALESCE({column}, '') = {}",
            p.bind(value.to_string())
        ));
    }
    for (key, value) in &query.filters.tags {
        let key = p.bind(key.clone());
        let value = p.bind(value.clone());
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM json_each(usage_events.tags) WHERE key = {key} AND value = {value})"
        ));
    }
    let group_by: Vec<String> = (1..=groups).map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT {} FROM usage_events WHERE {} GROUP BY {} LIMIT {}",
        select.join(", "),
        conditions.join(" AND "),
        group_by.join(", "),
        MAX_ROWS + 1
    );
    (sql, p.0)
}

/// The value of tag `key` (a bound parameter), `''` when the event lacks it.
fn tag_value(key: &str) -> String {
    format!("COALESCE((SELECT value FROM json_each(usage_events.tags) WHERE key = {key}), '')")
}
