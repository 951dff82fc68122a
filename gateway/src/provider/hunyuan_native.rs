//! Tencent Hunyuan's native API 3.0 (`kind = "hunyuan-native"`), for accounts that cannot use the
//! OpenAI-compatible endpoint.
//!
//! `POST {base}/` (`https://hunyuan.tencentcloudapi.com/`) with `X-TC-Action: ChatCompletions`,
//! `X-TC-Version: 2023-09-01`, `X-TC-Timestamp`, optional `X-TC-Region`, and a TC3-HMAC-SHA256 `Authorization`
//! computed over each body ([`super::sign::tc3`], keys `SecretId:SecretKey`).
//!
//! | OpenAI | Hunyuan |
//! |---|---|
//! | `messages` (system / developer merged first; user text or text + `image_url` parts; assistant `tool_calls`; `tool`) | `Messages[{Role, Content \| Contents, ToolCalls, ToolCallId}]` |
//! | `temperature`, `top_p`, `stop`, `seed` | `Temperature`, `TopP`, `Stop`, `Seed` |
//! | `tools` (`parameters` an object) | `Tools[{Type, Function{Name, Description, Parameters}}]` (`Parameters` a JSON **string**) |
//! | `tool_choice` `auto` / `none` / a named function | `ToolChoice` `auto` / `none` / `custom` + `CustomTool`; `required` is refused (400) |
//! | `max_tokens`, `max_completion_tokens` | dropped: the API has no output cap |
//!
//! Answers come in a `{"Response": {…}}` envelope: `Choices[].Message`, `FinishReason` (`sensitive` →
//! `content_filter`), `Usage{PromptTokens, CompletionTokens, TotalTokens, PromptTokensDetails.CachedTokens}`.
//! Errors come **with HTTP 200** as `{"Response":{"Error":{"Code","Message"},"RequestId"}}` ([`error_class`]).
//! Streams are SSE `data: {…}` chunks (the envelope's inside, tolerated wrapped too) with `Delta`s and `Usage`
//! on every chunk (the last value wins); the chunk with a `FinishReason` ends the stream — no `[DONE]` upstream,
//! one is written here only then.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{json, Map, Value};

use super::adapter::{Adapter, AuthScheme, SseEventTranslator, StreamTranslator};
use super::translate::{self, classified, ChunkWriter, ErrorClass};
use super::ProviderKind;
use crate::error::GatewayError;
use crate::sse::SseDecoder;

/// The adapter (stateless).
pub struct HunyuanNative;

const NAME: &str = "hunyuan-native";

impl Adapter for HunyuanNative {
    fn chat_url(&self, base: &str, _upstream_model: &str, _stream: bool) -> String {
        format!("{base}/")
    }

    fn auth_header(&self, _key: &str) -> (HeaderName, String) {
        (http::header::AUTHORIZATION, String::new())
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::Tc3 {
            service: "hunyuan",
            action: "ChatCompletions",
            version: "2023-09-01",
        }
    }

    fn chat_request(
        &self,
        openai: Map<String, Value>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, GatewayError> {
        to_hunyuan(openai, upstream_model, stream)
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(HunyuanStream::default())
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
                    ProviderKind::HunyuanNative,
                    status,
                    headers,
                    body,
                )
            })
    }

    fn answer_error(&self, provider: &str, _: &HeaderMap, body: &[u8]) -> Option<GatewayError> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let error = v.get("Response").unwrap_or(&v).get("Error")?;
        let code = error
            .get("Code")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = error
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(classified(
            provider,
            error_class(code),
            Value::String(code.into()),
            message,
        ))
    }
}

/// A Tencent Cloud error code's class. Families from the API 3.0 common error codes; the quota codes are
/// the arrears / resource-pack ones (`ResourceInsufficient.ChargeResourceInsufficient`,
/// `ResourceUnavailable.InArrears`, `FailedOperation.ResourcePackExhausted`, …).
#[must_use]
pub fn error_class(code: &str) -> ErrorClass {
    let quota = [
        "Arrears",
        "ChargeResourceInsufficient",
        "LowBalance",
        "PackExhausted",
        "ServiceStop",
    ];
    if code.starts_with("AuthFailure") {
        ErrorClass::Auth
    } else if quota.iter().any(|q| code.contains(q)) || code.starts_with("ResourceInsufficient") {
        ErrorClass::Quota
    } else if code.starts_with("RequestLimitExceeded") || code.starts_with("LimitExceeded") {
        ErrorClass::RateLimited
    } else if code.starts_with("InvalidParameter")
        || code.starts_with("MissingParameter")
        || code.starts_with("UnknownParameter")
        || code.starts_with("UnsupportedOperation")
        || code == "InvalidRequest"
    {
        ErrorClass::Invalid
    } else if code.starts_with("UnauthorizedOperation")
        || code.starts_with("OperationDenied")
        || code.contains("ServiceNotActivated")
    {
        ErrorClass::Forbidden
    } else if code.starts_with("ResourceNotFound") || code == "InvalidAction" {
        ErrorClass::NotFound
    } else if code.contains("ContentUnsafe") || code.contains("Sensitive") {
        ErrorClass::ContentFilter
    } else {
        ErrorClass::Failed
    }
}

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

/// An OpenAI chat body → a `ChatCompletions` body.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for what Hunyuan cannot express (`tool_choice: "required"`, a role it
/// does not know, a part that is neither text nor an image).
pub fn to_hunyuan(
    mut openai: Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) -> Result<Bytes, GatewayError> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in translate::messages(&mut openai)? {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        match role {
            "system" | "developer" => system.push(translate::text_content(m.get("content"), NAME)?),
            "user" => messages.push(user_message(m.get("content"))?),
            "assistant" => {
                let mut out = json!({"Role": "assistant",
                    "Content": translate::text_content(m.get("content"), NAME)?});
                if let Some(Value::Array(calls)) = m.get("tool_calls") {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|c| {
                            json!({"Id": c.get("id"), "Type": "function", "Function": {
                                "Name": c.pointer("/function/name"),
                                "Arguments": c.pointer("/function/arguments")}})
                        })
                        .collect();
                    out["ToolCalls"] = Value::Array(calls);
                }
                messages.push(out);
            }
            "tool" => messages.push(json!({"Role": "tool",
                "Content": translate::text_content(m.get("content"), NAME)?,
                "ToolCallId": m.get("tool_call_id")})),
            other => {
                return Err(invalid(
                    format!("{NAME} has no message role {other:?}"),
                    "messages",
                ))
            }
        }
    }
    if !system.is_empty() {
        messages.insert(0, json!({"Role": "system", "Content": system.join("\n\n")}));
    }
    let mut body = json!({"Model": upstream_model, "Messages": messages, "Stream": stream});
    for (from, to) in [
        ("temperature", "Temperature"),
        ("top_p", "TopP"),
        ("seed", "Seed"),
    ] {
        if let Some(v) = openai.get(from).filter(|v| !v.is_null()) {
            body[to] = v.clone();
        }
    }
    if let Some(stop) = translate::stop_list(openai.get("stop")) {
        body["Stop"] = stop;
    }
    let tools: Vec<Value> = match openai.get("tools") {
        Some(Value::Array(tools)) => tools.iter().map(tool).collect(),
        _ => Vec::new(),
    };
    match openai.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(c)) if c == "auto" || c == "none" => body["ToolChoice"] = json!(c),
        Some(Value::String(c)) => {
            return Err(invalid(
                format!("{NAME} does not support tool_choice {c:?}"),
                "tool_choice",
            ))
        }
        Some(choice) => {
            let name = choice.pointer("/function/name").and_then(Value::as_str);
            let Some(custom) = tools
                .iter()
                .find(|t| t.pointer("/Function/Name").and_then(Value::as_str) == name)
            else {
                return Err(invalid(
                    "tool_choice names a function that is not in `tools`".into(),
                    "tool_choice",
                ));
            };
            body["ToolChoice"] = json!("custom");
            body["CustomTool"] = custom.clone();
        }
    }
    if !tools.is_empty() {
        body["Tools"] = Value::Array(tools);
    }
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

fn user_message(content: Option<&Value>) -> Result<Value, GatewayError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(json!({"Role": "user", "Content": translate::text_content(content, NAME)?}));
    };
    if parts
        .iter()
        .all(|p| p.get("type").and_then(Value::as_str) == Some("text"))
    {
        return Ok(json!({"Role": "user", "Content": translate::text_content(content, NAME)?}));
    }
    let contents = parts
        .iter()
        .map(|p| match p.get("type").and_then(Value::as_str) {
            Some("text") => Ok(json!({"Type": "text", "Text": p.get("text")})),
            Some("image_url") => {
                Ok(json!({"Type": "image_url", "ImageUrl": {"Url": p.pointer("/image_url/url")}}))
            }
            other => Err(invalid(
                format!("{NAME} takes text and image_url parts, not {other:?}"),
                "messages",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"Role": "user", "Contents": contents}))
}

fn tool(t: &Value) -> Value {
    let f = t.get("function").cloned().unwrap_or(Value::Null);
    let parameters = f.get("parameters").map_or_else(
        || "{\"type\":\"object\",\"properties\":{}}".to_string(),
        Value::to_string,
    );
    let mut function = json!({"Name": f.get("name"), "Parameters": parameters});
    if let Some(d) = f.get("description") {
        function["Description"] = d.clone();
    }
    json!({"Type": "function", "Function": function})
}

/// Hunyuan `FinishReason` → OpenAI.
#[must_use]
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "tool_calls" => "tool_calls",
        "sensitive" => "content_filter",
        "length" => "length",
        _ => "stop",
    }
}

fn openai_usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    translate::usage(
        n("PromptTokens").unwrap_or(0),
        n("CompletionTokens").unwrap_or(0),
        n("TotalTokens"),
        u.pointer("/PromptTokensDetails/CachedTokens")
            .and_then(Value::as_u64),
    )
}

fn tool_calls(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| {
            json!({"id": c.get("Id"), "type": "function", "function": {
                "name": c.pointer("/Function/Name"), "arguments": c.pointer("/Function/Arguments")}})
        })
        .collect()
}

/// A `{"Response": {…}}` answer → `chat.completion`.
///
/// # Errors
/// What is wrong with the body.
pub fn to_openai(body: &[u8]) -> Result<Bytes, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let r = v.get("Response").unwrap_or(&v);
    let choice = r.pointer("/Choices/0").ok_or("the answer has no Choices")?;
    let m = choice.get("Message").cloned().unwrap_or(Value::Null);
    let mut message = json!({"role": "assistant",
        "content": m.get("Content").and_then(Value::as_str).unwrap_or_default()});
    if let Some(reasoning) = m
        .get("ReasoningContent")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        message["reasoning_content"] = json!(reasoning);
    }
    if let Some(Value::Array(calls)) = m.get("ToolCalls") {
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls(calls));
        }
    }
    let finish = finish_reason(
        choice
            .get("FinishReason")
            .and_then(Value::as_str)
            .unwrap_or("stop"),
    );
    let out = translate::completion(
        r.get("Id")
            .cloned()
            .unwrap_or_else(|| r.get("RequestId").cloned().unwrap_or(Value::Null)),
        r.get("Created")
            .cloned()
            .unwrap_or_else(|| json!(translate::now())),
        r.get("Model").cloned().unwrap_or(Value::Null),
        message,
        finish,
        r.get("Usage")
            .map_or_else(|| translate::usage(0, 0, None, None), openai_usage),
    );
    Ok(Bytes::from(out.to_string()))
}

/// Hunyuan SSE → OpenAI chunks.
#[derive(Default)]
pub struct HunyuanStream {
    decoder: SseDecoder,
    writer: ChunkWriter,
    usage: Option<Value>,
    /// Tool-call indexes whose id and name went out.
    tools_seen: Vec<u64>,
    done: bool,
}

impl HunyuanStream {}

impl SseEventTranslator for HunyuanStream {
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
        let v = v.get("Response").cloned().unwrap_or(v);
        if let Some(e) = v.get("Error") {
            let code = e
                .get("Code")
                .and_then(Value::as_str)
                .unwrap_or("upstream_error");
            translate::error_event(
                out,
                e.get("Message").and_then(Value::as_str).unwrap_or(code),
                code,
            );
            self.done = true;
            return;
        }
        if let Some(e) = v.get("ErrorMsg").filter(|e| !e.is_null()) {
            let code = e
                .get("Code")
                .map_or_else(|| "upstream_error".into(), |c| c.to_string());
            translate::error_event(
                out,
                e.get("Msg")
                    .and_then(Value::as_str)
                    .unwrap_or("stream failed"),
                &code,
            );
            self.done = true;
            return;
        }
        if self.writer.id.is_null() {
            self.writer.id = v.get("Id").cloned().unwrap_or(Value::Null);
            self.writer.created = v.get("Created").and_then(Value::as_u64).unwrap_or(0);
        }
        if let Some(u) = v.get("Usage").filter(|u| u.is_object()) {
            self.usage = Some(openai_usage(u));
        }
        let Some(choice) = v.pointer("/Choices/0") else {
            return;
        };
        let delta = choice.get("Delta").cloned().unwrap_or(Value::Null);
        if let Some(text) = delta
            .get("ReasoningContent")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.writer
                .delta(out, json!({"reasoning_content": text}), None);
        }
        if let Some(text) = delta
            .get("Content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.writer.delta(out, json!({"content": text}), None);
        }
        if let Some(Value::Array(calls)) = delta.get("ToolCalls") {
            let mut deltas = Vec::new();
            for (i, c) in calls.iter().enumerate() {
                let index = c.get("Index").and_then(Value::as_u64).unwrap_or(i as u64);
                let mut d = json!({"index": index, "function": {"arguments": c.pointer("/Function/Arguments").and_then(Value::as_str).unwrap_or_default()}});
                if !self.tools_seen.contains(&index) {
                    self.tools_seen.push(index);
                    d["id"] = c.get("Id").cloned().unwrap_or(Value::Null);
                    d["type"] = json!("function");
                    d["function"]["name"] =
                        c.pointer("/Function/Name").cloned().unwrap_or(Value::Null);
                }
                deltas.push(d);
            }
            if !deltas.is_empty() {
                self.writer.delta(out, json!({"tool_calls": deltas}), None);
            }
        }
        if let Some(reason) = choice
            .get("FinishReason")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.writer
                .delta(out, json!({}), Some(finish_reason(reason)));
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

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn request_is_pascal_case_with_system_first_and_string_parameters() {
        let out = to_hunyuan(
            body(json!({"model": "x", "max_tokens": 9, "temperature": 0.5, "top_p": 0.9, "stop": "END",
                "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "Be brief."},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                    "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})),
            "hunyuan-turbo",
            true,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["Model"], "hunyuan-turbo");
        assert_eq!(v["Stream"], true);
        assert_eq!(
            v["Messages"][0],
            json!({"Role": "system", "Content": "Be brief."})
        );
        assert_eq!(v["Messages"][1], json!({"Role": "user", "Content": "hi"}));
        assert_eq!(
            v["Messages"][2]["ToolCalls"][0]["Function"]["Name"],
            "get_weather"
        );
        assert_eq!(
            v["Messages"][3],
            json!({"Role": "tool", "Content": "sunny", "ToolCallId": "c1"})
        );
        assert_eq!(
            v["Tools"][0]["Function"]["Parameters"],
            "{\"type\":\"object\"}"
        );
        assert_eq!(v["ToolChoice"], "custom");
        assert_eq!(v["CustomTool"]["Function"]["Name"], "get_weather");
        assert_eq!(
            (v["Temperature"].as_f64(), v["TopP"].as_f64()),
            (Some(0.5), Some(0.9))
        );
        assert_eq!(v["Stop"], json!(["END"]));
        assert!(v.get("max_tokens").is_none() && v.get("MaxTokens").is_none());
        let refused = to_hunyuan(
            body(
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
            ),
            "m",
            false,
        );
        assert!(matches!(refused, Err(GatewayError::InvalidRequest { .. })));
    }

    #[test]
    fn response_and_errors() {
        let ok = br#"{"Response":{"Id":"i1","Created":1,"Choices":[{"Index":0,"Message":{"Role":"assistant","Content":"","ToolCalls":[{"Id":"t1","Type":"function","Function":{"Name":"f","Arguments":"{}"}}]},"FinishReason":"tool_calls"}],"Usage":{"PromptTokens":3,"CompletionTokens":2,"TotalTokens":5},"RequestId":"r"}}"#;
        let v: Value = serde_json::from_slice(&to_openai(ok).unwrap()).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(v["usage"]["total_tokens"], 5);
        let a = HunyuanNative;
        assert!(a.answer_error("p", &HeaderMap::new(), ok).is_none());
        let err = |code: &str| {
            let b =
                json!({"Response": {"Error": {"Code": code, "Message": "m"}, "RequestId": "r"}});
            a.answer_error("p", &HeaderMap::new(), b.to_string().as_bytes())
                .unwrap()
        };
        assert!(err("RequestLimitExceeded").retryable());
        assert_eq!(err("LimitExceeded").status(), 429);
        assert_eq!(
            err("AuthFailure.SignatureFailure").code(),
            "upstream_auth_failed"
        );
        assert_eq!(err("InvalidParameterValue.Model").status(), 400);
        let q = err("ResourceInsufficient.ChargeResourceInsufficient");
        assert_eq!(
            (q.code().as_str(), q.retryable()),
            ("upstream_quota_exhausted", false)
        );
        assert!(err("InternalError").retryable());
    }

    #[test]
    fn stream_keeps_last_usage_and_ends_on_finish_reason() {
        let body = concat!(
            "data: {\"Id\":\"i\",\"Created\":1,\"Choices\":[{\"Delta\":{\"Role\":\"assistant\",\"Content\":\"Hel\"},\"FinishReason\":\"\"}],\"Usage\":{\"PromptTokens\":3,\"CompletionTokens\":1,\"TotalTokens\":4}}\n\n",
            "data: {\"Id\":\"i\",\"Created\":1,\"Choices\":[{\"Delta\":{\"Role\":\"assistant\",\"Content\":\"lo\"},\"FinishReason\":\"stop\"}],\"Usage\":{\"PromptTokens\":3,\"CompletionTokens\":2,\"TotalTokens\":5}}\n\n"
        );
        for piece in [1, 13, body.len()] {
            let mut t = HunyuanStream::default();
            let mut out = Vec::new();
            for p in body.as_bytes().chunks(piece) {
                out.extend_from_slice(&t.push(p));
            }
            out.extend_from_slice(&t.finish());
            let text = String::from_utf8(out).unwrap();
            let payloads: Vec<&str> = text
                .split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .collect();
            assert_eq!(payloads.last(), Some(&"[DONE]"));
            let chunks: Vec<Value> = payloads[..payloads.len() - 1]
                .iter()
                .map(|p| serde_json::from_str(p).unwrap())
                .collect();
            let content: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(content, "Hello");
            let usage: Vec<&Value> = chunks.iter().filter_map(|c| c.get("usage")).collect();
            assert_eq!(usage.len(), 1);
            assert_eq!(usage[0]["completion_tokens"], 2);
        }
    }
}
