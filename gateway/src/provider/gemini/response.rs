//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`, and the mappings the stream shares (finish
//! reasons, usage, tool-call ids).
//!
//! Only the first candidate is read. Parts: `text` → `message.content` (joined); `text` with `thought: true`
//! → `message.reasoning_content`; `functionCall{name,args}` → `message.tool_calls` (args serialised to the
//! `arguments` string, an id made up: Gemini API calls usually have none; a `thoughtSignature` is appended to
//! the id after [`SIGNATURE_MARK`](super::SIGNATURE_MARK) so the client sends it back without knowing).
//! Other parts (`executableCode`, `inlineData`, …) and metadata (safety ratings, citations, grounding) have
//! no chat-completions equivalent and are dropped.

use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};

use super::SIGNATURE_MARK;

/// Gemini `finishReason` → OpenAI `finish_reason` (`tool_calls` when the candidate called a function: Gemini
/// says STOP then).
#[must_use]
pub fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "PROHIBITED_CONTENT"
        | "BLOCKLIST"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "LANGUAGE" => "content_filter",
        _ if called_tools => "tool_calls",
        // STOP, RECITATION, OTHER, MALFORMED_FUNCTION_CALL, unknown values
        _ => "stop",
    }
}

/// Gemini `usageMetadata` → OpenAI usage. `candidatesTokenCount` excludes thoughts and OpenAI's
/// `completion_tokens` includes reasoning, so thoughts are added; `promptTokenCount` already includes the
/// cached content (plus `toolUsePromptTokenCount`, prompt-side too).
#[must_use]
pub fn openai_usage(u: &Map<String, Value>) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount") + n("toolUsePromptTokenCount");
    let thoughts = n("thoughtsTokenCount");
    let completion = n("candidatesTokenCount") + thoughts;
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts}})
}

/// A tool-call id for a function call: Gemini's own when it sent one, else a fresh one; its thought
/// signature appended.
#[must_use]
pub fn tool_call_id(part: &Value) -> String {
    let id = part
        .pointer("/functionCall/id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(
            || format!("call_{}", Alphanumeric.sample_string(&mut rand::rng(), 24)),
            str::to_string,
        );
    match part.get("thoughtSignature").and_then(Value::as_str) {
        Some(signature) if !signature.is_empty() => format!("{id}{SIGNATURE_MARK}{signature}"),
        _ => id,
    }
}

/// The response id: Gemini's `responseId`, else a made-up one.
pub(super) fn response_id(body: &Map<String, Value>) -> Value {
    body.get("responseId")
        .and_then(Value::as_str)
        .map_or_else(
            || {
                format!(
                    "chatcmpl-{}",
                    Alphanumeric.sample_string(&mut rand::rng(), 24)
                )
            },
            |id| id.to_string(),
        )
        .into()
}

/// Translates a non-streamed `generateContent` answer.
///
/// # Errors
/// When the body is not a `GenerateContentResponse`.
pub fn to_openai(body: &[u8]) -> Result<Bytes, String> {
    let response: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        format!("the upstream answered 200 with a body that is not a GenerateContentResponse: {e}")
    })?;
    let candidate = response
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    // No candidate, with prompt feedback (`blockReason`, or only `blockReasonMessage`): the prompt was refused.
    let blocked = candidate.is_none() && response.contains_key("promptFeedback");
    if !response.contains_key("candidates") && !blocked && !response.contains_key("usageMetadata") {
        return Err("the upstream answered 200 with neither candidates nor promptFeedback".into());
    }
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for part in candidate
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(call) = part.get("functionCall") {
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            tool_calls.push(
                json!({"id": tool_call_id(part), "type": "function", "function": {
                "name": call.get("name"), "arguments": args.to_string()}}),
            );
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if part.get("thought") == Some(&Value::Bool(true)) {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
            }
        }
    }
    let finish = match candidate
        .and_then(|c| c.get("finishReason"))
        .and_then(Value::as_str)
    {
        Some(reason) => finish_reason(reason, !tool_calls.is_empty()),
        // A prompt refused before any candidate.
        None if blocked => "content_filter",
        None if !tool_calls.is_empty() => "tool_calls",
        None => "stop",
    };
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() {
        Value::Null } else { Value::String(text) }, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let mut out = json!({"id": response_id(&response), "object": "chat.completion", "created": crate::provider::translate::now(),
        "model": response.get("modelVersion"),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}]});
    if let Some(Value::Object(u)) = response.get("usageMetadata") {
        out["usage"] = openai_usage(u);
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/gemini/mock-responses"
    );

    fn fixture(name: &str) -> Value {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}")).unwrap();
        serde_json::from_slice(&to_openai(&bytes).unwrap()).unwrap()
    }

    #[test]
    fn thinking_function_call_fixture_keeps_reasoning_and_signature() {
        let out =
            fixture("googleai/unary-success-thinking-function-call-thought-summary-signature.json");
        assert_eq!(out["id"], "38CHaLjMG6TujrEPtvTiuQk");
        assert_eq!(out["model"], "gemini-2.5-pro");
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert!(choice["message"]["reasoning_content"]
            .as_str()
            .unwrap()
            .starts_with("**Thinking Through"));
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "now");
        assert_eq!(call["function"]["arguments"], "{}");
        let id = call["id"].as_str().unwrap();
        let (base, signature) = id.split_once(SIGNATURE_MARK).unwrap();
        assert!(base.starts_with("call_"));
        assert!(signature.starts_with("CtQOAVSoXO74"));
        // 501 thought tokens are completion tokens (OpenAI's meaning) and reasoning tokens.
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 38, "completion_tokens": 509, "total_tokens": 547,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 501}})
        );
    }

    #[test]
    fn finish_reasons_blocked_prompts_and_plain_text() {
        let out = fixture("googleai/unary-success-basic-reply-short.json");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert!(!out["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty());
        let out = fixture("googleai/unary-failure-finish-reason-safety.json");
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        let out = fixture("googleai/unary-failure-only-prompt-feedback.json");
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out["choices"][0]["message"]["content"], "");
        for (g, called, o) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", false, "length"),
            ("SAFETY", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("RECITATION", false, "stop"),
            ("FAKE_ENUM", false, "stop"),
        ] {
            assert_eq!(finish_reason(g, called), o, "{g}");
        }
        assert!(to_openai(b"[]").is_err());
        assert!(to_openai(br#"{"this": "is not a response"}"#).is_err());
    }

    #[test]
    fn cached_and_tool_use_prompt_tokens() {
        let u = json!({"promptTokenCount": 1000, "cachedContentTokenCount": 600, "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": 10, "thoughtsTokenCount": 20, "totalTokenCount": 1035});
        assert_eq!(
            openai_usage(u.as_object().unwrap()),
            json!({"prompt_tokens": 1005, "completion_tokens": 30, "total_tokens": 1035,
            "prompt_tokens_details": {"cached_tokens": 600}, "completion_tokens_details": {"reasoning_tokens": 20}})
        );
    }
}
