//! `POST /v1/chat/completions`, plain and streamed.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate_schemas::Endpoint;

use crate::state::AppState;

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    crate::proxy::handle(state, Endpoint::ChatCompletions, headers, body).await
}
