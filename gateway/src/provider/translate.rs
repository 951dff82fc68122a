//! Pieces the adapters share: OpenAI chunk / completion framing, message text, and upstream errors built from
//! fields an adapter already read (for upstreams whose errors arrive with HTTP 200 and a code to map).

use bytes::BytesMut;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::error::{GatewayError, UpstreamError};

/// Longest upstream message passed on.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Seconds since the epoch (the `created` of translated answers that carry none).
#[must_use]
pub fn now() -> u64 {
    crate::clock::now_secs()
}

/// Writes OpenAI `chat.completion.chunk` SSE events for one stream.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    pub id: Value,
    pub model: Value,
    pub created: u64,
    /// The role chunk went out.
    pub started: bool,
}

impl ChunkWriter {
    /// A chunk with one choice.
    pub fn delta(&mut self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        if !self.started {
            self.started = true;
            if self.created == 0 {
                self.created = now();
            }
            let role = json!({"role": "assistant", "content": ""});
            self.delta(out, role, None);
        }
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        write(out, &chunk);
    }

    /// The usage chunk (`choices: []`), OpenAI-shaped usage.
    pub fn usage(&self, out: &mut BytesMut, usage: Value) {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage});
        write(out, &chunk);
    }
}

/// One `data: …` event.
pub fn write(out: &mut BytesMut, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

pub fn done(out: &mut BytesMut) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

/// An in-stream error event in OpenAI's shape.
pub fn error_event(out: &mut BytesMut, message: &str, code: &str) {
    write(
        out,
        &json!({"error": {"message": cut(message), "type": "upstream_error", "param": null, "code": code}}),
    );
}

/// OpenAI usage from counts; `cached` only when the upstream reported it.
#[must_use]
pub fn usage(prompt: u64, completion: u64, total: Option<u64>, cached: Option<u64>) -> Value {
    let mut u = json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": total.unwrap_or(prompt + completion)});
    if let Some(c) = cached {
        u["prompt_tokens_details"] = json!({"cached_tokens": c});
    }
    u
}

/// A `chat.completion` object with one choice.
#[must_use]
pub fn completion(
    id: Value,
    created: Value,
    model: Value,
    message: Value,
    finish: &str,
    usage: Value,
) -> Value {
    json!({"id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage})
}

/// The text of an OpenAI message `content` (a string, or parts of which only `text` parts are allowed).
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for a non-text part (`upstream` names the kind in the message).
pub fn text_content(content: Option<&Value>, upstream: &str) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    other => {
                        return Err(GatewayError::InvalidRequest {
                            message: format!(
                                "{upstream} takes text content only, not a {:?} part",
                                other.unwrap_or("untyped")
                            ),
                            param: Some("messages"),
                        })
                    }
                }
            }
            Ok(text)
        }
        Some(other) => Err(GatewayError::InvalidRequest {
            message: format!("message content must be a string or parts, not {other}"),
            param: Some("messages"),
        }),
    }
}

/// One OpenAI assistant `tool_calls[k]` of `messages[i]` as `(id, name, input object)` — what every wire with
/// its own tool-call block needs. Empty arguments are `{}`.
///
/// # Errors
/// A call without an id or function name, or arguments that are not a JSON object (400, naming the path).
pub fn tool_call(
    call: &Value,
    i: usize,
    k: usize,
) -> Result<(String, String, Value), GatewayError> {
    let invalid = |message: String| GatewayError::InvalidRequest {
        message,
        param: Some("messages"),
    };
    let id = call.get("id").and_then(Value::as_str);
    let function = call.get("function");
    let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(invalid(format!(
            "messages[{i}].tool_calls[{k}] needs an id and a function name"
        )));
    };
    let arguments = function
        .and_then(|f| f.get("arguments"))
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let input = match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => Value::Object(Map::new()),
        _ => {
            return Err(invalid(format!(
                "messages[{i}].tool_calls[{k}].function.arguments is not a JSON object"
            )))
        }
    };
    Ok((id.to_string(), name.to_string(), input))
}

/// The URL of an OpenAI `image_url` content part (`{"image_url": {"url": …}}`, or the bare string some clients
/// send); `""` when it has none.
#[must_use]
pub fn image_url(part: &Value) -> &str {
    part.get("image_url")
        .and_then(|i| i.get("url").or(Some(i)))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The media type and base64 payload of a `data:<type>;base64,<data>` URL; `None` for any other URL.
#[must_use]
pub fn data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

/// The OpenAI `stop` field as a list of strings.
#[must_use]
pub fn stop_list(stop: Option<&Value>) -> Option<Value> {
    match stop? {
        Value::String(s) => Some(json!([s])),
        Value::Array(a) => Some(Value::Array(a.clone())),
        _ => None,
    }
}

/// The body's messages, or a 400.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] when `messages` is missing or not an array.
pub fn messages(openai: &mut Map<String, Value>) -> Result<Vec<Value>, GatewayError> {
    match openai.remove("messages") {
        Some(Value::Array(m)) => Ok(m),
        _ => Err(GatewayError::InvalidRequest {
            message: "`messages` must be an array".into(),
            param: Some("messages"),
        }),
    }
}

/// An upstream error of a known class, built from the fields an adapter read.
pub struct Rejection<'a> {
    pub provider: &'a str,
    pub status: StatusCode,
    pub message: &'a str,
    pub error_type: &'a str,
    pub code: Value,
    pub quota_exhausted: bool,
}

impl Rejection<'_> {
    #[must_use]
    pub fn into_error(self) -> GatewayError {
        GatewayError::UpstreamRejected(Box::new(UpstreamError {
            provider: self.provider.into(),
            status: self.status,
            message: cut(self.message),
            error_type: Some(self.error_type.into()),
            code: Some(self.code),
            param: None,
            quota_exhausted: self.quota_exhausted,
            retry_after: None,
        }))
    }
}

/// The classes the Chinese native APIs' error codes fall into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled: 429, retryable elsewhere.
    RateLimited,
    /// The account cannot pay or its quota is spent: 402, never retried on this account.
    Quota,
    /// The gateway's credentials were refused: `upstream_auth_failed`.
    Auth,
    /// Not allowed for this account: 403.
    Forbidden,
    /// The request is wrong: 400.
    Invalid,
    /// Refused by moderation: 400 `content_filter`.
    ContentFilter,
    /// No such model / endpoint: 404.
    NotFound,
    /// The upstream failed: 502, retryable.
    Failed,
}

/// The gateway error for an upstream error of `class`.
#[must_use]
pub fn classified(provider: &str, class: ErrorClass, code: Value, message: &str) -> GatewayError {
    let rejection = |status: StatusCode, error_type: &str, quota: bool| {
        Rejection {
            provider,
            status,
            message,
            error_type,
            code: code.clone(),
            quota_exhausted: quota,
        }
        .into_error()
    };
    match class {
        ErrorClass::RateLimited => {
            rejection(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", false)
        }
        ErrorClass::Quota => rejection(StatusCode::PAYMENT_REQUIRED, "insufficient_quota", true),
        ErrorClass::Auth => GatewayError::UpstreamAuthFailed {
            provider: provider.into(),
        },
        ErrorClass::Forbidden => rejection(StatusCode::FORBIDDEN, "permission_error", false),
        ErrorClass::Invalid => rejection(StatusCode::BAD_REQUEST, "invalid_request_error", false),
        ErrorClass::ContentFilter => Rejection {
            provider,
            status: StatusCode::BAD_REQUEST,
            message,
            error_type: "invalid_request_error",
            code: Value::String("content_filter".into()),
            quota_exhausted: false,
        }
        .into_error(),
        ErrorClass::NotFound => rejection(StatusCode::NOT_FOUND, "invalid_request_error", false),
        ErrorClass::Failed => GatewayError::UpstreamFailed {
            provider: provider.into(),
            status: Some(200),
            message: format!("{}: {}", code_text(&code), cut(message)),
        },
    }
}

fn code_text(code: &Value) -> String {
    match code {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(message: &str) -> String {
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_statuses_and_retryability() {
        let run = |c| classified("p", c, json!("X"), "m");
        assert!(run(ErrorClass::RateLimited).retryable());
        assert_eq!(run(ErrorClass::RateLimited).status(), 429);
        let q = run(ErrorClass::Quota);
        assert!(!q.retryable());
        assert_eq!(
            (q.status().as_u16(), q.code().as_str()),
            (402, "upstream_quota_exhausted")
        );
        assert_eq!(run(ErrorClass::Auth).code(), "upstream_auth_failed");
        assert_eq!(run(ErrorClass::Invalid).status(), 400);
        assert!(!run(ErrorClass::Invalid).retryable());
        let f = run(ErrorClass::ContentFilter);
        assert_eq!(f.body()["error"]["code"], "content_filter");
        assert!(run(ErrorClass::Failed).retryable());
        assert_eq!(run(ErrorClass::NotFound).status(), 404);
    }

    #[test]
    fn text_content_refuses_images() {
        assert_eq!(
            text_content(
                Some(&json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
                "x"
            )
            .unwrap(),
            "ab"
        );
        assert!(text_content(Some(&json!([{"type": "image_url"}])), "x").is_err());
    }
}
