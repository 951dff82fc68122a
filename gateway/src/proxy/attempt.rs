//! One upstream attempt: send to a candidate, and succeed only once the upstream's first byte is in hand —
//! for a stream, its first chunk — so that anything failing before then can still go to the next candidate.
//!
//! This is also the one dispatch point for upstreams that are not OpenAI wire: their answers (plain, stream,
//! error) go through the kind's [`Adapter`](crate::provider::adapter::Adapter) here, so everything after sees
//! OpenAI chat completions — or, for embeddings ([`embeddings`]), the vectors of every native call of the
//! request, sent concurrently as one attempt.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tollgate_schemas::Endpoint;

use crate::config::Secret;
use crate::error::GatewayError;
use crate::provider::adapter::{Adapter, StreamTranslator};
use crate::provider::embeddings::Embeddings;
use crate::provider::{upstream_error, Provider};
use crate::retry::retry_hint;
use crate::routing::Candidate;

/// Most bytes of an upstream error body read (the message is cut further when passed on).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The rest of an upstream stream after its first chunk.
pub type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub enum Answer {
    Plain(Bytes),
    Stream {
        first: Bytes,
        rest: BodyStream,
    },
    /// An adapter kind's embeddings, every call joined; `base64`: the client asked for base64 vectors.
    Embeddings {
        embeddings: Embeddings,
        base64: bool,
    },
}

/// Native embeddings calls of one request in flight at once.
const EMBEDDING_CALLS_IN_FLIGHT: usize = 16;

pub struct Attempted {
    pub answer: Answer,
    pub status: u16,
    pub headers: HeaderMap,
}

/// A failed attempt and the provider's hint of when its key may be used again.
pub struct AttemptFailed {
    pub error: GatewayError,
    pub hint: Option<Duration>,
    /// The request's deadline, not the key's own first-byte timeout, cut this attempt short.
    pub cut_by_deadline: bool,
    /// Input tokens the upstream counted (and bills) for calls of this attempt that succeeded while another
    /// failed: an embeddings request sent as several calls.
    pub billed_prompt_tokens: u64,
}

impl From<GatewayError> for AttemptFailed {
    fn from(error: GatewayError) -> Self {
        Self {
            error,
            hint: None,
            cut_by_deadline: false,
            billed_prompt_tokens: 0,
        }
    }
}

/// Sends `body` to `candidate`, waiting at most `first_byte` (and never past `deadline`) for its first byte.
/// An adapter kind's error inside a 2xx answer fails the attempt like any error status; an access token the
/// upstream refused before its time ([`Adapter::token_rejected`]: Vertex 401, Qianfan 110 / 111) is dropped
/// and the request sent once more with a fresh one — a second refusal is the answer.
pub async fn attempt(
    candidate: &Candidate,
    endpoint: Endpoint,
    body: Bytes,
    stream: bool,
    first_byte: Duration,
    deadline: Instant,
) -> Result<Attempted, AttemptFailed> {
    let provider = &candidate.deployment.provider;
    let until = (Instant::now() + first_byte).min(deadline);
    let limit = until.saturating_duration_since(Instant::now());
    let by_deadline = until == deadline;
    let timed_out = || AttemptFailed {
        error: GatewayError::UpstreamTimeout {
            provider: provider.name.clone(),
            timeout: limit,
        },
        hint: None,
        cut_by_deadline: by_deadline,
        billed_prompt_tokens: 0,
    };
    let model = candidate.deployment.upstream_model.as_str();
    let adapter = provider.adapter(model);
    let mut refreshed = false;
    loop {
        let prepare = provider.prepare(endpoint, body.clone(), candidate.key, model, stream);
        let prepared = match tokio::time::timeout_at(until, prepare).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(p)) => p,
        };
        let response = match tokio::time::timeout_at(until, prepared.request.send()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(transport_error(&provider.name, &e, limit).into()),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let headers = response.headers().clone();
        // Whether the upstream refused the access token this request carried (never for key-signed slots).
        let token_refused = |body: &[u8]| {
            !refreshed
                && prepared.token.is_some()
                && adapter.map_or(status == StatusCode::UNAUTHORIZED, |a| {
                    a.token_rejected(status, body)
                })
        };
        if !status.is_success() {
            let body = read_capped(response, until, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            if token_refused(&body) {
                refresh(provider, candidate.key, prepared.token.as_ref());
                refreshed = true;
                continue;
            }
            let error = match adapter {
                Some(adapter) => adapter.classify_error(&provider.name, status, &headers, &body),
                None => {
                    upstream_error::classify(&provider.name, provider.kind, status, &headers, &body)
                }
            };
            return Err(failed_with(error, &headers));
        }
        // An adapter's whole-JSON answer (plain, or a stream request answered with JSON): it may be an error.
        if let Some(adapter) = adapter.filter(|_| !stream || is_json(&headers)) {
            let body = if stream {
                read_capped(response, until, MAX_ERROR_BODY)
                    .await
                    .unwrap_or_default()
                    .into()
            } else {
                match tokio::time::timeout_at(until, response.bytes()).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) => return Err(transport_error(&provider.name, &e, limit).into()),
                    Ok(Ok(body)) => body,
                }
            };
            if let Some(error) = adapter.answer_error(&provider.name, &headers, &body) {
                if token_refused(&body) {
                    refresh(provider, candidate.key, prepared.token.as_ref());
                    refreshed = true;
                    continue;
                }
                return Err(failed_with(error, &headers));
            }
            let failed = |message: String| GatewayError::UpstreamFailed {
                provider: provider.name.clone(),
                status: Some(200),
                message,
            };
            if stream {
                return Err(
                    failed("the upstream answered a stream request with JSON".into()).into(),
                );
            }
            // Embeddings answers are read by [`embeddings`], with every call of the request.
            let body = if endpoint == Endpoint::Embeddings {
                body
            } else {
                adapter.chat_response(&body, model).map_err(failed)?
            };
            return Ok(Attempted {
                answer: Answer::Plain(body),
                status: status.as_u16(),
                headers,
            });
        }
        return if stream {
            first_chunk(
                provider, response, adapter, model, until, limit, status, headers,
            )
            .await
            .map_err(|e| e.unwrap_or_else(timed_out))
        } else {
            match tokio::time::timeout_at(until, response.bytes()).await {
                Err(_) => Err(timed_out()),
                Ok(Err(e)) => Err(transport_error(&provider.name, &e, limit).into()),
                Ok(Ok(body)) => Ok(Attempted {
                    answer: Answer::Plain(body),
                    status: status.as_u16(),
                    headers,
                }),
            }
        };
    }
}

/// Sends an embeddings request's native calls to `candidate` (at most [`EMBEDDING_CALLS_IN_FLIGHT`] at
/// once), each an [`attempt`] of its own with its own timeouts, and joins their answers in order. The attempt
/// succeeds only if every call does: the first failure (in call order) is its error, so a 429 or 5xx on any
/// call fails over like chat, and the tokens of the calls that did succeed are reported as billed.
pub async fn embeddings(
    candidate: &Candidate,
    calls: crate::proxy::request::EmbeddingCalls,
    first_byte: Duration,
    deadline: Instant,
) -> Result<Attempted, AttemptFailed> {
    let provider = &candidate.deployment.provider;
    let model = candidate.deployment.upstream_model.as_str();
    let Some(adapter) = provider.adapter(model) else {
        return Err(GatewayError::Internal("embeddings calls without an adapter".into()).into());
    };
    let results: Vec<Result<Attempted, AttemptFailed>> =
        futures::stream::iter(calls.bodies.into_iter().map(|body| {
            attempt(
                candidate,
                Endpoint::Embeddings,
                body,
                false,
                first_byte,
                deadline,
            )
        }))
        .buffered(EMBEDDING_CALLS_IN_FLIGHT)
        .collect()
        .await;
    let failed = |message: String| GatewayError::UpstreamFailed {
        provider: provider.name.clone(),
        status: Some(200),
        message,
    };
    let mut parts = Vec::with_capacity(results.len());
    let mut first_failure: Option<AttemptFailed> = None;
    let mut last: Option<(u16, HeaderMap)> = None;
    for result in results {
        let answered = match result {
            Ok(answered) => answered,
            Err(e) => {
                first_failure.get_or_insert(e);
                continue;
            }
        };
        let Answer::Plain(body) = answered.answer else {
            first_failure
                .get_or_insert(failed("an embeddings call answered a stream".into()).into());
            continue;
        };
        match adapter.embeddings_response(&answered.headers, &body) {
            Ok(embeddings) => {
                parts.push(embeddings);
                last = Some((answered.status, answered.headers));
            }
            Err(message) => {
                first_failure.get_or_insert(failed(message).into());
            }
        }
    }
    if let Some(mut failure) = first_failure {
        failure.billed_prompt_tokens = parts.iter().filter_map(|p| p.prompt_tokens).sum();
        return Err(failure);
    }
    let embeddings = Embeddings::concat(parts);
    if embeddings.vectors.len() != calls.inputs {
        return Err(failed(format!(
            "the upstream answered {} embeddings for {} inputs",
            embeddings.vectors.len(),
            calls.inputs
        ))
        .into());
    }
    let (status, headers) = last.unwrap_or_default();
    Ok(Attempted {
        answer: Answer::Embeddings {
            embeddings,
            base64: calls.base64,
        },
        status,
        headers,
    })
}

/// Drops key slot `key`'s refused access token, so the next `prepare` fetches a fresh one.
fn refresh(provider: &Provider, key: usize, token: Option<&Secret>) {
    tracing::info!(target: "tollgate::proxy", provider = %provider.name, key,
        "the upstream refused the cached access token; fetching a fresh one");
    if let Some(token) = token {
        provider.invalidate_token(key, token);
    }
}

/// A failed attempt with its retry hint: the answer's headers, else one the adapter read from the body
/// (Gemini's `RetryInfo`).
fn failed_with(error: GatewayError, headers: &HeaderMap) -> AttemptFailed {
    let hint = retry_hint(headers).or_else(|| body_hint(&error));
    AttemptFailed {
        error,
        hint,
        cut_by_deadline: false,
        billed_prompt_tokens: 0,
    }
}

/// Whether an answer says it is JSON (not an event stream).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// Waits for a stream's first chunk (an adapter's translation of it); `Err(None)`: timed out.
#[allow(clippy::too_many_arguments)]
async fn first_chunk(
    provider: &Provider,
    response: reqwest::Response,
    adapter: Option<&'static dyn Adapter>,
    model: &str,
    until: Instant,
    limit: Duration,
    status: StatusCode,
    headers: HeaderMap,
) -> Result<Attempted, Option<AttemptFailed>> {
    let mut rest: BodyStream = Box::pin(response.bytes_stream());
    match tokio::time::timeout_at(until, rest.next()).await {
        Err(_) => Err(None),
        Ok(None) => Err(Some(
            GatewayError::UpstreamFailed {
                provider: provider.name.clone(),
                status: Some(200),
                message: "the upstream ended the stream before sending anything".into(),
            }
            .into(),
        )),
        Ok(Some(Err(e))) => Err(Some(transport_error(&provider.name, &e, limit).into())),
        Ok(Some(Ok(first))) => {
            let (first, rest) = match adapter {
                Some(adapter) => translated(adapter.stream_translator(model), first, rest),
                None => (first, rest),
            };
            Ok(Attempted {
                answer: Answer::Stream { first, rest },
                status: status.as_u16(),
                headers,
            })
        }
    }
}

/// The retry hint an adapter read from an error body (it sets the error's `retry-after`, whole seconds).
fn body_hint(error: &GatewayError) -> Option<Duration> {
    let GatewayError::UpstreamRejected(e) = error else {
        return None;
    };
    let secs: u64 = e.retry_after.as_ref()?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_secs(secs).min(crate::retry::MAX_HINT))
}

/// An upstream stream seen through `translator`: every read becomes the OpenAI SSE it completes (possibly
/// empty), and the end of the body flushes an unterminated last event.
fn translated(
    mut translator: Box<dyn StreamTranslator>,
    first: Bytes,
    rest: BodyStream,
) -> (Bytes, BodyStream) {
    let first = translator.push(&first);
    let rest = futures::stream::unfold(Some((rest, translator)), |state| async move {
        let (mut rest, mut translator) = state?;
        match rest.next().await {
            Some(Ok(read)) => {
                let out = translator.push(&read);
                Some((Ok(out), Some((rest, translator))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => {
                let tail = translator.finish();
                (!tail.is_empty()).then_some((Ok(tail), None))
            }
        }
    });
    (first, Box::pin(rest))
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

/// Maps a transport failure; reqwest's message is kept without the URL.
fn transport_error(provider: &str, e: &reqwest::Error, after: Duration) -> GatewayError {
    let provider = provider.to_string();
    if e.is_timeout() {
        return GatewayError::UpstreamTimeout {
            provider,
            timeout: after,
        };
    }
    let message = error_chain(e);
    if e.is_connect() {
        return GatewayError::UpstreamUnreachable { provider, message };
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
        parts.push("the upstream connection failed".into());
    }
    parts.join(": ")
}
