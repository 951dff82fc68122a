//! Building the mock's answers in each dialect.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Dialect, Directives};

const CREATED: u64 = 1_700_000_000;
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/openai/chat-completions-streaming"
);

pub fn not_found(prefix: &str) -> Response {
    let body = json!({"error": {"message": format!("no dialect {prefix:?}"), "type": "invalid_request_error", "param": null, "code": null}});
    (axum::http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

pub fn bad_json() -> Response {
    let body = json!({"error": {"message": "We could not parse the JSON body of your request.", "type": "invalid_request_error", "param": null, "code": null}});
    (axum::http::StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn error(dialect: Dialect, status: u16, d: &Directives) -> Response {
    let message = d
        .message
        .clone()
        .unwrap_or_else(|| format!("mock upstream error {status}"));
    let body = match dialect {
        Dialect::Zhipu => {
            json!({"error": {"code": d.code.clone().unwrap_or_else(|| "1214".into()), "message": message}})
        }
        _ => {
            let default_type = match status {
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            json!({"error": {"message": message, "type": d.error_type.clone().unwrap_or_else(|| default_type.into()),
                "param": null, "code": d.code.clone()}})
        }
    };
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(ra) = d.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert("retry-after", ra);
    }
    response
}

/// Counts words of every message, a stable stand-in for a tokenizer.
pub(super) fn prompt_tokens(req: &Value) -> u64 {
    fn words(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(a) => a.iter().map(words).sum(),
            Value::Object(o) => o.get("content").or_else(|| o.get("text")).map_or(0, words),
            _ => 0,
        }
    }
    req.get("messages")
        .or_else(|| req.get("input"))
        .map_or(0, words)
        + 3
}

struct Usage {
    prompt: u64,
    completion: u64,
    cached: u64,
    reasoning: u64,
}

impl Usage {
    fn of(req: &Value, d: &Directives, chunks: u64) -> Self {
        Self {
            prompt: d.prompt_tokens.unwrap_or_else(|| prompt_tokens(req)),
            completion: d.completion_tokens.unwrap_or(chunks),
            cached: d.cached_tokens.unwrap_or(0),
            reasoning: d.reasoning_tokens.unwrap_or(0),
        }
    }

    /// The usage object as `dialect` writes it, with `completion` tokens so far.
    fn json(&self, dialect: Dialect, completion: u64) -> Value {
        let mut u = json!({"prompt_tokens": self.prompt, "completion_tokens": completion,
            "total_tokens": self.prompt + completion});
        if dialect == Dialect::Moonshot {
            u["cached_tokens"] = json!(self.cached);
        } else {
            u["prompt_tokens_details"] = json!({"cached_tokens": self.cached});
            u["completion_tokens_details"] = json!({"reasoning_tokens": self.reasoning});
        }
        u
    }
}

fn model_name(req: &Value) -> String {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock");
    model.split('?').next().unwrap_or(model).to_string()
}

fn first_tool(req: &Value) -> Option<String> {
    if req.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    req.get("tools")?
        .as_array()?
        .first()?
        .get("function")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

pub async fn chat(dialect: Dialect, req: &Value, d: Directives) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return error(dialect, status, &d);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(dialect, req, d);
    }
    let chunks = d.chunks.unwrap_or(4);
    let usage = Usage::of(req, &d, chunks);
    let content: String = (0..chunks).map(|i| format!("tok{i} ")).collect();
    let (message, finish) = match first_tool(req) {
        Some(name) => (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]}),
            "tool_calls",
        ),
        None => (
            json!({"role": "assistant", "content": content, "refusal": null}),
            "stop",
        ),
    };
    let body = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": CREATED, "model": model_name(req),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage.json(dialect, usage.completion), "system_fingerprint": "fp_mock"});
    if d.reset_after.is_some() {
        return aborted_plain(body);
    }
    axum::Json(body).into_response()
}

/// A 200 whose body stops half-way: the connection is aborted mid-body.
fn aborted_plain(body: Value) -> Response {
    let bytes = Bytes::from(body.to_string());
    let half = bytes.slice(..bytes.len() / 2);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(half)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn stream(dialect: Dialect, req: &Value, d: Directives) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let req = req.clone();
    tokio::spawn(async move {
        let _ = match d.fixture.clone() {
            Some(name) => replay_fixture(&name, &d, &tx).await,
            None => write_stream(dialect, &req, &d, &tx).await,
        };
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, bytes: Bytes) -> Result<(), ()> {
    tx.send(Ok(bytes)).await.map_err(|_| ())
}

async fn replay_fixture(name: &str, d: &Directives, tx: &Tx) -> Result<(), ()> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(());
    }
    let bytes = tokio::fs::read(format!("{FIXTURES}/{name}.sse"))
        .await
        .map_err(|_| ())?;
    // Small uneven pieces, so events arrive split across reads as on a real network.
    for piece in bytes.chunks(97) {
        send(tx, Bytes::copy_from_slice(piece)).await?;
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(())
}

async fn write_stream(dialect: Dialect, req: &Value, d: &Directives, tx: &Tx) -> Result<(), ()> {
    let chunks = d.chunks.unwrap_or(4);
    let usage = Usage::of(req, d, chunks);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool);
    let model = model_name(req);
    let envelope = |choices: Value| {
        let mut c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "system_fingerprint": "fp_mock", "choices": choices});
        if dialect == Dialect::OpenAi && include_usage == Some(true) {
            c["usage"] = Value::Null;
        }
        c
    };
    // ModelArts: cumulative usage on every chunk unless turned off.
    let per_chunk_usage = dialect == Dialect::ModelArts && include_usage != Some(false);
    let with_usage = |mut c: Value, so_far: u64| {
        if per_chunk_usage {
            c["usage"] = usage.json(dialect, so_far);
        }
        c
    };
    let tool = first_tool(req);
    if d.reset_after == Some(0) {
        // Torn down before the first byte: a stream a gateway can still fail over.
        let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
        return Ok(());
    }
    send(tx, sse(&with_usage(envelope(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])), 0))).await?;
    for i in 0..chunks {
        if d.cut_after == Some(i) {
            return Ok(());
        }
        if d.reset_after == Some(i) {
            // Let the client read what was sent before the connection is torn down (a reset discards
            // unread data).
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
            return Ok(());
        }
        if d.error_after == Some(i) {
            let err = json!({"error": {"message": "mock mid-stream failure", "type": "server_error", "param": null, "code": "mock_stream_error"}});
            send(tx, sse(&err)).await?;
            return Ok(());
        }
        if let Some(delay) = d.chunk_delay {
            tokio::time::sleep(delay).await;
        }
        let delta = match (&tool, i) {
            (Some(name), 0) => {
                json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": ""}}]})
            }
            (Some(_), _) => {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": if i == 1 { "{\"city\":" } else if i == 2 { "\"Paris\"}" } else { "" }}}]})
            }
            (None, _) => json!({"content": format!("tok{i} ")}),
        };
        send(
            tx,
            sse(&with_usage(
                envelope(
                    json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
                ),
                i + 1,
            )),
        )
        .await?;
    }
    let finish_reason = if tool.is_some() { "tool_calls" } else { "stop" };
    let mut last = envelope(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason}]),
    );
    match dialect {
        Dialect::Moonshot => last["choices"][0]["usage"] = usage.json(dialect, usage.completion),
        Dialect::Zhipu => last["usage"] = usage.json(dialect, usage.completion),
        Dialect::ModelArts => last = with_usage(last, usage.completion),
        Dialect::OpenAi | Dialect::Anthropic | Dialect::Gemini | Dialect::Vertex => {}
    }
    send(tx, sse(&last)).await?;
    if dialect == Dialect::OpenAi && include_usage == Some(true) {
        let mut u = envelope(json!([]));
        u["usage"] = usage.json(dialect, usage.completion);
        send(tx, sse(&u)).await?;
    }
    send(tx, Bytes::from_static(b"data: [DONE]\n\n")).await
}

/// The mock's embedding of `text`: `dims` deterministic values in [0, 1] (every dialect answers the same
/// vector for the same text and size).
#[must_use]
pub fn fake_vector(text: &str, dims: usize) -> Vec<f32> {
    let seed = text
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (0..dims as u32)
        .map(|k| {
            #[expect(clippy::cast_precision_loss, reason = "a deterministic fake vector")]
            let v = (seed.rotate_right((k * 4) % 64) & 0xff) as f32 / 255.0;
            v
        })
        .collect()
}

/// Whitespace-separated words: the mock's token count of an embedded text.
#[must_use]
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

pub async fn embeddings(req: &Value, d: Directives) -> Response {
    if let Some(latency) = d.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = d.status {
        return error(Dialect::OpenAi, status, &d);
    }
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
        _ => {
            return error(
                Dialect::OpenAi,
                400,
                &Directives {
                    message: Some("'input' is required".into()),
                    ..Directives::default()
                },
            )
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let vector = fake_vector(text, 8);
            // The SDKs ask for base64 (little-endian f32) by default and decode it themselves.
            let embedding = if req.get("encoding_format").and_then(Value::as_str) == Some("base64")
            {
                use base64::Engine;
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = d.prompt_tokens.unwrap_or_else(|| {
        inputs
            .iter()
            .map(|s| s.split_whitespace().count() as u64)
            .sum()
    });
    axum::Json(
        json!({"object": "list", "data": data, "model": model_name(req),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}
