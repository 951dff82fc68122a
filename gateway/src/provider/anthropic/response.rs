//! Anthropic `message` → OpenAI `chat.completion`, and the mappings the stream shares (finish reason, usage).
//!
//! Content blocks: `text` → `message.content` (joined); `tool_use` → `message.tool_calls` (input serialised
//! to the `arguments` string); `thinking` → `message.reasoning_content` (joined) **and**
//! `message.thinking_blocks` (`{"type":"thinking","thinking","signature"}`, `{"type":"redacted_thinking",
//! "data"}` as Anthropic sent them), which a client sends back on the assistant message to continue a tool
//! turn. Other block types (server tools, citations) are not expressible in chat completions and dropped.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
#[must_use]
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// Anthropic usage → OpenAI usage. `input_tokens` excludes the cache reads and writes; OpenAI's
/// `prompt_tokens` includes them (`cached_tokens` is the read part, `cache_write_tokens` the written part).
#[must_use]
pub fn openai_usage(u: &Map<String, Value>) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let read = n("cache_read_input_tokens");
    let write = n("cache_creation_input_tokens");
    let prompt = n("input_tokens") + read + write;
    let completion = n("output_tokens");
    let thinking = u
        .get("output_tokens_details")
        .and_then(|d| d.get("thinking_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
        "completion_tokens_details": {"reasoning_tokens": thinking}})
}

/// Translates a non-streamed Messages answer.
///
/// # Errors
/// When the body is not an Anthropic message.
pub fn to_openai(body: &[u8]) -> Result<Bytes, String> {
    let message: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the upstream answered 200 with a body that is not a message: {e}"))?;
    let Some(Value::Array(blocks)) = message.get("content") else {
        return Err("the upstream answered 200 with a message without content".into());
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(block.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(
                    json!({"id": block.get("id"), "type": "function", "function": {
                    "name": block.get("name"), "arguments": input.to_string()}}),
                );
            }
            _ => {}
        }
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() {
        Value::Null } else { Value::String(text) }, "refusal": null});
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    if !thinking_blocks.is_empty() {
        msg["reasoning_content"] = Value::String(reasoning);
        msg["thinking_blocks"] = Value::Array(thinking_blocks);
    }
    let finish = message
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or("stop", finish_reason);
    let mut out = json!({"id": message.get("id"), "object": "chat.completion", "created": crate::provider::translate::now(),
        "model": message.get("model"),
        "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": finish}]});
    if let Some(Value::Object(u)) = message.get("usage") {
        out["usage"] = openai_usage(u);
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(v: Value) -> Value {
        serde_json::from_slice(&to_openai(v.to_string().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn text_tools_thinking_finish_and_usage() {
        let out = convert(
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "thinking", "thinking": "Let me think", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "ZW5j"},
                {"type": "text", "text": "I'll check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}, "caller": {"type": "direct"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300,
                "output_tokens": 50, "output_tokens_details": {"thinking_tokens": 12}}}),
        );
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["id"], "msg_1");
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "I'll check.");
        assert_eq!(choice["message"]["reasoning_content"], "Let me think");
        assert_eq!(choice["message"]["thinking_blocks"][0]["signature"], "c2ln");
        assert_eq!(
            choice["message"]["thinking_blocks"][1]["type"],
            "redacted_thinking"
        );
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_1");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 330, "completion_tokens": 50, "total_tokens": 380,
            "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 20},
            "completion_tokens_details": {"reasoning_tokens": 12}})
        );
    }

    #[test]
    fn finish_reasons() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            assert_eq!(finish_reason(a), o);
        }
        assert!(to_openai(b"[]").is_err());
        assert!(to_openai(br#"{"type":"message"}"#).is_err());
    }
}
