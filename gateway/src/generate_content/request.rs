//! A Gemini `GenerateContentRequest` → the OpenAI chat-completions body the orchestrator routes and meters.
//!
//! Field names are read in camelCase or snake_case (Google's JSON mapping accepts both).
//!
//! | Gemini | OpenAI |
//! |---|---|
//! | URL model, `:streamGenerateContent` | `model`, `stream` + `stream_options.include_usage` |
//! | `systemInstruction.parts[].text` | a first `system` message |
//! | `user` turn: `text` / `inlineData` / `fileData` / `functionResponse` | `user` text / `image_url` (data URL / URI) parts; `tool` messages (before the rest of that turn) |
//! | `model` turn: `text` / `functionCall` (`thought` parts dropped) | `assistant` content / `tool_calls` (ids: the call's own, else `call_{turn}_{n}`) |
//! | `functionResponse{name,response,id?}` | `tool` message for the call with that id, else the first unanswered call of that name in the turn before |
//! | `tools[].functionDeclarations[]{name,description,parameters|parametersJsonSchema}` | `tools[].function` |
//! | `toolConfig.functionCallingConfig` AUTO / ANY (+ one allowed name) / NONE | `tool_choice` auto / required (or that function) / none |
//! | `generationConfig` `maxOutputTokens`, `temperature`, `topP`, `stopSequences`, `seed`, `presencePenalty`, `frequencyPenalty`, `responseMimeType` (+ `responseSchema` / `responseJsonSchema`) | `max_completion_tokens`, same, `top_p`, `stop`, same, same, same, `response_format` |
//!
//! Google-only tools (search, code execution), safety settings and thought signatures have no
//! chat-completions form and are left out here; a Gemini deployment gets the client's own body instead.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

/// `camelName` or its snake_case spelling.
pub(super) fn field<'a>(o: &'a Value, camel: &str) -> Option<&'a Value> {
    o.get(camel).or_else(|| {
        let mut snake = String::with_capacity(camel.len() + 4);
        for c in camel.chars() {
            if c.is_ascii_uppercase() {
                snake.push('_');
                snake.push(c.to_ascii_lowercase());
            } else {
                snake.push(c);
            }
        }
        o.get(snake.as_str())
    })
}

/// Translates a `generateContent` body for `model`.
///
/// # Errors
/// [`GatewayError::MalformedJson`] / [`GatewayError::InvalidRequest`] as Gemini would refuse the body.
pub fn to_openai(body: &[u8], model: &str, stream: bool) -> Result<Bytes, GatewayError> {
    let req: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.into()));
    let mut messages = Vec::new();
    if let Some(system) = field(&req, "systemInstruction") {
        let text = parts_text(system.get("parts"));
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(Value::Array(contents)) = req.get("contents") else {
        return Err(invalid(
            "* GenerateContentRequest.contents: contents is not specified",
            "contents",
        ));
    };
    // Calls of the previous model turn: (id, name, answered).
    let mut calls: Vec<(String, String, bool)> = Vec::new();
    for (turn, content) in contents.iter().enumerate() {
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        match content.get("role").and_then(Value::as_str).unwrap_or("user") {
            "model" => {
                calls.clear();
                messages.push(model_turn(parts, turn, &mut calls));
            }
            "user" | "function" | "tool" => user_turn(parts, &mut calls, &mut messages)?,
            other => {
                return Err(invalid(
                    format!("* GenerateContentRequest.contents[{turn}].role: Please use a valid role: user, model (not {other:?})"),
                    "contents",
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = convert_tools(req.get("tools")) {
        out.insert("tools".into(), tools);
    }
    if let Some(config) = field(&req, "toolConfig").and_then(|c| field(c, "functionCallingConfig"))
    {
        let allowed = field(config, "allowedFunctionNames").and_then(Value::as_array);
        let choice = match config.get("mode").and_then(Value::as_str) {
            Some("NONE") => Some(json!("none")),
            Some("ANY") => match allowed.map(Vec::as_slice) {
                Some([only]) => Some(json!({"type": "function", "function": {"name": only}})),
                _ => Some(json!("required")),
            },
            Some("AUTO" | "VALIDATED") => Some(json!("auto")),
            _ => None,
        };
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(config) = field(&req, "generationConfig") {
        generation_config(config, &mut out);
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        // Gemini streams always carry usage: ask for it, so the relay's usage chunk can become it.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

fn generation_config(config: &Value, out: &mut Map<String, Value>) {
    for (from, to) in [
        ("maxOutputTokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("seed", "seed"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
    ] {
        if let Some(v) = field(config, from).filter(|v| v.is_number()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = field(config, "stopSequences").filter(|s| s.is_array()) {
        out.insert("stop".into(), stop.clone());
    }
    if field(config, "responseMimeType").and_then(Value::as_str) == Some("application/json") {
        let format = match field(config, "responseJsonSchema")
            .or_else(|| field(config, "responseSchema"))
        {
            Some(schema) => {
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
            }
            None => json!({"type": "json_object"}),
        };
        out.insert("response_format".into(), format);
    }
}

/// The text parts of a content, joined.
fn parts_text(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought") != Some(&Value::Bool(true)))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

fn model_turn(parts: &[Value], turn: usize, calls: &mut Vec<(String, String, bool)>) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in parts {
        if let Some(call) = field(part, "functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map_or_else(
                    || format!("call_{turn}_{}", tool_calls.len()),
                    str::to_string,
                );
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            tool_calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}));
            calls.push((id, name.to_string(), false));
        } else if part.get("thought") != Some(&Value::Bool(true)) {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() {
        Value::Null } else { Value::String(text) }});
    if !tool_calls.is_empty() {
        m["tool_calls"] = Value::Array(tool_calls);
    }
    m
}

fn user_turn(
    parts: &[Value],
    calls: &mut [(String, String, bool)],
    messages: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let mut content = Vec::new();
    for part in parts {
        if let Some(result) = field(part, "functionResponse") {
            let name = result
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let by_id = result
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| calls.iter().position(|(c, _, _)| c == id));
            let index = by_id
                .or_else(|| calls.iter().position(|(_, n, done)| n == name && !done))
                .ok_or_else(|| {
                    invalid(
                        format!("a functionResponse for {name:?} answers no functionCall of the model turn before it"),
                        "contents",
                    )
                })?;
            calls[index].2 = true;
            let response = result.get("response").cloned().unwrap_or(Value::Null);
            let text = match &response {
                Value::Object(o) if o.len() == 1 => match o.values().next() {
                    Some(Value::String(s))
                        if o.contains_key("result") || o.contains_key("output") =>
                    {
                        s.clone()
                    }
                    _ => response.to_string(),
                },
                _ => response.to_string(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": calls[index].0, "content": text}));
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            content.push(json!({"type": "text", "text": t}));
        } else if let Some(data) = field(part, "inlineData") {
            let mime = field(data, "mimeType")
                .and_then(Value::as_str)
                .unwrap_or("image/png");
            let b64 = data.get("data").and_then(Value::as_str).unwrap_or_default();
            content.push(json!({"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{b64}")}}));
        } else if let Some(file) = field(part, "fileData") {
            if let Some(uri) = field(file, "fileUri").and_then(Value::as_str) {
                content.push(json!({"type": "image_url", "image_url": {"url": uri}}));
            }
        }
    }
    match content.as_slice() {
        [] => {}
        [only] if only.get("type") == Some(&json!("text")) => {
            messages.push(json!({"role": "user", "content": only["text"]}));
        }
        _ => messages.push(json!({"role": "user", "content": content})),
    }
    Ok(())
}

fn convert_tools(tools: Option<&Value>) -> Option<Value> {
    let out: Vec<Value> = tools?
        .as_array()?
        .iter()
        .filter_map(|t| field(t, "functionDeclarations")?.as_array())
        .flatten()
        .filter_map(|d| {
            let name = d.get("name")?.as_str()?;
            let parameters = field(d, "parametersJsonSchema")
                .or_else(|| d.get("parameters"))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut f = json!({"name": name, "parameters": lowercase_types(parameters)});
            if let Some(desc) = d.get("description") {
                f["description"] = desc.clone();
            }
            Some(json!({"type": "function", "function": f}))
        })
        .collect();
    (!out.is_empty()).then_some(Value::Array(out))
}

/// Gemini's OpenAPI-subset schemas may spell types in capitals (`OBJECT`, `STRING`): JSON Schema's are
/// lowercase.
fn lowercase_types(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(t)) = o.get_mut("type") {
                    *t = t.to_ascii_lowercase();
                }
                o.iter_mut()
                    .filter(|(k, _)| k.as_str() != "type")
                    .for_each(|(_, v)| walk(v));
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(v: Value, stream: bool) -> Value {
        serde_json::from_slice(&to_openai(v.to_string().as_bytes(), "gem", stream).unwrap())
            .unwrap()
    }

    #[test]
    fn contents_tools_config_and_stream() {
        let out = convert(
            json!({"system_instruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"text": "thinking", "thought": true},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "d",
                "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}, {"googleSearch": {}}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.2, "topP": 0.8, "stopSequences": ["END"],
                "responseMimeType": "application/json"}}),
            true,
        );
        assert_eq!(out["model"], "gem");
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/jpeg;base64,AAAA"
        );
        assert_eq!(m[2]["content"], Value::Null);
        assert_eq!(m[2]["tool_calls"][0]["id"], "call_1_0");
        assert_eq!(m[2]["tool_calls"][1]["id"], "call_1_1");
        assert_eq!(
            m[2]["tool_calls"][1]["function"]["arguments"],
            "{\"city\":\"Rome\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "call_1_0", "content": "18C"})
        );
        assert_eq!(
            m[4],
            json!({"role": "tool", "tool_call_id": "call_1_1", "content": "{\"temp\":21}"})
        );
        assert_eq!(m.len(), 5);
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(out["max_completion_tokens"], 64);
        assert_eq!(out["top_p"], 0.8);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn refuses_like_gemini() {
        let err = |v: Value| to_openai(v.to_string().as_bytes(), "m", false).unwrap_err();
        assert_eq!(err(json!({})).status(), 400);
        assert_eq!(
            err(json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]})).status(),
            400
        );
        assert_eq!(
            err(json!({"contents": [{"role": "user", "parts": [
                {"functionResponse": {"name": "f", "response": {}}}]}]}))
            .status(),
            400
        );
        assert_eq!(
            to_openai(b"{", "m", false).unwrap_err().code(),
            "invalid_json"
        );
    }
}
