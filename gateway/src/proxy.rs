//! The orchestrator: authenticate → read → route → attempt (retry, fail over) → relay → meter.
//!
//! Everything that is not translation lives here, once, for every provider. Each request ends in exactly one
//! usage event (see [`crate::exchange`]).
//!
//! The work after authentication runs in its own task: if the client hangs up while the upstream is
//! answering, the upstream call (which the provider bills) still completes and is metered, marked
//! `client_disconnected`.
//!
//! Attempts walk the route's candidates in order — next key, then next tier — skipping keys that are cooling
//! down, up to the group's `max_attempts` and never past its deadline. Retryable failures (connect errors,
//! timeouts, 408, 409, 429, 5xx) cool the key and move on; a client error (other 4xx), an upstream refusing
//! the gateway's key (401) or an exhausted account quota ends the request at once (the last two also rest the
//! key, so later requests use the others). A stream can fail over until its
//! first chunk is in hand; after that a failure is reported inside the stream (see [`crate::relay`]).

mod attempt;
pub mod attribution;
mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tollgate_schemas::{Endpoint, Outcome, UsageSource, UsageVector};

use crate::auth::Principal;
use crate::error::GatewayError;
use crate::exchange::{Ending, Exchange};
use crate::provider::usage;
use crate::rate_limit::estimate_prompt_tokens;
use crate::relay;
use crate::retry::{exhausted_until_reset, RetryPacer};
use crate::routing::health::{Availability, QUOTA_COOLDOWN};
use crate::routing::{Candidate, Deployment};
use crate::state::AppState;
use crate::telemetry;
pub use attempt::BodyStream;
use attempt::{attempt, Answer, AttemptFailed, Attempted};
pub use request::PathTarget;
use request::{ClientRequest, UpstreamBody};

/// Output tokens assumed for rate limiting when a request sets no cap.
const DEFAULT_OUTPUT_ESTIMATE: u32 = 1024;

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
    handle_at(state, endpoint, None, headers, body).await
}

/// Serves one request end to end; `target` is what its URL says (model, streaming) when its body does not.
pub async fn handle_at(
    state: Arc<AppState>,
    endpoint: Endpoint,
    target: Option<PathTarget>,
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
    let tasks = state.tasks.clone();
    let task = tasks.spawn(serve(
        state, principal, endpoint, target, headers, body, gone,
    ));
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
    target: Option<PathTarget>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    client_gone: Arc<AtomicBool>,
) -> Response {
    let mut ex = Exchange::begin(
        &state.sink,
        &state.metrics,
        principal,
        endpoint,
        client_gone,
    );
    let mut request = match ClientRequest::read(
        endpoint,
        target.as_ref(),
        &headers,
        body,
        state.max_body_bytes,
    ) {
        Ok(r) => r,
        Err(e) => return ex.refuse(e),
    };
    ex.request_bytes = request.raw.len();
    ex.model.clone_from(&request.model);
    ex.stream = request.stream;
    ex.end_user.clone_from(&request.end_user);
    ex.tags.clone_from(&request.tags);
    if !state.router.contains(&request.model) {
        let model = request.model;
        return ex.refuse(GatewayError::UnknownModel(model));
    }
    if !ex.principal().models.allows(&request.model) {
        let model = request.model;
        return ex.refuse(GatewayError::ModelNotAllowed(model));
    }
    let plan = match state
        .router
        .plan(&request.model, &ex.principal().require_tags)
    {
        Ok(p) => p,
        Err(e) => return ex.refuse(e),
    };
    // Rate limits: charged with the worst case this request can cost (prompt estimate + its output cap, or a
    // default cap when it sets none), corrected with the real count when the exchange ends.
    let estimate = estimate_prompt_tokens(request.raw.len())
        .saturating_add(request.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE));
    let principal = Arc::clone(ex.principal_arc());
    match state
        .limits
        .admit(&principal.key_id, &principal.team, &request.model, estimate)
    {
        Ok(admission) => ex.admitted(admission),
        Err(refused) => {
            state.metrics.rate_limited(subject_kind(&refused.subject));
            return ex.refuse(GatewayError::RateLimited(Box::new(refused)));
        }
    }
    if !state.budgets.is_empty() {
        if let Err(e) = reserve_budget(&state, &mut ex, &mut request, endpoint, &plan).await {
            state.metrics.budget_refused();
            return ex.refuse(e);
        }
    }
    let group = &plan.group;
    let deadline = Instant::now() + group.total_timeout;
    let mut pacer = RetryPacer::new();
    let mut last_error: Option<GatewayError> = None;
    let mut earliest_ready: Option<Instant> = None;
    for candidate in &plan.candidates {
        if ex.attempts >= group.max_attempts || Instant::now() >= deadline {
            break;
        }
        if let Availability::Cooling(until) = candidate.health().availability(Instant::now()) {
            earliest_ready = Some(earliest_ready.map_or(until, |e| e.min(until)));
            continue;
        }
        // The provider's own per-key quota, when configured: a spent key waits like a cooling one.
        if let Err(wait) = candidate
            .deployment
            .provider
            .try_acquire(candidate.key, estimate)
        {
            candidate.health().release_probe();
            let until = Instant::now() + wait;
            earliest_ready = Some(earliest_ready.map_or(until, |e| e.min(until)));
            continue;
        }
        if ex.attempts > 0 {
            let pause = pacer
                .next_delay()
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
            if Instant::now() >= deadline {
                candidate.health().release_probe();
                break;
            }
        }
        ex.attempts += 1;
        ex.deployment = Some(candidate.deployment.clone());
        let body = match request.upstream_body(endpoint, &candidate.deployment) {
            Ok(b) => b,
            Err(e) => {
                candidate.health().release_probe();
                return ex.refuse(e);
            }
        };
        let first_byte = group
            .first_byte_timeout
            .unwrap_or(candidate.deployment.provider.timeouts.first_byte);
        let attempt_started = Instant::now();
        let span = telemetry::attempt_span(ex.span(), candidate, ex.attempts);
        let attempted = match body {
            UpstreamBody::One(body) => {
                attempt(
                    candidate,
                    endpoint,
                    body,
                    request.stream,
                    first_byte,
                    deadline,
                )
                .await
            }
            UpstreamBody::Embeddings(calls) => {
                attempt::embeddings(candidate, calls, first_byte, deadline).await
            }
        };
        match attempted {
            Ok(answered) => {
                telemetry::attempt_answered(&span, answered.status, attempt_started.elapsed());
                candidate.deployment.metrics.attempt(true, false);
                record_success(candidate, &answered.headers);
                ex.first_byte();
                // This deployment's own time to first byte, not the whole exchange's (earlier attempts excluded).
                candidate.deployment.observe_ttft(attempt_started.elapsed());
                return respond(&state.tasks, ex, candidate, answered, request.include_usage);
            }
            Err(AttemptFailed {
                error,
                hint,
                cut_by_deadline,
                billed_prompt_tokens,
            }) => {
                telemetry::attempt_failed(&span, &error);
                ex.billed_by_failed_attempts = ex
                    .billed_by_failed_attempts
                    .saturating_add(billed_prompt_tokens);
                candidate
                    .deployment
                    .metrics
                    .attempt(false, error.retryable());
                if cut_by_deadline {
                    // The request ran out of time, not the key out of health: no verdict on the key.
                    candidate.health().release_probe();
                } else {
                    record_failure(candidate, &error, hint);
                }
                if !error.retryable() {
                    return ex.refuse(error);
                }
                tracing::debug!(target: "tollgate::proxy", request_id = %ex.event_id, deployment = %candidate.deployment.id,
                    key = candidate.key, code = %error.code(), "attempt failed; trying the next candidate");
                last_error = Some(error);
            }
        }
    }
    let error = last_error.unwrap_or_else(|| GatewayError::AllCoolingDown {
        model: request.model.clone(),
        retry_after: earliest_ready.map_or(crate::routing::health::BASE_COOLDOWN, |t| {
            t.saturating_duration_since(Instant::now())
        }),
    });
    ex.refuse(error)
}

/// Reserves the request's worst-case cost on every budget that applies to its caller: prompt tokens bounded by
/// the body's byte count, its output cap (or the configured default, which is then sent upstream), each at the
/// highest price among the deployments it may be routed to.
async fn reserve_budget(
    state: &AppState,
    ex: &mut Exchange,
    request: &mut ClientRequest,
    endpoint: Endpoint,
    plan: &crate::routing::Plan,
) -> Result<(), GatewayError> {
    let principal = Arc::clone(ex.principal_arc());
    let who = crate::budget::Charged {
        tenant: &principal.tenant,
        team: &principal.team,
        key: &principal.key_id,
        end_user: request.end_user.as_deref(),
        tags: &request.tags,
    };
    if !state.budgets.applies(&who) {
        return Ok(());
    }
    let output_cap = match endpoint {
        Endpoint::Embeddings => 0,
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::GenerateContent => {
            match request.max_output_tokens {
                Some(cap) => cap,
                None => {
                    let cap = state.budgets.settings().default_max_tokens;
                    request.injected_max_tokens = Some(cap);
                    cap
                }
            }
        }
    };
    let prompt_bound = u64::try_from(request.raw.len()).unwrap_or(u64::MAX);
    let worst_case = plan
        .candidates
        .iter()
        .filter_map(|c| {
            c.deployment
                .cost
                .worst_case(prompt_bound, u64::from(output_cap))
        })
        .max()
        .unwrap_or(0);
    let hold = state.budgets.reserve(&who, worst_case).await?;
    ex.budgeted(hold);
    ex.reserved_output_tokens = Some(u64::from(output_cap));
    Ok(())
}

/// "key ci" → "key": the kind of subject a rate limit belongs to, as a metric label.
fn subject_kind(subject: &str) -> &'static str {
    match subject.split(' ').next() {
        Some("key") => "key",
        Some("team") => "team",
        Some("model") => "model",
        _ => "other",
    }
}

fn record_success(candidate: &Candidate, headers: &HeaderMap) {
    let health = candidate.health();
    health.succeeded();
    if let Some(rest) = exhausted_until_reset(headers) {
        health.rest(Instant::now(), rest);
    }
}

/// What a failure says about the key: retryable → it cools down; out of quota or refused (401) → it rests
/// long, so later requests use the other keys; a client error → the key answered, so it is healthy.
fn record_failure(candidate: &Candidate, error: &GatewayError, hint: Option<std::time::Duration>) {
    let health = candidate.health();
    match error {
        GatewayError::UpstreamRejected(e) if e.quota_exhausted => {
            health.rest(Instant::now(), QUOTA_COOLDOWN)
        }
        GatewayError::UpstreamAuthFailed { .. } => health.rest(Instant::now(), QUOTA_COOLDOWN),
        e if e.retryable() => {
            health.failed(Instant::now(), hint);
            candidate.deployment.metrics.cooled_down();
        }
        _ => health.succeeded(),
    }
}

fn respond(
    tasks: &tokio_util::task::TaskTracker,
    ex: Exchange,
    candidate: &Candidate,
    answered: Attempted,
    include_usage: bool,
) -> Response {
    let idle = candidate.deployment.provider.timeouts.stream_idle;
    match answered.answer {
        Answer::Stream { first, rest } => relay::start(tasks, ex, first, rest, include_usage, idle),
        Answer::Plain(body) => complete_plain(ex, &candidate.deployment, body),
        Answer::Embeddings { embeddings, base64 } => {
            complete_embeddings(ex, &candidate.deployment, &embeddings, base64)
        }
    }
}

/// Answers an adapter kind's embeddings in OpenAI's shape and meters them: the tokens the upstream counted,
/// else the gateway's prompt estimate (the same one rate limits charge), marked `estimated` — never a silent
/// zero (the Gemini API may not say).
fn complete_embeddings(
    ex: Exchange,
    deployment: &Deployment,
    embeddings: &crate::provider::embeddings::Embeddings,
    base64: bool,
) -> Response {
    let (prompt_tokens, source) = match embeddings.prompt_tokens {
        Some(n) => (n, UsageSource::Provider),
        None => (ex.estimated_prompt_tokens(), UsageSource::Estimated),
    };
    let body = match crate::provider::embeddings::openai_body(
        embeddings,
        &deployment.upstream_model,
        base64,
        prompt_tokens,
    ) {
        Ok(b) => b,
        Err(e) => return ex.refuse(e),
    };
    let usage = UsageVector {
        prompt_tokens,
        ..Default::default()
    };
    answer_json(ex, body, usage, source)
}

/// A 200 JSON answer with the exchange's headers, metered as a success with `usage`.
fn answer_json(ex: Exchange, body: Bytes, usage: UsageVector, source: UsageSource) -> Response {
    let response = ex.decorate(
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default(),
    );
    ex.finish(Ending {
        outcome: Outcome::Success,
        http_status: 200,
        error_code: None,
        usage,
        usage_source: source,
    });
    response
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
    answer_json(ex, body, vector, source)
}

fn normalize_usage(body: &[u8], u: &Map<String, Value>) -> Option<Bytes> {
    let mut parsed: Map<String, Value> = serde_json::from_slice(body).ok()?;
    parsed.insert("usage".into(), Value::Object(usage::normalized_usage(u)));
    serde_json::to_vec(&parsed).ok().map(Bytes::from)
}
