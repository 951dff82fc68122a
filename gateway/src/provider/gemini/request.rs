//! OpenAI chat-completions request → Gemini `GenerateContentRequest` (camelCase; the model and streaming are
//! in the URL, not the body).
//!
//! | OpenAI | Gemini |
//! |---|---|
//! | `system` / `developer` messages (all, in order) | `systemInstruction.parts[].text` |
//! | `user` text / `image_url` data URL / http(s) URL | `user` turn: `text` / `inlineData{mimeType,data}` / `fileData{mimeType,fileUri}` |
//! | `assistant` content / `tool_calls` (arguments: JSON string) | `model` turn: `text` / `functionCall{name,args}` (+ `thoughtSignature`, carried in the tool-call id) |
//! | `tool` messages (consecutive ones merged) | one `user` turn of `functionResponse{name,response}` (name looked up by `tool_call_id`; a JSON-object result as is, anything else as `{"result": …}`) |
//! | `tools[].function{name,description,parameters}` | `tools[{functionDeclarations[…]}]` (`$schema`, `additionalProperties` dropped; an empty object schema left out) |
//! | `tool_choice` auto / required / none / {function} | `toolConfig.functionCallingConfig` AUTO / ANY / NONE / ANY + `allowedFunctionNames` |
//! | `max_completion_tokens` / `max_tokens`, `temperature`, `top_p`, `top_k`, `stop`, `seed`, `presence_penalty`, `frequency_penalty` | `generationConfig.maxOutputTokens`, `temperature`, `topP`, `topK`, `stopSequences`, `seed`, `presencePenalty`, `frequencyPenalty` |
//! | `response_format` json_object / json_schema | `generationConfig.responseMimeType` (+ `responseSchema`) |
//! | `reasoning_effort` none / minimal / low / medium / high | `generationConfig.thinkingConfig{thinkingBudget: 0 / 512 / 1024 / 8192 / 24576, includeThoughts}` |
//!
//! Consecutive turns of one role are merged (Gemini alternates `user` / `model`). Fields with no Gemini
//! equivalent (`user`, `n`, `logprobs`, `parallel_tool_calls`, …) are left out.

use serde_json::{json, Map, Value};

use super::SIGNATURE_MARK;
use crate::error::GatewayError;

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

/// Builds the `generateContent` body.
///
/// # Errors
/// [`GatewayError::InvalidRequest`] for messages Gemini cannot express (unknown roles, a tool result that
/// answers no tool call, arguments that are not a JSON object).
pub fn to_gemini(mut openai: Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
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
    let (system, contents) = convert_messages(messages)?;
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    out.insert("contents".into(), Value::Array(contents));
    if let Some(tools) = convert_tools(openai.get("tools"))? {
        out.insert("tools".into(), tools);
        if let Some(config) = convert_tool_choice(openai.get("tool_choice"))? {
            out.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": config}),
            );
        }
    }
    let config = generation_config(&openai)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(out)
}

fn generation_config(openai: &Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
    let mut config = Map::new();
    if let Some(max) = openai
        .get("max_completion_tokens")
        .or_else(|| openai.get("max_tokens"))
        .and_then(Value::as_u64)
    {
        config.insert("maxOutputTokens".into(), Value::from(max));
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = openai.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), v.clone());
        }
    }
    match openai.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            config.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(format) = openai.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format.pointer("/json_schema/schema") {
                    config.insert("responseSchema".into(), clean_schema(schema.clone()));
                }
            }
            _ => {}
        }
    }
    if let Some(effort) = openai.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "none" => 0,
            "minimal" => 512,
            "low" => 1024,
            "medium" => 8192,
            "high" => 24576,
            other => {
                return Err(invalid(
                    format!("unknown reasoning_effort {other:?}"),
                    "reasoning_effort",
                ))
            }
        };
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": budget, "includeThoughts": budget > 0}),
        );
    }
    Ok(config)
}

/// `(systemInstruction parts, contents)`.
fn convert_messages(messages: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
    // Tool results name their call by id; Gemini wants the function's name.
    let mut names: Vec<(String, String)> = Vec::new();
    for m in &messages {
        for call in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(id), Some(name)) = (
                call.get("id").and_then(Value::as_str),
                call.pointer("/function/name").and_then(Value::as_str),
            ) {
                names.push((id.to_string(), name.to_string()));
            }
        }
    }
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let Value::Object(mut m) = message else {
            return Err(invalid(
                format!("messages[{i}] is not an object"),
                "messages",
            ));
        };
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let (role, parts) = match role {
            "system" | "developer" => {
                system.extend(text_parts(m.remove("content")));
                continue;
            }
            "user" => ("user", user_parts(m.remove("content"))),
            "assistant" => ("model", model_parts(&mut m, i)?),
            "tool" | "function" => {
                let id = m.get("tool_call_id").and_then(Value::as_str);
                let name = id
                    .and_then(|id| names.iter().find(|(k, _)| k == id))
                    .map(|(_, n)| n.clone())
                    .or_else(|| m.get("name").and_then(Value::as_str).map(str::to_string))
                    .ok_or_else(|| {
                        invalid(
                            format!("messages[{i}]: a tool message must answer a tool call of an earlier assistant message (`tool_call_id`)"),
                            "messages",
                        )
                    })?;
                let text = content_text(m.get("content"));
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"result": text}),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}]: role {other:?} is not supported by this deployment"),
                    "messages",
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    Ok((system, contents))
}

/// The text of a string or of text parts, joined.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Text parts (empty text dropped: Gemini refuses it).
fn text_parts(content: Option<Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"text": s})],
        Some(Value::Array(parts)) => parts
            .into_iter()
            .filter_map(|p| {
                let text = p.get("text")?.as_str()?;
                (!text.is_empty()).then(|| json!({"text": text}))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn user_parts(content: Option<Value>) -> Vec<Value> {
    let Some(Value::Array(parts)) = content else {
        return text_parts(content);
    };
    let mut out = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => out.extend(text_parts(Some(Value::Array(vec![part])))),
            Some("image_url") => {
                let url = crate::provider::translate::image_url(&part);
                if let Some(p) = media_part(url) {
                    out.push(p);
                }
            }
            _ => {}
        }
    }
    out
}

/// `data:image/png;base64,…` → `inlineData`; an http(s) or `gs://` URL → `fileData` (type from its extension).
fn media_part(url: &str) -> Option<Value> {
    if url.starts_with("data:") {
        let (mime, data) = crate::provider::translate::data_url(url)?;
        return Some(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with("gs://")) {
        return None;
    }
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let mime = [
        (".png", "image/png"),
        (".webp", "image/webp"),
        (".gif", "image/gif"),
        (".heic", "image/heic"),
        (".pdf", "application/pdf"),
    ]
    .iter()
    .find(|(ext, _)| path.ends_with(ext))
    .map_or("image/jpeg", |(_, m)| m);
    Some(json!({"fileData": {"mimeType": mime, "fileUri": url}}))
}

fn model_parts(m: &mut Map<String, Value>, i: usize) -> Result<Vec<Value>, GatewayError> {
    let mut out = text_parts(m.remove("content"));
    let Some(Value::Array(calls)) = m.remove("tool_calls") else {
        return Ok(out);
    };
    for (k, call) in calls.into_iter().enumerate() {
        let function = call.get("function");
        let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) else {
            return Err(invalid(
                format!("messages[{i}].tool_calls[{k}] needs a function name"),
                "messages",
            ));
        };
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let args = match serde_json::from_str::<Value>(arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ if arguments.trim().is_empty() => json!({}),
            _ => {
                return Err(invalid(
                    format!(
                        "messages[{i}].tool_calls[{k}].function.arguments is not a JSON object"
                    ),
                    "messages",
                ))
            }
        };
        let mut part = json!({"functionCall": {"name": name, "args": args}});
        // The thought signature Gemini gave this call rides in its id; it must go back on the same part.
        if let Some((_, signature)) = call
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.split_once(SIGNATURE_MARK))
        {
            part["thoughtSignature"] = Value::String(signature.to_string());
        }
        out.push(part);
    }
    Ok(out)
}

/// Drops what Gemini's OpenAPI-subset schema refuses: `$schema`, `additionalProperties` (recursively).
pub fn clean_schema(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("$schema");
                o.remove("additionalProperties");
                o.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

fn convert_tools(tools: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let Some(Value::Array(tools)) = tools else {
        return Ok(None);
    };
    let mut declarations = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let Some(function) = tool.get("function") else {
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
        let mut d = json!({"name": name});
        if let Some(desc) = function.get("description") {
            d["description"] = desc.clone();
        }
        // Gemini refuses an OBJECT schema without properties: a function without parameters says none.
        if let Some(params) = function.get("parameters").filter(|p| {
            p.get("properties")
                .and_then(Value::as_object)
                .is_some_and(|o| !o.is_empty())
                || p.get("type").and_then(Value::as_str) != Some("object")
        }) {
            d["parameters"] = clean_schema(params.clone());
        }
        declarations.push(d);
    }
    if declarations.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!([{"functionDeclarations": declarations}])))
}

fn convert_tool_choice(choice: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    Ok(Some(match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            "none" => json!({"mode": "NONE"}),
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
            Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
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
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(body: Value) -> Value {
        Value::Object(to_gemini(body.as_object().unwrap().clone()).unwrap())
    }

    #[test]
    fn system_roles_config_and_images() {
        let out = convert(json!({"model": "public", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No lists."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?x=1"}}]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Thanks"}],
            "max_completion_tokens": 64, "max_tokens": 9, "temperature": 0.3, "top_p": 0.9, "stop": "END",
            "seed": 7, "user": "u1", "n": 1, "response_format": {"type": "json_object"}, "reasoning_effort": "low"}));
        assert_eq!(
            out["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}, {"text": "No lists."}]})
        );
        let c = out["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["role"], "user");
        assert_eq!(
            c[0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}})
        );
        assert_eq!(
            c[0]["parts"][2],
            json!({"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?x=1"}})
        );
        assert_eq!(
            c[1],
            json!({"role": "model", "parts": [{"text": "A cat."}]})
        );
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 64, "temperature": 0.3, "topP": 0.9, "seed": 7,
                "stopSequences": ["END"], "responseMimeType": "application/json",
                "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
        );
        assert!(out.get("model").is_none() && out.get("user").is_none());
    }

    #[test]
    fn tools_calls_and_results_with_signatures() {
        let out = convert(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("call_a{SIGNATURE_MARK}c2ln"), "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": format!("call_a{SIGNATURE_MARK}c2ln"), "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b", "content": "{\"time\":\"noon\"}"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false, "$schema": "x"}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}));
        let c = out["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[1]["parts"][0],
            json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"})
        );
        assert_eq!(
            c[1]["parts"][1],
            json!({"functionCall": {"name": "get_time", "args": {}}})
        );
        assert_eq!(
            c[2],
            json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
            {"functionResponse": {"name": "get_time", "response": {"time": "noon"}}}]})
        );
        let decl = &out["tools"][0]["functionDeclarations"];
        assert_eq!(
            decl[0],
            json!({"name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}})
        );
        assert_eq!(decl[1], json!({"name": "get_time"}));
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        for (openai, mode) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
            let out = convert(
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": openai,
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
            );
            assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
    }

    #[test]
    fn refuses_what_gemini_cannot_express() {
        let bad = |body: Value| to_gemini(body.as_object().unwrap().clone()).unwrap_err();
        assert_eq!(bad(json!({"messages": []})).status(), 400);
        assert_eq!(
            bad(json!({"messages": [{"role": "narrator", "content": "x"}]})).status(),
            400
        );
        assert_eq!(
            bad(json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}))
                .status(),
            400
        );
        assert_eq!(
            bad(json!({"messages": [{"role": "assistant", "tool_calls": [
                {"id": "t", "function": {"name": "f", "arguments": "[1]"}}]}]}))
            .status(),
            400
        );
        assert_eq!(
            bad(json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}))
                .status(),
            400
        );
    }
}
