//! OpenAI chat-completions request → Bedrock Converse request.
//!
//! | OpenAI | Converse |
//! |---|---|
//! | `system` / `developer` messages (all, in order) | `system: [{text}]` |
//! | user text / text parts | `{text}` blocks (empty text dropped: Bedrock refuses blank blocks) |
//! | `image_url` data URL (`data:image/png;base64,…`) | `{image: {format: png|jpeg|gif|webp, source: {bytes: <base64>}}}` (an http URL is refused: Converse takes bytes or S3 only) |
//! | assistant `content`, `tool_calls` (arguments: JSON string) | `{text}`, `{toolUse: {toolUseId, name, input: object}}` |
//! | `tool` messages (consecutive ones, and the user text after them, merged) | one user turn of `{toolResult: {toolUseId, content: [{text}|{json}], status: "success"}}` |
//! | `max_completion_tokens` / `max_tokens`, `temperature`, `top_p`, `stop` | `inferenceConfig.{maxTokens, temperature, topP, stopSequences}` |
//! | `tools[].function{name,description,parameters}` | `toolConfig.tools[].toolSpec{name, description, inputSchema.json}` |
//! | `tool_choice` auto / required / {function} / none | `toolChoice` `{auto:{}}` / `{any:{}}` / `{tool:{name}}` / left out |
//!
//! Consecutive messages of one role are merged (Converse alternates user / assistant). Bedrock refuses
//! `toolUse` / `toolResult` blocks without a `toolConfig`, so when the history has them and the client sent
//! no tools (or `tool_choice: "none"`), a placeholder spec per tool name of the history is declared. The
//! model id and streaming are in the URL, not the body. Fields Converse has no place for (`n`, `seed`,
//! `response_format`, `logprobs`, …) are not sent.

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

/// Builds the Converse body.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for what Converse cannot express (unknown roles, remote images,
/// malformed tool calls).
pub fn to_converse(mut openai: Map<String, Value>) -> Result<Bytes, GatewayError> {
    let mut out = Map::new();
    let messages = match openai.remove("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => {
            return Err(invalid(
                "`messages` must be a non-empty array".into(),
                "messages",
            ))
        }
    };
    let (system, turns, history_tools) = convert_messages(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));

    let mut inference = Map::new();
    if let Some(max) = openai
        .get("max_completion_tokens")
        .or_else(|| openai.get("max_tokens"))
        .and_then(Value::as_u64)
    {
        inference.insert("maxTokens".into(), Value::from(max));
    }
    if let Some(t) = openai.get("temperature").filter(|t| t.is_number()) {
        inference.insert("temperature".into(), t.clone());
    }
    if let Some(p) = openai.get("top_p").filter(|p| p.is_number()) {
        inference.insert("topP".into(), p.clone());
    }
    match openai.remove("stop") {
        Some(Value::String(s)) => {
            inference.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            inference.insert("stopSequences".into(), Value::Array(a));
        }
        _ => {}
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(config) = tool_config(
        openai.remove("tools"),
        openai.get("tool_choice"),
        &history_tools,
    )? {
        out.insert("toolConfig".into(), config);
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

/// `(system blocks, turns, tool names used in the history)`.
type Converted = (Vec<Value>, Vec<Value>, Vec<String>);

fn convert_messages(messages: Vec<Value>) -> Result<Converted, GatewayError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut history_tools: Vec<String> = Vec::new();
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
            "user" => ("user", user_blocks(m.remove("content"), i)?),
            "assistant" => (
                "assistant",
                assistant_blocks(&mut m, i, &mut history_tools)?,
            ),
            "tool" => {
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
                let mut content = text_blocks(m.remove("content"));
                if content.is_empty() {
                    // Bedrock refuses an empty result.
                    content.push(json!({"text": "(empty)"}));
                }
                (
                    "user",
                    vec![
                        json!({"toolResult": {"toolUseId": id, "content": content, "status": "success"}}),
                    ],
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
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, turns, history_tools))
}

/// Text of a string or of text parts, as `{text}` blocks (empty text dropped).
fn text_blocks(content: Option<Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({ "text": s })],
        Some(Value::Array(parts)) => parts
            .into_iter()
            .filter_map(|p| {
                let text = p.get("text").and_then(Value::as_str)?;
                (!text.is_empty() && p.get("type").and_then(Value::as_str) == Some("text"))
                    .then(|| json!({ "text": text }))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn user_blocks(content: Option<Value>, i: usize) -> Result<Vec<Value>, GatewayError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_blocks(content));
    };
    let mut out = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => out.extend(text_blocks(Some(Value::Array(vec![part])))),
            Some("image_url") => {
                let url = crate::provider::translate::image_url(&part);
                out.push(image_block(url).ok_or_else(|| {
                    invalid(
                        format!("messages[{i}]: Bedrock takes images as base64 data URLs (data:image/png;base64,…) of png, jpeg, gif or webp"),
                        "messages",
                    )
                })?);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `data:image/png;base64,…` → a Converse image block (the JSON wire carries the bytes as base64).
fn image_block(url: &str) -> Option<Value> {
    let (media_type, data) = crate::provider::translate::data_url(url)?;
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    // Re-encoded canonically: a client's base64 with whitespace or without padding is still accepted.
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()))
        .ok()?;
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    Some(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn assistant_blocks(
    m: &mut Map<String, Value>,
    i: usize,
    history_tools: &mut Vec<String>,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = text_blocks(m.remove("content"));
    if let Some(Value::Array(calls)) = m.remove("tool_calls") {
        for (k, call) in calls.into_iter().enumerate() {
            let (id, name, input) = crate::provider::translate::tool_call(&call, i, k)?;
            if !history_tools.contains(&name) {
                history_tools.push(name.clone());
            }
            out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
        }
    }
    Ok(out)
}

/// `toolConfig`, or `None` when neither the request nor the history needs one.
fn tool_config(
    tools: Option<Value>,
    choice: Option<&Value>,
    history_tools: &[String],
) -> Result<Option<Value>, GatewayError> {
    let none = choice.and_then(Value::as_str) == Some("none");
    let mut specs = Vec::new();
    if let Some(Value::Array(tools)) = tools {
        for (i, tool) in tools.into_iter().enumerate() {
            let function = tool
                .get("function")
                .filter(|_| tool.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| invalid(format!("tools[{i}] is not a function tool"), "tools"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("tools[{i}].function needs a name"), "tools"))?;
            let mut spec = json!({"name": name, "inputSchema": {"json": function
                .get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))}});
            if let Some(d) = function.get("description").and_then(Value::as_str) {
                spec["description"] = json!(d);
            }
            specs.push(json!({ "toolSpec": spec }));
        }
    }
    let declared = |name: &str| specs.iter().any(|s| s["toolSpec"]["name"] == name);
    let missing: Vec<&String> = history_tools.iter().filter(|t| !declared(t)).collect();
    if specs.is_empty() && missing.is_empty() {
        return Ok(None);
    }
    if none && missing.is_empty() {
        // "none": the model may not call tools; with no tool blocks in the history none are declared.
        return Ok(None);
    }
    for name in missing {
        specs.push(json!({"toolSpec": {"name": name, "description": "a tool used earlier in this conversation",
            "inputSchema": {"json": {"type": "object", "properties": {}}}}}));
    }
    let mut config = json!({ "tools": specs });
    let tool_choice = match choice {
        _ if none => None,
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| json!({"tool": {"name": name}})),
        _ => None,
    };
    if let Some(c) = tool_choice {
        config["toolChoice"] = c;
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(v: Value) -> Value {
        let Value::Object(m) = v else { panic!() };
        serde_json::from_slice(&to_converse(m).unwrap()).unwrap()
    }

    #[test]
    fn system_turns_inference_config() {
        let out = convert(json!({"model": "x", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emojis."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}, {"type": "text", "text": ""}]}],
            "max_completion_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": "END", "n": 1, "seed": 3}));
        assert_eq!(
            out,
            json!({"system": [{"text": "Be brief."}, {"text": "No emojis."}],
            "messages": [{"role": "user", "content": [{"text": "Hi"}, {"text": "there"}]}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}})
        );
    }

    #[test]
    fn tools_calls_and_results() {
        let out = convert(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required"}));
        let m = &out["messages"];
        assert_eq!(m.as_array().unwrap().len(), 3);
        assert_eq!(
            m[1]["content"][1],
            json!({"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}}})
        );
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"],
            json!([
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}], "status": "success"}},
                {"toolResult": {"toolUseId": "call_2", "content": [{"text": "21C"}], "status": "success"}}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "d",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                "toolChoice": {"any": {}}})
        );
    }

    #[test]
    fn tool_choice_forms_and_history_without_tools() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let with = |choice: Value| {
            convert(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            )
        };
        assert_eq!(
            with(json!("auto"))["toolConfig"]["toolChoice"],
            json!({"auto": {}})
        );
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]
                ["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert!(with(json!("none")).get("toolConfig").is_none());
        // History with tool blocks and no tools: a placeholder spec, else Bedrock answers 400.
        let out = convert(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "t1", "content": ""},
            {"role": "user", "content": "thanks"}], "tool_choice": "none"}));
        assert_eq!(out["toolConfig"]["tools"][0]["toolSpec"]["name"], "lookup");
        assert!(out["toolConfig"].get("toolChoice").is_none());
        assert_eq!(
            out["messages"][1]["content"][0]["toolUse"]["input"],
            json!({})
        );
        assert_eq!(
            out["messages"][2]["content"],
            json!([{"toolResult": {"toolUseId": "t1", "content": [{"text": "(empty)"}], "status": "success"}},
                {"text": "thanks"}])
        );
    }

    #[test]
    fn images_as_bytes_and_refusals() {
        let out = convert(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is it?"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A=="}}]}]}));
        assert_eq!(
            out["messages"][0]["content"][1],
            json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4A=="}}})
        );
        let to = |v: Value| {
            let Value::Object(m) = v else { panic!() };
            to_converse(m)
        };
        for bad in [
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}]}),
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            json!({"messages": []}),
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
        ] {
            assert!(
                matches!(to(bad.clone()), Err(GatewayError::InvalidRequest { .. })),
                "{bad}"
            );
        }
    }
}
