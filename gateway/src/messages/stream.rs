//! The relay's OpenAI SSE → Anthropic Messages SSE, for `/v1/messages` streams.
//!
//! The first chunk opens `message_start`; `reasoning_content` / `content` / `tool_calls` deltas open and fill
//! `thinking` / `text` / `tool_use` content blocks (one `content_block_stop` before the next kind starts);
//! `thinking_blocks` deltas carry the signature (`signature_delta`) or a `redacted_thinking` block;
//! `finish_reason` becomes the `stop_reason`, the usage chunk the `message_delta` usage (input and cache
//! counts included: the input side is only known at the end of an OpenAI stream, so `message_start` carries
//! zeros), `[DONE]` ends with `message_delta` + `message_stop`. An error chunk becomes `event: error`, and
//! ends the stream as Anthropic's does.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::response::{anthropic_usage, stop_reason};
use crate::sse::SseDecoder;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    Tool,
}

/// The state of one translated stream.
pub struct MessagesStream {
    decoder: SseDecoder,
    started: bool,
    open: Open,
    /// Index of the open (or next) content block.
    index: u64,
    stop_reason: &'static str,
    usage: Option<Map<String, Value>>,
    done: bool,
}

impl Default for MessagesStream {
    fn default() -> Self {
        Self {
            decoder: SseDecoder::default(),
            started: false,
            open: Open::None,
            index: 0,
            stop_reason: "end_turn",
            usage: None,
            done: false,
        }
    }
}

fn event(out: &mut BytesMut, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

impl MessagesStream {
    /// Translates the relay's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for payload in self.decoder.push(bytes) {
            self.payload(&payload, &mut out);
        }
        out.freeze()
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open != Open::None {
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.index}),
            );
            self.index += 1;
            self.open = Open::None;
        }
    }

    fn open(&mut self, out: &mut BytesMut, kind: Open, block: &Value) {
        if self.open == kind && kind != Open::Tool {
            return;
        }
        self.close(out);
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = kind;
    }

    fn delta(&self, out: &mut BytesMut, delta: &Value) {
        event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        );
    }

    fn payload(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        if payload == b"[DONE]" {
            self.start(out, &Value::Null);
            self.close(out);
            event(
                out,
                "message_delta",
                &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                "usage": anthropic_usage(self.usage.as_ref())}),
            );
            event(out, "message_stop", &json!({"type": "message_stop"}));
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            let ty = match error.get("type").and_then(Value::as_str) {
                Some(
                    t @ ("overloaded_error" | "rate_limit_error" | "api_error" | "timeout_error"),
                ) => t.to_string(),
                _ => "api_error".into(),
            };
            event(
                out,
                "error",
                &json!({"type": "error", "error": {"type": ty, "message": error.get("message")}}),
            );
            self.done = true;
            return;
        }
        self.start(out, &chunk);
        if let Some(Value::Object(u)) = chunk.get("usage") {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if let Some(t) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.open(
                out,
                Open::Thinking,
                &json!({"type": "thinking", "thinking": "", "signature": ""}),
            );
            self.delta(out, &json!({"type": "thinking_delta", "thinking": t}));
        }
        if let Some(Value::Array(blocks)) = delta.get("thinking_blocks") {
            for block in blocks {
                if block.get("type").and_then(Value::as_str) == Some("thinking") {
                    if self.open != Open::Thinking {
                        self.open(
                            out,
                            Open::Thinking,
                            &json!({"type": "thinking", "thinking": "", "signature": ""}),
                        );
                        if let Some(t) = block
                            .get("thinking")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            self.delta(out, &json!({"type": "thinking_delta", "thinking": t}));
                        }
                    }
                    if let Some(sig) = block.get("signature").and_then(Value::as_str) {
                        self.delta(out, &json!({"type": "signature_delta", "signature": sig}));
                    }
                    self.close(out);
                } else {
                    self.close(out);
                    event(
                        out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
                    );
                    self.open = Open::Text; // any kind: closed right away
                    self.close(out);
                }
            }
        }
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.open(out, Open::Text, &json!({"type": "text", "text": ""}));
            self.delta(out, &json!({"type": "text_delta", "text": t}));
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for call in calls {
                if let Some(id) = call.get("id").filter(|i| i.is_string()) {
                    let name = call
                        .pointer("/function/name")
                        .cloned()
                        .unwrap_or(Value::Null);
                    self.open(
                        out,
                        Open::Tool,
                        &json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    );
                }
                if let Some(args) = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    if self.open == Open::Tool {
                        self.delta(
                            out,
                            &json!({"type": "input_json_delta", "partial_json": args}),
                        );
                    }
                }
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = stop_reason(finish);
            self.close(out);
        }
    }

    fn start(&mut self, out: &mut BytesMut, chunk: &Value) {
        if self.started {
            return;
        }
        self.started = true;
        event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {"id": chunk.get("id"),
            "type": "message", "role": "assistant", "model": chunk.get("model"), "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &str) -> Vec<(String, Value)> {
        let mut t = MessagesStream::default();
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(11) {
            out.extend_from_slice(&t.push(piece));
        }
        String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (
                    name.trim_start_matches("event: ").to_string(),
                    serde_json::from_str(data.trim_start_matches("data: ")).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn text_then_tool_then_usage() {
        let openai = [
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}}]}),
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "model": "gpt", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}}),
        ];
        let mut input: String = openai.iter().map(|c| format!("data: {c}\n\n")).collect();
        input.push_str("data: [DONE]\n\n");
        let e = events(&input);
        let names: Vec<&str> = e.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(e[2].1["delta"], json!({"type": "text_delta", "text": "Hi"}));
        assert_eq!(e[4].1["index"], 1);
        assert_eq!(e[4].1["content_block"]["name"], "f");
        assert_eq!(e[5].1["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(e[7].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            e[7].1["usage"],
            json!({"input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2, "output_tokens": 4})
        );
    }

    #[test]
    fn thinking_signature_and_errors() {
        let input = "data: {\"id\":\"m\",\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n\
data: {\"id\":\"m\",\"choices\":[{\"delta\":{\"thinking_blocks\":[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"sig\"}]}}]}\n\n\
data: {\"error\":{\"message\":\"cut\",\"type\":\"upstream_error\"}}\n\ndata: [DONE]\n\n";
        let e = events(input);
        let names: Vec<&str> = e.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "error"
            ]
        );
        assert_eq!(
            e[3].1["delta"],
            json!({"type": "signature_delta", "signature": "sig"})
        );
        assert_eq!(
            e[5].1["error"],
            json!({"type": "api_error", "message": "cut"})
        );
    }
}
