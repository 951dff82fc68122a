//! The Anthropic Messages dialect of the mock (`POST /anthropic/v1/messages`), in the real wire shapes (those
//! of the recorded fixtures in `fixtures/anthropic`).
//!
//! It checks requests as the real API does where a translation can go wrong: `x-api-key` (else 401
//! `authentication_error`), `anthropic-version` (else 400), `max_tokens` and `messages` required, roles only
//! `user` / `assistant`, a `tool_result` only for a `tool_use` id of the previous assistant turn, a `thinking`
//! block sent back only with its `signature` (each else 400 `invalid_request_error`).
//!
//! Answers: text `tok0 tok1 …` (`chunks`), or a `tool_use` of the first tool (`{"city":"Paris"}`) when the
//! request has tools, `tool_choice` is not `none` and the last user turn is not a tool result; a `thinking`
//! block (signature `sig-mock-thinking`) when the request enables `thinking` or `reasoning_tokens` is set.
//! Usage: `prompt_tokens` is the OpenAI-meaning total; `cached_tokens` → `cache_read_input_tokens`,
//! `cache_write_tokens` → `cache_creation_input_tokens`, `input_tokens` the rest. Streams: `message_start`,
//! blocks with `ping` after the first start, `message_delta` (cumulative `output_tokens`), `message_stop`;
//! `error_after` sends `event: error` (`overloaded_error`), `cut_after` / `reset_after` as elsewhere,
//! `fixture=NAME` replays `fixtures/anthropic/streaming/NAME.{txt,sse}`.

use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Directives;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/anthropic/streaming");
pub const SIGNATURE: &str = "sig-mock-thinking";
const THINKING: &str = "Mock reasoning about the question.";

pub fn error(status: u16, d: &Directives) -> Response {
    let ty = d.error_type.clone().unwrap_or_else(|| {
        match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            _ => "api_error",
        }
        .into()
    });
    let message = d
        .message
        .clone()
        .unwrap_or_else(|| format!("mock anthropic error {status}"));
    let body = json!({"type": "error", "error": {"type": ty, "message": message}, "request_id": "req_mock"});
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(ra) = d.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert("retry-after", ra);
    }
    response
}

fn invalid(message: String) -> Response {
    error(
        400,
        &Directives {
            message: Some(message),
            ..Directives::default()
        },
    )
}

/// What the real API would refuse, as its 400 message (`headers`: `None` for Claude on Vertex, whose auth and
/// version are Google's).
fn check(headers: Option<&HeaderMap>, req: &Value) -> Option<Response> {
    if let Some(headers) = headers {
        if let Some(refused) = check_headers(headers) {
            return Some(refused);
        }
    }
    check_body(req)
}

fn check_headers(headers: &HeaderMap) -> Option<Response> {
    if headers.get("x-api-key").is_none() {
        return Some(error(
            401,
            &Directives {
                message: Some("x-api-key header is required".into()),
                ..Directives::default()
            },
        ));
    }
    if headers.get("anthropic-version").is_none() {
        return Some(invalid("anthropic-version: header is required".into()));
    }
    None
}

fn check_body(req: &Value) -> Option<Response> {
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Some(invalid("max_tokens: Field required".into()));
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Some(invalid("messages: Field required".into()));
    };
    let mut previous_tool_ids: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Some(invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let blocks = m
            .get("content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut tool_ids = Vec::new();
        for (k, b) in blocks.iter().enumerate() {
            match b.get("type").and_then(Value::as_str) {
                Some("tool_result") => {
                    let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    if role != "user" || !previous_tool_ids.iter().any(|t| t == id) {
                        return Some(invalid(format!("messages.{i}.content.{k}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")));
                    }
                }
                Some("tool_use") => {
                    if !b.get("input").is_some_and(Value::is_object) {
                        return Some(invalid(format!(
                            "messages.{i}.content.{k}.tool_use.input: Input should be an object"
                        )));
                    }
                    tool_ids.push(
                        b.get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    );
                }
                Some("thinking")
                    if b.get("signature")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty) =>
                {
                    return Some(invalid(format!(
                        "messages.{i}.content.{k}.thinking.signature: Field required"
                    )));
                }
                _ => {}
            }
        }
        previous_tool_ids = tool_ids;
    }
    None
}

struct Plan {
    model: String,
    chunks: u64,
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    thinking_tokens: Option<u64>,
    tool: Option<String>,
}

impl Plan {
    fn of(req: &Value, d: &Directives) -> Self {
        let chunks = d.chunks.unwrap_or(4);
        let prompt = d
            .prompt_tokens
            .unwrap_or_else(|| super::reply::prompt_tokens(req));
        let cache_read = d.cached_tokens.unwrap_or(0);
        let cache_write = d.cache_write_tokens.unwrap_or(0);
        let thinking_on = req.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled");
        let thinking_tokens = d.reasoning_tokens.or(thinking_on.then_some(5));
        let answering_tool_result = req
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .is_some_and(|b| {
                b.iter()
                    .any(|b| b.get("type") == Some(&json!("tool_result")))
            });
        let tool = (!answering_tool_result
            && req.pointer("/tool_choice/type").and_then(Value::as_str) != Some("none"))
        .then(|| {
            req.get("tools")?
                .as_array()?
                .first()?
                .get("name")?
                .as_str()
                .map(str::to_string)
        })
        .flatten();
        let model = req
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("claude-mock");
        Self {
            model: model.split('?').next().unwrap_or(model).to_string(),
            chunks,
            input: prompt.saturating_sub(cache_read + cache_write),
            cache_read,
            cache_write,
            output: d.completion_tokens.unwrap_or(chunks) + thinking_tokens.unwrap_or(0),
            thinking_tokens,
            tool,
        }
    }

    fn usage(&self, output: u64) -> Value {
        let mut u = json!({"input_tokens": self.input, "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output, "service_tier": "standard"});
        if let Some(t) = self.thinking_tokens {
            u["output_tokens_details"] = json!({"thinking_tokens": t});
        }
        u
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }
}

pub async fn messages(headers: Option<&HeaderMap>, req: &Value, d: Directives) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(refused) = check(headers, req) {
        return refused;
    }
    if let Some(status) = d.status {
        return error(status, &d);
    }
    let plan = Plan::of(req, &d);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(plan, d);
    }
    let mut content = Vec::new();
    if plan.thinking_tokens.is_some() {
        content.push(json!({"type": "thinking", "thinking": THINKING, "signature": SIGNATURE}));
    }
    match &plan.tool {
        Some(name) => content.push(
            json!({"type": "tool_use", "id": "toolu_mock_1", "name": name,
            "input": {"city": "Paris"}, "caller": {"type": "direct"}}),
        ),
        None => {
            let text: String = (0..plan.chunks).map(|i| format!("tok{i} ")).collect();
            content.push(json!({"type": "text", "text": text}));
        }
    }
    axum::Json(
        json!({"model": plan.model, "id": "msg_mock_1", "type": "message", "role": "assistant",
        "content": content, "stop_reason": plan.stop_reason(), "stop_sequence": null,
        "usage": plan.usage(plan.output)}),
    )
    .into_response()
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn send(tx: &Tx, bytes: Bytes) -> Result<(), ()> {
    tx.send(Ok(bytes)).await.map_err(|_| ())
}

fn stream(plan: Plan, d: Directives) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let _ = match d.fixture.clone() {
            Some(name) => replay(&name, &d, &tx).await,
            None => write(&plan, &d, &tx).await,
        };
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

async fn replay(name: &str, d: &Directives, tx: &Tx) -> Result<(), ()> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(());
    }
    let bytes = match tokio::fs::read(format!("{FIXTURES}/{name}.txt")).await {
        Ok(b) => b,
        Err(_) => tokio::fs::read(format!("{FIXTURES}/{name}.sse"))
            .await
            .map_err(|_| ())?,
    };
    for piece in bytes.chunks(97) {
        send(tx, Bytes::copy_from_slice(piece)).await?;
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(())
}

async fn write(plan: &Plan, d: &Directives, tx: &Tx) -> Result<(), ()> {
    if d.reset_after == Some(0) {
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    send(tx, event("message_start", &json!({"type": "message_start", "message": {"model": plan.model,
        "id": "msg_mock_1", "type": "message", "role": "assistant", "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": plan.usage(1)}}))).await?;
    let mut index = 0;
    let start = |index: u64, block: Value| {
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        )
    };
    let delta = |index: u64, delta: Value| {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    let stop = |index: u64| {
        event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )
    };
    if plan.thinking_tokens.is_some() {
        send(
            tx,
            start(
                index,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            ),
        )
        .await?;
        send(tx, event("ping", &json!({"type": "ping"}))).await?;
        send(
            tx,
            delta(
                index,
                json!({"type": "thinking_delta", "thinking": THINKING}),
            ),
        )
        .await?;
        send(
            tx,
            delta(
                index,
                json!({"type": "signature_delta", "signature": SIGNATURE}),
            ),
        )
        .await?;
        send(tx, stop(index)).await?;
        index += 1;
    }
    match &plan.tool {
        Some(name) => {
            send(
                tx,
                start(
                    index,
                    json!({"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {}}),
                ),
            )
            .await?;
            for fragment in ["", "{\"city\":", " \"Paris\"}"] {
                send(
                    tx,
                    delta(
                        index,
                        json!({"type": "input_json_delta", "partial_json": fragment}),
                    ),
                )
                .await?;
            }
            send(tx, stop(index)).await?;
        }
        None => {
            send(tx, start(index, json!({"type": "text", "text": ""}))).await?;
            if index == 0 {
                send(tx, event("ping", &json!({"type": "ping"}))).await?;
            }
            for i in 0..plan.chunks {
                if d.cut_after == Some(i) {
                    return Ok(());
                }
                if d.reset_after == Some(i) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
                    return Ok(());
                }
                if d.error_after == Some(i) {
                    let err = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
                    send(tx, event("error", &err)).await?;
                    return Ok(());
                }
                if let Some(delay) = d.chunk_delay {
                    tokio::time::sleep(delay).await;
                }
                send(
                    tx,
                    delta(
                        index,
                        json!({"type": "text_delta", "text": format!("tok{i} ")}),
                    ),
                )
                .await?;
            }
            send(tx, stop(index)).await?;
        }
    }
    let mut final_usage = json!({"output_tokens": plan.output});
    if let Some(t) = plan.thinking_tokens {
        final_usage["output_tokens_details"] = json!({"thinking_tokens": t});
    }
    send(
        tx,
        event(
            "message_delta",
            &json!({"type": "message_delta",
        "delta": {"stop_reason": plan.stop_reason(), "stop_sequence": null}, "usage": final_usage}),
        ),
    )
    .await?;
    send(tx, event("message_stop", &json!({"type": "message_stop"}))).await
}
