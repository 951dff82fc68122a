//! Gemini `streamGenerateContent?alt=sse` → OpenAI `chat.completion.chunk` SSE, read by read.
//!
//! Every Gemini event is a whole `GenerateContentResponse` whose parts are deltas:
//!
//! | Gemini | OpenAI chunk(s) |
//! |---|---|
//! | first event | `delta: {role: "assistant", content: ""}` (id = `responseId`, model = `modelVersion`) |
//! | `text` part / `text` with `thought: true` | `content` / `reasoning_content` |
//! | `functionCall` part (whole, never split) | `tool_calls[{index, id, type, function{name, arguments}}]` in one chunk |
//! | `finishReason`, `usageMetadata` (cumulative: last value wins) | kept until the body ends |
//! | no candidates, `promptFeedback` | finish reason `content_filter` |
//! | `{"error":{code,message,status}}` (as `data:` or as bare JSON lines, as Vertex sends it mid-stream) | `{"error": {message, type: "upstream_error", code: status}}`; nothing follows |
//! | end of body after a finish reason | the `finish_reason` chunk, a `choices: []` usage chunk, `data: [DONE]` |
//!
//! Gemini sends no terminator: a body that ends before any finish reason is a cut stream, and gets no
//! `[DONE]`, so the relay reports it truncated. CRLF line endings are accepted.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::response::{finish_reason, openai_usage, response_id, tool_call_id};
use crate::provider::adapter::StreamTranslator;

/// Longest run of bare (non-`data:`) lines kept while waiting for them to form a JSON error.
const MAX_BARE_BYTES: usize = 64 * 1024;

/// The state of one translated stream.
#[derive(Default)]
pub struct GeminiStream {
    /// The unfinished line.
    line: BytesMut,
    /// `data` lines of the event being read.
    data: Option<BytesMut>,
    /// Lines outside any `data:` field (a JSON error body written into the stream).
    bare: BytesMut,
    started: bool,
    id: Value,
    model: Value,
    created: u64,
    /// The last `finishReason` seen (mapped later: it depends on whether tools were called).
    finish: Option<String>,
    blocked: bool,
    usage: Option<Map<String, Value>>,
    tools: u64,
    /// An error event was passed on: the stream is over.
    failed: bool,
}

impl GeminiStream {
    fn chunk(&self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        write(
            out,
            &json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        );
    }

    fn line(&mut self, mut line: BytesMut, out: &mut BytesMut) {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                self.event(&data, out);
            }
            return;
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            match &mut self.data {
                Some(data) => {
                    data.extend_from_slice(b"\n");
                    data.extend_from_slice(rest);
                }
                None => self.data = Some(BytesMut::from(rest)),
            }
            return;
        }
        let field = line.starts_with(b":")
            || line.starts_with(b"event:")
            || line.starts_with(b"id:")
            || line.starts_with(b"retry:");
        if field {
            return;
        }
        // A bare JSON body (Vertex writes its error this way mid-stream): gather lines until they parse.
        if self.bare.len() + line.len() > MAX_BARE_BYTES {
            self.bare.clear();
        }
        self.bare.extend_from_slice(&line);
        self.bare.extend_from_slice(b"\n");
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&self.bare) {
            self.bare.clear();
            self.object(&body, out);
        }
    }

    fn event(&mut self, payload: &[u8], out: &mut BytesMut) {
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(payload) {
            self.object(&body, out);
        }
    }

    fn object(&mut self, body: &Map<String, Value>, out: &mut BytesMut) {
        if self.failed {
            return;
        }
        if let Some(error) = body.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed mid-stream");
            let status = error
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN");
            write(
                out,
                &json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": status}}),
            );
            self.failed = true;
            return;
        }
        if !self.started {
            self.started = true;
            self.id = response_id(body);
            self.model = body.get("modelVersion").cloned().unwrap_or(Value::Null);
            self.created = crate::provider::translate::now();
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
        if let Some(Value::Object(u)) = body.get("usageMetadata") {
            self.usage = Some(u.clone());
        }
        let candidate = body
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        let Some(candidate) = candidate else {
            if body.contains_key("promptFeedback") {
                self.blocked = true;
            }
            return;
        };
        for part in candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(call) = part.get("functionCall") {
                let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                let delta = json!({"tool_calls": [{"index": self.tools, "id": tool_call_id(part), "type": "function",
                    "function": {"name": call.get("name"), "arguments": args.to_string()}}]});
                self.tools += 1;
                self.chunk(out, delta, None);
            } else if let Some(text) = part
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                let field = if part.get("thought") == Some(&Value::Bool(true)) {
                    "reasoning_content"
                } else {
                    "content"
                };
                let mut delta = Map::new();
                delta.insert(field.into(), Value::String(text.into()));
                self.chunk(out, Value::Object(delta), None);
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish = Some(reason.to_string());
        }
    }
}

fn write(out: &mut BytesMut, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

impl StreamTranslator for GeminiStream {
    fn push(&mut self, read: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        let mut rest = read;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            self.line.extend_from_slice(&rest[..pos]);
            let line = self.line.split();
            self.line(line, &mut out);
            rest = &rest[pos + 1..];
        }
        self.line.extend_from_slice(rest);
        out.freeze()
    }

    fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if !self.line.is_empty() {
            let line = self.line.split();
            self.line(line, &mut out);
        }
        if let Some(data) = self.data.take() {
            self.event(&data, &mut out);
        }
        if self.failed {
            return out.freeze();
        }
        let finish = match (&self.finish, self.blocked) {
            (Some(reason), _) => finish_reason(reason, self.tools > 0),
            (None, true) => "content_filter",
            // No finish reason: the stream was cut; no [DONE], so the relay says so.
            (None, false) => return out.freeze(),
        };
        self.chunk(&mut out, json!({}), Some(finish));
        if let Some(u) = &self.usage {
            write(
                &mut out,
                &json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": openai_usage(u)}),
            );
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/gemini/mock-responses"
    );

    /// Translates `body` fed in `piece`-byte reads → the OpenAI payloads.
    fn run(body: &[u8], piece: usize) -> Vec<String> {
        let mut t = GeminiStream::default();
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

    fn text(c: &[Value], field: &str) -> String {
        c.iter()
            .filter_map(|c| c["choices"][0]["delta"][field].as_str())
            .collect()
    }

    fn finishes(c: &[Value]) -> Vec<String> {
        c.iter()
            .filter_map(|c| {
                c["choices"][0]["finish_reason"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    #[test]
    fn crlf_fixture_becomes_openai_chunks_split_anywhere() {
        let body = fixture("googleai/streaming-success-basic-reply-short.txt");
        let whole = run(&body, body.len());
        // Made-up ids differ per stream; everything else must not.
        let without_ids = |payloads: Vec<String>| -> Vec<String> {
            payloads
                .into_iter()
                .map(|p| match serde_json::from_str::<Value>(&p) {
                    Ok(Value::Object(mut o)) => {
                        o.remove("id");
                        Value::Object(o).to_string()
                    }
                    _ => p,
                })
                .collect()
        };
        for piece in [1, 7, 97] {
            assert_eq!(
                without_ids(run(&body, piece)),
                without_ids(whole.clone()),
                "reads of {piece}"
            );
        }
        assert_eq!(whole.last().map(String::as_str), Some("[DONE]"));
        let c = chunks(&whole);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c[0]["model"], "gemini-2.0-flash");
        assert_eq!(
            text(&c, "content"),
            "The capital of Wyoming is **Cheyenne**.\n"
        );
        assert_eq!(finishes(&c), ["stop"]);
        let usage = c.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 7);
        assert_eq!(usage["usage"]["completion_tokens"], 10);
    }

    #[test]
    fn thinking_and_function_call_with_signature() {
        let c = chunks(&run(
            &fixture(
                "googleai/streaming-success-thinking-function-call-thought-summary-signature.txt",
            ),
            64,
        ));
        assert!(!text(&c, "reasoning_content").is_empty());
        let calls: Vec<&Value> = c
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 1);
        assert!(calls[0][0]["id"]
            .as_str()
            .unwrap()
            .contains(super::super::SIGNATURE_MARK));
        assert_eq!(finishes(&c), ["tool_calls"]);
        let usage = &c.last().unwrap()["usage"];
        let reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap();
        assert!(reasoning > 0);
        assert!(usage["completion_tokens"].as_u64().unwrap() > reasoning);
    }

    #[test]
    fn blocked_prompt_and_safety_finish() {
        let c = chunks(&run(
            &fixture("googleai/streaming-failure-prompt-blocked-safety.txt"),
            50,
        ));
        assert_eq!(finishes(&c), ["content_filter"]);
        let c = chunks(&run(
            &fixture("vertexai/streaming-failure-finish-reason-safety.txt"),
            50,
        ));
        assert_eq!(finishes(&c), ["content_filter"]);
    }

    #[test]
    fn bare_error_mid_stream_and_a_cut_stream() {
        let p = run(
            &fixture("vertexai/streaming-failure-error-mid-stream.txt"),
            33,
        );
        assert!(!p.iter().any(|p| p == "[DONE]"));
        let c = chunks(&p);
        assert_eq!(text(&c, "content"), "First Second ");
        let last = c.last().unwrap();
        assert_eq!(last["error"]["code"], "CANCELLED");
        assert_eq!(last["error"]["message"], "The operation was cancelled.");
        let body = fixture("googleai/streaming-success-basic-reply-long.txt");
        let cut = &body[..body.len() / 2];
        assert!(
            !run(cut, 10).iter().any(|p| p == "[DONE]"),
            "no [DONE] before a finish reason"
        );
    }
}
