//! The Anthropic Messages API (`kind = "anthropic"`): the first upstream that does not speak OpenAI's wire.
//!
//! `POST {base}/v1/messages` with `x-api-key: <key>` and `anthropic-version: 2023-06-01`. Translation lives
//! in [`request`] (OpenAI → Messages), [`response`] (message → `chat.completion`, usage, finish reasons),
//! [`stream`] (Messages SSE → chunks) and [`error`]. A body that is already a Messages request (the inbound
//! `/v1/messages` API) is sent as the client wrote it, with only `model` set ([`Adapter::native_request`]),
//! so `cache_control`, documents and thinking signatures survive.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{Map, Value};
use tollgate_schemas::Endpoint;

use super::adapter::{Adapter, StreamTranslator};
use crate::error::GatewayError;

/// The Messages API version this translation follows.
pub const API_VERSION: &str = "2023-06-01";

/// The Anthropic adapter (stateless).
pub struct Anthropic;

impl Adapter for Anthropic {
    fn chat_url(&self, base: &str, _upstream_model: &str, _stream: bool) -> String {
        // The API root is the documented base (as in the SDKs); a base already ending in `/v1` is accepted too.
        match base.strip_suffix("/v1") {
            Some(root) => format!("{root}/v1/messages"),
            None => format!("{base}/v1/messages"),
        }
    }

    fn auth_header(&self, key: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-api-key"), key.to_string())
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", API_VERSION)]
    }

    fn chat_request(
        &self,
        openai: Map<String, Value>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, GatewayError> {
        request::to_anthropic(openai, upstream_model, stream)
    }

    fn native_endpoint(&self) -> Option<Endpoint> {
        Some(Endpoint::Messages)
    }

    fn native_request(
        &self,
        native: &[u8],
        upstream_model: &str,
        stream: bool,
        cap: Option<u32>,
    ) -> Result<Bytes, GatewayError> {
        let mut body: Map<String, Value> = serde_json::from_slice(native)
            .map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        body.insert("model".into(), Value::String(upstream_model.into()));
        body.entry("max_tokens")
            .or_insert(cap.map_or(Value::from(request::DEFAULT_MAX_TOKENS), Value::from));
        if stream {
            body.insert("stream".into(), Value::Bool(true));
        } else {
            body.remove("stream");
        }
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        response::to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(stream::AnthropicStream::default())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_auth() {
        let a = Anthropic;
        assert_eq!(
            a.chat_url("https://api.anthropic.com", "claude-x", false),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            a.chat_url("http://h:1/anthropic/v1", "claude-x", true),
            "http://h:1/anthropic/v1/messages"
        );
        let (name, value) = a.auth_header("sk-ant-1");
        assert_eq!((name.as_str(), value.as_str()), ("x-api-key", "sk-ant-1"));
        let native = a.native_request(br#"{"model":"public","messages":[],"stream":true,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]}"#, "claude-x", false, None).unwrap();
        let v: Value = serde_json::from_slice(&native).unwrap();
        assert_eq!(v["model"], "claude-x");
        assert_eq!(v["max_tokens"], request::DEFAULT_MAX_TOKENS);
        assert!(v.get("stream").is_none());
        assert_eq!(v["system"][0]["cache_control"]["type"], "ephemeral");
    }
}
