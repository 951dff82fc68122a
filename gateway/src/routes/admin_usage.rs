//! `GET /admin/usage` (a usage report as JSON or CSV, admin key required) and `GET /admin/usage/page` (the
//! usage page: static HTML + JS that asks for the admin key and reads everything from `/admin/usage`).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap};

use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::report::{self, Format, UsageQuery};
use crate::state::AppState;

pub async fn usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match answer(&state, &headers, query.as_deref().unwrap_or_default()).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response, GatewayError> {
    state.admin.check(headers)?;
    let pairs = form_urlencoded::parse(query.as_bytes()).into_owned();
    let (query, format) = UsageQuery::from_pairs(pairs, now_ms())?;
    let report = state.reports.run(&query).await?;
    Ok(match format {
        Format::Json => axum::Json(report.document()).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"tollgate-usage.csv\"",
                ),
            ],
            report::csv::render(&report),
        )
            .into_response(),
    })
}

/// The page holds no data, so it is served without the key — but only while the admin API is on.
pub async fn page(State(state): State<Arc<AppState>>) -> Response {
    if state.config.admin.is_none() {
        return GatewayError::AdminDisabled.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything is inline; nothing is fetched from elsewhere, and the page is never framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        report::PAGE_HTML,
    )
        .into_response()
}
