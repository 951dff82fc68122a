//! `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (`?alt=sse`), the
//! Gemini-format API: see [`crate::generate_content`].

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tollgate_schemas::Endpoint;

use crate::proxy::PathTarget;
use crate::state::AppState;

pub async fn generate_content(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    mut headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (model, stream) = match target.rsplit_once(':') {
        Some((model, "generateContent")) if !model.is_empty() => (model, false),
        Some((model, "streamGenerateContent")) if !model.is_empty() => (model, true),
        _ => {
            return crate::generate_content::error_response(
                StatusCode::NOT_FOUND,
                &format!(
                "unknown method models/{target}; use :generateContent or :streamGenerateContent"
            ),
            )
        }
    };
    // Google's clients may send the key as `?key=`; it is read like the `x-goog-api-key` header.
    let key = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(key) = key {
        if !headers.contains_key("x-goog-api-key") {
            if let Ok(mut value) = HeaderValue::from_str(&key) {
                value.set_sensitive(true);
                headers.insert("x-goog-api-key", value);
            }
        }
    }
    let target = PathTarget {
        model: model.to_string(),
        stream,
    };
    let response = crate::proxy::handle_at(
        state,
        Endpoint::GenerateContent,
        Some(target),
        headers,
        body,
    )
    .await;
    crate::generate_content::respond(response).await
}
