//! OpenAI answers → Gemini answers: `chat.completion` → `GenerateContentResponse`, error bodies → Google's
//! error shape.

use serde_json::{json, Map, Value};

use crate::provider::gemini::SIGNATURE_MARK;

/// OpenAI `finish_reason` → Gemini `finishReason`.
#[must_use]
pub fn finish_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        _ => "STOP",
    }
}

/// OpenAI usage → `usageMetadata` (`candidatesTokenCount` without the thoughts, as Gemini counts them).
#[must_use]
pub fn usage_metadata(u: &Map<String, Value>) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = n(u.get("prompt_tokens"));
    let completion = n(u.get("completion_tokens"));
    let thoughts = n(u
        .get("completion_tokens_details")
        .and_then(|d| d.get("reasoning_tokens")));
    let cached = n(u
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens")));
    let mut out = json!({"promptTokenCount": prompt, "candidatesTokenCount": completion.saturating_sub(thoughts),
        "totalTokenCount": prompt + completion});
    if thoughts > 0 {
        out["thoughtsTokenCount"] = Value::from(thoughts);
    }
    if cached > 0 {
        out["cachedContentTokenCount"] = Value::from(cached);
    }
    out
}

/// A `functionCall` part for an OpenAI tool call (complete arguments); a thought signature carried in the
/// id goes back on the part.
#[must_use]
pub fn function_call_part(id: &str, name: &Value, arguments: &str) -> Value {
    let args = serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut part = json!({"functionCall": {"name": name, "args": args}});
    if let Some((_, signature)) = id.split_once(SIGNATURE_MARK) {
        part["thoughtSignature"] = Value::String(signature.into());
    }
    part
}

/// A `chat.completion` object → a `GenerateContentResponse`.
#[must_use]
pub fn to_generate_content(completion: &Value) -> Value {
    let choice = completion.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut parts = Vec::new();
    if let Some(r) = message
        .and_then(|m| m.get("reasoning_content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        parts.push(json!({"text": r, "thought": true}));
    }
    if let Some(t) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        parts.push(json!({"text": t}));
    }
    for call in message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        parts.push(function_call_part(
            call.get("id").and_then(Value::as_str).unwrap_or_default(),
            call.pointer("/function/name").unwrap_or(&Value::Null),
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}"),
        ));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let mut out = json!({"candidates": [{"content": {"role": "model", "parts": parts},
        "finishReason": finish_reason(finish), "index": 0}],
        "modelVersion": completion.get("model"), "responseId": completion.get("id")});
    if let Some(Value::Object(u)) = completion.get("usage") {
        out["usageMetadata"] = usage_metadata(u);
    }
    out
}

/// Google's canonical status name for an HTTP status.
#[must_use]
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 | 413 | 415 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 | 405 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// An OpenAI error object → `{"error":{"code","message","status"}}`; `retry_after` (seconds) also as a
/// `RetryInfo` detail, where Google's clients look for it.
#[must_use]
pub fn to_error(status: u16, openai: &Value, retry_after: Option<u64>) -> Value {
    let message = openai
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("request failed");
    let mut error = json!({"code": status, "message": message, "status": status_name(status)});
    if let Some(secs) = retry_after {
        error["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{secs}s")}]);
    }
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_to_generate_content() {
        let r = to_generate_content(
            &json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "Checking.", "reasoning_content": "hmm", "tool_calls": [
                {"id": format!("call_1{SIGNATURE_MARK}c2ln"), "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 20}}}),
        );
        let candidate = &r["candidates"][0];
        assert_eq!(candidate["finishReason"], "STOP");
        assert_eq!(candidate["content"]["role"], "model");
        assert_eq!(
            candidate["content"]["parts"],
            json!([{"text": "hmm", "thought": true}, {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}])
        );
        assert_eq!(
            r["usageMetadata"],
            json!({"promptTokenCount": 100, "candidatesTokenCount": 10, "thoughtsTokenCount": 20,
            "cachedContentTokenCount": 60, "totalTokenCount": 130})
        );
        assert_eq!(
            (r["modelVersion"].as_str(), r["responseId"].as_str()),
            (Some("gpt-4o"), Some("chatcmpl-1"))
        );
        for (o, g) in [
            ("stop", "STOP"),
            ("length", "MAX_TOKENS"),
            ("content_filter", "SAFETY"),
        ] {
            assert_eq!(finish_reason(o), g);
        }
    }

    #[test]
    fn errors_take_google_shape() {
        let e = to_error(
            429,
            &json!({"error": {"message": "slow", "type": "rate_limit_error"}}),
            Some(4),
        );
        assert_eq!(
            e,
            json!({"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "4s"}]}})
        );
        assert_eq!(
            to_error(401, &Value::Null, None)["error"]["status"],
            "UNAUTHENTICATED"
        );
        assert_eq!(
            to_error(502, &Value::Null, None)["error"]["status"],
            "UNAVAILABLE"
        );
        assert_eq!(to_error(404, &Value::Null, None)["error"]["code"], 404);
    }
}
