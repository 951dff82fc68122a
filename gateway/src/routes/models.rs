//! `GET /v1/models`: the models the caller's key may use, in OpenAI's list shape.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use crate::state::AppState;

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let principal = match state.keys.authenticate(&headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let data: Vec<_> = state
        .router
        .model_names()
        .into_iter()
        .filter(|m| principal.models.allows(m))
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
