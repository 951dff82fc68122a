//! The Anthropic-format inbound API, `POST /v1/messages`: Anthropic in, any provider out.
//!
//! It adds no second orchestrator. The request is translated into the OpenAI shape ([`request`]) and goes
//! through [`crate::proxy`] like `/v1/chat/completions` — same keys, routing, rate limits, budgets, retries
//! and one usage event (endpoint `messages`) — while the client's own bytes travel along: an Anthropic
//! deployment is sent those, unchanged but for `model` (lossless: `cache_control`, thinking signatures,
//! documents survive). The OpenAI-shaped answer is then translated back here: a `chat.completion` into a
//! `message` ([`response`]), a stream chunk by chunk into Messages SSE ([`stream`]), and every error into
//! `{"type":"error","error":{"type","message"}}` with the same status and headers.

pub mod request;
pub mod response;
pub mod stream;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;

/// The largest non-streamed answer translated (the gateway built it; this bounds a misbehaving upstream).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Translates the orchestrator's OpenAI-shaped response into Anthropic's format.
pub async fn respond(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let is_stream = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream && parts.status.is_success() {
        let mut translator = stream::MessagesStream::default();
        let body = body
            .into_data_stream()
            .map(move |read| read.map(|bytes| translator.push(&bytes)));
        return Response::from_parts(parts, Body::from_stream(body));
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        parts.status = http::StatusCode::BAD_GATEWAY;
        return json_response(parts, &response::to_error(502, &Value::Null));
    };
    let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let translated = if parts.status.is_success() {
        response::to_message(&parsed)
    } else {
        response::to_error(parts.status.as_u16(), &parsed)
    };
    json_response(parts, &translated)
}

fn json_response(mut parts: http::response::Parts, body: &Value) -> Response {
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}
