//! The relay's OpenAI SSE → Gemini SSE, for `:streamGenerateContent` streams.
//!
//! Each `content` / `reasoning_content` delta becomes one `data: {"candidates":[{"content":{"role":"model",
//! "parts":[{"text"…}]}}]}` event (text parts are deltas in Gemini too). Tool-call fragments are gathered
//! and sent as whole `functionCall` parts in the last event, with the `finishReason` and the
//! `usageMetadata` of the relay's usage chunk, once `[DONE]` comes (Gemini has no terminator of its own).
//! An error chunk becomes `data: {"error":{"code","message","status"}}` and ends the stream.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::response::{finish_reason, function_call_part, usage_metadata};
use crate::sse::SseDecoder;

#[derive(Default)]
struct PendingCall {
    id: String,
    name: Value,
    arguments: String,
}

/// The state of one translated stream.
#[derive(Default)]
pub struct GenerateContentStream {
    decoder: SseDecoder,
    id: Value,
    model: Value,
    calls: Vec<PendingCall>,
    finish: Option<&'static str>,
    usage: Option<Map<String, Value>>,
    done: bool,
}

fn write(out: &mut BytesMut, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

impl GenerateContentStream {
    /// Translates the relay's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for payload in self.decoder.push(bytes) {
            self.payload(&payload, &mut out);
        }
        out.freeze()
    }

    fn event(&self, out: &mut BytesMut, parts: Vec<Value>, last: bool) {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if last {
            candidate["finishReason"] = json!(self.finish.unwrap_or("STOP"));
        }
        let mut event =
            json!({"candidates": [candidate], "modelVersion": self.model, "responseId": self.id});
        if last {
            if let Some(u) = &self.usage {
                event["usageMetadata"] = usage_metadata(u);
            }
        }
        write(out, &event);
    }

    fn payload(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        if payload == b"[DONE]" {
            let parts = self
                .calls
                .iter()
                .map(|c| function_call_part(&c.id, &c.name, &c.arguments))
                .collect();
            self.event(out, parts, true);
            self.done = true;
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            // The stream's status is already 200: Google's name for a failed upstream.
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed mid-stream");
            write(
                out,
                &json!({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}),
            );
            self.done = true;
            return;
        }
        if self.id.is_null() {
            self.id = chunk.get("id").cloned().unwrap_or(Value::Null);
            self.model = chunk.get("model").cloned().unwrap_or(Value::Null);
        }
        if let Some(Value::Object(u)) = chunk.get("usage") {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta");
        let text = |k: &str| {
            delta
                .and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        };
        if let Some(r) = text("reasoning_content") {
            self.event(out, vec![json!({"text": r, "thought": true})], false);
        }
        if let Some(t) = text("content") {
            self.event(out, vec![json!({ "text": t })], false);
        }
        for call in delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .unwrap_or(self.calls.len());
            if index >= self.calls.len() {
                self.calls.resize_with(index + 1, PendingCall::default);
            }
            let pending = &mut self.calls[index];
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                pending.id = id.to_string();
            }
            if let Some(name) = call.pointer("/function/name").filter(|n| n.is_string()) {
                pending.name = name.clone();
            }
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                pending.arguments.push_str(args);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish_reason(f));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> Vec<Value> {
        let mut t = GenerateContentStream::default();
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(13) {
            out.extend_from_slice(&t.push(piece));
        }
        String::from_utf8(out)
            .unwrap()
            .split("\r\n\r\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }

    #[test]
    fn text_tools_finish_and_usage() {
        let input = concat!(
            "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n",
            "data: [DONE]\n\n"
        );
        let events = run(input);
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0]["candidates"][0]["content"]["parts"][0]["text"],
            "Hel"
        );
        assert_eq!(events[0]["responseId"], "c1");
        assert_eq!(
            events[1]["candidates"][0]["content"]["parts"][0]["text"],
            "lo"
        );
        let last = &events[2];
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["candidates"][0]["content"]["parts"],
            json!([{"functionCall": {"name": "f", "args": {"a": 1}}}])
        );
        assert_eq!(
            last["usageMetadata"],
            json!({"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8})
        );
    }

    #[test]
    fn error_chunk_ends_the_stream() {
        let events = run(concat!(
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"stream ended early\",\"code\":\"stream_truncated\"}}\n\n",
            "data: [DONE]\n\n"
        ));
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["error"]["status"], "UNAVAILABLE");
        assert_eq!(events[1]["error"]["message"], "stream ended early");
    }
}
