//! Per-request scripts for the mock upstream.

use std::time::Duration;

use serde_json::Value;

/// What the mock should do with one request. Keys (all optional):
///
/// | key | effect |
/// |---|---|
/// | `status=N` | answer with HTTP `N` and an error body of the dialect (`code=…`, `type=…`, `message=…` shape it) |
/// | `retry_after=S` | send `retry-after: S` with the error (Gemini / Vertex: `RetryInfo.retryDelay: "Ss"` in the body) |
/// | `latency_ms=N` | wait before sending headers |
/// | `chunks=N` | content chunks in a stream (default 4); also the completion tokens |
/// | `chunk_delay_ms=N` | wait between stream chunks |
/// | `cut_after=N` | end the stream cleanly after `N` content chunks, with no usage and no `[DONE]` |
/// | `reset_after=N` | abort the connection after `N` chunks (`0`: a stream before its first byte; a plain answer mid-body) |
/// | `error_after=N` | send an in-stream `{"error":…}` event after `N` chunks, then `[DONE]` |
/// | `prompt_tokens=N`, `completion_tokens=N`, `cached_tokens=N`, `reasoning_tokens=N` | reported usage |
/// | `cache_write_tokens=N` | cache writes (Anthropic dialect: `cache_creation_input_tokens`) |
/// | `finish=REASON` | the finish reason of the answer (Azure / Bedrock dialects: `content_filter`, `guardrail_intervened`, …) |
/// | `fixture=NAME` | stream the recorded body `fixtures/openai/chat-completions-streaming/NAME.sse` verbatim (Anthropic dialect: `fixtures/anthropic/streaming/NAME.{txt,sse}`; Gemini / Vertex: `fixtures/gemini/mock-responses/NAME.txt`, plain answers `NAME.json`, NAME like `googleai/unary-success-basic-reply-short`) |
/// | `only_key=KEY` | the faults above (status, latency, cut, reset, error) apply only to requests signed with `Bearer KEY` (or `x-api-key: KEY`, `api-key: KEY`, `x-goog-api-key: KEY`, a SigV4 access key id `KEY`) |
/// | `every=N` | …and only to every N-th such request (the 1st, N+1th, …): a key failing 1/N of its calls |
/// | `cumulative=1` | DashScope native: each stream event repeats the whole text so far, as models that ignore `incremental_output` do |
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub error_type: Option<String>,
    pub message: Option<String>,
    pub retry_after: Option<String>,
    pub latency: Option<Duration>,
    pub chunks: Option<u64>,
    pub chunk_delay: Option<Duration>,
    pub cut_after: Option<u64>,
    pub reset_after: Option<u64>,
    pub error_after: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub fixture: Option<String>,
    pub finish: Option<String>,
    pub only_key: Option<String>,
    pub every: Option<u64>,
    pub cumulative: Option<bool>,
}

impl Directives {
    /// Reads directives from the request's `model` (`name?k=v&…`) and then from a `[mock:k=v&…]` tag in
    /// the messages or the embeddings inputs (`input`, Gemini `requests`, Vertex `instances`); later values
    /// win.
    #[must_use]
    pub fn of(body: &Value) -> Self {
        let mut d = Self::default();
        if let Some((_, query)) = body
            .get("model")
            .and_then(Value::as_str)
            .and_then(|m| m.split_once('?'))
        {
            d.apply(query);
        }
        let mut texts = Vec::new();
        collect_text(body.get("messages"), &mut texts);
        collect_text(body.get("input"), &mut texts);
        collect_text(body.get("contents"), &mut texts);
        // Embeddings bodies: Gemini `requests[].content`, Vertex `instances[].content`.
        collect_text(body.get("requests"), &mut texts);
        collect_text(body.get("instances"), &mut texts);
        for text in texts {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("[mock:") {
                let tag = &rest[start + 6..];
                let Some(end) = tag.find(']') else { break };
                d.apply(&tag[..end]);
                rest = &tag[end..];
            }
        }
        d
    }

    fn apply(&mut self, query: &str) {
        for pair in query.split('&') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let num = v.parse::<u64>().ok();
            let ms = num.map(Duration::from_millis);
            match k {
                "status" => self.status = v.parse().ok(),
                "code" => self.code = Some(v.into()),
                "type" => self.error_type = Some(v.into()),
                "message" => self.message = Some(v.replace('+', " ")),
                "retry_after" => self.retry_after = Some(v.into()),
                "latency_ms" => self.latency = ms,
                "chunks" => self.chunks = num,
                "chunk_delay_ms" => self.chunk_delay = ms,
                "cut_after" => self.cut_after = num,
                "reset_after" => self.reset_after = num,
                "error_after" => self.error_after = num,
                "prompt_tokens" => self.prompt_tokens = num,
                "completion_tokens" => self.completion_tokens = num,
                "cached_tokens" => self.cached_tokens = num,
                "reasoning_tokens" => self.reasoning_tokens = num,
                "cache_write_tokens" => self.cache_write_tokens = num,
                "fixture" => self.fixture = Some(v.into()),
                "finish" => self.finish = Some(v.into()),
                "only_key" => self.only_key = Some(v.into()),
                "every" => self.every = num.filter(|n| *n > 0),
                "cumulative" => self.cumulative = Some(v == "1" || v == "true"),
                _ => {}
            }
        }
    }
}

impl Directives {
    /// The same script with every fault removed: what a request the faults do not target gets.
    #[must_use]
    pub fn without_faults(self) -> Self {
        Self {
            status: None,
            latency: None,
            cut_after: None,
            reset_after: None,
            error_after: None,
            only_key: None,
            every: None,
            ..self
        }
    }
}

fn collect_text(v: Option<&Value>, out: &mut Vec<String>) {
    match v {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Array(items)) => items.iter().for_each(|i| collect_text(Some(i), out)),
        Some(Value::Object(o)) => {
            collect_text(o.get("content"), out);
            collect_text(o.get("text"), out);
            collect_text(o.get("parts"), out);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_model_query_and_message_tags_with_tags_winning() {
        let d = Directives::of(&json!({
            "model": "gpt?status=429&retry_after=2&chunks=3",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi [mock:chunks=7&cut_after=2]"}]}]
        }));
        assert_eq!(d.status, Some(429));
        assert_eq!(d.retry_after.as_deref(), Some("2"));
        assert_eq!(d.chunks, Some(7));
        assert_eq!(d.cut_after, Some(2));
        assert_eq!(
            Directives::of(&json!({"model": "plain"})),
            Directives::default()
        );
    }
}
