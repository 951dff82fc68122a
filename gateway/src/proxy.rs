//! The orchestrator: authenticate → read the request → route → call the upstream → relay → meter.
//!
//! Everything that is not translation lives here, once, for every provider. Each request ends in exactly one
//! usage event (see [`crate::exchange`]).
//!
//! The work after authentication runs in its own task: if the client hangs up while the upstream is
//! answering, the upstream call (which the provider bills) still completes and is metered, marked
//! `client_disconnected`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tollgate_schemas::{Endpoint, Outcome, UsageSource};

use crate::auth::Principal;
use crate::error::GatewayError;
use crate::exchange::{with_request_id, Ending, Exchange};
use crate::provider::request::{self, RequestFacts};
use crate::provider::{upstream_error, usage};
use crate::relay;
use crate::routing::Deployment;
use crate::state::AppState;

/// Most bytes of an upstream error body read (the message is cut further when passed on).
const MAX_ERROR_BODY: usize = 64 * 1024;

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
}

/// A client's request, read and checked; the body is kept as the client's bytes.
struct ClientRequest {
    raw: Bytes,
    model: String,
    stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    include_usage: bool,
    end_user: Option<String>,
    has_max_completion_tokens: bool,
}

fn invalid(message: &str, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

impl ClientRequest {
    fn read(
        endpoint: Endpoint,
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
            Some(Ok(Some(true))) if endpoint == Endpoint::ChatCompletions => true,
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
        let has_max_completion_tokens = peek.max_completion_tokens.is_some();
        Ok(Self {
            raw,
            model,
            stream,
            include_usage,
            end_user,
            has_max_completion_tokens,
        })
    }

    /// The body for `deployment`: the client's own bytes when nothing needs to change (the common case),
    /// else the body rewritten by the provider's request shaping.
    fn upstream_body(
        self,
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
            Endpoint::ChatCompletions => request::chat_needs_rewrite(kind, &facts),
            Endpoint::Embeddings => facts.model != facts.upstream_model,
        };
        if !rewrite {
            return Ok(self.raw);
        }
        let mut body: Map<String, Value> = serde_json::from_slice(&self.raw)
            .map_err(|e| GatewayError::Internal(format!("cannot re-read the request: {e}")))?;
        match endpoint {
            Endpoint::ChatCompletions => {
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
}

/// Set when the client's side of the exchange goes away before the answer is ready.
struct ClientWatch {
    gone: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for ClientWatch {
    fn drop(&mut self) {
        if self.armed {
            self.gone.store(true, Ordering::Relaxed);
        }
    }
}

/// Serves one OpenAI-API request end to end.
pub async fn handle(
    state: Arc<AppState>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let principal = match state.keys.authenticate(&headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut watch = ClientWatch {
        gone: Arc::new(AtomicBool::new(false)),
        armed: true,
    };
    let gone = watch.gone.clone();
    let task = tokio::spawn(serve(state, principal, endpoint, headers, body, gone));
    let response = task.await.unwrap_or_else(|e| {
        GatewayError::Internal(format!("request task failed: {e}")).into_response()
    });
    watch.armed = false;
    response
}

async fn serve(
    state: Arc<AppState>,
    principal: Arc<Principal>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    client_gone: Arc<AtomicBool>,
) -> Response {
    let mut ex = Exchange::begin(&state.sink, principal, endpoint, client_gone);
    let request = match ClientRequest::read(endpoint, &headers, body, state.max_body_bytes) {
        Ok(r) => r,
        Err(e) => return ex.refuse(e),
    };
    ex.request_bytes = request.raw.len();
    ex.model.clone_from(&request.model);
    ex.stream = request.stream;
    ex.end_user.clone_from(&request.end_user);
    if !state.router.contains(&request.model) {
        let model = request.model;
        return ex.refuse(GatewayError::UnknownModel(model));
    }
    if !ex.principal().models.allows(&request.model) {
        let model = request.model;
        return ex.refuse(GatewayError::ModelNotAllowed(model));
    }
    let deployment = match state.router.pick(&request.model) {
        Ok(d) => d,
        Err(e) => return ex.refuse(e),
    };
    ex.deployment = Some(deployment.clone());
    let include_usage = request.include_usage;
    let stream = request.stream;
    let upstream_body = match request.upstream_body(endpoint, &deployment) {
        Ok(b) => b,
        Err(e) => return ex.refuse(e),
    };

    let provider = &deployment.provider;
    let deadline = Instant::now() + provider.timeouts.request;
    ex.attempts = 1;
    let sent =
        tokio::time::timeout_at(deadline, provider.post(endpoint, upstream_body).send()).await;
    let upstream = match sent {
        Err(_) => return ex.refuse(timeout(&deployment, provider.timeouts.request)),
        Ok(Err(e)) => {
            return ex.refuse(transport_error(&deployment, &e, provider.timeouts.request))
        }
        Ok(Ok(r)) => r,
    };
    if !stream {
        ex.first_byte();
    }
    let status = upstream.status();
    if !status.is_success() {
        let headers = upstream.headers().clone();
        let body = read_capped(upstream, deadline, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        return ex.refuse(upstream_error::classify(
            &provider.name,
            provider.kind,
            status,
            &headers,
            &body,
        ));
    }
    if stream {
        return relay::start(ex, upstream, include_usage, provider.timeouts.stream_idle);
    }
    let body = match tokio::time::timeout_at(deadline, upstream.bytes()).await {
        Err(_) => return ex.refuse(timeout(&deployment, provider.timeouts.request)),
        Ok(Err(e)) => {
            return ex.refuse(transport_error(&deployment, &e, provider.timeouts.request))
        }
        Ok(Ok(b)) => b,
    };
    complete_plain(ex, &deployment, body)
}

/// Reads only `usage` from a response; serde skips the rest.
#[derive(Deserialize)]
struct ResponsePeek {
    #[serde(default)]
    usage: Option<Map<String, Value>>,
}

/// Meters a finished non-streamed response and passes it on.
fn complete_plain(ex: Exchange, deployment: &Deployment, body: Bytes) -> Response {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let Some(peek) = is_object
        .then(|| serde_json::from_slice::<ResponsePeek>(&body).ok())
        .flatten()
    else {
        return ex.refuse(GatewayError::UpstreamFailed {
            provider: deployment.provider.name.clone(),
            status: Some(200),
            message: "the upstream answered 200 with a body that is not a JSON object".into(),
        });
    };
    let (vector, source) = match &peek.usage {
        Some(u) => (usage::usage_vector(u), UsageSource::Provider),
        None => (Default::default(), UsageSource::None),
    };
    // The upstream's bytes go through untouched unless its usage needs normalising (Moonshot's top-level
    // `cached_tokens`).
    let body = match &peek.usage {
        Some(u) if u.contains_key("cached_tokens") => normalize_usage(&body, u).unwrap_or(body),
        _ => body,
    };
    let id = ex.event_id;
    ex.finish(Ending {
        outcome: Outcome::Success,
        http_status: 200,
        error_code: None,
        usage: vector,
        usage_source: source,
    });
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default();
    with_request_id(response, id)
}

fn normalize_usage(body: &[u8], u: &Map<String, Value>) -> Option<Bytes> {
    let mut parsed: Map<String, Value> = serde_json::from_slice(body).ok()?;
    parsed.insert("usage".into(), Value::Object(usage::normalized_usage(u)));
    serde_json::to_vec(&parsed).ok().map(Bytes::from)
}

async fn read_capped(
    mut response: reqwest::Response,
    deadline: Instant,
    cap: usize,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < cap {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())])
            }
            Ok(Ok(None)) => break,
            _ => return if out.is_empty() { None } else { Some(out) },
        }
    }
    Some(out)
}

fn timeout(deployment: &Deployment, after: Duration) -> GatewayError {
    GatewayError::UpstreamTimeout {
        provider: deployment.provider.name.clone(),
        timeout: after,
    }
}

/// Maps a transport failure; reqwest's message is kept without the URL.
pub fn transport_error(
    deployment: &Deployment,
    e: &reqwest::Error,
    after: Duration,
) -> GatewayError {
    let provider = deployment.provider.name.clone();
    if e.is_timeout() {
        return GatewayError::UpstreamTimeout {
            provider,
            timeout: after,
        };
    }
    let mut message = error_chain(e);
    if e.is_connect() {
        return GatewayError::UpstreamUnreachable { provider, message };
    }
    if message.is_empty() {
        message = "the upstream connection failed".into();
    }
    GatewayError::UpstreamFailed {
        provider,
        status: None,
        message,
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut parts = Vec::new();
    let mut source: Option<&dyn Error> = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        parts.push("request failed".into());
    }
    parts.join(": ")
}
