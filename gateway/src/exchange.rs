//! One request's accounting: who asked, for what, what it cost — ending in exactly one [`UsageEvent`].
//!
//! An [`Exchange`] is created once the caller is authenticated and consumed by [`Exchange::finish`]; the type
//! makes "one request, one event" hold: it cannot finish twice, every path out of the proxy finishes it, and
//! one dropped unfinished (a panic, a cancelled task) still emits its event, marked `exchange_abandoned`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_schemas::usage::USAGE_SCHEMA_VERSION;
use tollgate_schemas::{Endpoint, Outcome, UsageEvent, UsageSource, UsageVector};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{GatewayError, Origin};
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::rate_limit::Admission;
use crate::routing::Deployment;

pub struct Exchange {
    sink: EventSink,
    metrics: Arc<Metrics>,
    pub event_id: Uuid,
    started: Instant,
    started_at_ms: i64,
    principal: Arc<Principal>,
    endpoint: Endpoint,
    pub model: String,
    pub end_user: Option<String>,
    /// Business labels (`x-tollgate-tags`, `metadata`).
    pub tags: std::collections::BTreeMap<String, String>,
    pub stream: bool,
    pub deployment: Option<Arc<Deployment>>,
    pub attempts: u32,
    /// Time to the first upstream body byte.
    pub ttft: Option<Duration>,
    /// Size of the client's request body, for estimating prompt tokens when the upstream reports none.
    pub request_bytes: usize,
    /// Input tokens the upstream billed for failed attempts (an embeddings request sent as several calls,
    /// some of which succeeded): added to the event's usage, priced at the event's deployment (the last one
    /// tried).
    pub billed_by_failed_attempts: u64,
    /// Set by the HTTP side when the client hung up before its answer was ready.
    client_gone: Arc<AtomicBool>,
    /// The rate-limit admission, settled with the real token count when the exchange ends.
    admission: Option<Admission>,
    /// Completion tokens the budget reservation covers: a stream producing more content chunks than this (each
    /// carries at least one token) is cut.
    pub reserved_output_tokens: Option<u64>,
    /// Budget reservations, settled with the actual cost when the exchange ends.
    budget: Option<crate::budget::BudgetHold>,
    /// `x-ratelimit-*` headers for the client's response.
    rate_limit_headers: Vec<(&'static str, String)>,
    /// The request's trace span (disabled unless traces are exported); ends when the exchange is dropped.
    span: tracing::Span,
    finished: bool,
}

/// How an exchange ended.
pub struct Ending {
    pub outcome: Outcome,
    pub http_status: u16,
    pub error_code: Option<String>,
    pub usage: UsageVector,
    pub usage_source: UsageSource,
}

impl Ending {
    /// A failure before the upstream produced anything billable.
    #[must_use]
    pub fn failed(error: &GatewayError) -> Self {
        let outcome = match error.origin() {
            Origin::Client => Outcome::ClientError,
            Origin::Upstream => Outcome::UpstreamError,
            Origin::Gateway => Outcome::GatewayError,
        };
        Self {
            outcome,
            http_status: error.status().as_u16(),
            error_code: Some(error.code()),
            usage: UsageVector::default(),
            usage_source: UsageSource::None,
        }
    }
}

impl Exchange {
    #[must_use]
    pub fn begin(
        sink: &EventSink,
        metrics: &Arc<Metrics>,
        principal: Arc<Principal>,
        endpoint: Endpoint,
        client_gone: Arc<AtomicBool>,
    ) -> Self {
        let event_id = Uuid::now_v7();
        Self {
            span: crate::telemetry::request_span(&event_id, endpoint.as_str()),
            sink: sink.clone(),
            metrics: Arc::clone(metrics),
            event_id,
            started: Instant::now(),
            started_at_ms: crate::clock::now_ms(),
            principal,
            endpoint,
            model: String::new(),
            end_user: None,
            tags: std::collections::BTreeMap::new(),
            stream: false,
            deployment: None,
            attempts: 0,
            ttft: None,
            request_bytes: 0,
            billed_by_failed_attempts: 0,
            client_gone,
            admission: None,
            budget: None,
            reserved_output_tokens: None,
            rate_limit_headers: Vec::new(),
            finished: false,
        }
    }

    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    #[must_use]
    pub fn principal_arc(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// The request's trace span, parent of its upstream attempts' spans.
    #[must_use]
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Holds the request's rate-limit admission until the exchange ends.
    pub fn admitted(&mut self, admission: Admission) {
        self.rate_limit_headers = admission.headers();
        self.admission = Some(admission);
    }

    /// Holds the request's budget reservations until the exchange ends.
    pub fn budgeted(&mut self, hold: crate::budget::BudgetHold) {
        self.budget = Some(hold);
    }

    /// Adds `x-request-id` (the usage event's id) and the rate-limit headers to a response.
    #[must_use]
    pub fn decorate(&self, mut response: axum::response::Response) -> axum::response::Response {
        let headers = response.headers_mut();
        let mut id = Uuid::encode_buffer();
        if let Ok(v) = http::HeaderValue::from_str(self.event_id.hyphenated().encode_lower(&mut id))
        {
            headers.insert("x-request-id", v);
        }
        for (name, value) in &self.rate_limit_headers {
            if let Ok(v) = http::HeaderValue::from_str(value) {
                headers.entry(*name).or_insert(v);
            }
        }
        response
    }

    /// Marks the first upstream byte (only the first call counts).
    pub fn first_byte(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }

    /// Prompt size for estimated usage: the same upper-leaning estimate rate limits charge, never zero
    /// (an estimate is never optimistic).
    #[must_use]
    pub fn estimated_prompt_tokens(&self) -> u64 {
        u64::from(crate::rate_limit::estimate_prompt_tokens(self.request_bytes).max(1))
    }

    /// Emits the request's one usage event.
    pub fn finish(mut self, ending: Ending) {
        self.emit(ending);
    }

    fn emit(&mut self, mut ending: Ending) {
        if self.finished {
            return;
        }
        self.finished = true;
        if ending.outcome == Outcome::Success && self.client_gone.load(Ordering::Relaxed) {
            ending.outcome = Outcome::ClientDisconnected;
            ending.error_code = Some("client_disconnected".into());
        }
        if self.billed_by_failed_attempts > 0 {
            ending.usage.prompt_tokens = ending
                .usage
                .prompt_tokens
                .saturating_add(self.billed_by_failed_attempts);
            if ending.usage_source == UsageSource::None {
                ending.usage_source = UsageSource::Provider;
            }
        }
        if let Some(admission) = self.admission.take() {
            let used = ending.usage.total_tokens();
            admission.settle(u32::try_from(used).unwrap_or(u32::MAX));
        }
        let elapsed = self.started.elapsed();
        let (provider, provider_kind, deployment, upstream_model, cost) = match &self.deployment {
            Some(d) => (
                d.provider.name.clone(),
                d.provider.kind.name().to_string(),
                d.id.clone(),
                d.upstream_model.clone(),
                d.cost.of(&ending.usage),
            ),
            None => Default::default(),
        };
        // The leases the reservations came from go on the event, so the budget owner sees what each spent.
        let budget_leases = self.budget.as_ref().map(|h| h.leases()).unwrap_or_default();
        if let Some(hold) = self.budget.take() {
            hold.settle(cost.reporting_nanos);
        }
        let event = UsageEvent {
            schema_version: USAGE_SCHEMA_VERSION,
            event_id: self.event_id,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.started_at_ms
                + i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            tenant: self.principal.tenant.clone(),
            team: self.principal.team.clone(),
            key_id: self.principal.key_id.clone(),
            end_user: self.end_user.take(),
            endpoint: self.endpoint,
            model: std::mem::take(&mut self.model),
            provider,
            provider_kind,
            deployment,
            upstream_model,
            stream: self.stream,
            outcome: ending.outcome,
            http_status: ending.http_status,
            error_code: ending.error_code,
            attempts: self.attempts,
            latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            ttft_ms: self
                .ttft
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            usage: ending.usage,
            usage_source: ending.usage_source,
            cost,
            tags: std::mem::take(&mut self.tags),
            budget_leases,
        };
        self.metrics.record(&event);
        crate::telemetry::record_request(&self.span, &event);
        self.sink.emit(event);
    }

    /// Records `error` as the request's end and turns it into the client's response.
    pub fn refuse(self, error: GatewayError) -> axum::response::Response {
        use axum::response::IntoResponse;
        if error.origin() != Origin::Client {
            tracing::warn!(target: "tollgate::proxy", request_id = %self.event_id, model = %self.model,
                code = %error.code(), error = %error, "request failed");
        }
        let ending = Ending::failed(&error);
        let response = self.decorate(error.into_response());
        self.finish(ending);
        response
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.finished {
            tracing::error!(target: "tollgate::proxy", request_id = %self.event_id, "exchange dropped unfinished");
            let usage = UsageVector::default();
            self.emit(Ending {
                outcome: Outcome::GatewayError,
                http_status: 500,
                error_code: Some("exchange_abandoned".into()),
                usage,
                usage_source: UsageSource::None,
            });
        }
    }
}
