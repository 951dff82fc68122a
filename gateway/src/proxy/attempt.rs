//! One upstream attempt: send to a candidate, and succeed only once the upstream's first byte is in hand —
//! for a stream, its first chunk — so that anything failing before then can still go to the next candidate.
//!
//! This is also the one dispatch point for upstreams that are not OpenAI wire: their answers (plain, stream,
//! error) go through the kind's [`Adapter`](crate::provider::adapter::Adapter) here, so everything after sees
//! OpenAI chat completions.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tollgate_schemas::Endpoint;

use crate::error::GatewayError;
use crate::provider::adapter::StreamTranslator;
use crate::provider::upstream_error;
use crate::retry::retry_hint;
use crate::routing::Candidate;

/// Most bytes of an upstream error body read (the message is cut further when passed on).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The rest of an upstream stream after its first chunk.
pub type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub enum Answer {
    Plain(Bytes),
    Stream { first: Bytes, rest: BodyStream },
}

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
}

impl From<GatewayError> for AttemptFailed {
    fn from(error: GatewayError) -> Self {
        Self {
            error,
            hint: None,
            cut_by_deadline: false,
        }
    }
}

/// Sends `body` to `candidate`, waiting at most `first_byte` (and never past `deadline`) for its first byte.
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
    };
    let model = candidate.deployment.upstream_model.as_str();
    let adapter = provider.adapter(model);
    let mut refreshed = false;
    let response = loop {
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
        // An access token refused before its time (revoked, rotated: Vertex 401) is forgotten and the
        // request sent once more with a fresh one; a second refusal is the answer.
        match prepared.token {
            Some(refused) if response.status() == StatusCode::UNAUTHORIZED && !refreshed => {
                tracing::info!(target: "tollgate::proxy", provider = %provider.name, key = candidate.key,
                    "the upstream refused the cached access token; fetching a fresh one");
                provider.invalidate_token(candidate.key, &refused);
                refreshed = true;
            }
            _ => break response,
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    if !status.is_success() {
        let body = read_capped(response, until, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let error = match adapter {
            Some(adapter) => adapter.classify_error(&provider.name, status, &headers, &body),
            None => {
                upstream_error::classify(&provider.name, provider.kind, status, &headers, &body)
            }
        };
        // A hint in the body (Gemini's RetryInfo) is carried by the error when no header gives one.
        let hint = retry_hint(&headers).or_else(|| body_hint(&error));
        return Err(AttemptFailed {
            error,
            hint,
            cut_by_deadline: false,
        });
    }
    if stream {
        let mut rest: BodyStream = Box::pin(response.bytes_stream());
        return match tokio::time::timeout_at(until, rest.next()).await {
            Err(_) => Err(timed_out()),
            Ok(None) => Err(GatewayError::UpstreamFailed {
                provider: provider.name.clone(),
                status: Some(200),
                message: "the upstream ended the stream before sending anything".into(),
            }
            .into()),
            Ok(Some(Err(e))) => Err(transport_error(&provider.name, &e, limit).into()),
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
        };
    }
    match tokio::time::timeout_at(until, response.bytes()).await {
        Err(_) => Err(timed_out()),
        Ok(Err(e)) => Err(transport_error(&provider.name, &e, limit).into()),
        Ok(Ok(body)) => {
            let body = match adapter {
                Some(adapter) => adapter.chat_response(&body, model).map_err(|message| {
                    GatewayError::UpstreamFailed {
                        provider: provider.name.clone(),
                        status: Some(200),
                        message,
                    }
                })?,
                None => body,
            };
            Ok(Attempted {
                answer: Answer::Plain(body),
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
