//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve and meter).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready while the usage store accepts writes: serving without metering would lose usage.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let sink = state.sink.stats();
    let status = if sink.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if sink.healthy { "ready" } else { "not_ready" }, "sink": sink});
    (status, axum::Json(body)).into_response()
}
