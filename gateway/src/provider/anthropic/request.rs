//! OpenAI chat-completions request → Anthropic Messages request.
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | `system` / `developer` messages (all of them, in order) | top-level `system` (string, or text blocks when a part carries `cache_control`) |
//! | `max_completion_tokens` / `max_tokens` (absent: [`DEFAULT_MAX_TOKENS`]) | `max_tokens` (required upstream) |
//! | `stop` (string or list) | `stop_sequences` |
//! | `temperature` (0–2) | `temperature` clamped to 0–1 |
//! | `top_p`, `stream` | same |
//! | `user` | `metadata.user_id` |
//! | `tools[].function{name,description,parameters}` | `tools[]{name,description,input_schema}` |
//! | `tool_choice` auto / required / none / {function} + `parallel_tool_calls:false` | `{type:auto|any|none|tool}` + `disable_parallel_tool_use` |
//! | assistant `tool_calls` (arguments: JSON string) | `tool_use` blocks (input: object) |
//! | assistant `thinking_blocks` (as this gateway returns them) | `thinking` / `redacted_thinking` blocks first, signatures kept |
//! | `tool` messages (consecutive ones merged) | one user message of `tool_result` blocks |
//! | `image_url` data URL / http URL | `image` with a `base64` / `url` source |
//! | `thinking` (Anthropic's own field, passed through) | same |
//!
//! Consecutive messages of the same role are merged (Anthropic alternates user / assistant).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;

/// Output cap sent when the client set none: Anthropic requires `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

/// Builds the Messages body for `upstream_model`.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for messages Anthropic cannot express (unknown roles, bad tool calls).
pub fn to_anthropic(
    mut openai: Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) -> Result<Bytes, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.into()));
    let max_tokens = openai
        .get("max_completion_tokens")
        .or_else(|| openai.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), Value::from(max_tokens));

    let messages = match openai.remove("messages") {
        Some(Value::Array(m)) => m,
        _ => {
            return Err(invalid(
                "`messages` must be a non-empty array".into(),
                "messages",
            ))
        }
    };
    let (system, turns) = convert_messages(messages)?;
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(turns));

    match openai.remove("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a));
        }
        _ => {}
    }
    if let Some(t) = openai.get("temperature").and_then(Value::as_f64) {
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = openai.get("top_p").filter(|p| p.is_number()) {
        out.insert("top_p".into(), p.clone());
    }
    if let Some(user) = openai.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(thinking) = openai.remove("thinking").filter(Value::is_object) {
        out.insert("thinking".into(), thinking);
    }
    let tools = convert_tools(openai.remove("tools"))?;
    let has_tools = tools.is_some();
    if let Some(tools) = tools {
        out.insert("tools".into(), tools);
    }
    if has_tools {
        let parallel = openai.get("parallel_tool_calls").and_then(Value::as_bool);
        if let Some(choice) = convert_tool_choice(openai.get("tool_choice"), parallel)? {
            out.insert("tool_choice".into(), choice);
        }
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

/// `(system, messages)`.
fn convert_messages(messages: Vec<Value>) -> Result<(Option<Value>, Vec<Value>), GatewayError> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let Value::Object(mut m) = message else {
            return Err(invalid(
                format!("messages[{i}] is not an object"),
                "messages",
            ));
        };
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (role, blocks) = match role.as_str() {
            "system" | "developer" => {
                system.extend(text_blocks(m.remove("content")));
                continue;
            }
            "user" => ("user", user_blocks(m.remove("content"))),
            "assistant" => ("assistant", assistant_blocks(&mut m, i)?),
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            format!("messages[{i}]: a tool message needs `tool_call_id`"),
                            "messages",
                        )
                    })?
                    .to_string();
                let content = match m.remove("content") {
                    Some(Value::String(s)) => Value::String(s),
                    other => Value::Array(text_blocks(other)),
                };
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                )
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}]: role {other:?} is not supported by this deployment"),
                    "messages",
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if last == role => {
                // Tool results first: Anthropic wants them at the start of the user turn.
                if blocks.first().and_then(|b| b.get("type")) == Some(&json!("tool_result")) {
                    let at = existing
                        .iter()
                        .take_while(|b| b.get("type") == Some(&json!("tool_result")))
                        .count();
                    existing.splice(at..at, blocks);
                } else {
                    existing.extend(blocks);
                }
            }
            _ => turns.push((role.to_string(), blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, blocks)| json!({"role": role, "content": simplify(blocks)}))
        .collect();
    let system = (!system.is_empty()).then(|| simplify(system));
    Ok((system, turns))
}

/// Plain text blocks (no `cache_control` or other extras) become one string, as clients usually write it.
fn simplify(blocks: Vec<Value>) -> Value {
    let plain = blocks.iter().all(|b| {
        b.get("type") == Some(&json!("text")) && b.as_object().is_some_and(|o| o.len() == 2)
    });
    if plain {
        let text: Vec<&str> = blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        return Value::String(text.join("\n\n"));
    }
    Value::Array(blocks)
}

/// Text of a string or of text parts, as text blocks (empty text dropped: Anthropic refuses it).
fn text_blocks(content: Option<Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(parts)) => parts
            .into_iter()
            .filter_map(|p| match p {
                Value::Object(mut o) if o.get("type") == Some(&json!("text")) => {
                    let text = o.remove("text")?;
                    if text.as_str().is_some_and(str::is_empty) {
                        return None;
                    }
                    let mut block = json!({"type": "text", "text": text});
                    if let Some(cc) = o.remove("cache_control") {
                        block["cache_control"] = cc;
                    }
                    Some(block)
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn user_blocks(content: Option<Value>) -> Vec<Value> {
    let Some(Value::Array(parts)) = content else {
        return text_blocks(content);
    };
    let mut out = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => out.extend(text_blocks(Some(Value::Array(vec![part])))),
            Some("image_url") => {
                let url = crate::provider::translate::image_url(&part);
                if let Some(block) = image_block(url) {
                    out.push(block);
                }
            }
            // Blocks already in Anthropic's shape (document, image, …) pass through.
            Some(_) => out.push(part),
            None => {}
        }
    }
    out
}

/// `data:image/png;base64,…` → a base64 source; an http(s) URL → a url source.
fn image_block(url: &str) -> Option<Value> {
    if url.starts_with("data:") {
        let (media_type, data) = crate::provider::translate::data_url(url)?;
        return Some(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    (url.starts_with("http://") || url.starts_with("https://"))
        .then(|| json!({"type": "image", "source": {"type": "url", "url": url}}))
}

fn assistant_blocks(m: &mut Map<String, Value>, i: usize) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    // Thinking first, with its signature, as Anthropic returned it: required when a tool turn continues.
    if let Some(Value::Array(thinking)) = m.remove("thinking_blocks") {
        out.extend(thinking.into_iter().filter(|b| {
            matches!(
                b.get("type").and_then(Value::as_str),
                Some("thinking" | "redacted_thinking")
            )
        }));
    }
    out.extend(text_blocks(m.remove("content")));
    if let Some(Value::Array(calls)) = m.remove("tool_calls") {
        for (k, call) in calls.into_iter().enumerate() {
            let (id, name, input) = crate::provider::translate::tool_call(&call, i, k)?;
            out.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(out)
}

fn convert_tools(tools: Option<Value>) -> Result<Option<Value>, GatewayError> {
    let Some(Value::Array(tools)) = tools else {
        return Ok(None);
    };
    if tools.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let Some(function) = tool
            .get("function")
            .filter(|_| tool.get("type") == Some(&json!("function")))
        else {
            // Anthropic's own tool shapes (server tools, `input_schema` tools) pass through.
            if tool.get("name").is_some() {
                out.push(tool);
                continue;
            }
            return Err(invalid(
                format!("tools[{i}] is not a function tool"),
                "tools",
            ));
        };
        let Some(name) = function.get("name").and_then(Value::as_str) else {
            return Err(invalid(
                format!("tools[{i}].function needs a name"),
                "tools",
            ));
        };
        let mut t = json!({"name": name, "input_schema": function.get("parameters").cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
        if let Some(d) = function.get("description") {
            t["description"] = d.clone();
        }
        if let Some(cc) = tool.get("cache_control") {
            t["cache_control"] = cc.clone();
        }
        out.push(t);
    }
    Ok(Some(Value::Array(out)))
}

fn convert_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, GatewayError> {
    let mut out = match choice {
        None | Some(Value::Null) => json!({"type": "auto"}),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                return Err(invalid(
                    format!("unknown tool_choice {other:?}"),
                    "tool_choice",
                ))
            }
        },
        Some(Value::Object(o)) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => json!({"type": "tool", "name": name}),
            None => {
                return Err(invalid(
                    "tool_choice must name a function".into(),
                    "tool_choice",
                ))
            }
        },
        Some(_) => {
            return Err(invalid(
                "tool_choice must be a string or an object".into(),
                "tool_choice",
            ))
        }
    };
    if parallel == Some(false) && out["type"] != "none" {
        out["disable_parallel_tool_use"] = Value::Bool(true);
    } else if choice.is_none() {
        // Nothing to say: leave Anthropic's default.
        return Ok(None);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(body: Value) -> Value {
        let bytes = to_anthropic(body.as_object().unwrap().clone(), "claude-x", false).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn system_stop_temperature_and_default_max_tokens() {
        let out = convert(json!({"model": "public", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No lists."}]},
            {"role": "user", "content": "Hi"}],
            "stop": "END", "temperature": 1.7, "top_p": 0.9, "user": "u1", "n": 1, "seed": 3}));
        assert_eq!(out["model"], "claude-x");
        assert_eq!(out["system"], "Be brief.\n\nNo lists.");
        assert_eq!(out["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["temperature"], 1.0);
        assert_eq!(out["top_p"], 0.9);
        assert_eq!(out["metadata"], json!({"user_id": "u1"}));
        assert!(out.get("seed").is_none() && out.get("n").is_none() && out.get("stream").is_none());
        let capped = convert(
            json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 64, "max_tokens": 9}),
        );
        assert_eq!(capped["max_tokens"], 64);
    }

    #[test]
    fn tool_calls_and_results_round_trip_with_parallel_results_merged() {
        let out = convert(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "18C"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Thanks"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": false}));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(
            m[1]["content"][0],
            json!({"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}})
        );
        assert_eq!(m[1]["content"][1]["input"], json!({"city": "Rome"}));
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "t1", "content": "18C"})
        );
        assert_eq!(m[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(
            m[2]["content"][1]["content"],
            json!([{"type": "text", "text": "21C"}])
        );
        assert_eq!(
            m[2]["content"][2],
            json!({"type": "text", "text": "Thanks"})
        );
        assert_eq!(out["tools"][0]["name"], "get_weather");
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
        for (openai, anthropic) in [("auto", "auto"), ("required", "any"), ("none", "none")] {
            let out = convert(
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": openai,
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
            );
            assert_eq!(out["tool_choice"]["type"], anthropic);
        }
    }

    #[test]
    fn images_thinking_and_cache_control() {
        let out = convert(json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
            {"role": "assistant", "content": "Let me look.", "reasoning_content": "hmm",
                "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig=="}]},
            {"role": "user", "content": "Go on"}]}));
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}])
        );
        let user = &out["messages"][0]["content"];
        assert_eq!(
            user[1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0K"})
        );
        assert_eq!(
            user[2]["source"],
            json!({"type": "url", "url": "https://example.com/cat.jpg"})
        );
        let assistant = &out["messages"][1]["content"];
        assert_eq!(
            assistant[0],
            json!({"type": "thinking", "thinking": "hmm", "signature": "sig=="})
        );
        assert_eq!(
            assistant[1],
            json!({"type": "text", "text": "Let me look."})
        );
        assert!(
            assistant.get(2).is_none(),
            "reasoning_content alone is not sent back"
        );
    }

    #[test]
    fn refuses_what_anthropic_cannot_express() {
        let bad =
            |body: Value| to_anthropic(body.as_object().unwrap().clone(), "m", false).unwrap_err();
        assert_eq!(bad(json!({"messages": "x"})).status(), 400);
        assert_eq!(
            bad(json!({"messages": [{"role": "narrator", "content": "x"}]})).status(),
            400
        );
        assert_eq!(
            bad(json!({"messages": [{"role": "tool", "content": "x"}]})).status(),
            400
        );
        assert_eq!(
            bad(json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "t", "function": {"name": "f", "arguments": "[1]"}}]}]}))
            .status(),
            400
        );
    }
}
