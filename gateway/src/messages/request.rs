//! An Anthropic Messages request → the OpenAI chat-completions body the orchestrator routes and meters.
//!
//! | Anthropic | OpenAI |
//! |---|---|
//! | `system` (string or text blocks) | a first `system` message |
//! | `max_tokens` (required, as upstream) | `max_completion_tokens` |
//! | `stop_sequences`, `temperature`, `top_p`, `stream` | `stop`, same, same, same + `stream_options.include_usage` |
//! | `metadata.user_id` | `user` |
//! | user `text` / `image` (base64 or url) blocks | `text` / `image_url` parts |
//! | user `tool_result` blocks | `tool` messages (before the rest of that turn) |
//! | assistant `text` / `tool_use` blocks | `content` / `tool_calls` (input serialised to `arguments`) |
//! | `tools[]{name,description,input_schema}` | `tools[].function{name,description,parameters}` |
//! | `tool_choice` auto / any / tool / none + `disable_parallel_tool_use` | auto / required / {function} / none + `parallel_tool_calls:false` |
//!
//! What has no chat-completions equivalent (`thinking`, thinking blocks, documents, server tools,
//! `cache_control`) is left out of this translation; an Anthropic deployment gets the client's own body
//! instead, where it all survives.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

/// Translates a `/v1/messages` body.
///
/// # Errors
/// [`GatewayError::MalformedJson`] / [`GatewayError::InvalidRequest`] as Anthropic would refuse the body.
pub fn to_openai(body: &[u8]) -> Result<Bytes, GatewayError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let mut out = Map::new();
    if let Some(model) = req.get("model") {
        out.insert("model".into(), model.clone());
    }
    let Some(max_tokens) = req.get("max_tokens").and_then(Value::as_u64) else {
        return Err(invalid(
            "max_tokens: Field required (a positive integer)",
            "max_tokens",
        ));
    };
    out.insert("max_completion_tokens".into(), Value::from(max_tokens));
    let mut messages = Vec::new();
    match req.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text.join("\n\n")}));
            }
        }
        _ => {}
    }
    let Some(Value::Array(turns)) = req.get("messages") else {
        return Err(invalid("messages: Field required (an array)", "messages"));
    };
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str);
        let content = turn.get("content");
        match role {
            Some("user") => user_turn(content, &mut messages),
            Some("assistant") => messages.push(assistant_turn(content)),
            _ => {
                return Err(invalid(
                    format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                    "messages",
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(stop) = req.get("stop_sequences").filter(|s| s.is_array()) {
        out.insert("stop".into(), stop.clone());
    }
    for field in ["temperature", "top_p"] {
        if let Some(v) = req.get(field).filter(|v| v.is_number()) {
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), Value::String(user.into()));
    }
    if let Some(Value::Array(tools)) = req.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?;
                let mut f = json!({"name": name, "parameters": t.get("input_schema").cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                Some(json!({"type": "function", "function": f}))
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice") {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
            }
            _ => {
                return Err(invalid(
                    "tool_choice.type must be auto, any, tool or none",
                    "tool_choice",
                ))
            }
        };
        out.insert("tool_choice".into(), mapped);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if req.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        // Anthropic streams always carry usage: ask for it, so the relay's usage chunk can become it.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

fn block_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn user_turn(content: Option<&Value>, messages: &mut Vec<Value>) {
    let Some(Value::Array(blocks)) = content else {
        messages.push(json!({"role": "user", "content": content.cloned().unwrap_or(json!(""))}));
        return;
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let mut text = block_text(block.get("content"));
                if block.get("is_error") == Some(&Value::Bool(true)) {
                    text = format!("Error: {text}");
                }
                messages.push(json!({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}));
            }
            Some("text") => parts.push(json!({"type": "text", "text": block.get("text")})),
            Some("image") => {
                let source = block.get("source");
                let url = match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source
                            .and_then(|s| s.get("media_type"))
                            .and_then(Value::as_str)
                            .unwrap_or("image/png"),
                        source
                            .and_then(|s| s.get("data"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    _ => source
                        .and_then(|s| s.get("url"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            _ => {}
        }
    }
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
}

fn assistant_turn(content: Option<&Value>) -> Value {
    let Some(Value::Array(blocks)) = content else {
        return json!({"role": "assistant", "content": content.cloned().unwrap_or(json!(""))});
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"),
                "arguments": block.get("input").cloned().unwrap_or_else(|| json!({})).to_string()}})),
            _ => {}
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(v: Value) -> Value {
        serde_json::from_slice(&to_openai(v.to_string().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn messages_tools_and_stream() {
        let out = convert(
            json!({"model": "claude", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}]}],
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "temperature": 0.2, "metadata": {"user_id": "u9"}, "stream": true}),
        );
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[1], json!({"role": "user", "content": "Weather?"}));
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert!(
            m[2].get("thinking_blocks").is_none(),
            "OpenAI upstreams get no thinking"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
        );
        assert_eq!(m[4]["content"][0]["text"], "And tomorrow?");
        assert_eq!(
            m[4]["content"][1]["image_url"]["url"],
            "data:image/jpeg;base64,AAAA"
        );
        assert_eq!(out["max_completion_tokens"], 100);
        assert_eq!(out["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["user"], "u9");
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn refuses_like_anthropic() {
        assert_eq!(
            to_openai(br#"{"model":"m","messages":[]}"#)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            to_openai(
                br#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#
            )
            .unwrap_err()
            .status(),
            400
        );
        assert_eq!(to_openai(b"{").unwrap_err().code(), "invalid_json");
    }
}
