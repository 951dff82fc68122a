//! What the provider suites (`anthropic`, `bedrock`, `gemini`, `azure`, `native_cn`, `conformance`) share on
//! the OpenAI-client side: the requests they send (one user turn, the `get_weather` tool and its result
//! turns, the mock's cache scenario), the OpenAI stream that comes back (chunks, deltas, finish reasons, usage
//! and error chunks), and the usage event each call leaves (outcome, token counts, cost).

use serde_json::{json, Value};
use tollgate_schemas::{Endpoint, Outcome, UsageEvent, UsageSource, UsageVector};

use super::{request_id, sse_payloads, Harness};

// ---- requests --------------------------------------------------------------------------------------------

/// The one function tool the provider suites declare: `get_weather(city)`, `city` required. The mock
/// answers a request with tools by calling it for Paris.
pub fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

/// A finished tool round: the user asks for the weather in Paris, the assistant calls `get_weather` as
/// `call_1`, and the tool answers `result`.
pub fn weather_tool_turns(result: &str) -> Vec<Value> {
    vec![
        json!({"role": "user", "content": "Weather in Paris?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": result}),
    ]
}

/// Two parallel calls answered together: `get_weather` for Paris as `ids[0]` (18C) and for Rome as
/// `ids[1]` (21C).
pub fn paris_and_rome_turns(ids: [&str; 2]) -> Value {
    let [paris, rome] = ids;
    json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": paris, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": rome, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": paris, "content": "18C"},
        {"role": "tool", "tool_call_id": rome, "content": "21C"}])
}

/// A `get_weather` call whose arguments parse to `{"city": "Paris"}`: the mock's answer to [`weather_tools`].
pub fn assert_paris_weather_call(call: &Value) {
    assert_eq!(call["function"]["name"], "get_weather", "{call}");
    let args = call["function"]["arguments"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Paris"})
    );
}

/// The mock's cache scenario: a 1000-token prompt, 600 of it read from the cache and 100 written to it, and
/// 10 tokens out. [`assert_cache_usage`] is what an OpenAI client sees of it, [`CACHE_USAGE`] what is metered.
pub const CACHE_DIRECTIVES: &str =
    "[mock:prompt_tokens=1000&cached_tokens=600&cache_write_tokens=100&completion_tokens=10]";

/// The usage event's tokens for [`CACHE_DIRECTIVES`]: reads and writes are part of the prompt.
pub const CACHE_USAGE: UsageVector = UsageVector {
    prompt_tokens: 1000,
    completion_tokens: 10,
    cached_read_tokens: 600,
    cache_write_tokens: 100,
    reasoning_tokens: 0,
};

/// [`CACHE_USAGE`] at claude-sonnet-4-5's list prices (the shipped table's Anthropic, Bedrock and Vertex
/// rows): 300 fresh × $3, 600 read × $0.30, 100 written × $3.75, 10 out × $15 (per Mtok), in nano-USD.
pub const SONNET_CACHE_COST: u64 = 300 * 3000 + 600 * 300 + 100 * 3750 + 10 * 15000;

/// The OpenAI `usage` object (of an answer or a stream's usage chunk) for [`CACHE_DIRECTIVES`]: the cache
/// reads and writes inside `prompt_tokens`, each also named in `prompt_tokens_details`.
pub fn assert_cache_usage(usage: &Value) {
    assert_eq!(usage["prompt_tokens"], 1000, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 600,
        "{usage}"
    );
    assert_eq!(
        usage["prompt_tokens_details"]["cache_write_tokens"], 100,
        "{usage}"
    );
    assert_eq!(usage["total_tokens"], 1010, "{usage}");
}

// ---- answers ---------------------------------------------------------------------------------------------

/// A 200 answer: its request id and JSON body.
pub async fn read_ok(r: reqwest::Response) -> (String, Value) {
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    (id, r.json().await.unwrap())
}

/// The mock's default answer as an OpenAI client gets it: a `chat.completion` whose one choice says
/// "tok0 tok1 tok2 tok3 " and stops, counted as `prompt_tokens` in and 4 out.
pub fn assert_mock_completion(body: &Value, prompt_tokens: u64) {
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(body["usage"]["completion_tokens"], 4);
}

// ---- the OpenAI stream back ------------------------------------------------------------------------------

/// A streamed answer read whole and checked to be a well-formed OpenAI stream: 200 `text/event-stream`,
/// every chunk a `chat.completion.chunk`, the first delta the assistant's role, `[DONE]` last. Returns the
/// request id and the chunks.
pub async fn assert_openai_stream(r: reqwest::Response) -> (String, Vec<Value>) {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    (id, chunks)
}

/// A stream the upstream broke with an error event: 200, one error chunk and it last, `[DONE]` after it, and
/// an upstream-error event with `code`. Returns the chunks and the error chunk.
pub async fn assert_stream_error(
    h: &Harness,
    r: reqwest::Response,
    code: &str,
) -> (Vec<Value>, Value) {
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    let errors = error_chunks(&chunks);
    assert_eq!(errors.len(), 1, "{chunks:?}");
    let error = errors[0].clone();
    assert_eq!(chunks.last(), Some(&error), "the error chunk is last");
    assert_upstream_error(&h.wait_event(&id).await, code);
    (chunks, error)
}

/// A stream the upstream cut before its end: `[DONE]` still last, after a `stream_truncated` error chunk, and
/// an upstream-error event with that code. Returns the chunks and the event (its usage source and counts
/// depend on the dialect).
pub async fn assert_stream_cut(h: &Harness, r: reqwest::Response) -> (Vec<Value>, UsageEvent) {
    let id = request_id(&r);
    let (chunks, last) = stream_chunks(&r.text().await.unwrap());
    assert_eq!(last.as_deref(), Some("[DONE]"));
    assert_eq!(chunks.last().unwrap()["error"]["code"], "stream_truncated");
    let e = h.wait_event(&id).await;
    assert_upstream_error(&e, "stream_truncated");
    (chunks, e)
}

/// An OpenAI SSE body → its chunks as JSON (`[DONE]` left out) and the last payload as sent.
pub fn stream_chunks(body: &str) -> (Vec<Value>, Option<String>) {
    let payloads = sse_payloads(body);
    let last = payloads.last().cloned();
    let chunks = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    (chunks, last)
}

/// The first choice's `delta.{field}` (`content`, `reasoning_content`…) of every chunk, joined.
pub fn delta_text(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"][field].as_str())
        .collect()
}

/// Every finish reason the chunks carry, in order (a well-formed stream has exactly one).
pub fn finish_reasons(chunks: &[Value]) -> Vec<&str> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect()
}

/// The chunks with a `usage` (absent and `null` do not count); each must be an object.
pub fn usage_chunks(chunks: &[Value]) -> Vec<&Value> {
    let usage: Vec<&Value> = chunks
        .iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    for c in &usage {
        assert!(c["usage"].is_object(), "usage is not an object: {c}");
    }
    usage
}

/// The chunks that carry an `error`.
pub fn error_chunks(chunks: &[Value]) -> Vec<&Value> {
    chunks.iter().filter(|c| c.get("error").is_some()).collect()
}

/// The `tool_calls` of every delta that has them, in order.
pub fn streamed_calls(chunks: &[Value]) -> Vec<&Value> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect()
}

/// The first tool call's `arguments` deltas of a stream, joined and parsed as JSON.
pub fn streamed_arguments(chunks: &[Value]) -> Value {
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    serde_json::from_str(&args).unwrap_or_else(|e| panic!("arguments {args:?}: {e}"))
}

// ---- the usage event -------------------------------------------------------------------------------------

/// Prompt and completion tokens only (no cache, no reasoning).
pub fn tokens(prompt: u64, completion: u64) -> UsageVector {
    UsageVector {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..UsageVector::default()
    }
}

/// A chat completion that `provider` (of `kind`) answered, with the provider's own token counts.
pub fn assert_chat_success(e: &UsageEvent, provider: &str, kind: &str) {
    assert_eq!(
        (e.provider.as_str(), e.provider_kind.as_str()),
        (provider, kind)
    );
    assert_eq!(
        (e.outcome, e.endpoint, e.usage_source),
        (
            Outcome::Success,
            Endpoint::ChatCompletions,
            UsageSource::Provider
        )
    );
}

/// A call the upstream failed (in a stream too) with this error code.
pub fn assert_upstream_error(e: &UsageEvent, code: &str) {
    assert_eq!(
        (e.outcome, e.error_code.as_deref()),
        (Outcome::UpstreamError, Some(code))
    );
}

/// A price applied, in USD: `nanos` nano-USD.
pub fn assert_usd_cost(e: &UsageEvent, nanos: u64) {
    assert!(!e.cost.price_missing);
    assert_eq!((e.cost.nanos, e.cost.currency.as_str()), (nanos, "USD"));
}

/// An upstream that refused the gateway's credentials: a 502 `upstream_auth_failed` to the client and on the
/// event, and none of `secrets` in the answer. Returns the event.
pub async fn assert_upstream_auth_failed(
    h: &Harness,
    r: reqwest::Response,
    secrets: &[&str],
) -> UsageEvent {
    assert_eq!(r.status(), 502);
    let id = request_id(&r);
    let text = r.text().await.unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed", "{body}");
    let e = h.event(&id).await;
    assert_eq!(e.error_code.as_deref(), Some("upstream_auth_failed"));
    e
}

/// The key each upstream request carried in `header`, in order.
pub fn upstream_keys(h: &Harness, header: &str) -> Vec<String> {
    h.mock
        .requests()
        .iter()
        .map(|r| r.header(header).unwrap().to_string())
        .collect()
}
