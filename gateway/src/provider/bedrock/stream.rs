//! ConverseStream (binary AWS event-stream) → OpenAI `chat.completion.chunk` SSE, read by read.
//!
//! Frames are cut and checked (both CRCs, split anywhere across reads) by [`crate::provider::eventstream`];
//! each message's JSON payload is then mapped:
//!
//! | `:event-type` | OpenAI chunk(s) |
//! |---|---|
//! | `messageStart` | `delta: {role: "assistant", content: ""}` |
//! | `contentBlockStart` with `start.toolUse{toolUseId,name}` | `tool_calls[{index,id,type,function{name,arguments:""}}]` (text blocks may have no start) |
//! | `contentBlockDelta` `text` / `toolUse.input` / `reasoningContent.text` | `content` / `tool_calls[{index,function{arguments}}]` / `reasoning_content` |
//! | `contentBlockStop`, unknown events | nothing |
//! | `messageStop{stopReason}` | `finish_reason` |
//! | `metadata{usage}` (normally last) | a `choices: []` usage chunk; `data: [DONE]` once it and `messageStop` are in |
//!
//! An `exception` message (`:exception-type` `throttlingException`, `modelStreamErrorException`,
//! `validationException`, …) or an `error` message becomes `{"error": {message, type, code}}` and ends the
//! translation; so does a framing error (bad CRC), with type `upstream_stream_error`. `[DONE]` is sent only
//! after `messageStop` and `metadata`, or at the end of a body that ended cleanly after `messageStop` (usage then missing, and
//! estimated by the relay): a stream cut before `messageStop`, or inside a frame, stays truncated.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::response::{finish_reason, new_id, openai_usage};
use crate::provider::adapter::StreamTranslator;
use crate::provider::eventstream::{Decoder, Message};

/// The state of one translated stream.
pub struct ConverseStream {
    decoder: Decoder,
    id: String,
    model: String,
    created: u64,
    /// OpenAI `tool_calls[].index` per Converse content-block index.
    tool_index: HashMap<u64, u64>,
    stopped: bool,
    metered: bool,
    done: bool,
}

impl ConverseStream {
    #[must_use]
    pub fn new(model: &str) -> Self {
        Self {
            decoder: Decoder::new(),
            id: new_id(),
            model: model.to_string(),
            created: crate::provider::translate::now(),
            tool_index: HashMap::new(),
            stopped: false,
            metered: false,
            done: false,
        }
    }

    fn chunk(&self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        write(out, &chunk);
    }

    fn fail(&mut self, out: &mut BytesMut, ty: &str, message: &str) {
        write(
            out,
            &json!({"error": {"message": message, "type": ty, "param": null, "code": ty}}),
        );
        self.done = true;
    }

    fn message(&mut self, message: &Message, out: &mut BytesMut) {
        let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
        match message.message_type() {
            Some("exception") => {
                let ty = message.exception_type().unwrap_or("exception").to_string();
                let text = payload
                    .get("message")
                    .or_else(|| payload.get("Message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream failed mid-stream")
                    .to_string();
                self.fail(out, &ty, &text);
            }
            Some("error") => {
                let code = message.error_code().unwrap_or("error").to_string();
                let text = message
                    .error_message()
                    .unwrap_or("the upstream failed mid-stream")
                    .to_string();
                self.fail(out, &code, &text);
            }
            _ => self.event(message.event_type().unwrap_or_default(), &payload, out),
        }
    }

    /// `[DONE]` once both `messageStop` and `metadata` are in (Bedrock sends `metadata` last; recorded
    /// streams also show it before `messageStop`).
    fn end_if_complete(&mut self, out: &mut BytesMut) {
        if self.stopped && self.metered {
            self.done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
    }

    fn event(&mut self, event_type: &str, payload: &Value, out: &mut BytesMut) {
        let index = payload
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match event_type {
            "messageStart" => self.chunk(out, json!({"role": "assistant", "content": ""}), None),
            "contentBlockStart" => {
                if let Some(tool) = payload.pointer("/start/toolUse") {
                    let n = u64::try_from(self.tool_index.len()).unwrap_or(u64::MAX);
                    self.tool_index.insert(index, n);
                    self.chunk(out, json!({"tool_calls": [{"index": n, "id": tool.get("toolUseId"), "type": "function",
                        "function": {"name": tool.get("name"), "arguments": ""}}]}), None);
                }
            }
            "contentBlockDelta" => {
                let Some(delta) = payload.get("delta") else {
                    return;
                };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        self.chunk(out, json!({ "content": t }), None);
                    }
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    if !input.is_empty() {
                        let n = self.tool_index.get(&index).copied().unwrap_or(0);
                        self.chunk(
                            out,
                            json!({"tool_calls": [{"index": n, "function": {"arguments": input}}]}),
                            None,
                        );
                    }
                } else if let Some(r) = delta
                    .pointer("/reasoningContent/text")
                    .and_then(Value::as_str)
                {
                    if !r.is_empty() {
                        self.chunk(out, json!({ "reasoning_content": r }), None);
                    }
                }
            }
            "messageStop" => {
                self.stopped = true;
                let stop = payload
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                self.chunk(out, json!({}), Some(finish_reason(stop)));
                self.end_if_complete(out);
            }
            "metadata" => {
                if let Some(Value::Object(u)) = payload.get("usage") {
                    let usage = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": openai_usage(u)});
                    write(out, &usage);
                }
                self.metered = true;
                self.end_if_complete(out);
            }
            _ => {}
        }
    }
}

fn write(out: &mut BytesMut, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

impl StreamTranslator for ConverseStream {
    fn push(&mut self, read: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        if self.done {
            return out.freeze();
        }
        self.decoder.push(read);
        while !self.done {
            match self.decoder.next_message() {
                Ok(Some(message)) => self.message(&message, &mut out),
                Ok(None) => break,
                Err(e) => self.fail(&mut out, "upstream_stream_error", &e.to_string()),
            }
        }
        out.freeze()
    }

    fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if !self.done && self.stopped && self.decoder.finish().is_ok() {
            self.done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event-stream frame with string headers (built independently of the decoder under test).
    fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        for (name, value) in headers {
            h.push(u8::try_from(name.len()).unwrap());
            h.extend_from_slice(name.as_bytes());
            h.push(7);
            h.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            h.extend_from_slice(value.as_bytes());
        }
        let total = u32::try_from(12 + h.len() + payload.len() + 4).unwrap();
        let mut f = Vec::new();
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&u32::try_from(h.len()).unwrap().to_be_bytes());
        let crc = crc32fast::hash(&f);
        f.extend_from_slice(&crc.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(payload);
        let crc = crc32fast::hash(&f);
        f.extend_from_slice(&crc.to_be_bytes());
        f
    }

    fn event(ty: &str, payload: &Value) -> Vec<u8> {
        frame(
            &[
                (":event-type", ty),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.to_string().as_bytes(),
        )
    }

    fn run(body: &[u8], piece: usize) -> Vec<String> {
        let mut t = ConverseStream::new("amazon.nova-pro-v1:0");
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

    fn chunks(payloads: &[String]) -> Vec<Value> {
        payloads
            .iter()
            .filter(|p| *p != "[DONE]")
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }

    /// The vercel-ai recorded ConverseStream payloads (framing removed upstream), framed again here.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/bedrock-eventstream/vercel-ai/converse-stream-chunks/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut body = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            let (ty, payload) = v.as_object().unwrap().iter().next().unwrap();
            body.extend(event(ty, payload));
        }
        body
    }

    #[test]
    fn text_stream_split_anywhere() {
        let body = fixture("bedrock-text.chunks.txt");
        let whole = run(&body, body.len());
        for piece in [1, 5, 64] {
            assert_eq!(
                chunks(&run(&body, piece))
                    .iter()
                    .map(|c| c["choices"].clone())
                    .collect::<Vec<_>>(),
                chunks(&whole)
                    .iter()
                    .map(|c| c["choices"].clone())
                    .collect::<Vec<_>>(),
                "reads of {piece}"
            );
        }
        assert_eq!(whole.last().map(String::as_str), Some("[DONE]"));
        let c = chunks(&whole);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(c.iter().all(|c| c["model"] == "amazon.nova-pro-v1:0"));
        let first = c[0]["id"].clone();
        assert!(c.iter().all(|x| x["id"] == first));
        let text: String = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty());
        let usage = c.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert!(usage["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn tool_call_stream() {
        let c = chunks(&run(&fixture("bedrock-tool-call.1.chunks.txt"), 33));
        let calls: Vec<&Value> = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert!(calls[0][0]["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(calls.iter().all(|c| c[0]["index"] == 0));
        let args: String = calls
            .iter()
            .filter_map(|c| c[0]["function"]["arguments"].as_str())
            .collect();
        assert!(serde_json::from_str::<Value>(&args).unwrap().is_object());
        let finish: Vec<&str> = c
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finish, ["tool_calls"]);
    }

    #[test]
    fn reasoning_stream() {
        let c = chunks(&run(&fixture("bedrock-reasoning.chunks.txt"), 17));
        let reasoning: String = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert!(!reasoning.is_empty());
    }

    #[test]
    fn usage_with_cache_and_exceptions_and_truncation() {
        let mut body = event("messageStart", &json!({"role": "assistant"}));
        body.extend(event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ));
        let head = body.clone();
        body.extend(event("contentBlockStop", &json!({"contentBlockIndex": 0})));
        body.extend(event("messageStop", &json!({"stopReason": "max_tokens"})));
        let before_metadata = body.clone();
        body.extend(event(
            "metadata",
            &json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 112,
            "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0}, "metrics": {"latencyMs": 9}}),
        ));
        let p = run(&body, 9);
        let c = chunks(&p);
        assert_eq!(c[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(c[3]["usage"]["prompt_tokens"], 105);
        assert_eq!(c[3]["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
        assert_eq!(p.last().unwrap(), "[DONE]");

        // Ended cleanly after messageStop without metadata: done, usage left to the relay's estimate.
        assert_eq!(run(&before_metadata, 7).last().unwrap(), "[DONE]");
        // Cut before messageStop, or inside a frame: no [DONE].
        assert!(!run(&head, 7).iter().any(|p| p == "[DONE]"));
        assert!(!run(&body[..body.len() - 3], 7)
            .iter()
            .any(|p| p == "[DONE]"));

        // An exception frame: an error chunk, nothing after it.
        let mut ex = head.clone();
        ex.extend(frame(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        ));
        ex.extend(event("messageStop", &json!({"stopReason": "end_turn"})));
        let p = run(&ex, 11);
        let last: Value = serde_json::from_str(p.last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "throttlingException");
        assert_eq!(last["error"]["code"], "throttlingException");
        assert!(last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Too many tokens"));
        assert!(!p.iter().any(|p| p == "[DONE]"));

        // The recorded modelStreamErrorException frame.
        let recorded = std::fs::read(format!(
            "{}/../tests/fixtures/bedrock-eventstream/vercel-ai/model-stream-error-exception.eventstream.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut body = head.clone();
        body.extend(recorded);
        let last: Value = serde_json::from_str(run(&body, 4).last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "modelStreamErrorException");
        assert_eq!(last["error"]["message"], "Model Stream Error");

        // A corrupted frame: one error chunk.
        let mut bad = head;
        let mut broken = event("messageStop", &json!({"stopReason": "end_turn"}));
        let n = broken.len();
        broken[n - 6] ^= 0xff;
        bad.extend(broken);
        let p = run(&bad, 50);
        let last: Value = serde_json::from_str(p.last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "upstream_stream_error");
        assert!(last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum"));
    }
}
