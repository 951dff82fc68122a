//! Reports over ClickHouse: one aggregate `SELECT` on the raw `usage_events` (exact: every event once, as the
//! consumer inserted it), with re-pricing deltas from `cost_corrections` joined by `event_id` so corrected
//! spend shows under the event's own dimensions. Sent over HTTP with `readonly=1`.
//!
//! 18.16 has no query parameters (`param_*` is an unknown setting there), so string values are written as
//! escaped literals ([`literal`]); numbers come from parsed integers and names from a closed set, so no raw
//! request text ever reaches the SQL. The SQL avoids what 18.16 lacks (see `notes/clickhouse-18.md`) and
//! runs unchanged on current ClickHouse.

use std::time::Duration;

use serde_json::Value;

use super::query::{Dimension, UsageQuery, MAX_ROWS};
use super::rows::{Figures, Row};
use crate::config::ReportsClickHouse;
use crate::error::GatewayError;

/// How long one report query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads usage from ClickHouse's `usage_events` and `cost_corrections`.
#[derive(Debug, Clone)]
pub struct ClickHouseReports {
    settings: ReportsClickHouse,
    client: reqwest::Client,
    reporting_currency: String,
}

impl ClickHouseReports {
    /// # Errors
    /// [`GatewayError::Internal`] when the HTTP client cannot be built.
    pub fn new(
        settings: &ReportsClickHouse,
        reporting_currency: &str,
    ) -> Result<Self, GatewayError> {
        let client = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .build()
            .map_err(|e| {
                GatewayError::Internal(format!("cannot build the ClickHouse client: {e}"))
            })?;
        Ok(Self {
            settings: settings.clone(),
            client,
            reporting_currency: reporting_currency.to_string(),
        })
    }

    /// Runs `query`.
    ///
    /// # Errors
    /// [`GatewayError::Unavailable`] when ClickHouse cannot be reached or refuses the query,
    /// [`GatewayError::InvalidRequest`] when the answer would exceed [`MAX_ROWS`].
    pub async fn run(&self, query: &UsageQuery) -> Result<Vec<Row>, GatewayError> {
        let sql = sql(query, &self.settings.database, &self.reporting_currency);
        let mut request = self
            .client
            .post(self.settings.url.clone())
            .query(&[("readonly", "1")])
            .body(sql);
        if let Some(user) = &self.settings.user {
            request = request.basic_auth(
                user,
                self.settings
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_string()),
            );
        }
        let unavailable =
            |what: String| GatewayError::Unavailable(format!("ClickHouse reports: {what}"));
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(format!("cannot reach {}: {e}", self.settings.url)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| unavailable(format!("reading the answer failed: {e}")))?;
        if !status.is_success() {
            let first_line = body.lines().next().unwrap_or_default();
            return Err(unavailable(format!(
                "query failed ({status}): {first_line}"
            )));
        }
        parse(&body, query).map_err(unavailable)
    }
}

/// The report's SQL, ending in `FORMAT JSONEachRow`. Columns: `b` (bucket), `d0`… (dimensions), `cur`, then
/// the sums; aliases never reuse a column name (18.16 would substitute them inside the aggregates), and the
/// joined subquery has an alias (current ClickHouse requires one).
#[must_use]
pub fn sql(query: &UsageQuery, database: &str, reporting_currency: &str) -> String {
    let db = identifier(database);
    let mut select = Vec::new();
    let mut groups = Vec::new();
    if let Some(bucket) = query.bucket {
        select.push(format!(
            "intDiv(started_at_ms, {width}) * {width} AS b",
            width = bucket.millis()
        ));
        groups.push("b".to_string());
    }
    for (i, dimension) in query.group_by.iter().enumerate() {
        let expr = match dimension {
            Dimension::Tag(key) => tag_value(key),
            other => other.column().unwrap_or("''").to_string(),
        };
        select.push(format!("{expr} AS d{i}"));
        groups.push(format!("d{i}"));
    }
    select.push(format!(
        "if(reporting_currency = '', {}, reporting_currency) AS cur",
        literal(reporting_currency)
    ));
    groups.push("cur".into());
    select.extend(
        [
            "count() AS n_requests",
            "countIf(outcome != 'success') AS n_errors",
            "sum(prompt_tokens) AS s_prompt",
            "sum(completion_tokens) AS s_completion",
            "sum(cached_read_tokens) AS s_cached_read",
            "sum(cache_write_tokens) AS s_cache_write",
            "sum(reasoning_tokens) AS s_reasoning",
            "sum(toUInt64(price_missing)) AS n_price_missing",
            "sum(reporting_cost_nanos + correction) AS s_cost",
        ]
        .map(String::from),
    );
    let mut conditions = vec![
        format!("started_at_ms >= {}", query.from_ms.max(0)),
        format!("started_at_ms < {}", query.to_ms.max(0)),
    ];
    for (column, value) in query.filters.columns() {
        conditions.push(format!("{column} = {}", literal(value)));
    }
    for (key, value) in &query.filters.tags {
        conditions.push(format!(
            "has(tag_keys, {k}) AND tag_values[indexOf(tag_keys, {k})] = {v}",
            k = literal(key),
            v = literal(value)
        ));
    }
    // A correction carries its event's `started_at` (whole seconds): read only the range's corrections.
    let corrections = format!(
        "SELECT event_id, sum(delta_reporting_cost_nanos) AS correction FROM {db}.cost_corrections \
         WHERE started_at >= toDateTime({from_s}) AND started_at <= toDateTime({to_s}) GROUP BY event_id",
        from_s = query.from_ms.max(0) / 1000,
        to_s = query.to_ms.max(0) / 1000 + 1,
    );
    format!(
        "SELECT {} FROM {db}.usage_events ANY LEFT JOIN ({corrections}) AS corrections USING event_id \
         WHERE {} GROUP BY {} LIMIT {} FORMAT JSONEachRow",
        select.join(", "),
        conditions.join(" AND "),
        groups.join(", "),
        MAX_ROWS + 1
    )
}

/// The value of tag `key`, `''` when the event lacks it (tags are parallel arrays; 18.16 has no Map).
fn tag_value(key: &str) -> String {
    let k = literal(key);
    format!("if(has(tag_keys, {k}), tag_values[indexOf(tag_keys, {k})], '')")
}

/// A ClickHouse string literal: quoted, with backslash, quote and control characters escaped.
#[must_use]
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A database name as an identifier: validated at config load to `[A-Za-z0-9_]`, back-quoted anyway.
fn identifier(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("`{clean}`")
}

/// `JSONEachRow` lines → rows. 64-bit integers arrive quoted (ClickHouse's default) or bare: both are read.
fn parse(body: &str, query: &UsageQuery) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if rows.len() == MAX_ROWS {
            return Err(super::too_many_rows().to_string());
        }
        let object: serde_json::Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("unreadable answer line: {e}"))?;
        let text = |name: &str| -> Result<String, String> {
            match object.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                other => Err(format!("column {name}: expected a string, got {other:?}")),
            }
        };
        let int = |name: &str| -> Result<i128, String> {
            match object.get(name) {
                Some(Value::String(s)) => s.parse().ok(),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from)),
                _ => None,
            }
            .ok_or_else(|| {
                format!(
                    "column {name}: expected an integer, got {:?}",
                    object.get(name)
                )
            })
        };
        let count = |name: &str| -> Result<u64, String> {
            u64::try_from(int(name)?).map_err(|_| format!("column {name}: out of range"))
        };
        rows.push(Row {
            bucket_ms: match query.bucket {
                Some(_) => Some(i64::try_from(int("b")?).map_err(|_| "column b: out of range")?),
                None => None,
            },
            values: (0..query.group_by.len())
                .map(|i| text(&format!("d{i}")))
                .collect::<Result<_, _>>()?,
            currency: text("cur")?,
            figures: Figures {
                requests: count("n_requests")?,
                errors: count("n_errors")?,
                prompt_tokens: count("s_prompt")?,
                completion_tokens: count("s_completion")?,
                cached_read_tokens: count("s_cached_read")?,
                cache_write_tokens: count("s_cache_write")?,
                reasoning_tokens: count("s_reasoning")?,
                price_missing: count("n_price_missing")?,
                cost_nanos: int("s_cost")?,
            },
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::query::{Bucket, Filters};

    #[test]
    fn literals_cannot_close_the_quote() {
        assert_eq!(literal("acme"), "'acme'");
        assert_eq!(literal(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(literal("x\\' OR 1=1 --"), r"'x\\\' OR 1=1 --'");
        assert_eq!(literal("l1\nl2\0"), r"'l1\nl2\0'");
        // After escaping, every quote inside is preceded by an odd run of backslashes.
        let nasty = literal(r"\\'\'''\");
        let inner = &nasty[1..nasty.len() - 1];
        let bytes = inner.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\'' {
                let run = bytes[..i].iter().rev().take_while(|c| **c == b'\\').count();
                assert_eq!(run % 2, 1, "{nasty}");
            }
        }
        // …and the closing quote is not escaped: an even run of backslashes before it.
        let tail = bytes.iter().rev().take_while(|c| **c == b'\\').count();
        assert_eq!(tail % 2, 0, "{nasty}");
    }

    #[test]
    fn sql_quotes_every_value_and_names_only_known_columns() {
        let query = UsageQuery {
            from_ms: 1000,
            to_ms: 3_601_000,
            group_by: vec![Dimension::Key, Dimension::Tag("fe'ature".into())],
            filters: Filters {
                tenant: Some("ac'me".into()),
                tags: vec![("team".into(), "x\\".into())],
                ..Filters::default()
            },
            bucket: Some(Bucket::Minute),
        };
        let sql = sql(&query, "tg; DROP", "USD");
        assert!(sql.contains("FROM `tgDROP`.usage_events"));
        assert!(sql.contains(r"tenant = 'ac\'me'"));
        assert!(sql.contains(r"indexOf(tag_keys, 'fe\'ature')"));
        assert!(sql.contains(r"= 'x\\'"));
        assert!(sql.contains("intDiv(started_at_ms, 60000) * 60000 AS b"));
        assert!(sql.contains("key_id AS d0"));
        assert!(sql.ends_with("FORMAT JSONEachRow"));
    }

    #[test]
    fn reads_quoted_and_bare_integers() {
        let query = UsageQuery {
            from_ms: 0,
            to_ms: 1,
            group_by: vec![Dimension::Model],
            filters: Filters::default(),
            bucket: None,
        };
        let body = r#"{"d0":"m","cur":"USD","n_requests":"2","n_errors":0,"s_prompt":"10","s_completion":"5","s_cached_read":"0","s_cache_write":"0","s_reasoning":"0","n_price_missing":"1","s_cost":"-7"}"#;
        let rows = parse(body, &query).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].values, ["m"]);
        assert_eq!(rows[0].figures.requests, 2);
        assert_eq!(rows[0].figures.cost_nanos, -7);
        assert!(parse(r#"{"d0":1}"#, &query).is_err());
    }
}
