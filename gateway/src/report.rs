//! Usage reports: requests, errors, tokens by class and exact cost over a time range, grouped by any of
//! tenant, team, key, end user, tag, model, provider, deployment and an optional time bucket.
//!
//! - [`query`] — [`UsageQuery`] and its parsing from `/admin/usage` parameters.
//! - [`embedded`] — the SQLite backend (read-only connection to the embedded store).
//! - [`clickhouse`] — the ClickHouse backend (`usage_events` + `cost_corrections`, over HTTP).
//! - [`rows`] — the result: sorted rows, totals per currency, the JSON document.
//! - [`csv`] — the CSV rendering; [`client`] — `tollgate usage`, the command-line reader of the API.
//! - [`time`] — RFC 3339 parsing and UTC formatting.
//!
//! Both backends read raw events (never the eventually-merged aggregates), sum integers only, and return the
//! same rows for the same events: the tests compare them to the nano-unit.

pub mod clickhouse;
pub mod client;
pub mod csv;
pub mod embedded;
pub mod query;
pub mod rows;
pub mod time;

pub use query::{Bucket, Dimension, Filters, Format, UsageQuery};
pub use rows::{Figures, Row, UsageReport};

use crate::config::Config;
use crate::error::GatewayError;

/// The usage page (`GET /admin/usage/page`): plain HTML + JS, no external resources.
pub const PAGE_HTML: &str = include_str!("report/page.html");

/// Where reports read from.
#[derive(Debug, Clone)]
pub enum Reports {
    Embedded(embedded::EmbeddedReports),
    ClickHouse(clickhouse::ClickHouseReports),
}

impl Reports {
    /// ClickHouse when `[reports] clickhouse_url` is set, else the embedded store at `[store] path`.
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the ClickHouse client cannot be built.
    pub fn from_config(config: &Config) -> Result<Self, GatewayError> {
        let currency = &config.pricing.rates.reporting;
        Ok(match &config.reports.clickhouse {
            Some(ch) => Self::ClickHouse(clickhouse::ClickHouseReports::new(ch, currency)?),
            None => Self::Embedded(embedded::EmbeddedReports::new(&config.store.path, currency)),
        })
    }

    /// `embedded` or `clickhouse`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::ClickHouse(_) => "clickhouse",
        }
    }

    /// Runs `query` on this backend.
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] for a range that cannot be answered, [`GatewayError::Unavailable`]
    /// when the backend cannot be read.
    pub async fn run(&self, query: &UsageQuery) -> Result<UsageReport, GatewayError> {
        query.validate()?;
        let rows = match self {
            Self::Embedded(e) => e.run(query).await?,
            Self::ClickHouse(c) => c.run(query).await?,
        };
        Ok(UsageReport::new(query, self.backend(), rows))
    }
}

fn too_many_rows() -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!(
            "the report would have more than {} rows; use a shorter range, a wider bucket or fewer dimensions",
            query::MAX_ROWS
        ),
        param: Some("group_by"),
    }
}
