//! `GET /v1/models` (the models the caller's key may use, in OpenAI's list shape) and
//! `GET /v1/models/{model}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use crate::error::GatewayError;
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
        .map(model_object)
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// One model; unknown and not-allowed models are both 404 so a key cannot probe what others may use.
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    let principal = match state.keys.authenticate(&headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if state.router.contains(&model) && principal.models.allows(&model) {
        axum::Json(model_object(&model)).into_response()
    } else {
        GatewayError::UnknownModel(model).into_response()
    }
}

fn model_object(id: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "tollgate"})
}
