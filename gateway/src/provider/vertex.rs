//! Google Vertex AI (`kind = "vertex"`): Gemini and Claude models in one Google Cloud project and region,
//! authenticated with a service account.
//!
//! URLs, under `{base}/v1/projects/{project}/locations/{region}` (base `https://{region}-aiplatform.googleapis.com`,
//! or `https://aiplatform.googleapis.com` for `global`):
//! - Gemini (`publishers/google`): `…/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`; the
//!   body, answers and errors are the Gemini API's ([`super::gemini`]).
//! - Claude (`publishers/anthropic`): `…/models/{model}:rawPredict`, `:streamRawPredict`; the body is an
//!   Anthropic Messages body without `model` and with `"anthropic_version": "vertex-2023-10-16"`, answers and
//!   streams are Anthropic's ([`super::anthropic`]); errors may be either shape.
//!
//! Embeddings (Google's models: `gemini-embedding-001`, `text-embedding-005`, `text-multilingual-embedding-002`):
//! `…/publishers/google/models/{model}:predict` with `{"instances": [{"content": text, "task_type": …}],
//! "parameters": {"outputDimensionality": n}}`, answered with `predictions[].embeddings.values` and
//! `.statistics.token_count` (summed into usage). Up to [`PREDICT_BATCH`] texts per call, one for
//! `gemini-embedding-*` models (Vertex takes one instance per request for them); more become concurrent calls.
//! Claude has no embeddings (refused, 400).
//!
//! The publisher follows the model id (`claude-…` → anthropic, anything else → google) unless the provider
//! sets `publisher`. Auth: an RS256 service-account assertion exchanged for an access token
//! ([`super::sign::token_cache`]: single flight, refreshed before expiry), sent as `Authorization: Bearer`;
//! a token the API refuses (401) is forgotten and fetched again once (see `proxy/attempt`).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{Map, Value};
use tollgate_schemas::Endpoint;

use super::adapter::{Adapter, StreamTranslator};
use super::embeddings::{encode, token_count, Embeddings, EmbeddingsRequest, Vector};
use super::sign::jwt::ServiceAccountSigner;
use super::sign::token_cache::{JwtBearerSource, TokenCache};
use super::{anthropic, gemini};
use crate::config::VertexConfig;
use crate::error::GatewayError;

/// The `anthropic_version` Claude on Vertex takes in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Texts per `:predict` call of the text-embedding models (Vertex's limit).
pub const PREDICT_BATCH: usize = 250;

/// The `:predict` bodies of an embeddings request for `model`: [`PREDICT_BATCH`] texts per call, one for
/// `gemini-embedding-*`.
///
/// # Errors
/// Only if encoding fails.
pub fn predict_requests(
    request: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<Bytes>, GatewayError> {
    let per_call = if model.starts_with("gemini-embedding") {
        1
    } else {
        PREDICT_BATCH
    };
    request
        .inputs
        .chunks(per_call)
        .map(|texts| {
            let instances: Vec<Value> = texts
                .iter()
                .map(|text| {
                    let mut instance = Map::new();
                    instance.insert("content".into(), Value::from(text.as_str()));
                    if let Some(task) = &request.task_type {
                        instance.insert("task_type".into(), Value::from(task.as_str()));
                    }
                    Value::Object(instance)
                })
                .collect();
            let mut body = Map::new();
            body.insert("instances".into(), Value::Array(instances));
            if let Some(d) = request.dimensions {
                body.insert(
                    "parameters".into(),
                    serde_json::json!({ "outputDimensionality": d }),
                );
            }
            encode(&Value::Object(body))
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct PredictAnswer {
    predictions: Vec<Prediction>,
}

#[derive(serde::Deserialize)]
struct Prediction {
    embeddings: PredictedEmbedding,
}

#[derive(serde::Deserialize)]
struct PredictedEmbedding {
    values: Box<serde_json::value::RawValue>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(serde::Deserialize)]
struct Statistics {
    #[serde(default)]
    token_count: Option<Value>,
}

/// A `:predict` answer → its vectors and the sum of their `statistics.token_count` (unknown if one lacks it).
///
/// # Errors
/// A body without `predictions[].embeddings.values` arrays of numbers.
pub fn predict_response(body: &[u8]) -> Result<Embeddings, String> {
    let answer: PredictAnswer =
        serde_json::from_slice(body).map_err(|e| format!("the predict answer is not one: {e}"))?;
    let mut out = Embeddings {
        vectors: Vec::with_capacity(answer.predictions.len()),
        prompt_tokens: Some(0),
    };
    for p in answer.predictions {
        let count = token_count(p.embeddings.statistics.and_then(|s| s.token_count).as_ref());
        out.vectors.push(Vector::new(p.embeddings.values)?);
        out.prompt_tokens = out
            .prompt_tokens
            .zip(count)
            .map(|(a, b)| a.saturating_add(b));
    }
    Ok(out)
}

/// Whose models a Vertex deployment calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    Google,
    Anthropic,
}

impl Publisher {
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "google" => Some(Self::Google),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    /// The publisher a model id implies: Claude models are Anthropic's, the rest Google's.
    #[must_use]
    pub fn of_model(model: &str) -> Self {
        if model.starts_with("claude-") {
            Self::Anthropic
        } else {
            Self::Google
        }
    }
}

/// The API host of a region.
#[must_use]
pub fn default_host(region: &str) -> String {
    if region == "global" {
        "https://aiplatform.googleapis.com".into()
    } else {
        format!("https://{region}-aiplatform.googleapis.com")
    }
}

/// `{base}/v1/projects/{project}/locations/{region}` (project and region are checked at config load).
#[must_use]
pub fn location_base(base_url: &str, config: &VertexConfig) -> String {
    format!(
        "{}/v1/projects/{}/locations/{}",
        base_url.trim_end_matches('/'),
        config.project,
        config.region
    )
}

/// The cache of a Vertex provider's access tokens: the service account's assertion exchanged at `token_url`
/// (else the key file's `token_uri`), single flight, refreshed before expiry. It is the provider's one key
/// slot ([`super::Provider::prepare`]).
///
/// # Errors
/// [`GatewayError::Internal`] when the key file is not a usable service-account key (never quoted).
pub fn token_cache(
    provider: &str,
    config: &VertexConfig,
    client: reqwest::Client,
) -> Result<TokenCache<JwtBearerSource>, GatewayError> {
    let signer = ServiceAccountSigner::from_json(config.service_account.expose())?;
    let mut source = JwtBearerSource::new(provider, client, signer);
    if let Some(url) = &config.token_url {
        source = source.with_token_url(url.as_str());
    }
    Ok(TokenCache::new(source))
}

/// The translator for `model`'s publisher (`publisher` fixed by the config, else the model's).
#[must_use]
pub fn adapter(publisher: Option<Publisher>, model: &str) -> &'static dyn Adapter {
    match publisher.unwrap_or_else(|| Publisher::of_model(model)) {
        Publisher::Google => &VertexGemini,
        Publisher::Anthropic => &VertexAnthropic,
    }
}

fn bearer(token: &str) -> (HeaderName, String) {
    (http::header::AUTHORIZATION, format!("Bearer {token}"))
}

/// Gemini models on Vertex (`publishers/google`): the Gemini API's translation, Vertex's URL and auth.
pub struct VertexGemini;

impl Adapter for VertexGemini {
    fn chat_url(&self, base: &str, upstream_model: &str, stream: bool) -> String {
        gemini::generate_url(
            &format!("{base}/publishers/google/models/"),
            upstream_model,
            stream,
        )
    }

    fn auth_header(&self, token: &str) -> (HeaderName, String) {
        bearer(token)
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
        gemini::chat_body(openai)
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
        gemini::native_body(native, cap)
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        gemini::response::to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(gemini::stream::GeminiStream::default())
    }

    fn classify_error(
        &self,
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> GatewayError {
        gemini::error::classify(provider, status, headers, body)
    }

    fn embeddings_url(&self, base: &str, upstream_model: &str) -> Option<String> {
        Some(gemini::method_url(
            &format!("{base}/publishers/google/models/"),
            upstream_model,
            "predict",
            None,
        ))
    }

    fn embeddings_request(
        &self,
        request: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<Vec<Bytes>, GatewayError> {
        predict_requests(request, upstream_model)
    }

    fn embeddings_response(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Embeddings, String> {
        predict_response(body)
    }
}

/// Claude on Vertex (`publishers/anthropic`): the Anthropic translation, `model` moved to the URL.
pub struct VertexAnthropic;

/// An Anthropic Messages body → Vertex's: no `model`, `anthropic_version` in the body.
fn vertex_anthropic_body(body: &[u8]) -> Result<Bytes, GatewayError> {
    let mut body: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    body.remove("model");
    body.insert("anthropic_version".into(), Value::from(ANTHROPIC_VERSION));
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
}

impl Adapter for VertexAnthropic {
    fn chat_url(&self, base: &str, upstream_model: &str, stream: bool) -> String {
        gemini::method_url(
            &format!("{base}/publishers/anthropic/models/"),
            upstream_model,
            "rawPredict",
            stream.then_some("streamRawPredict"),
        )
    }

    fn auth_header(&self, token: &str) -> (HeaderName, String) {
        bearer(token)
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn chat_request(
        &self,
        openai: Map<String, Value>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, GatewayError> {
        let body = anthropic::request::to_anthropic(openai, upstream_model, stream)?;
        vertex_anthropic_body(&body)
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
        let body = anthropic::Anthropic.native_request(native, upstream_model, stream, cap)?;
        vertex_anthropic_body(&body)
    }

    fn chat_response(&self, body: &[u8], _upstream_model: &str) -> Result<Bytes, String> {
        anthropic::response::to_openai(body)
    }

    fn stream_translator(&self, _upstream_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(anthropic::stream::AnthropicStream::default())
    }

    fn classify_error(
        &self,
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> GatewayError {
        // Claude's own errors are Anthropic-shaped; Google's front (auth, quota) answers in Google's shape.
        let anthropic_shaped = serde_json::from_slice::<Value>(body)
            .ok()
            .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("error"));
        if anthropic_shaped {
            anthropic::error::classify(provider, status, headers, body)
        } else {
            gemini::error::classify(provider, status, headers, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_publishers_and_bodies() {
        let base = "https://us-east5-aiplatform.googleapis.com/v1/projects/p-1/locations/us-east5";
        assert_eq!(
            VertexGemini.chat_url(base, "gemini-2.5-flash", true),
            format!(
                "{base}/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            )
        );
        assert_eq!(
            VertexAnthropic.chat_url(base, "claude-sonnet-4-5@20250929", false),
            format!("{base}/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
        );
        assert_eq!(
            VertexAnthropic.chat_url(base, "claude-sonnet-4-5@20250929", true),
            format!(
                "{base}/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
            )
        );
        assert_eq!(Publisher::of_model("claude-opus-4@1"), Publisher::Anthropic);
        assert_eq!(Publisher::of_model("gemini-2.5-pro"), Publisher::Google);
        assert_eq!(default_host("global"), "https://aiplatform.googleapis.com");
        assert_eq!(
            default_host("europe-west4"),
            "https://europe-west4-aiplatform.googleapis.com"
        );
        let (name, value) = VertexGemini.auth_header("ya29.t");
        assert_eq!(
            (name.as_str(), value.as_str()),
            ("authorization", "Bearer ya29.t")
        );

        let openai = json!({"model": "public", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]});
        let body: Value = serde_json::from_slice(
            &VertexAnthropic
                .chat_request(openai.as_object().unwrap().clone(), "claude-x@1", true)
                .unwrap(),
        )
        .unwrap();
        assert!(body.get("model").is_none());
        assert_eq!(body["anthropic_version"], ANTHROPIC_VERSION);
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 10);
        let native: Value = serde_json::from_slice(
            &VertexAnthropic
                .native_request(
                    br#"{"model":"claude","max_tokens":5,"messages":[]}"#,
                    "claude-x@1",
                    false,
                    None,
                )
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            native,
            json!({"max_tokens": 5, "messages": [], "anthropic_version": ANTHROPIC_VERSION})
        );
    }

    #[test]
    fn embeddings_predict_in_batches_and_sum_token_counts() {
        let base =
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1";
        assert_eq!(
            VertexGemini
                .embeddings_url(base, "text-embedding-005")
                .as_deref(),
            Some(format!("{base}/publishers/google/models/text-embedding-005:predict").as_str())
        );
        assert_eq!(VertexAnthropic.embeddings_url(base, "claude-x@1"), None);
        let request = EmbeddingsRequest {
            inputs: vec!["a b".into(), "c".into()],
            dimensions: Some(256),
            base64: false,
            task_type: Some("RETRIEVAL_DOCUMENT".into()),
            input_type: None,
        };
        let bodies = predict_requests(&request, "text-embedding-005").unwrap();
        assert_eq!(bodies.len(), 1);
        let body: Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(
            body,
            json!({"instances": [{"content": "a b", "task_type": "RETRIEVAL_DOCUMENT"},
                {"content": "c", "task_type": "RETRIEVAL_DOCUMENT"}],
                "parameters": {"outputDimensionality": 256}})
        );
        // gemini-embedding-001 takes one instance per request.
        assert_eq!(
            predict_requests(&request, "gemini-embedding-001")
                .unwrap()
                .len(),
            2
        );
        let e = predict_response(
            br#"{"predictions": [
                {"embeddings": {"statistics": {"truncated": false, "token_count": 6}, "values": [0.1, 0.2]}},
                {"embeddings": {"statistics": {"truncated": false, "token_count": 4.0}, "values": [0.3, 0.4]}}],
                "metadata": {"billableCharacterCount": 18}}"#,
        )
        .unwrap();
        let texts: Vec<&str> = e.vectors.iter().map(|v| v.json()).collect();
        assert_eq!(texts, ["[0.1, 0.2]", "[0.3, 0.4]"]);
        assert_eq!(e.prompt_tokens, Some(10));
        let e = predict_response(br#"{"predictions": [{"embeddings": {"values": [1]}}]}"#).unwrap();
        assert_eq!(e.prompt_tokens, None);
        assert!(predict_response(br#"{"predictions": [{}]}"#).is_err());
    }
}
