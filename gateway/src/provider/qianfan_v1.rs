//! Baidu Qianfan v1, the ERNIE `wenxinworkshop` API (`kind = "qianfan-v1"`), for accounts that cannot use
//! the OpenAI-compatible v2 endpoint.
//!
//! `POST {base}/chat/{endpoint}?access_token=…` — the deployment's `model` is the endpoint (`completions_pro`,
//! `ernie-speed-128k`, …). The access token comes from the client-credentials exchange at
//! `{scheme}://{host}/oauth/2.0/token` of the base URL (keys `ApiKey:SecretKey`), cached per key
//! ([`super::credentials`]); an answer with error 110 / 111 (token invalid / expired) drops it and the request
//! is sent once more with a fresh one. The token is in the URL only: never in a log, an error or an event.
//!
//! | OpenAI | Qianfan v1 |
//! |---|---|
//! | system / developer messages | top-level `system` (merged) |
//! | user / assistant / tool messages | `messages` alternating user-side / assistant (consecutive user turns merged); a tool result is a `function` turn named after its call |
//! | assistant `tool_calls` (the first) | `function_call{name, arguments}` |
//! | `tools` / `tool_choice` (a named function) | `functions` / `tool_choice{type, function{name}}`; `none` drops `functions`; `required` is refused |
//! | `temperature` (clamped to (0, 1]), `top_p`, `stop`, `user`, `penalty_score` | same names (`user` → `user_id`) |
//! | `max_completion_tokens` / `max_tokens` | `max_output_tokens` |
//!
//! Answers: `{id, created, result, is_truncated, finish_reason, function_call, usage{prompt_tokens,
//! completion_tokens, total_tokens}}`; errors `{error_code, error_msg}` **with HTTP 200** ([`error_class`]).
//! Streams: SSE `data: {…, result, is_end}`, usage complete on the last chunk (`is_end: true`), no `[DONE]`
//! upstream; one is written here only after `is_end`.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use reqwest::Url;
use serde_json::{json, Map, Value};

use super::adapter::{Adapter, AuthScheme, SseEventTranslator, StreamTranslator};
use super::translate::{self, classified, ChunkWriter, ErrorClass};
use super::ProviderKind;
use crate::error::GatewayError;
use crate::sse::SseDecoder;

/// The adapter (stateless).
pub struct QianfanV1;

const NAME: &str = "qianfan-v1";

/// Error codes that mean the access token itself was refused.
pub const TOKEN_CODES: [i64; 2] = [110, 111];

impl Adapter for QianfanV1 {
    /// `{base}/chat/{model}`: the model (the endpoint name, `completions_pro`, …) is one escaped path segment.
    fn chat_url(&self, base: &str, upstream_model: &str, _stream: bool) -> String {
        let chat = format!("{base}/chat");
        match Url::parse(&chat) {
            Ok(mut url) => {
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.push(upstream_model);
                }
                url.into()
            }
            Err(_) => chat,
        }
    }

    fn auth_header(&self, _key: &str) -> (HeaderName, String) {
        (http::header::AUTHORIZATION, String::new())
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::QueryToken
    }

    fn chat_request(
        &self,
        openai: Map<String, Value>,
        _upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, GatewayError> {
        to_qianfan(openai, stream)
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(QianfanStream::default())
    }

    fn classify_error(
        &self,
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> GatewayError {
        self.answer_error(provider, headers, body)
            .unwrap_or_else(|| {
                super::upstream_error::classify(
                    provider,
                    ProviderKind::QianfanV1,
                    status,
                    headers,
                    body,
                )
            })
    }

    fn answer_error(&self, provider: &str, _: &HeaderMap, body: &[u8]) -> Option<GatewayError> {
        let (code, message) = error_fields(body)?;
        Some(classified(
            provider,
            error_class(code),
            json!(code.to_string()),
            &message,
        ))
    }

    fn token_rejected(&self, _status: StatusCode, body: &[u8]) -> bool {
        error_fields(body).is_some_and(|(code, _)| TOKEN_CODES.contains(&code))
    }
}

fn error_fields(body: &[u8]) -> Option<(i64, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("error_code")?.as_i64()?;
    let message = v
        .get("error_msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

/// A Qianfan v1 error code's class (cloud.baidu.com WENXINWORKSHOP error codes).
#[must_use]
pub fn error_class(code: i64) -> ErrorClass {
    match code {
        // Cluster / QPS / RPM / TPM limits.
        4 | 18 | 336_501 | 336_502 => ErrorClass::RateLimited,
        // Daily request limit, total quota spent; unpaid account.
        17 | 19 | 336_503 => ErrorClass::Quota,
        // Token invalid / expired (after one refetch), IAM failures, bad key.
        13 | 14 | 110 | 111 | 336_004 => ErrorClass::Auth,
        6 | 15 | 336_006 => ErrorClass::Forbidden,
        // Parameter errors and malformed bodies.
        3 | 100 | 336_001..=336_003 | 336_005 | 336_007 | 336_100..=336_104 => ErrorClass::Invalid,
        // Unknown endpoint (a model not served under this path).
        336_008 => ErrorClass::NotFound,
        // Moderation refusal of the prompt.
        336_105 | 336_106 => ErrorClass::ContentFilter,
        // Internal / unavailable / anything else: try elsewhere.
        _ => ErrorClass::Failed,
    }
}

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

/// An OpenAI chat body → a Qianfan v1 chat body.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for what v1 cannot express (non-text parts, `tool_choice: "required"`, a
/// conversation that does not end with a user-side turn).
pub fn to_qianfan(mut openai: Map<String, Value>, stream: bool) -> Result<Bytes, GatewayError> {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    // Tool call id → function name, to name each `function` turn.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for m in translate::messages(&mut openai)? {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let text = translate::text_content(m.get("content"), NAME)?;
        match role {
            "system" | "developer" => system.push(text),
            "user" => match messages.last_mut() {
                Some(last) if last["role"] == "user" => {
                    let merged =
                        format!("{}\n\n{text}", last["content"].as_str().unwrap_or_default());
                    last["content"] = json!(merged);
                }
                _ => messages.push(json!({"role": "user", "content": text})),
            },
            "assistant" => {
                let mut out = json!({"role": "assistant", "content": text});
                if let Some(Value::Array(calls)) = m.get("tool_calls") {
                    for c in calls {
                        let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
                        let name = c
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        call_names.push((id.into(), name.into()));
                    }
                    if let Some(c) = calls.first() {
                        out["function_call"] = json!({"name": c.pointer("/function/name"),
                            "arguments": c.pointer("/function/arguments")});
                    }
                }
                messages.push(out);
            }
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        call_names
                            .iter()
                            .find(|(i, _)| i == id)
                            .map(|(_, n)| n.clone())
                    })
                    .unwrap_or_default();
                messages.push(json!({"role": "function", "name": name, "content": text}));
            }
            other => {
                return Err(invalid(
                    format!("{NAME} has no message role {other:?}"),
                    "messages",
                ))
            }
        }
    }
    if messages.last().is_none_or(|m| m["role"] == "assistant") {
        return Err(invalid(
            format!("{NAME} needs a conversation that ends with a user turn"),
            "messages",
        ));
    }
    let mut body = json!({"messages": messages});
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if stream {
        body["stream"] = json!(true);
    }
    if let Some(t) = openai.get("temperature").and_then(Value::as_f64) {
        body["temperature"] = json!(t.clamp(0.01, 1.0));
    }
    for key in [
        "top_p",
        "penalty_score",
        "disable_search",
        "enable_citation",
    ] {
        if let Some(v) = openai.get(key).filter(|v| !v.is_null()) {
            body[key] = v.clone();
        }
    }
    if let Some(cap) = openai
        .get("max_completion_tokens")
        .or_else(|| openai.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        body["max_output_tokens"] = cap.clone();
    }
    if let Some(stop) = translate::stop_list(openai.get("stop")) {
        body["stop"] = stop;
    }
    if let Some(user) = openai.get("user").and_then(Value::as_str) {
        body["user_id"] = json!(user);
    }
    let functions: Vec<Value> = match openai.get("tools") {
        Some(Value::Array(tools)) => tools
            .iter()
            .map(|t| {
                let f = t.get("function").cloned().unwrap_or(Value::Null);
                json!({"name": f.get("name"), "description": f.get("description").cloned().unwrap_or(json!("")),
                    "parameters": f.get("parameters").cloned().unwrap_or(json!({"type": "object", "properties": {}}))})
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut send_functions = !functions.is_empty();
    match openai.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(c)) if c == "auto" => {}
        Some(Value::String(c)) if c == "none" => send_functions = false,
        Some(Value::String(c)) => {
            return Err(invalid(
                format!("{NAME} does not support tool_choice {c:?}"),
                "tool_choice",
            ))
        }
        Some(choice) => {
            body["tool_choice"] = json!({"type": "function",
                "function": {"name": choice.pointer("/function/name")}});
        }
    }
    if send_functions {
        body["functions"] = Value::Array(functions);
    }
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

/// Qianfan `finish_reason` (plus `is_truncated`) → OpenAI.
#[must_use]
pub fn finish_reason(v: &Value) -> &'static str {
    if v.get("function_call").is_some_and(Value::is_object) {
        return "tool_calls";
    }
    match v.get("finish_reason").and_then(Value::as_str) {
        Some("length") => "length",
        Some("content_filter") => "content_filter",
        Some("function_call") => "tool_calls",
        _ if v.get("is_truncated").and_then(Value::as_bool) == Some(true) => "length",
        _ => "stop",
    }
}

fn openai_usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    translate::usage(
        n("prompt_tokens").unwrap_or(0),
        n("completion_tokens").unwrap_or(0),
        n("total_tokens"),
        None,
    )
}

fn tool_call(id: &Value, f: &Value) -> Value {
    let id = format!("call_{}", id.as_str().unwrap_or("qianfan"));
    json!({"id": id, "type": "function", "function": {"name": f.get("name"),
        "arguments": f.get("arguments").and_then(Value::as_str).unwrap_or("{}")}})
}

/// A v1 answer → `chat.completion`.
///
/// # Errors
/// What is wrong with the body.
pub fn to_openai(body: &[u8]) -> Result<Bytes, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if v.get("result").is_none() && v.get("function_call").is_none() {
        return Err("the answer has neither result nor function_call".into());
    }
    let mut message = json!({"role": "assistant",
        "content": v.get("result").and_then(Value::as_str).unwrap_or_default()});
    if let Some(f) = v.get("function_call").filter(|f| f.is_object()) {
        message["tool_calls"] = json!([tool_call(v.get("id").unwrap_or(&Value::Null), f)]);
    }
    let out = translate::completion(
        v.get("id").cloned().unwrap_or(Value::Null),
        v.get("created")
            .cloned()
            .unwrap_or_else(|| json!(translate::now())),
        Value::Null,
        message,
        finish_reason(&v),
        v.get("usage")
            .map_or_else(|| translate::usage(0, 0, None, None), openai_usage),
    );
    Ok(Bytes::from(out.to_string()))
}

/// v1 SSE → OpenAI chunks.
#[derive(Default)]
pub struct QianfanStream {
    decoder: SseDecoder,
    writer: ChunkWriter,
    usage: Option<Value>,
    done: bool,
}

impl QianfanStream {}

impl SseEventTranslator for QianfanStream {
    fn decoder(&mut self) -> &mut SseDecoder {
        &mut self.decoder
    }

    fn event(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if let Some((code, message)) = error_fields(payload) {
            translate::error_event(out, &message, &code.to_string());
            self.done = true;
            return;
        }
        if self.writer.id.is_null() {
            self.writer.id = v.get("id").cloned().unwrap_or(Value::Null);
            self.writer.created = v.get("created").and_then(Value::as_u64).unwrap_or(0);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(openai_usage(u));
        }
        if let Some(text) = v
            .get("result")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.writer.delta(out, json!({"content": text}), None);
        }
        if let Some(f) = v.get("function_call").filter(|f| f.is_object()) {
            let mut call = tool_call(v.get("id").unwrap_or(&Value::Null), f);
            call["index"] = json!(0);
            self.writer.delta(out, json!({"tool_calls": [call]}), None);
        }
        if v.get("is_end").and_then(Value::as_bool) == Some(true) {
            self.writer.delta(out, json!({}), Some(finish_reason(&v)));
            if let Some(u) = self.usage.take() {
                self.writer.usage(out, u);
            }
            translate::done(out);
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn request_moves_system_up_and_tool_results_to_function_turns() {
        let out = to_qianfan(
            body(json!({"model": "x", "max_completion_tokens": 50, "temperature": 1.7, "user": "u1",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})),
            true,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["system"], "Be brief.");
        assert_eq!(
            v["messages"][0],
            json!({"role": "user", "content": "a\n\nb"})
        );
        assert_eq!(v["messages"][1]["function_call"]["name"], "get_weather");
        assert_eq!(
            v["messages"][2],
            json!({"role": "function", "name": "get_weather", "content": "sunny"})
        );
        assert_eq!(v["functions"][0]["name"], "get_weather");
        assert_eq!(
            (v["max_output_tokens"].as_u64(), v["temperature"].as_f64()),
            (Some(50), Some(1.0))
        );
        assert_eq!(
            (v["stream"].as_bool(), v["user_id"].as_str()),
            (Some(true), Some("u1"))
        );
    }

    #[test]
    fn answers_errors_and_url() {
        let a = QianfanV1;
        let base = "https://aip.baidubce.com/rpc/2.0/ai_custom/v1/wenxinworkshop";
        assert_eq!(
            a.chat_url(base, "completions_pro", false),
            "https://aip.baidubce.com/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/completions_pro"
        );
        let ok = br#"{"id":"as-1","object":"chat.completion","created":1,"result":"hi","is_truncated":false,"need_clear_history":false,"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#;
        let v: Value = serde_json::from_slice(&to_openai(ok).unwrap()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert!(a.answer_error("p", &HeaderMap::new(), ok).is_none());
        let err = |code: i64| {
            let b = json!({"error_code": code, "error_msg": "m"}).to_string();
            (
                a.answer_error("p", &HeaderMap::new(), b.as_bytes())
                    .unwrap(),
                a.token_rejected(StatusCode::OK, b.as_bytes()),
            )
        };
        assert!(err(18).0.retryable() && err(336_501).0.retryable());
        assert_eq!(err(17).0.code(), "upstream_quota_exhausted");
        assert!(!err(19).0.retryable());
        assert_eq!(
            (err(110).0.code().as_str(), err(110).1, err(111).1),
            ("upstream_auth_failed", true, true)
        );
        assert!(!err(18).1);
        assert_eq!(err(336_003).0.status(), 400);
    }

    #[test]
    fn stream_ends_at_is_end_with_its_usage() {
        let body = "data: {\"id\":\"as-1\",\"created\":1,\"sentence_id\":0,\"is_end\":false,\"result\":\"Hel\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":0,\"total_tokens\":2}}\n\ndata: {\"id\":\"as-1\",\"created\":1,\"sentence_id\":1,\"is_end\":true,\"result\":\"lo\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}\n\n";
        let mut t = QianfanStream::default();
        let mut out = Vec::new();
        for p in body.as_bytes().chunks(5) {
            out.extend_from_slice(&t.push(p));
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert!(text.contains("\"content\":\"Hel\"") && text.contains("\"content\":\"lo\""));
        assert!(
            text.contains("\"completion_tokens\":2") && !text.contains("\"completion_tokens\":0")
        );
    }
}
