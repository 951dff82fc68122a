//! Reading a client's request: checked once, kept as the client's bytes.
//!
//! An Anthropic-format request (`/v1/messages`) or a Gemini-format one (`:generateContent`, whose model and
//! streaming come from the URL: [`PathTarget`]) is translated once into the OpenAI shape the orchestrator
//! reads (`raw`), and its own bytes are kept (`native`) for deployments of that format, which get them
//! unchanged.

use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tollgate_schemas::Endpoint;

use crate::error::GatewayError;
use crate::provider::adapter::Adapter;
use crate::provider::embeddings::EmbeddingsRequest;
use crate::provider::request::{self, RequestFacts};
use crate::routing::Deployment;

/// The model and streaming of a request whose URL names them (Gemini's
/// `models/{model}:streamGenerateContent`), not its body.
#[derive(Debug, Clone)]
pub struct PathTarget {
    pub model: String,
    pub stream: bool,
}

/// What goes upstream for one attempt.
pub enum UpstreamBody {
    /// One body (every chat request; embeddings on the OpenAI wire).
    One(Bytes),
    /// Embeddings through an adapter: one or more native calls, answered together.
    Embeddings(EmbeddingCalls),
}

/// The native calls of one embeddings request, and how the client wants the vectors.
pub struct EmbeddingCalls {
    pub bodies: Vec<Bytes>,
    /// How many vectors the calls must answer in all (one per input).
    pub inputs: usize,
    /// `encoding_format: "base64"`.
    pub base64: bool,
}

/// The fields of a request the gateway reads. serde skips every other field without building it, so a large
/// prompt is scanned once and never copied.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

/// A client's request, read and checked; the body is kept as the client's bytes.
pub struct ClientRequest {
    /// The body in OpenAI chat / embeddings shape: the client's bytes, or the translation of a `/v1/messages`
    /// or `:generateContent` body.
    pub raw: Bytes,
    /// A `/v1/messages` or `:generateContent` body as the client sent it.
    pub native: Option<Bytes>,
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// `x-tollgate-end-user`, else `user`.
    pub end_user: Option<String>,
    /// Business tags (`x-tollgate-tags` over `metadata`).
    pub tags: std::collections::BTreeMap<String, String>,
    pub has_max_completion_tokens: bool,
    /// The output cap the client asked for (`max_completion_tokens`, else `max_tokens`).
    pub max_output_tokens: Option<u32>,
    /// An output cap the gateway adds upstream (a budgeted request that set none: its worst case must be
    /// finite).
    pub injected_max_tokens: Option<u32>,
}

fn invalid(message: &str, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

impl ClientRequest {
    pub fn read(
        endpoint: Endpoint,
        target: Option<&PathTarget>,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        limit: usize,
    ) -> Result<Self, GatewayError> {
        if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.eq_ignore_ascii_case("application/json") {
                return Err(GatewayError::UnsupportedContentType(
                    ct.chars().take(100).collect(),
                ));
            }
        }
        let raw = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                GatewayError::BodyTooLarge { limit }
            } else {
                GatewayError::InvalidRequest {
                    message: format!("cannot read the request body: {rejection}"),
                    param: None,
                }
            }
        })?;
        // serde would read a struct from an array too; the body must be an object.
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(GatewayError::MalformedJson(
                "the request body must be a JSON object".into(),
            ));
        }
        let (raw, native) = match (endpoint, target) {
            (Endpoint::Messages, _) => (crate::messages::request::to_openai(&raw)?, Some(raw)),
            (Endpoint::GenerateContent, Some(target)) => (
                crate::generate_content::request::to_openai(&raw, &target.model, target.stream)?,
                Some(raw),
            ),
            (Endpoint::GenerateContent, None) => {
                return Err(GatewayError::Internal(
                    "a generateContent request without its model".into(),
                ))
            }
            _ => (raw, None),
        };
        let peek: Peek<'_> =
            serde_json::from_slice(&raw).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        let model = match peek.model.map(|m| serde_json::from_str::<String>(m.get())) {
            Some(Ok(m)) if !m.is_empty() => m,
            _ => {
                return Err(invalid(
                    "you must provide a model parameter (a non-empty string)",
                    "model",
                ))
            }
        };
        let stream = match peek
            .stream
            .map(|s| serde_json::from_str::<Option<bool>>(s.get()))
        {
            None | Some(Ok(None | Some(false))) => false,
            Some(Ok(Some(true))) if endpoint != Endpoint::Embeddings => true,
            Some(Ok(Some(true))) => return Err(invalid("embeddings cannot stream", "stream")),
            Some(Err(_)) => return Err(invalid("`stream` must be a boolean", "stream")),
        };
        let include_usage = peek
            .stream_options
            .and_then(|o| serde_json::from_str::<Value>(o.get()).ok())
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        let end_user = peek
            .user
            .and_then(|u| serde_json::from_str::<String>(u.get()).ok())
            .map(|u| u.chars().take(256).collect());
        let end_user = super::attribution::end_user(headers, end_user)?;
        let metadata = peek
            .metadata
            .and_then(|m| serde_json::from_str::<Value>(m.get()).ok());
        let tags = super::attribution::tags(headers, metadata.as_ref())?;
        let has_max_completion_tokens = peek.max_completion_tokens.is_some();
        let max_output_tokens = peek
            .max_completion_tokens
            .or(peek.max_tokens)
            .and_then(|v| serde_json::from_str::<u32>(v.get()).ok());
        Ok(Self {
            raw,
            native,
            model,
            stream,
            include_usage,
            end_user,
            tags,
            has_max_completion_tokens,
            max_output_tokens,
            injected_max_tokens: None,
        })
    }

    /// The body for `deployment`: the client's own bytes when nothing needs to change (the common case),
    /// else the body rewritten by the provider's request shaping; for an adapter kind, its translation
    /// (embeddings: the native calls).
    pub fn upstream_body(
        &self,
        endpoint: Endpoint,
        deployment: &Deployment,
    ) -> Result<UpstreamBody, GatewayError> {
        if let Some(adapter) = deployment.provider.adapter(&deployment.upstream_model) {
            return match endpoint {
                Endpoint::Embeddings => self
                    .adapted_embeddings(adapter, deployment)
                    .map(UpstreamBody::Embeddings),
                _ => self
                    .adapted_body(adapter, endpoint, deployment)
                    .map(UpstreamBody::One),
            };
        }
        self.openai_wire_body(endpoint, deployment)
            .map(UpstreamBody::One)
    }

    /// The body for an OpenAI-wire deployment: the client's bytes unless a quirk needs a rewrite.
    fn openai_wire_body(
        &self,
        endpoint: Endpoint,
        deployment: &Deployment,
    ) -> Result<Bytes, GatewayError> {
        let kind = deployment.provider.kind;
        let facts = RequestFacts {
            model: &self.model,
            upstream_model: &deployment.upstream_model,
            stream: self.stream,
            include_usage: self.include_usage,
            has_max_completion_tokens: self.has_max_completion_tokens,
        };
        let rewrite = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::GenerateContent => {
                self.injected_max_tokens.is_some() || request::chat_needs_rewrite(kind, &facts)
            }
            Endpoint::Embeddings => facts.model != facts.upstream_model,
        };
        if !rewrite {
            return Ok(self.raw.clone());
        }
        let mut body: Map<String, Value> = serde_json::from_slice(&self.raw)
            .map_err(|e| GatewayError::Internal(format!("cannot re-read the request: {e}")))?;
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::GenerateContent => {
                if let Some(cap) = self.injected_max_tokens {
                    // Named as the upstream takes it; `prepare_chat` renames it where needed.
                    body.insert("max_completion_tokens".into(), Value::from(cap));
                }
                request::prepare_chat(kind, &mut body, &deployment.upstream_model, self.stream)
            }
            Endpoint::Embeddings => {
                request::prepare_embeddings(&mut body, &deployment.upstream_model)
            }
        }
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
    }

    /// The native embeddings calls for a deployment whose wire is not OpenAI's; refused (400) where the
    /// adapter has no embeddings API for the model.
    fn adapted_embeddings(
        &self,
        adapter: &dyn Adapter,
        deployment: &Deployment,
    ) -> Result<EmbeddingCalls, GatewayError> {
        let kind = deployment.provider.kind.name();
        let model = &deployment.upstream_model;
        if adapter.embeddings_url("", model).is_none() {
            return Err(GatewayError::InvalidRequest {
                message: format!("provider kind {kind} has no embeddings API for model {model:?}"),
                param: Some("model"),
            });
        }
        let request = EmbeddingsRequest::read(&self.raw, kind)?;
        let bodies = adapter.embeddings_request(&request, model)?;
        Ok(EmbeddingCalls {
            bodies,
            inputs: request.inputs.len(),
            base64: request.base64,
        })
    }

    /// The body for a deployment whose wire is not OpenAI's: a native body as it came (model set), else the
    /// OpenAI body translated.
    fn adapted_body(
        &self,
        adapter: &dyn Adapter,
        endpoint: Endpoint,
        deployment: &Deployment,
    ) -> Result<Bytes, GatewayError> {
        let model = &deployment.upstream_model;
        if let Some(native) = self
            .native
            .as_ref()
            .filter(|_| adapter.native_endpoint() == Some(endpoint))
        {
            let body =
                adapter.native_request(native, model, self.stream, self.injected_max_tokens)?;
            return Ok(body);
        }
        let mut body: Map<String, Value> = serde_json::from_slice(&self.raw)
            .map_err(|e| GatewayError::Internal(format!("cannot re-read the request: {e}")))?;
        if let Some(cap) = self.injected_max_tokens {
            body.insert("max_completion_tokens".into(), Value::from(cap));
        }
        adapter.chat_request(body, model, self.stream)
    }
}
