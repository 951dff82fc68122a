//! The seam for upstreams whose wire format is not OpenAI's.
//!
//! The gateway's inside speaks OpenAI chat completions: the orchestrator ([`crate::proxy`]) reads OpenAI
//! requests, [`crate::relay`] meters OpenAI SSE and `complete_plain` reads OpenAI usage. An [`Adapter`] only
//! translates at the edge, in both directions, and signs:
//!
//! | step | OpenAI-wire kinds | adapter kinds |
//! |---|---|---|
//! | dispatch | — | [`super::Provider::adapter`] (per model: Vertex picks its publisher's) |
//! | URL, headers | `{base}/chat/completions` (Azure: its deployment / v1 URLs) | [`Adapter::chat_url`] (per model and stream), [`Adapter::fixed_headers`], [`Adapter::stream_headers`] |
//! | credentials | the key's static header | [`Adapter::auth_scheme`] says what a configured key is (a static [`Adapter::auth_header`], a TC3 `ID:SECRET` pair, a Qianfan client-credentials pair); SigV4 (`aws`) and service accounts (`vertex`) come from their own config. All are applied per key slot by [`super::Provider::prepare`] ([`super::credentials`]) |
//! | request body | client bytes (rewritten only for quirks) | [`Adapter::chat_request`] (or [`Adapter::native_request`]) |
//! | plain answer | passed through | [`Adapter::chat_response`] → `chat.completion` JSON |
//! | stream | passed through | [`StreamTranslator`] fed every read → `chat.completion.chunk` SSE, `[DONE]` |
//! | error answer | `upstream_error::classify` | [`Adapter::classify_error`] |
//! | error inside a 2xx answer | — | [`Adapter::answer_error`] (Tencent, Baidu, DashScope: errors come with HTTP 200) |
//! | refused access token | — | [`Adapter::token_rejected`] (Vertex 401, Qianfan 110 / 111): the token is dropped and the request sent once more |
//! | embeddings | `{base}/embeddings`, client bytes | [`Adapter::embeddings_url`] (`None`: refused, 400), [`Adapter::embeddings_request`] (one or more native calls, sent concurrently as one attempt), [`Adapter::embeddings_response`] → [`Embeddings`]; the OpenAI answer is written once ([`super::embeddings::openai_body`]) |
//!
//! Limits, retries, failover, cooldown, metering and events stay in the orchestrator, once. The OpenAI-wire
//! kinds never reach this module ([`super::Provider::adapter`] is `None`): their path has no added
//! allocation.
//!
//! Credentials are the [`super::Provider`]'s key slots, not the adapter's: [`super::Provider::prepare`] signs
//! or fetches per request; the adapter's [`Adapter::auth_header`] formats a key or a header-borne token.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{Map, Value};
use tollgate_schemas::Endpoint;

use super::embeddings::{Embeddings, EmbeddingsRequest};
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
    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

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
    /// Default: none.
    fn native_endpoint(&self) -> Option<Endpoint> {
        None
    }

    /// A body in the upstream's own format → the body to send: only the model (and required defaults) set,
    /// and `cap`, an output cap the gateway adds (a budgeted request that set none), where the body has none.
    ///
    /// Default (no native endpoint, so never called): the body as it is.
    ///
    /// # Errors
    /// [`GatewayError::MalformedJson`] when the body is not a JSON object.
    fn native_request(
        &self,
        native: &[u8],
        _upstream_model: &str,
        _stream: bool,
        _cap: Option<u32>,
    ) -> Result<Bytes, GatewayError> {
        Ok(Bytes::copy_from_slice(native))
    }

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

    /// How requests are authenticated (default: the static [`Adapter::auth_header`] per key).
    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::Header
    }

    /// Headers only streamed requests carry (DashScope's `X-DashScope-SSE: enable`).
    fn stream_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// An error carried by a 2xx answer (a plain body, or a stream answered with JSON instead of SSE), for
    /// upstreams that report errors with HTTP 200; `None` when `body` is not an error.
    fn answer_error(
        &self,
        _provider: &str,
        _headers: &HeaderMap,
        _body: &[u8],
    ) -> Option<GatewayError> {
        None
    }

    /// Whether an answer says the access token it carried was refused before its time (revoked, rotated,
    /// expired early): the token is dropped and the request sent once more with a fresh one. Asked only of
    /// requests that carried a token, for error statuses and for [`Adapter::answer_error`] bodies. Default:
    /// HTTP 401 (Vertex); Qianfan v1 says so with error 110 / 111 inside an HTTP 200.
    fn token_rejected(&self, status: StatusCode, _body: &[u8]) -> bool {
        status == StatusCode::UNAUTHORIZED
    }

    /// The embeddings endpoint for `upstream_model` under `base`; `None` (the default) when this wire has no
    /// embeddings API here: the request is refused (400) before anything is sent.
    fn embeddings_url(&self, _base: &str, _upstream_model: &str) -> Option<String> {
        None
    }

    /// An OpenAI embeddings request → the upstream bodies, one per call: several when the upstream takes
    /// fewer inputs per call than the client sent (the calls go out concurrently, as one attempt, and their
    /// answers are joined in order). Asked only when [`Adapter::embeddings_url`] is `Some`.
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] when the request cannot be expressed upstream (default: always).
    fn embeddings_request(
        &self,
        _request: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<Vec<Bytes>, GatewayError> {
        Err(GatewayError::InvalidRequest {
            message: format!("the model {upstream_model:?} has no embeddings API here"),
            param: Some("model"),
        })
    }

    /// One call's successful answer (its headers carry the count on some wires: Bedrock's
    /// `x-amzn-bedrock-input-token-count`) → its vectors in input order and the tokens counted, if said.
    ///
    /// # Errors
    /// A description of what is wrong with the body (the caller makes it an upstream failure).
    fn embeddings_response(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
    ) -> Result<Embeddings, String> {
        Err("this wire has no embeddings API".into())
    }
}

/// How an adapter kind's requests carry credentials. Keys of the non-header schemes are configured as
/// `ID:SECRET` pairs in `api_keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// One static header per key ([`Adapter::auth_header`]).
    Header,
    /// Tencent Cloud TC3-HMAC-SHA256 over each request (`SecretId:SecretKey`).
    Tc3 {
        service: &'static str,
        action: &'static str,
        version: &'static str,
    },
    /// An OAuth client-credentials access token in the `access_token` query parameter (`ApiKey:SecretKey`),
    /// fetched from `{scheme}://{host}/oauth/2.0/token` of the base URL and cached (Baidu Qianfan v1).
    QueryToken,
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

/// A translator of an upstream SSE stream, one event's `data` payload at a time: implementing it gives the
/// [`StreamTranslator`] (reads decoded into events, a last unterminated event at the end).
pub trait SseEventTranslator: Send {
    /// The decoder that splits this stream's reads into events.
    fn decoder(&mut self) -> &mut crate::sse::SseDecoder;

    /// Translates one event's payload into `out`.
    fn event(&mut self, payload: &[u8], out: &mut BytesMut);

    /// After the last event of a body that ended (cut or not); nothing by default.
    fn ended(&mut self, _out: &mut BytesMut) {}
}

impl<T: SseEventTranslator> StreamTranslator for T {
    fn push(&mut self, read: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for payload in self.decoder().push(read) {
            self.event(&payload, &mut out);
        }
        out.freeze()
    }

    fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(payload) = self.decoder().finish() {
            self.event(&payload, &mut out);
        }
        self.ended(&mut out);
        out.freeze()
    }
}
