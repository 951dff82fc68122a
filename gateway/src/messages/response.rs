//! OpenAI answers → Anthropic answers: `chat.completion` → `message`, error bodies → Anthropic's error shape.

use serde_json::{json, Map, Value};

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
#[must_use]
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI usage → Anthropic usage (`input_tokens` without the cache reads and writes).
#[must_use]
pub fn anthropic_usage(u: Option<&Map<String, Value>>) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let u = u.cloned().unwrap_or_default();
    let details = u.get("prompt_tokens_details");
    let read = n(details.and_then(|d| d.get("cached_tokens")));
    let write = n(details.and_then(|d| d.get("cache_write_tokens")));
    let prompt = n(u.get("prompt_tokens"));
    json!({"input_tokens": prompt.saturating_sub(read + write), "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read, "output_tokens": n(u.get("completion_tokens"))})
}

/// A `chat.completion` object → a Messages `message`.
#[must_use]
pub fn to_message(completion: &Value) -> Value {
    let choice = completion.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(Value::Array(blocks)) = message.and_then(|m| m.get("thinking_blocks")) {
        content.extend(blocks.iter().cloned());
    }
    if let Some(text) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(Value::Array(calls)) = message.and_then(|m| m.get("tool_calls")) {
        for call in calls {
            let arguments = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input = serde_json::from_str::<Value>(arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            content.push(json!({"type": "tool_use", "id": call.get("id"), "name": call.pointer("/function/name"), "input": input}));
        }
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .unwrap_or("stop");
    json!({"id": completion.get("id"), "type": "message", "role": "assistant", "model": completion.get("model"),
        "content": content, "stop_reason": stop_reason(finish), "stop_sequence": null,
        "usage": anthropic_usage(completion.get("usage").and_then(Value::as_object))})
}

/// Anthropic's error `type` for a status.
#[must_use]
pub fn error_type_for(status: u16) -> &'static str {
    match status {
        400 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 | 405 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// An OpenAI error object (`{"error":{message,type,…}}`) → `{"type":"error","error":{type,message}}`, the
/// type following the status as Anthropic's does (the SDKs map statuses, not types, to exceptions).
#[must_use]
pub fn to_error(status: u16, openai: &Value) -> Value {
    let error = openai.get("error");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("request failed");
    let ty = error_type_for(status);
    json!({"type": "error", "error": {"type": ty, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_to_message() {
        let m = to_message(
            &json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10}}}),
        );
        assert_eq!(m["type"], "message");
        assert_eq!(
            m["content"][0],
            json!({"type": "text", "text": "Checking."})
        );
        assert_eq!(
            m["content"][1],
            json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
        );
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 30, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 60, "output_tokens": 7})
        );
    }

    #[test]
    fn errors_take_anthropic_shape() {
        let e = to_error(
            429,
            &json!({"error": {"message": "slow", "type": "rate_limit_error"}}),
        );
        assert_eq!(
            e,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
        );
        assert_eq!(
            to_error(
                404,
                &json!({"error": {"message": "m", "type": "invalid_request_error"}})
            )["error"]["type"],
            "not_found_error"
        );
        assert_eq!(
            to_error(
                502,
                &json!({"error": {"message": "m", "type": "upstream_error"}})
            )["error"]["type"],
            "api_error"
        );
        assert_eq!(
            to_error(
                401,
                &json!({"error": {"message": "m", "type": "invalid_request_error"}})
            )["error"]["type"],
            "authentication_error"
        );
    }
}
