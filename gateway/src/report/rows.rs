//! A report's result: one row per (bucket, dimension values, reporting currency) with exact sums, and the
//! totals per currency. Both backends fill the same [`Figures`]; sorting and totals happen here, once.

use std::collections::BTreeMap;

use serde::Serialize;
use tollgate_schemas::price::format_nanos;

use super::query::{Dimension, UsageQuery};
use super::time;

/// Sums over a set of usage events. Cost is in nano-units of the row's reporting currency, corrections
/// (re-pricing deltas) included on both stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub requests: u64,
    /// Events whose outcome is not `success`.
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// Events that had no price (their cost counted as zero).
    pub price_missing: u64,
    pub cost_nanos: i128,
}

impl Figures {
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_read_tokens += other.cached_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.price_missing += other.price_missing;
        self.cost_nanos += other.cost_nanos;
    }
}

/// One group of a report, as a backend returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Start of the time bucket (epoch ms, UTC) when the query has a bucket.
    pub bucket_ms: Option<i64>,
    /// Values of the query's `group_by` dimensions, in its order (`""` where an event has none).
    pub values: Vec<String>,
    pub currency: String,
    pub figures: Figures,
}

/// A finished report: rows sorted by bucket, dimension values and currency; totals per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<Dimension>,
    pub bucket: Option<super::query::Bucket>,
    /// `embedded` or `clickhouse`.
    pub backend: &'static str,
    pub rows: Vec<Row>,
    /// Per reporting currency (normally one).
    pub totals: BTreeMap<String, Figures>,
}

impl UsageReport {
    /// Sorts the backend's rows and sums the totals.
    #[must_use]
    pub fn new(query: &UsageQuery, backend: &'static str, mut rows: Vec<Row>) -> Self {
        rows.sort_by(|a, b| {
            (a.bucket_ms, &a.values, &a.currency).cmp(&(b.bucket_ms, &b.values, &b.currency))
        });
        let mut totals: BTreeMap<String, Figures> = BTreeMap::new();
        for row in &rows {
            totals
                .entry(row.currency.clone())
                .or_default()
                .add(&row.figures);
        }
        Self {
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            group_by: query.group_by.clone(),
            bucket: query.bucket,
            backend,
            rows,
            totals,
        }
    }

    /// The JSON answer of `/admin/usage` (see [`ReportDocument`]).
    #[must_use]
    pub fn document(&self) -> ReportDocument {
        let group_by: Vec<String> = self.group_by.iter().map(Dimension::name).collect();
        ReportDocument {
            from: time::format_ms(self.from_ms),
            to: time::format_ms(self.to_ms),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            bucket: self.bucket.map(|b| b.name().to_string()),
            backend: self.backend.to_string(),
            rows: self
                .rows
                .iter()
                .map(|r| DocumentRow {
                    bucket_start: r.bucket_ms.map(time::format_ms),
                    bucket_start_ms: r.bucket_ms,
                    dimensions: group_by.iter().cloned().zip(r.values.clone()).collect(),
                    currency: r.currency.clone(),
                    amounts: Amounts::of(&r.figures),
                })
                .collect(),
            totals: self
                .totals
                .iter()
                .map(|(currency, f)| DocumentTotal {
                    currency: currency.clone(),
                    amounts: Amounts::of(f),
                })
                .collect(),
            group_by,
        }
    }
}

/// The wire shape of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportDocument {
    pub from: String,
    pub to: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<String>,
    pub bucket: Option<String>,
    pub backend: String,
    pub rows: Vec<DocumentRow>,
    pub totals: Vec<DocumentTotal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start_ms: Option<i64>,
    /// Dimension name → value (`{"model": "gpt-4o-mini", "key": "ci"}`).
    pub dimensions: BTreeMap<String, String>,
    pub currency: String,
    #[serde(flatten)]
    pub amounts: Amounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentTotal {
    pub currency: String,
    #[serde(flatten)]
    pub amounts: Amounts,
}

/// Counts and cost as sent: the cost both as an integer of nano-units and as the exact decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Amounts {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub price_missing: u64,
    /// Nano-units of `currency` (exact; above 2^53 a JavaScript reader should use `cost`).
    pub cost_nanos: i128,
    /// The same amount as a decimal string (`"0.000123"`), never rounded.
    pub cost: String,
}

impl Amounts {
    #[must_use]
    pub fn of(f: &Figures) -> Self {
        Self {
            requests: f.requests,
            errors: f.errors,
            prompt_tokens: f.prompt_tokens,
            completion_tokens: f.completion_tokens,
            cached_read_tokens: f.cached_read_tokens,
            cache_write_tokens: f.cache_write_tokens,
            reasoning_tokens: f.reasoning_tokens,
            price_missing: f.price_missing,
            cost_nanos: f.cost_nanos,
            cost: format_nanos(f.cost_nanos),
        }
    }

    /// `(column name, value)` of each figure, in CSV / table order.
    #[must_use]
    pub fn columns(&self) -> [(&'static str, String); 10] {
        [
            ("requests", self.requests.to_string()),
            ("errors", self.errors.to_string()),
            ("prompt_tokens", self.prompt_tokens.to_string()),
            ("completion_tokens", self.completion_tokens.to_string()),
            ("cached_read_tokens", self.cached_read_tokens.to_string()),
            ("cache_write_tokens", self.cache_write_tokens.to_string()),
            ("reasoning_tokens", self.reasoning_tokens.to_string()),
            ("price_missing", self.price_missing.to_string()),
            ("cost_nanos", self.cost_nanos.to_string()),
            ("cost", self.cost.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::query::{Bucket, Filters};

    fn row(bucket: i64, model: &str, cost: i128) -> Row {
        Row {
            bucket_ms: Some(bucket),
            values: vec![model.into()],
            currency: "USD".into(),
            figures: Figures {
                requests: 1,
                cost_nanos: cost,
                ..Figures::default()
            },
        }
    }

    #[test]
    fn sorts_rows_and_sums_totals_exactly() {
        let query = UsageQuery {
            from_ms: 0,
            to_ms: 7_200_000,
            group_by: vec![Dimension::Model],
            filters: Filters::default(),
            bucket: Some(Bucket::Hour),
        };
        let report = UsageReport::new(
            &query,
            "embedded",
            vec![
                row(3_600_000, "b", 7),
                row(0, "b", 1_000_000_001),
                row(0, "a", 2),
            ],
        );
        let order: Vec<_> = report
            .rows
            .iter()
            .map(|r| (r.bucket_ms, r.values[0].as_str()))
            .collect();
        assert_eq!(
            order,
            [(Some(0), "a"), (Some(0), "b"), (Some(3_600_000), "b")]
        );
        let doc = report.document();
        assert_eq!(doc.totals.len(), 1);
        assert_eq!(doc.totals[0].amounts.cost, "1.00000001");
        assert_eq!(doc.totals[0].amounts.cost_nanos, 1_000_000_010);
        assert_eq!(doc.totals[0].amounts.requests, 3);
        assert_eq!(
            doc.rows[2].bucket_start.as_deref(),
            Some("1970-01-01T01:00:00Z")
        );
        assert_eq!(doc.rows[0].dimensions["model"], "a");
    }
}
