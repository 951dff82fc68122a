//! Relaying an upstream SSE stream to the client, chunk by chunk, while metering it.
//!
//! A task per stream reads the upstream and forwards each read's complete events at once (never buffering
//! the whole body). Along the way it:
//! - keeps the **last** usage object seen (providers repeat cumulative usage; summing would double-bill);
//! - strips usage from the client's chunks and, only if the client asked (`stream_options.include_usage`),
//!   sends one normalised usage chunk (`choices: []`) before `data: [DONE]`, as OpenAI does;
//! - ends every stream with `data: [DONE]`, and a failure after the headers with an OpenAI-style error chunk
//!   first — never a silently truncated 200;
//! - when the client goes away, keeps reading the upstream (bounded) to learn the real usage.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_schemas::{Outcome, UsageSource, UsageVector};

use crate::error::GatewayError;
use crate::exchange::{Ending, Exchange};
use crate::provider::usage;
use crate::proxy::BodyStream;
use crate::sse::SseDecoder;

/// How long, after the client left, the upstream is still read for its final usage.
const DRAIN_AFTER_DISCONNECT: Duration = Duration::from_secs(30);
/// How long the upstream may take to close after `[DONE]` before it is dropped.
const CLOSE_AFTER_DONE: Duration = Duration::from_secs(1);
const DONE: &[u8] = b"data: [DONE]\n\n";

/// Starts relaying `upstream` and returns the client's streaming response.
pub fn start(
    tasks: &tokio_util::task::TaskTracker,
    ex: Exchange,
    first: Bytes,
    rest: BodyStream,
    client_wants_usage: bool,
    idle: Duration,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    let response = ex.decorate(
        Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "text/event-stream")
            .header(http::header::CACHE_CONTROL, "no-cache")
            .header("x-accel-buffering", "no")
            .body(body)
            .unwrap_or_default(),
    );
    let relay = StreamRelay {
        ex,
        tx: Some(tx),
        client_wants_usage,
        idle,
        decoder: SseDecoder::default(),
        last_usage: None,
        content_chunks: 0,
        upstream_error: None,
        client_gone: false,
    };
    tasks.spawn(relay.run(first, rest));
    response
}

/// How the upstream side ended.
enum UpstreamEnd {
    Done,
    Truncated(GatewayError),
}

struct StreamRelay {
    ex: Exchange,
    /// Taken when the trailer is sent.
    tx: Option<mpsc::Sender<Bytes>>,
    client_wants_usage: bool,
    idle: Duration,
    decoder: SseDecoder,
    /// The last usage chunk: its envelope fields and its normalised usage object.
    last_usage: Option<(Map<String, Value>, UsageVector)>,
    /// Chunks that carried choices: the estimate of completion tokens if no usage ever arrives.
    content_chunks: u64,
    /// Code of an error the upstream sent inside the stream.
    upstream_error: Option<String>,
    client_gone: bool,
}

impl StreamRelay {
    async fn run(mut self, first: Bytes, mut body: BodyStream) {
        let provider = self
            .ex
            .deployment
            .as_ref()
            .map(|d| d.provider.name.clone())
            .unwrap_or_default();
        let mut pending = Some(first);
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let end = loop {
            let wait = match drain_deadline {
                Some(d) => d
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(self.idle),
                None => self.idle,
            };
            let next = match pending.take() {
                Some(first) => Ok(Some(Ok(first))),
                None => tokio::time::timeout(wait, body.next()).await,
            };
            match next {
                Err(_) if drain_deadline.is_some() => {
                    break UpstreamEnd::Truncated(GatewayError::StreamTruncated {
                        provider: provider.clone(),
                        reason: "stopped reading after the client disconnected".into(),
                    })
                }
                Err(_) => {
                    break UpstreamEnd::Truncated(GatewayError::StreamTruncated {
                        provider: provider.clone(),
                        reason: format!("no data for {}ms", self.idle.as_millis()),
                    })
                }
                Ok(None) => {
                    // A last event without its blank line still counts.
                    let tail = self.decoder.finish();
                    let mut out = BytesMut::new();
                    let done = tail.is_some_and(|p| self.on_event(&p, &mut out));
                    self.send(out.freeze()).await;
                    // After an in-stream error event the upstream closes without `[DONE]`; the client
                    // already has the error, so this is not a second failure.
                    if done || self.upstream_error.is_some() {
                        break UpstreamEnd::Done;
                    }
                    break UpstreamEnd::Truncated(GatewayError::StreamTruncated {
                        provider: provider.clone(),
                        reason: "the upstream closed the stream before [DONE]".into(),
                    });
                }
                Ok(Some(Err(e))) => {
                    break UpstreamEnd::Truncated(GatewayError::StreamTruncated {
                        provider: provider.clone(),
                        reason: format!("read failed: {e}"),
                    })
                }
                Ok(Some(Ok(bytes))) => {
                    self.ex.first_byte();
                    let mut out = BytesMut::with_capacity(bytes.len() + 16);
                    let mut done = false;
                    for payload in self.decoder.push(&bytes) {
                        done |= self.on_event(&payload, &mut out);
                    }
                    self.send(out.freeze()).await;
                    if let Some(cap) = self.ex.reserved_output_tokens {
                        if self.content_chunks > cap {
                            // Each content chunk carries at least one token: the upstream has certainly passed
                            // the output cap the budget reserved for. Stop paying for more.
                            break UpstreamEnd::Truncated(GatewayError::ReservationExceeded {
                                reserved_tokens: cap,
                                seen_tokens: self.content_chunks,
                            });
                        }
                    }
                    if self.client_gone && drain_deadline.is_none() {
                        drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_DISCONNECT);
                    }
                    if done {
                        break UpstreamEnd::Done;
                    }
                }
            }
        };
        let truncated = match end {
            UpstreamEnd::Done => None,
            UpstreamEnd::Truncated(e) => Some(e),
        };
        // The event is emitted before the client's stream closes: once the last connection ends, a
        // shutting-down gateway closes its sink, and this event must be in it.
        let trailer = self.trailer(truncated.as_ref());
        let tx = if self.client_gone {
            None
        } else {
            self.tx.take()
        };
        let clean = truncated.is_none();
        self.finish(truncated);
        if let Some(tx) = tx {
            let _ = tx.send(trailer).await;
        }
        if clean {
            // Let the upstream finish its body so the pooled connection can be reused.
            let _ = tokio::time::timeout(CLOSE_AFTER_DONE, async {
                while body.next().await.is_some() {}
            })
            .await;
        }
    }

    /// Handles one upstream event, appending what the client should get to `out`. Returns true on `[DONE]`.
    fn on_event(&mut self, payload: &[u8], out: &mut BytesMut) -> bool {
        if payload == b"[DONE]" {
            return true;
        }
        let mentions = |needle: &[u8]| memchr::memmem::find(payload, needle).is_some();
        if !mentions(b"\"usage\"") && !mentions(b"\"error\"") {
            self.content_chunks += 1;
            forward(out, payload);
            return false;
        }
        if !self.client_wants_usage {
            if let Some(stripped) = strip_null_usage(payload) {
                self.content_chunks += 1;
                forward(out, &stripped);
                return false;
            }
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(payload) else {
            forward(out, payload);
            return false;
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let code = error.get("code").or_else(|| error.get("type")).map_or_else(
                || "upstream_stream_error".to_string(),
                |c| c.as_str().map_or_else(|| c.to_string(), str::to_string),
            );
            self.upstream_error = Some(code);
            forward(out, payload);
            return false;
        }
        let Some(found) = usage::find_usage(&chunk) else {
            self.content_chunks += 1;
            // `"usage": null` on every chunk is what asking for usage looks like upstream (OpenAI); a client
            // that did not ask gets chunks without the field, as OpenAI would have sent them.
            if !self.client_wants_usage && chunk.remove("usage").is_some() {
                if let Ok(bytes) = serde_json::to_vec(&chunk) {
                    forward(out, &bytes);
                    return false;
                }
            }
            forward(out, payload);
            return false;
        };
        let vector = usage::usage_vector(found);
        let normalized = usage::normalized_usage(found);
        let mut envelope = Map::new();
        for key in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(v) = chunk.get(key) {
                envelope.insert(key.into(), v.clone());
            }
        }
        envelope.insert("usage".into(), Value::Object(normalized));
        self.last_usage = Some((envelope, vector));

        // Usage goes to the client only once, at the end: strip it here.
        let choices_empty = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if choices_empty {
            return false;
        }
        self.content_chunks += 1;
        chunk.remove("usage");
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for c in choices.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("usage");
            }
        }
        match serde_json::to_vec(&chunk) {
            Ok(bytes) => forward(out, &bytes),
            Err(_) => forward(out, payload),
        }
        false
    }

    async fn send(&mut self, bytes: Bytes) {
        if bytes.is_empty() || self.client_gone {
            return;
        }
        let Some(tx) = &self.tx else { return };
        // A client that keeps its connection open but stops reading is treated as gone after the idle
        // timeout: the relay must not park forever holding the upstream, the rate-limit slot and the event.
        match tokio::time::timeout(self.idle, tx.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => self.client_gone = true,
        }
    }

    /// The end of the client's stream: error chunk if truncated, usage chunk if asked for, `[DONE]`.
    fn trailer(&self, truncated: Option<&GatewayError>) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(error) = truncated {
            out.extend_from_slice(&error.stream_chunk());
        }
        if self.client_wants_usage {
            if let Some((envelope, _)) = &self.last_usage {
                let mut chunk = envelope.clone();
                chunk.insert("object".into(), json!("chat.completion.chunk"));
                chunk.insert("choices".into(), json!([]));
                if let Ok(bytes) = serde_json::to_vec(&Value::Object(chunk)) {
                    forward(&mut out, &bytes);
                }
            }
        }
        out.extend_from_slice(DONE);
        out.freeze()
    }

    fn finish(self, truncated: Option<GatewayError>) {
        let (usage, usage_source) = match (&self.last_usage, self.content_chunks) {
            (Some((_, v)), _) => (*v, UsageSource::Provider),
            (None, 0) => (UsageVector::default(), UsageSource::None),
            (None, n) => (
                // OpenAI-family servers send about one token per content chunk.
                UsageVector {
                    prompt_tokens: self.ex.estimated_prompt_tokens(),
                    completion_tokens: n,
                    ..UsageVector::default()
                },
                UsageSource::Estimated,
            ),
        };
        let (outcome, error_code) = if self.client_gone {
            (
                Outcome::ClientDisconnected,
                Some("client_disconnected".to_string()),
            )
        } else if let Some(e) = &truncated {
            (Outcome::UpstreamError, Some(e.code()))
        } else if let Some(code) = self.upstream_error.clone() {
            (Outcome::UpstreamError, Some(code))
        } else {
            (Outcome::Success, None)
        };
        if let Some(e) = &truncated {
            if !self.client_gone {
                tracing::warn!(target: "tollgate::relay", request_id = %self.ex.event_id, error = %e, "stream truncated");
            }
        }
        self.ex.finish(Ending {
            outcome,
            http_status: 200,
            error_code,
            usage,
            usage_source,
        });
    }
}

/// `"usage":null` is what an OpenAI chunk carries on every chunk once usage was requested. When it is the
/// chunk's only mention of usage (and there is no error), it is cut out at byte level instead of re-encoding
/// the chunk. In compact JSON an unescaped `"usage":null` can only be a key and its value.
fn strip_null_usage(payload: &[u8]) -> Option<Vec<u8>> {
    if memchr::memmem::find_iter(payload, b"\"usage\"").count() != 1
        || memchr::memmem::find(payload, b"\"error\"").is_some()
    {
        return None;
    }
    for pattern in [&b",\"usage\":null"[..], &b"\"usage\":null,"[..]] {
        if let Some(at) = memchr::memmem::find(payload, pattern) {
            let mut out = Vec::with_capacity(payload.len());
            out.extend_from_slice(&payload[..at]);
            out.extend_from_slice(&payload[at + pattern.len()..]);
            return Some(out);
        }
    }
    None
}

fn forward(out: &mut BytesMut, payload: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::strip_null_usage;

    #[test]
    fn null_usage_is_cut_only_where_it_is_the_key_and_value() {
        let cut = |s: &str| strip_null_usage(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            cut(r#"{"id":"x","choices":[],"usage":null}"#).as_deref(),
            Some(r#"{"id":"x","choices":[]}"#)
        );
        assert_eq!(
            cut(r#"{"usage":null,"id":"x"}"#).as_deref(),
            Some(r#"{"id":"x"}"#)
        );
        assert_eq!(
            cut(r#"{"id":"x","usage":{"prompt_tokens":1}}"#),
            None,
            "real usage is parsed instead"
        );
        assert_eq!(
            cut(r#"{"id":"x", "usage": null}"#),
            None,
            "not compact: parsed instead"
        );
        assert_eq!(cut(r#"{"error":{"message":"m"},"usage":null}"#), None);
    }
}
