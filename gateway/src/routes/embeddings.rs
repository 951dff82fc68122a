//! `POST /v1/embeddings`.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate_schemas::Endpoint;

use crate::state::AppState;

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    crate::proxy::handle(state, Endpoint::Embeddings, headers, body).await
}
