//! AWS Bedrock Converse / ConverseStream (`kind = "bedrock"`).
//!
//! `POST {base}/model/{modelId}/converse` (plain) and `…/converse-stream` (binary AWS event-stream), the
//! model id percent-encoded as one path segment (`:` → `%3A`, `/` → `%2F`; SigV4 then encodes it again in
//! the canonical URI). `base` defaults to `https://bedrock-runtime.{region}.amazonaws.com`.
//!
//! Auth is a provider choice (config `aws = { … }`): SigV4 with an access key, secret and optional session
//! token (service `bedrock`, signed over the final URL and body in [`super::Provider::post`]), or Bedrock
//! API keys from `api_keys`, sent as `Authorization: Bearer`.
//!
//! Translation: [`request`] (OpenAI → Converse), [`response`] (Converse → `chat.completion`, usage, stop
//! reasons), [`stream`] (event-stream frames → chunks, exceptions → error chunks), [`error`] (HTTP errors by
//! `x-amzn-errortype`). No native inbound endpoint here. Embeddings go through `InvokeModel`
//! ([`embeddings`]: Titan Text Embeddings, Cohere Embed).

pub mod embeddings;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{Map, Value};

use super::adapter::{Adapter, StreamTranslator};
use super::embeddings::{Embeddings, EmbeddingsRequest};
use super::sign::sigv4::encode_path_segment;
use crate::error::GatewayError;

/// The Bedrock Converse adapter (stateless).
pub struct Bedrock;

/// The Converse (or ConverseStream) URL of `model_id` under `base`.
#[must_use]
pub fn model_url(base: &str, model_id: &str, stream: bool) -> String {
    let operation = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!(
        "{}/model/{}/{operation}",
        base.trim_end_matches('/'),
        encode_path_segment(model_id)
    )
}

impl Adapter for Bedrock {
    fn chat_url(&self, base: &str, upstream_model: &str, stream: bool) -> String {
        model_url(base, upstream_model, stream)
    }

    fn auth_header(&self, key: &str) -> (HeaderName, String) {
        (http::header::AUTHORIZATION, format!("Bearer {key}"))
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
        request::to_converse(openai)
    }

    fn native_request(
        &self,
        native: &[u8],
        _upstream_model: &str,
        _stream: bool,
        _cap: Option<u32>,
    ) -> Result<Bytes, GatewayError> {
        // Unreachable (no native endpoint); kept honest: a Converse body goes as is.
        Ok(Bytes::copy_from_slice(native))
    }

    fn chat_response(&self, body: &[u8], upstream_model: &str) -> Result<Bytes, String> {
        response::to_openai(body, upstream_model)
    }

    fn stream_translator(&self, upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(stream::ConverseStream::new(upstream_model))
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
        Some(embeddings::invoke_url(base, upstream_model))
    }

    fn embeddings_request(
        &self,
        request: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<Vec<Bytes>, GatewayError> {
        embeddings::requests(request, upstream_model)
    }

    fn embeddings_response(&self, headers: &HeaderMap, body: &[u8]) -> Result<Embeddings, String> {
        embeddings::response(headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_the_model_id_once() {
        assert_eq!(
            model_url(
                "https://bedrock-runtime.us-east-1.amazonaws.com",
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                false
            ),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert_eq!(
            model_url(
                "http://h:1/bedrock/",
                "arn:aws:bedrock:us-east-1:123:inference-profile/us.amazon.nova-pro-v1:0",
                true
            ),
            "http://h:1/bedrock/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse-stream"
        );
        let (name, value) = Bedrock.auth_header("ABSKkey");
        assert_eq!(
            (name.as_str(), value.as_str()),
            ("authorization", "Bearer ABSKkey")
        );
    }
}
