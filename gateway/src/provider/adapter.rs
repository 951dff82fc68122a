//! The seam for upstreams whose wire format is not OpenAI's.
//!
//! The gateway's inside speaks OpenAI chat completions: the orchestrator ([`crate::proxy`]) reads OpenAI
//! requests, [`crate::relay`] meters OpenAI SSE and `complete_plain` reads OpenAI usage. An [`Adapter`] only
//! translates at the edge, in both directions, and signs:
//!
//! | step | OpenAI-wire kinds | adapter kinds |
//! |---|---|---|
//! | URL, auth | `{base}/chat/completions` (Azure: its deployment / v1 URLs), the key's header | [`Adapter::chat_url`] (per model and stream), [`Adapter::auth_header`], [`Adapter::fixed_headers`] |
//! | signing, tokens | — | per key slot in [`super::Provider::prepare`]: a static header, SigV4 over the final URL and body (Bedrock), or an OAuth access token (Vertex: service account) |
//! | request body | client bytes (rewritten only for quirks) | [`Adapter::chat_request`] (or [`Adapter::native_request`]) |
//! | plain answer | passed through | [`Adapter::chat_response`] → `chat.completion` JSON |
//! | stream | passed through | [`StreamTranslator`] fed every read → `chat.completion.chunk` SSE, `[DONE]` |
//! | error answer | `upstream_error::classify` | [`Adapter::classify_error`] |
//!
//! Limits, retries, failover, cooldown, metering and events stay in the orchestrator, once. The OpenAI-wire
//! kinds never reach this module ([`super::Provider::adapter`] is `None`): their path has no added
//! allocation.
//!
//! Credentials that are not a static key (SigV4 keys, Vertex AI's OAuth access token, fetched and cached)
//! are the [`super::Provider`]'s key slots, not the adapter's: [`super::Provider::prepare`] signs or fetches
//! per request, the adapter's [`Adapter::auth_header`] formats a token like a key.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{Map, Value};
use tollgate_schemas::Endpoint;

use crate::error::GatewayError;

/// Translation and signing for one non-OpenAI wire format. Implementations are stateless (`'static`);
/// per-stream state lives in the [`StreamTranslator`] they hand out.
pub trait Adapter: Sync {
    /// The chat endpoint for `upstream_model` under a configured base URL (no trailing `/`); `stream` picks the
    /// streaming method where the upstream has its own (Gemini's `:streamGenerateContent?alt=sse`).
    fn chat_url(&self, base: &str, upstream_model: &str, stream: bool) -> String;

    /// The header that carries an API key, and the value for `key` (the caller marks it sensitive).
    fn auth_header(&self, key: &str) -> (HeaderName, String);

    /// Headers every request carries (API version, …).
    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)];

    /// An OpenAI chat-completions body → the upstream's body, naming `upstream_model`.
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] when the request cannot be expressed upstream.
    fn chat_request(
        &self,
        openai: Map<String, Value>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, GatewayError>;

    /// The inbound endpoint whose body is already in this upstream's format (`/v1/messages` for Anthropic,
    /// `:generateContent` for Gemini):
    /// such a request is sent as the client wrote it ([`Adapter::native_request`]), so nothing is lost.
    fn native_endpoint(&self) -> Option<Endpoint>;

    /// A body in the upstream's own format → the body to send: only the model (and required defaults) set,
    /// and `cap`, an output cap the gateway adds (a budgeted request that set none), where the body has none.
    ///
    /// # Errors
    /// [`GatewayError::MalformedJson`] when the body is not a JSON object.
    fn native_request(
        &self,
        native: &[u8],
        upstream_model: &str,
        stream: bool,
        cap: Option<u32>,
    ) -> Result<Bytes, GatewayError>;

    /// A successful non-streamed upstream body → an OpenAI `chat.completion` JSON object, usage in OpenAI's
    /// shape (`prompt_tokens_details.cached_tokens` / `cache_write_tokens`,
    /// `completion_tokens_details.reasoning_tokens`), so the orchestrator meters it like any other.
    ///
    /// # Errors
    /// A description of what is wrong with the body (the caller makes it an upstream failure).
    /// `upstream_model` is what the request named (for answers that do not say which model ran).
    fn chat_response(&self, body: &[u8], upstream_model: &str) -> Result<Bytes, String>;

    /// A fresh translator for one streamed answer from `upstream_model`.
    fn stream_translator(&self, upstream_model: &str) -> Box<dyn StreamTranslator>;

    /// A non-2xx upstream answer → the gateway's error, with its retryability.
    fn classify_error(
        &self,
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> GatewayError;
}

/// Turns one upstream stream (SSE, or a binary framing such as AWS event-stream) into OpenAI SSE, read by read. Each call returns the complete
/// `data: …\n\n` events the read finished (possibly none); events split across reads are kept until whole.
/// The translator emits `data: [DONE]` when the upstream says it is done, and only then: a stream cut short
/// stays visibly truncated to the relay. Usage goes out as a `choices: []` chunk with an OpenAI `usage`
/// object (the relay keeps the last one and strips it), an upstream error event as `{"error":{…}}`.
pub trait StreamTranslator: Send {
    /// Translates one upstream read.
    fn push(&mut self, read: &[u8]) -> Bytes;

    /// The upstream body ended: whatever an unterminated last event still yields.
    fn finish(&mut self) -> Bytes;
}
