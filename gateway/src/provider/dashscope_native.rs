//! Alibaba DashScope's native text-generation API (`kind = "dashscope-native"`), for accounts that cannot use
//! the OpenAI-compatible mode.
//!
//! `POST {base}/services/aigc/text-generation/generation` (`base` = `https://dashscope.aliyuncs.com/api/v1`),
//! `Authorization: Bearer <key>`; a streamed request adds `X-DashScope-SSE: enable`.
//!
//! Body: `{model, input: {messages}, parameters: {result_format: "message", incremental_output, …}}` — the
//! OpenAI messages (text only; tools and tool results keep OpenAI's shape), and in `parameters` `max_tokens`
//! (from `max_completion_tokens` too), `temperature`, `top_p`, `top_k`, `seed`, `stop`, `tools`, `tool_choice`,
//! `presence_penalty`, `repetition_penalty`, `enable_search`, `enable_thinking`, `n`. Streams ask for
//! `incremental_output: true`; a stream that still repeats the whole text so far (models that ignore the flag)
//! is detected and diffed, so clients always get deltas.
//!
//! Answers: `{output: {choices: [{message, finish_reason}]} | {text, finish_reason}, usage: {input_tokens,
//! output_tokens, total_tokens, prompt_tokens_details.cached_tokens, output_tokens_details.reasoning_tokens},
//! request_id}`. Streams: SSE `id:` / `event:result` / `:HTTP_STATUS/200` / `data:{…}` with cumulative usage on
//! every event (the last value wins) and `finish_reason` the string `"null"` until the end; an `event:error`
//! carries `{code, message}`. Errors: `{code, message, request_id}` with a real HTTP status ([`error_class`]).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{json, Map, Value};

use super::adapter::{Adapter, SseEventTranslator, StreamTranslator};
use super::translate::{self, classified, ChunkWriter, ErrorClass};
use super::ProviderKind;
use crate::error::GatewayError;
use crate::sse::SseDecoder;

/// The adapter (stateless).
pub struct DashScopeNative;

const NAME: &str = "dashscope-native";

/// OpenAI or DashScope fields copied into `parameters` as they are.
const PARAMETERS: [&str; 12] = [
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "tools",
    "tool_choice",
    "presence_penalty",
    "repetition_penalty",
    "enable_search",
    "enable_thinking",
    "n",
    "parallel_tool_calls",
];

impl Adapter for DashScopeNative {
    fn chat_url(&self, base: &str, _upstream_model: &str, _stream: bool) -> String {
        format!("{base}/services/aigc/text-generation/generation")
    }

    fn auth_header(&self, key: &str) -> (HeaderName, String) {
        (http::header::AUTHORIZATION, format!("Bearer {key}"))
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn stream_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("x-dashscope-sse", "enable")]
    }

    fn chat_request(
        &self,
        openai: Map<String, Value>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, GatewayError> {
        to_dashscope(openai, upstream_model, stream)
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(DashScopeStream::default())
    }

    fn classify_error(
        &self,
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> GatewayError {
        let generic = || {
            super::upstream_error::classify(
                provider,
                ProviderKind::DashScopeNative,
                status,
                headers,
                body,
            )
        };
        let Some((code, message)) = error_fields(body) else {
            return generic();
        };
        match error_class(&code) {
            // Known classes keep the upstream status where it is one of theirs (408, 413, 5xx …).
            Some(class) => {
                let mut e = classified(provider, class, json!(code), &message);
                if let GatewayError::UpstreamRejected(r) = &mut e {
                    r.retry_after = headers.get(http::header::RETRY_AFTER).cloned();
                }
                e
            }
            None => generic(),
        }
    }

    fn answer_error(&self, provider: &str, _: &HeaderMap, body: &[u8]) -> Option<GatewayError> {
        let v: Value = serde_json::from_slice(body).ok()?;
        if v.get("output").is_some() {
            return None;
        }
        let (code, message) = error_fields(body)?;
        let class = error_class(&code).unwrap_or(ErrorClass::Failed);
        Some(classified(provider, class, json!(code), &message))
    }
}

fn error_fields(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v
        .get("code")?
        .as_str()
        .filter(|c| !c.is_empty())?
        .to_string();
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

/// A DashScope error code's class; `None` leaves the decision to the HTTP status.
#[must_use]
pub fn error_class(code: &str) -> Option<ErrorClass> {
    Some(match code {
        c if c.starts_with("Throttling") => ErrorClass::RateLimited,
        "Arrearage" | "AllocationQuota.FreeTierOnly" => ErrorClass::Quota,
        "InvalidApiKey" => ErrorClass::Auth,
        c if c.starts_with("AccessDenied") => ErrorClass::Forbidden,
        "DataInspectionFailed" | "data_inspection_failed" => ErrorClass::ContentFilter,
        "ModelNotFound" => ErrorClass::NotFound,
        c if c.starts_with("InvalidParameter")
            || c.starts_with("BadRequest")
            || c == "InvalidURL" =>
        {
            ErrorClass::Invalid
        }
        c if c.starts_with("InternalError") || c == "ServiceUnavailable" => ErrorClass::Failed,
        _ => return None,
    })
}

/// An OpenAI chat body → a native generation body.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for non-text parts (vision models use another endpoint).
pub fn to_dashscope(
    mut openai: Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) -> Result<Bytes, GatewayError> {
    let mut messages = Vec::new();
    for mut m in translate::messages(&mut openai)? {
        let text = translate::text_content(m.get("content"), NAME)?;
        if let Some(o) = m.as_object_mut() {
            if o.get("role").and_then(Value::as_str) == Some("developer") {
                o.insert("role".into(), json!("system"));
            }
            o.insert("content".into(), json!(text));
        }
        messages.push(m);
    }
    let mut parameters = json!({"result_format": "message"});
    for key in PARAMETERS {
        if let Some(v) = openai.get(key).filter(|v| !v.is_null()) {
            parameters[key] = v.clone();
        }
    }
    if let Some(cap) = openai
        .get("max_completion_tokens")
        .or_else(|| openai.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        parameters["max_tokens"] = cap.clone();
    }
    if let Some(stop) = translate::stop_list(openai.get("stop")) {
        parameters["stop"] = stop;
    }
    if stream {
        parameters["incremental_output"] = json!(true);
    }
    let body =
        json!({"model": upstream_model, "input": {"messages": messages}, "parameters": parameters});
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

fn finish_reason(reason: Option<&str>) -> Option<&'static str> {
    match reason? {
        "null" | "" => None,
        "length" => Some("length"),
        "tool_calls" => Some("tool_calls"),
        "content_filter" | "sensitive" => Some("content_filter"),
        _ => Some("stop"),
    }
}

fn openai_usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let mut usage = translate::usage(
        n("input_tokens").unwrap_or(0),
        n("output_tokens").unwrap_or(0),
        n("total_tokens"),
        u.pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64),
    );
    if let Some(r) = u
        .pointer("/output_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
    {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": r});
    }
    usage
}

/// A native answer → `chat.completion`.
///
/// # Errors
/// What is wrong with the body.
pub fn to_openai(body: &[u8]) -> Result<Bytes, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let output = v.get("output").ok_or("the answer has no output")?;
    let (message, finish) = match output.pointer("/choices/0") {
        Some(choice) => {
            let mut message = choice.get("message").cloned().unwrap_or_else(|| json!({}));
            message["role"] = json!("assistant");
            if message.get("content").is_none_or(Value::is_null) {
                message["content"] = json!("");
            }
            if message.get("reasoning_content").and_then(Value::as_str) == Some("") {
                if let Some(o) = message.as_object_mut() {
                    o.remove("reasoning_content");
                }
            }
            (message, choice.get("finish_reason").and_then(Value::as_str))
        }
        None => (
            json!({"role": "assistant", "content": output.get("text").and_then(Value::as_str).unwrap_or_default()}),
            output.get("finish_reason").and_then(Value::as_str),
        ),
    };
    let has_tools = message
        .get("tool_calls")
        .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    let finish = if has_tools {
        Some("tool_calls")
    } else {
        finish_reason(finish)
    };
    let out = translate::completion(
        v.get("request_id").cloned().unwrap_or(Value::Null),
        json!(translate::now()),
        Value::Null,
        message,
        finish.unwrap_or("stop"),
        v.get("usage")
            .map_or_else(|| translate::usage(0, 0, None, None), openai_usage),
    );
    Ok(Bytes::from(out.to_string()))
}

/// Whether events repeat the whole text so far (a model that ignored `incremental_output`): decided by the
/// second event with text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Unknown,
    Incremental,
    Cumulative,
}

/// Native SSE → OpenAI chunks.
#[derive(Default)]
pub struct DashScopeStream {
    decoder: SseDecoder,
    writer: ChunkWriter,
    usage: Option<Value>,
    mode: Mode,
    /// Text (content) and reasoning received so far.
    text: String,
    reasoning: String,
    done: bool,
}

/// The new part of `next` given what was already sent: all of it when incremental, the suffix when cumulative.
fn fresh<'a>(mode: &mut Mode, sent: &mut String, next: &'a str) -> &'a str {
    if *mode == Mode::Unknown && !sent.is_empty() {
        *mode = if next.len() > sent.len() && next.starts_with(sent.as_str()) {
            Mode::Cumulative
        } else {
            Mode::Incremental
        };
    }
    let new = match *mode {
        Mode::Cumulative => next.strip_prefix(sent.as_str()).unwrap_or(next),
        _ => next,
    };
    if *mode == Mode::Cumulative {
        next.clone_into(sent);
    } else {
        sent.push_str(new);
    }
    new
}

impl DashScopeStream {}

impl SseEventTranslator for DashScopeStream {
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
        if v.get("output").is_none() {
            if let Some((code, message)) = error_fields(payload) {
                translate::error_event(out, &message, &code);
                self.done = true;
            }
            return;
        }
        if self.writer.id.is_null() {
            self.writer.id = v.get("request_id").cloned().unwrap_or(Value::Null);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(openai_usage(u));
        }
        let Some(choice) = v.pointer("/output/choices/0") else {
            return;
        };
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let mut mode = self.mode;
        if let Some(r) = message
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let mut sent = std::mem::take(&mut self.reasoning);
            let new = fresh(&mut mode, &mut sent, r).to_string();
            self.reasoning = sent;
            if !new.is_empty() {
                self.writer
                    .delta(out, json!({"reasoning_content": new}), None);
            }
        }
        if let Some(t) = message
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let mut sent = std::mem::take(&mut self.text);
            let new = fresh(&mut mode, &mut sent, t).to_string();
            self.text = sent;
            if !new.is_empty() {
                self.writer.delta(out, json!({"content": new}), None);
            }
        }
        self.mode = mode;
        if let Some(Value::Array(calls)) = message.get("tool_calls") {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut c = c.clone();
                    if c.get("index").is_none() {
                        c["index"] = json!(i);
                    }
                    c
                })
                .collect();
            if !calls.is_empty() {
                self.writer.delta(out, json!({"tool_calls": calls}), None);
            }
        }
        if let Some(finish) = finish_reason(choice.get("finish_reason").and_then(Value::as_str)) {
            self.writer.delta(out, json!({}), Some(finish));
            if let Some(u) = self.usage.take() {
                self.writer.usage(out, u);
            }
            translate::done(out);
            self.done = true;
        }
    }

    fn ended(&mut self, out: &mut BytesMut) {
        // Cut before its finish reason: the provider's cumulative usage so far beats an estimate (the relay
        // still reports the stream as truncated, since no `[DONE]` follows).
        if !self.done {
            if let Some(u) = self.usage.take() {
                self.writer.usage(out, u);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> String {
        let mut t = DashScopeStream::default();
        let mut out = Vec::new();
        for p in body.as_bytes().chunks(7) {
            out.extend_from_slice(&t.push(p));
        }
        out.extend_from_slice(&t.finish());
        String::from_utf8(out).unwrap()
    }

    fn content(sse: &str) -> String {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|p| *p != "[DONE]")
            .filter_map(|p| serde_json::from_str::<Value>(p).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    fn event(i: u32, text: &str, finish: &str, out_tokens: u32) -> String {
        format!("id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:{{\"output\":{{\"choices\":[{{\"message\":{{\"content\":\"{text}\",\"role\":\"assistant\"}},\"finish_reason\":\"{finish}\"}}]}},\"usage\":{{\"input_tokens\":5,\"output_tokens\":{out_tokens},\"total_tokens\":{}}},\"request_id\":\"r1\"}}\n\n", 5 + out_tokens)
    }

    #[test]
    fn incremental_and_cumulative_streams_give_the_same_deltas() {
        let incremental = [
            event(1, "Hel", "null", 1),
            event(2, "lo", "null", 2),
            event(3, "!", "stop", 3),
        ]
        .concat();
        let cumulative = [
            event(1, "Hel", "null", 1),
            event(2, "Hello", "null", 2),
            event(3, "Hello!", "stop", 3),
        ]
        .concat();
        for body in [incremental, cumulative] {
            let out = run(&body);
            assert_eq!(content(&out), "Hello!");
            assert!(out.ends_with("data: [DONE]\n\n"));
            assert_eq!(out.matches("\"usage\"").count(), 1);
            assert!(out.contains("\"completion_tokens\":3"));
        }
    }

    #[test]
    fn request_envelope_and_errors() {
        let body = json!({"model": "x", "max_tokens": 7, "temperature": 0.3, "stop": "END",
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "s"}]}, {"role": "user", "content": "hi"}]});
        let out = to_dashscope(body.as_object().unwrap().clone(), "qwen-plus", true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["input"]["messages"][0],
            json!({"role": "system", "content": "s"})
        );
        assert_eq!(v["parameters"]["result_format"], "message");
        assert_eq!(v["parameters"]["incremental_output"], true);
        assert_eq!(v["parameters"]["max_tokens"], 7);
        assert_eq!(v["parameters"]["stop"], json!(["END"]));
        assert!(v.get("messages").is_none());
        let a = DashScopeNative;
        let err = |status: u16, code: &str| {
            a.classify_error(
                "p",
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                json!({"code": code, "message": "m", "request_id": "r"})
                    .to_string()
                    .as_bytes(),
            )
        };
        assert!(err(429, "Throttling.RateQuota").retryable());
        assert_eq!(err(401, "InvalidApiKey").code(), "upstream_auth_failed");
        assert_eq!(err(400, "Arrearage").code(), "upstream_quota_exhausted");
        assert!(!err(400, "Arrearage").retryable());
        assert_eq!(
            err(400, "DataInspectionFailed").body()["error"]["code"],
            "content_filter"
        );
        assert_eq!(err(400, "InvalidParameter").status(), 400);
        assert!(err(500, "SomethingNew").retryable());
        let ok = br#"{"output":{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]},"usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":2}},"request_id":"r"}"#;
        assert!(a.answer_error("p", &HeaderMap::new(), ok).is_none());
        let v: Value = serde_json::from_slice(&to_openai(ok).unwrap()).unwrap();
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
    }
}
