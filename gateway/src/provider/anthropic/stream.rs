//! Anthropic Messages SSE → OpenAI `chat.completion.chunk` SSE, read by read.
//!
//! | Anthropic event | OpenAI chunk(s) |
//! |---|---|
//! | `message_start` | `delta: {role: "assistant", content: ""}`; its usage (input, cache) is kept |
//! | `content_block_start` text / tool_use / redacted_thinking | — / `tool_calls[{index,id,type,function{name,arguments:""}}]` / `thinking_blocks` |
//! | `content_block_delta` text_delta / input_json_delta / thinking_delta / signature_delta | `content` / `tool_calls[{index,function{arguments}}]` / `reasoning_content` / kept |
//! | `content_block_stop` of a thinking block | `thinking_blocks: [{type: "thinking", thinking, signature}]` (the whole block, to send back) |
//! | `message_delta` | `finish_reason`, then a `choices: []` usage chunk (message_start usage updated by this one's: last value wins) |
//! | `message_stop` | `data: [DONE]` |
//! | `ping`, unknown events | nothing |
//! | `error` | `{"error": {message, type, param: null, code: type}}` |
//!
//! No `[DONE]` is invented: a stream that ends before `message_stop` is truncated, and the relay says so.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::response::{finish_reason, openai_usage};
use crate::provider::adapter::SseEventTranslator;
use crate::sse::SseDecoder;

enum Block {
    Text,
    Thinking { text: String, signature: String },
    Tool,
    Other,
}

/// The state of one translated stream.
#[derive(Default)]
pub struct AnthropicStream {
    decoder: SseDecoder,
    id: Value,
    model: Value,
    created: u64,
    usage: Map<String, Value>,
    blocks: HashMap<u64, Block>,
    /// OpenAI `tool_calls[].index` per Anthropic content-block index.
    tool_index: HashMap<u64, u64>,
    done: bool,
}

impl AnthropicStream {
    fn chunk(&self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        write(out, &chunk);
    }
}

fn write(out: &mut BytesMut, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

impl SseEventTranslator for AnthropicStream {
    fn decoder(&mut self) -> &mut SseDecoder {
        &mut self.decoder
    }

    fn event(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "message_start" => {
                let message = event.get("message");
                self.id = message
                    .and_then(|m| m.get("id"))
                    .cloned()
                    .unwrap_or(Value::Null);
                self.model = message
                    .and_then(|m| m.get("model"))
                    .cloned()
                    .unwrap_or(Value::Null);
                self.created = crate::provider::translate::now();
                if let Some(Value::Object(u)) = message.and_then(|m| m.get("usage")) {
                    self.usage.clone_from(u);
                }
                self.chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let block = event.get("content_block").cloned().unwrap_or(Value::Null);
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            self.chunk(out, json!({"content": t}), None);
                        }
                        Block::Text
                    }
                    Some("thinking") => Block::Thinking {
                        text: String::new(),
                        signature: String::new(),
                    },
                    Some("redacted_thinking") => {
                        self.chunk(out, json!({"thinking_blocks": [block]}), None);
                        Block::Other
                    }
                    Some("tool_use") => {
                        let n = u64::try_from(self.tool_index.len()).unwrap_or(u64::MAX);
                        self.tool_index.insert(index, n);
                        self.chunk(out, json!({"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""}}]}), None);
                        Block::Tool
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index, kind);
            }
            "content_block_delta" => {
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or_default();
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") if !text("text").is_empty() => {
                        self.chunk(out, json!({"content": text("text")}), None);
                    }
                    Some("thinking_delta") if !text("thinking").is_empty() => {
                        if let Some(Block::Thinking { text: acc, .. }) = self.blocks.get_mut(&index)
                        {
                            acc.push_str(text("thinking"));
                        }
                        self.chunk(out, json!({"reasoning_content": text("thinking")}), None);
                    }
                    Some("signature_delta") => {
                        if let Some(Block::Thinking { signature, .. }) = self.blocks.get_mut(&index)
                        {
                            signature.push_str(text("signature"));
                        }
                    }
                    Some("input_json_delta") if !text("partial_json").is_empty() => {
                        let n = self.tool_index.get(&index).copied().unwrap_or(0);
                        self.chunk(out, json!({"tool_calls": [{"index": n, "function": {"arguments": text("partial_json")}}]}), None);
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(Block::Thinking { text, signature }) = self.blocks.remove(&index) {
                    self.chunk(out, json!({"thinking_blocks": [{"type": "thinking", "thinking": text, "signature": signature}]}), None);
                }
            }
            "message_delta" => {
                if let Some(Value::Object(u)) = event.get("usage") {
                    for (k, v) in u {
                        if !v.is_null() {
                            self.usage.insert(k.clone(), v.clone());
                        }
                    }
                }
                if let Some(stop) = event
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.chunk(out, json!({}), Some(finish_reason(stop)));
                }
                let usage = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [], "usage": openai_usage(&self.usage)});
                write(out, &usage);
            }
            "message_stop" => {
                self.done = true;
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            "error" => {
                let error = event.get("error");
                let ty = error
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("api_error");
                let message = error
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream failed mid-stream");
                write(
                    out,
                    &json!({"error": {"message": message, "type": ty, "param": null, "code": ty}}),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::adapter::StreamTranslator;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/anthropic/streaming"
    );

    /// Translates `body` fed in `piece`-byte reads → the OpenAI payloads.
    fn run(body: &[u8], piece: usize) -> Vec<String> {
        let mut t = AnthropicStream::default();
        let mut out = Vec::new();
        for p in body.chunks(piece) {
            out.extend_from_slice(&t.push(p));
        }
        out.extend_from_slice(&t.finish());
        String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn chunks(payloads: &[String]) -> Vec<Value> {
        payloads
            .iter()
            .filter(|p| *p != "[DONE]")
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }

    #[test]
    fn basic_fixture_becomes_openai_chunks_split_anywhere() {
        let body = fixture("basic_response.txt");
        let whole = run(&body, body.len());
        for piece in [1, 7, 97] {
            assert_eq!(run(&body, piece), whole, "reads of {piece}");
        }
        assert_eq!(whole.last().map(String::as_str), Some("[DONE]"));
        let c = chunks(&whole);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello there!");
        let finish: Vec<&str> = c
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finish, ["stop"]);
        let usage = c.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 11);
        assert_eq!(usage["usage"]["completion_tokens"], 6);
        assert!(c
            .iter()
            .all(|c| c["id"] == "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK"));
    }

    #[test]
    fn tool_use_fixture_becomes_tool_call_fragments() {
        let c = chunks(&run(&fixture("tool_use_response.txt"), 50));
        let calls: Vec<&Value> = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls[0][0]["id"], "toolu_01NRLabsLyVHZPKxbKvkfSMn");
        assert_eq!(calls[0][0]["function"]["name"], "get_weather");
        assert!(calls.iter().all(|c| c[0]["index"] == 0));
        let args: String = calls
            .iter()
            .filter_map(|c| c[0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"location": "Paris"})
        );
        let finish: Vec<&str> = c
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finish, ["tool_calls"]);
        assert_eq!(c.last().unwrap()["usage"]["prompt_tokens"], 377);
        assert_eq!(c.last().unwrap()["usage"]["completion_tokens"], 65);
    }

    #[test]
    fn thinking_fixture_keeps_reasoning_and_signature() {
        let c = chunks(&run(&fixture("stream-a-refusal.sse"), 64));
        let reasoning: String = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert!(reasoning.starts_with("Simple educational question"));
        let blocks: Vec<&Value> = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("thinking_blocks"))
            .collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0][0]["thinking"], reasoning);
        assert_eq!(
            blocks[0][0]["signature"],
            "c3ludGhldGljLXNpZ25hdHVyZS1maXh0dXJlLWEtbm90LWEtcmVhbC1zaWduYXR1cmU="
        );
        let finish: Vec<&str> = c
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finish, ["content_filter"]);
        let usage = &c.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens"], 106);
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 67);
    }

    #[test]
    fn error_event_and_truncation() {
        let body = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let p = run(body, 13);
        let last: Value = serde_json::from_str(p.last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "overloaded_error");
        assert_eq!(last["error"]["code"], "overloaded_error");
        assert!(!p.iter().any(|p| p == "[DONE]"));
        let cut = &fixture("basic_response.txt")[..400];
        assert!(
            !run(cut, 10).iter().any(|p| p == "[DONE]"),
            "no [DONE] before message_stop"
        );
    }
}
