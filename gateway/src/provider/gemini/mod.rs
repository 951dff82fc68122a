//! The Gemini API (`kind = "gemini"`): Google's `generateContent`, not OpenAI's wire.
//!
//! `POST {base}/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse` for streams (SSE, every
//! event a whole `GenerateContentResponse`), with `x-goog-api-key: <key>`; base
//! `https://generativelanguage.googleapis.com/v1beta`. Translation lives in [`request`] (OpenAI →
//! `GenerateContentRequest`), [`response`] (→ `chat.completion`, usage, finish reasons), [`stream`] (SSE →
//! chunks) and [`error`] (Google error bodies, `RetryInfo`). Vertex AI's Gemini models share all of it
//! ([`super::vertex`]). A body that is already a Gemini request (the inbound `:generateContent` API) is sent
//! as the client wrote it ([`Adapter::native_request`]), so safety settings, thought signatures and every
//! Gemini-only field survive.
//!
//! Embeddings: `/v1/embeddings` becomes `:batchEmbedContents` ([`embeddings`]).

pub mod embeddings;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};
use tollgate_schemas::Endpoint;

use super::adapter::{Adapter, StreamTranslator};
use super::embeddings::{Embeddings, EmbeddingsRequest};
use crate::error::GatewayError;

/// Separates a made-up tool-call id from the `thoughtSignature` of its `functionCall`: the id is what an
/// OpenAI client always sends back, so the signature Gemini requires on later turns rides in it.
pub const SIGNATURE_MARK: &str = "__thought__";

/// Everything but unreserved characters and `@` (Vertex model versions: `claude-sonnet-4-5@20250929`) is
/// escaped in the model's path segment.
const MODEL_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// `{prefix}{model}:{method}`: the model escaped as one path segment (a leading `models/` dropped), the
/// streaming method asking for SSE.
#[must_use]
pub fn method_url(prefix: &str, model: &str, method: &str, stream_method: Option<&str>) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let model = utf8_percent_encode(model, MODEL_SEGMENT);
    match stream_method {
        Some(m) => format!("{prefix}{model}:{m}"),
        None => format!("{prefix}{model}:{method}"),
    }
}

/// The `generateContent` URL (or the streaming one) under `{prefix}`.
#[must_use]
pub fn generate_url(prefix: &str, model: &str, stream: bool) -> String {
    method_url(
        prefix,
        model,
        "generateContent",
        stream.then_some("streamGenerateContent?alt=sse"),
    )
}

/// OpenAI body → `generateContent` body bytes.
///
/// # Errors
/// As [`request::to_gemini`].
pub fn chat_body(openai: Map<String, Value>) -> Result<Bytes, GatewayError> {
    let body = request::to_gemini(openai)?;
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

/// A client's own `generateContent` body, sent as it is (model and streaming are in the URL); an output cap
/// the gateway adds is set in `generationConfig.maxOutputTokens` when the client set none.
///
/// # Errors
/// [`GatewayError::MalformedJson`] when it is not a JSON object.
pub fn native_body(native: &[u8], cap: Option<u32>) -> Result<Bytes, GatewayError> {
    let Some(cap) = cap else {
        return Ok(Bytes::copy_from_slice(native));
    };
    let mut body: Map<String, Value> =
        serde_json::from_slice(native).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let config = body
        .entry("generationConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(config) = config {
        config.entry("maxOutputTokens").or_insert(Value::from(cap));
    }
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

/// The Gemini API adapter (stateless).
pub struct Gemini;

impl Adapter for Gemini {
    fn chat_url(&self, base: &str, upstream_model: &str, stream: bool) -> String {
        generate_url(&format!("{base}/models/"), upstream_model, stream)
    }

    fn auth_header(&self, key: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-goog-api-key"), key.to_string())
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn chat_request(
        &self,
        openai: Map<String, Value>,
        _upstream_model: &str,
        _stream: bool,
    ) -> Result<Bytes, GatewayError> {
        chat_body(openai)
    }

    fn native_endpoint(&self) -> Option<Endpoint> {
        Some(Endpoint::GenerateContent)
    }

    fn native_request(
        &self,
        native: &[u8],
        _upstream_model: &str,
        _stream: bool,
        cap: Option<u32>,
    ) -> Result<Bytes, GatewayError> {
        native_body(native, cap)
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        response::to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(stream::GeminiStream::default())
    }

    fn classify_error(
        &self,
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> GatewayError {
        error::classify(provider, status, headers, body)
    }

    fn embeddings_url(&self, base: &str, upstream_model: &str) -> Option<String> {
        Some(embeddings::batch_url(base, upstream_model))
    }

    fn embeddings_request(
        &self,
        request: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<Vec<Bytes>, GatewayError> {
        embeddings::batch_requests(request, upstream_model)
    }

    fn embeddings_response(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Embeddings, String> {
        embeddings::batch_response(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_auth_and_native_bodies() {
        let g = Gemini;
        let base = "https://generativelanguage.googleapis.com/v1beta";
        assert_eq!(
            g.chat_url(base, "gemini-2.5-flash", false),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            g.chat_url(base, "models/gemini-2.5-flash", true),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            g.chat_url("http://h", "m?status=429&x=1", false),
            "http://h/models/m%3Fstatus%3D429%26x%3D1:generateContent"
        );
        let (name, value) = g.auth_header("AIza-1");
        assert_eq!(
            (name.as_str(), value.as_str()),
            ("x-goog-api-key", "AIza-1")
        );
        let native =
            br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"safetySettings":[]}"#;
        assert_eq!(
            &g.native_request(native, "m", true, None).unwrap()[..],
            &native[..]
        );
        let capped: Value =
            serde_json::from_slice(&g.native_request(native, "m", false, Some(64)).unwrap())
                .unwrap();
        assert_eq!(capped["generationConfig"]["maxOutputTokens"], 64);
        assert_eq!(capped["safetySettings"], serde_json::json!([]));
    }
}
