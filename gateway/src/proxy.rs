//! The orchestrator: authenticate → read the request → route → call the upstream → relay → meter.
//!
//! Everything that is not translation lives here, once, for every provider. Each request ends in exactly one
//! usage event (see [`crate::exchange`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tollgate_schemas::{Endpoint, Outcome, UsageSource};

use crate::error::GatewayError;
use crate::exchange::{with_request_id, Ending, Exchange};
use crate::provider::{request, upstream_error, usage};
use crate::relay;
use crate::routing::Deployment;
use crate::state::AppState;

/// Most bytes of an upstream error body read (the message is cut further when passed on).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A client's request, read and checked.
struct ClientRequest {
    body: Map<String, Value>,
    model: String,
    stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    include_usage: bool,
}

impl ClientRequest {
    fn read(
        endpoint: Endpoint,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        limit: usize,
    ) -> Result<(Self, usize), GatewayError> {
        if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.eq_ignore_ascii_case("application/json") {
                return Err(GatewayError::UnsupportedContentType(
                    ct.chars().take(100).collect(),
                ));
            }
        }
        let bytes = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                GatewayError::BodyTooLarge { limit }
            } else {
                GatewayError::InvalidRequest {
                    message: format!("cannot read the request body: {rejection}"),
                    param: None,
                }
            }
        })?;
        let body: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(GatewayError::InvalidRequest {
                    message: "you must provide a model parameter (a non-empty string)".into(),
                    param: Some("model"),
                })
            }
        };
        let stream = match (endpoint, body.get("stream")) {
            (_, None | Some(Value::Null)) => false,
            (Endpoint::ChatCompletions, Some(Value::Bool(b))) => *b,
            (Endpoint::ChatCompletions, Some(_)) => {
                return Err(GatewayError::InvalidRequest {
                    message: "`stream` must be a boolean".into(),
                    param: Some("stream"),
                })
            }
            (Endpoint::Embeddings, Some(_)) => {
                return Err(GatewayError::InvalidRequest {
                    message: "embeddings cannot stream".into(),
                    param: Some("stream"),
                })
            }
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((
            Self {
                body,
                model,
                stream,
                include_usage,
            },
            bytes.len(),
        ))
    }

    fn end_user(&self) -> Option<String> {
        self.body
            .get("user")
            .and_then(Value::as_str)
            .map(|u| u.chars().take(256).collect())
    }

    /// The body for `deployment`, serialized.
    fn upstream_body(
        mut self,
        endpoint: Endpoint,
        deployment: &Deployment,
    ) -> Result<Vec<u8>, GatewayError> {
        match endpoint {
            Endpoint::ChatCompletions => {
                request::prepare_chat(
                    deployment.provider.kind,
                    &mut self.body,
                    &deployment.upstream_model,
                    self.stream,
                );
            }
            Endpoint::Embeddings => {
                request::prepare_embeddings(&mut self.body, &deployment.upstream_model)
            }
        }
        serde_json::to_vec(&self.body)
            .map_err(|e| GatewayError::Internal(format!("cannot encode the request: {e}")))
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
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let mut ex = Exchange::begin(&state.sink, principal, endpoint);
    let (request, request_bytes) =
        match ClientRequest::read(endpoint, &headers, body, state.max_body_bytes) {
            Ok(r) => r,
            Err(e) => return ex.refuse(e),
        };
    ex.request_bytes = request_bytes;
    ex.model = request.model.clone();
    ex.stream = request.stream;
    ex.end_user = request.end_user();
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

/// Meters a finished non-streamed response and passes it on.
fn complete_plain(ex: Exchange, deployment: &Deployment, body: Bytes) -> Response {
    let Ok(Value::Object(mut parsed)) = serde_json::from_slice::<Value>(&body) else {
        return ex.refuse(GatewayError::UpstreamFailed {
            provider: deployment.provider.name.clone(),
            status: Some(200),
            message: "the upstream answered 200 with a body that is not a JSON object".into(),
        });
    };
    let found = usage::find_usage(&parsed)
        .map(|u| (usage::usage_vector(u), u.contains_key("cached_tokens")));
    let (vector, source) = match found {
        Some((v, _)) => (v, UsageSource::Provider),
        None => (Default::default(), UsageSource::None),
    };
    // Pass the upstream's bytes through untouched unless its usage needs normalising (Moonshot).
    let body = match found {
        Some((_, true)) => {
            if let Some(u) = parsed.get("usage").and_then(Value::as_object) {
                let normalized = usage::normalized_usage(u);
                parsed.insert("usage".into(), Value::Object(normalized));
            }
            Bytes::from(serde_json::to_vec(&parsed).unwrap_or_else(|_| body.to_vec()))
        }
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
        parts.push(e.to_string());
    }
    parts.join(": ")
}
