//! The Gemini-format inbound API, `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent` (`?alt=sse`): Gemini in, any provider out.
//!
//! Like [`crate::messages`], it adds no second orchestrator. The model and streaming come from the URL
//! ([`crate::proxy::PathTarget`]); the body is translated into the OpenAI shape ([`request`]) and goes
//! through [`crate::proxy`] like `/v1/chat/completions` — same keys (`x-goog-api-key`, `?key=` or Bearer),
//! routing, rate limits, budgets, retries and one usage event (endpoint `generate_content`) — while the
//! client's own bytes travel along: a Gemini or Vertex-Gemini deployment is sent those unchanged (safety
//! settings, thought signatures, Google-only tools survive). The OpenAI-shaped answer is translated back
//! here: a `chat.completion` into a `GenerateContentResponse` ([`response`]), a stream chunk by chunk into
//! Gemini SSE ([`stream`]; always SSE, whether or not the client asked `alt=sse`), and every error into
//! `{"error":{"code","message","status"}}` with the same HTTP status and headers (a `retry-after` also as
//! `RetryInfo`). Answers from Gemini deployments make that round trip too: what chat completions cannot
//! carry (safety ratings, citations, grounding) is not in them.

pub mod request;
pub mod response;
pub mod stream;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;

/// The largest non-streamed answer translated (the gateway built it; this bounds a misbehaving upstream).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Translates the orchestrator's OpenAI-shaped response into Gemini's format.
pub async fn respond(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let is_stream = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream && parts.status.is_success() {
        let mut translator = stream::GenerateContentStream::default();
        let body = body
            .into_data_stream()
            .map(move |read| read.map(|bytes| translator.push(&bytes)));
        return Response::from_parts(parts, Body::from_stream(body));
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        parts.status = http::StatusCode::BAD_GATEWAY;
        return json_response(parts, &response::to_error(502, &Value::Null, None));
    };
    let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let translated = if parts.status.is_success() {
        response::to_generate_content(&parsed)
    } else {
        let retry_after = parts
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        response::to_error(parts.status.as_u16(), &parsed, retry_after)
    };
    json_response(parts, &translated)
}

/// A Google-shaped error answer for failures before the orchestrator (unknown method).
#[must_use]
pub fn error_response(status: http::StatusCode, message: &str) -> Response {
    let body = response::to_error(
        status.as_u16(),
        &serde_json::json!({"error": {"message": message}}),
        None,
    );
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn json_response(mut parts: http::response::Parts, body: &Value) -> Response {
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}
