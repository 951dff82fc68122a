//! Converse response → OpenAI `chat.completion`, and the mappings the stream shares (stop reason, usage).
//!
//! `output.message.content`: `text` → `message.content` (joined); `toolUse` → `message.tool_calls` (input
//! serialised to the `arguments` string); `reasoningContent.reasoningText.text` → `message.reasoning_content`.
//! Converse answers carry no id and no model: the id is made here (`chatcmpl-bedrock-…`), the model is the
//! one the request named.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Converse `stopReason` → OpenAI `finish_reason`.
#[must_use]
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence, malformed_model_output, malformed_tool_use
        _ => "stop",
    }
}

/// Converse usage → OpenAI usage. `inputTokens` excludes cache reads and writes; OpenAI's `prompt_tokens`
/// includes them (`cached_tokens` the read part, `cache_write_tokens` the written part).
#[must_use]
pub fn openai_usage(u: &Map<String, Value>) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let read = n("cacheReadInputTokens");
    let write = n("cacheWriteInputTokens");
    let prompt = n("inputTokens") + read + write;
    let completion = n("outputTokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
        "completion_tokens_details": {"reasoning_tokens": 0}})
}

/// A fresh completion id (Converse has none).
pub(super) fn new_id() -> String {
    format!("chatcmpl-bedrock-{}", uuid::Uuid::now_v7().simple())
}

/// Translates a non-streamed Converse answer.
///
/// # Errors
/// When the body is not a Converse response.
pub fn to_openai(body: &[u8], model: &str) -> Result<Bytes, String> {
    let response: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        format!("the upstream answered 200 with a body that is not a Converse response: {e}")
    })?;
    let Some(Value::Array(blocks)) = response
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
    else {
        return Err("the upstream answered 200 without output.message.content".into());
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let input = tool.get("input").cloned().unwrap_or_else(|| json!({}));
            tool_calls.push(json!({"id": tool.get("toolUseId"), "type": "function",
                "function": {"name": tool.get("name"), "arguments": input.to_string()}}));
        } else if let Some(r) = block
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            reasoning.push_str(r);
        }
    }
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let finish = response
        .get("stopReason")
        .and_then(Value::as_str)
        .map_or("stop", finish_reason);
    let mut out = json!({"id": new_id(), "object": "chat.completion", "created": crate::provider::translate::now(), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}]});
    if let Some(Value::Object(u)) = response.get("usage") {
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
        serde_json::from_slice(
            &to_openai(v.to_string().as_bytes(), "amazon.nova-pro-v1:0").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn text_tools_reasoning_finish_and_usage() {
        let out = convert(
            json!({"output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "c2ln"}}},
                {"text": "I'll check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 50, "totalTokens": 60 + 320,
                "cacheReadInputTokens": 300, "cacheWriteInputTokens": 20},
            "metrics": {"latencyMs": 120}}),
        );
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["model"], "amazon.nova-pro-v1:0");
        assert!(out["id"].as_str().unwrap().starts_with("chatcmpl-bedrock-"));
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "I'll check.");
        assert_eq!(choice["message"]["reasoning_content"], "Think.");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "tooluse_1");
        assert_eq!(
            serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 330, "completion_tokens": 50, "total_tokens": 380,
            "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 20},
            "completion_tokens_details": {"reasoning_tokens": 0}})
        );
    }

    #[test]
    fn finish_reasons_and_bad_bodies() {
        for (b, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
            ("malformed_tool_use", "stop"),
        ] {
            assert_eq!(finish_reason(b), o);
        }
        assert!(to_openai(b"[]", "m").is_err());
        assert!(to_openai(br#"{"output":{}}"#, "m").is_err());
    }
}
