//! `POST /v1/messages`, the Anthropic-format API (plain and streamed): see [`crate::messages`].

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate_schemas::Endpoint;

use crate::state::AppState;

pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let response = crate::proxy::handle(state, Endpoint::Messages, headers, body).await;
    crate::messages::respond(response).await
}
