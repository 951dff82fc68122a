//! The gateway's one error type, and the single place it becomes an HTTP response.
//!
//! Every variant knows its [`Origin`] (whose fault), its OpenAI-style `code`, its status, and whether routing
//! may retry it elsewhere. Messages are lowercase, name the offending value, and never carry a secret.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Where a failure came from (pingora's taxonomy, cut to what a gateway needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Gateway,
}

/// An error the upstream answered with, normalised to OpenAI's fields.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub provider: String,
    pub status: StatusCode,
    pub message: String,
    pub error_type: Option<String>,
    pub code: Option<Value>,
    pub param: Option<Value>,
    /// The account is out of money or quota: retrying (here or elsewhere on the same account) cannot help.
    pub quota_exhausted: bool,
    /// The upstream's `retry-after`, passed on to the client.
    pub retry_after: Option<HeaderValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported content type {0:?}; send application/json")]
    UnsupportedContentType(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("missing API key; send it as `Authorization: Bearer <key>`")]
    MissingApiKey,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("this key may not use the model {0:?}")]
    ModelNotAllowed(String),
    #[error("the model {0:?} does not exist")]
    UnknownModel(String),
    #[error("{0}")]
    RateLimited(Box<crate::rate_limit::RateLimited>),
    #[error("no deployment of model {model:?} satisfies this key's constraints ({constraint})")]
    NoEligibleDeployment { model: String, constraint: String },
    #[error("every deployment of model {model:?} is cooling down after failures; retry in {}s", retry_after.as_secs().max(1))]
    AllCoolingDown {
        model: String,
        retry_after: Duration,
    },
    #[error("upstream {}: {}", .0.provider, .0.message)]
    UpstreamRejected(Box<UpstreamError>),
    #[error("upstream {provider} failed: {message}")]
    UpstreamFailed {
        provider: String,
        status: Option<u16>,
        message: String,
    },
    /// The upstream refused the gateway's own key (401): a deployment fault, not the client's, and not one a
    /// retry fixes. The upstream's message is dropped — providers echo part of the key in it.
    #[error("upstream {provider} rejected the gateway's credentials (401)")]
    UpstreamAuthFailed { provider: String },
    #[error("upstream {provider} did not answer within {}ms", timeout.as_millis())]
    UpstreamTimeout { provider: String, timeout: Duration },
    #[error("cannot reach upstream {provider}: {message}")]
    UpstreamUnreachable { provider: String, message: String },
    #[error("upstream {provider} stream ended before completion: {reason}")]
    StreamTruncated { provider: String, reason: String },
    /// A budget of the caller (tenant, team, key, end user or tag) has no room for this request.
    #[error("budget exhausted: {subject} has spent its {period} budget of {limit}; {detail}")]
    BudgetExceeded {
        /// `tenant acme`, `key ci`, `end_user alice`, …
        subject: String,
        period: String,
        /// The limit as a decimal amount with its currency (`100 USD`).
        limit: String,
        detail: String,
        /// Until the period resets (`None` for a total budget).
        retry_after: Option<Duration>,
    },
    /// A stream ran past the output its budget reservation covers (an upstream ignoring `max_tokens`): cut.
    #[error(
        "the upstream passed the {reserved_tokens} output tokens reserved for this request against its budget \
         (at least {seen_tokens} so far); the stream was cut"
    )]
    ReservationExceeded {
        reserved_tokens: u64,
        seen_tokens: u64,
    },
    /// With several replicas, the budget owner did not answer a lease request in time. Spending without a
    /// lease could break the overspend bound, so the request is refused, but this is no budget verdict: 503.
    #[error(
        "the budget owner did not grant capacity for {subject}'s {period} budget in time; retry shortly"
    )]
    BudgetOwnerUnavailable {
        subject: String,
        period: String,
        retry_after: Duration,
    },
    /// The admin API is off (no `[admin]` in the config).
    #[error("the admin API is disabled; set [admin] key_env or sha256 in the config to enable it")]
    AdminDisabled,
    /// The admin key is missing or wrong.
    #[error("this endpoint needs the admin key")]
    NotAdmin,
    /// An admin resource that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An admin change that conflicts with the current state (a name already taken, …).
    #[error("{0}")]
    Conflict(String),
    /// A dependency (ClickHouse for reports, …) is not answering.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    #[must_use]
    pub fn origin(&self) -> Origin {
        match self {
            Self::MalformedJson(_)
            | Self::UnsupportedContentType(_)
            | Self::BodyTooLarge { .. }
            | Self::InvalidRequest { .. }
            | Self::MissingApiKey
            | Self::InvalidApiKey
            | Self::ModelNotAllowed(_)
            | Self::NoEligibleDeployment { .. }
            | Self::RateLimited(_)
            | Self::BudgetExceeded { .. }
            | Self::ReservationExceeded { .. }
            | Self::AdminDisabled
            | Self::NotAdmin
            | Self::NotFound(_)
            | Self::Conflict(_)
            | Self::UnknownModel(_) => Origin::Client,
            Self::UpstreamRejected(_)
            | Self::UpstreamFailed { .. }
            | Self::UpstreamAuthFailed { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::StreamTruncated { .. }
            | Self::AllCoolingDown { .. } => Origin::Upstream,
            Self::Internal(_) | Self::Unavailable(_) | Self::BudgetOwnerUnavailable { .. } => {
                Origin::Gateway
            }
        }
    }

    /// Whether another attempt (another key, another deployment) could succeed.
    #[must_use]
    pub fn retryable(&self) -> bool {
        match self {
            Self::UpstreamRejected(e) => {
                !e.quota_exhausted && matches!(e.status.as_u16(), 408 | 409 | 429)
            }
            Self::UpstreamFailed { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UpstreamUnreachable { .. } => true,
            _ => false,
        }
    }

    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MissingApiKey | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed(_) | Self::NoEligibleDeployment { .. } => StatusCode::FORBIDDEN,
            Self::AllCoolingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_)
            | Self::BudgetExceeded { .. }
            | Self::ReservationExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnknownModel(_) | Self::AdminDisabled | Self::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Self::NotAdmin => StatusCode::UNAUTHORIZED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) | Self::BudgetOwnerUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamRejected(e) => e.status,
            Self::UpstreamFailed { .. }
            | Self::UpstreamAuthFailed { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::StreamTruncated { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI-style machine-readable code; also recorded on the usage event.
    #[must_use]
    pub fn code(&self) -> String {
        match self {
            Self::MalformedJson(_) => "invalid_json".into(),
            Self::UnsupportedContentType(_) => "unsupported_content_type".into(),
            Self::BodyTooLarge { .. } => "body_too_large".into(),
            Self::InvalidRequest { .. } => "invalid_request".into(),
            Self::MissingApiKey => "missing_api_key".into(),
            Self::InvalidApiKey => "invalid_api_key".into(),
            Self::ModelNotAllowed(_) => "model_not_allowed".into(),
            Self::UnknownModel(_) => "model_not_found".into(),
            Self::NoEligibleDeployment { .. } => "no_eligible_deployment".into(),
            Self::RateLimited(_) => "rate_limit_exceeded".into(),
            Self::AllCoolingDown { .. } => "all_deployments_cooling_down".into(),
            Self::UpstreamRejected(e) if e.quota_exhausted => "upstream_quota_exhausted".into(),
            Self::UpstreamRejected(e) => match &e.code {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => format!("upstream_{}", e.status.as_u16()),
            },
            Self::UpstreamFailed { .. } => "upstream_error".into(),
            Self::UpstreamAuthFailed { .. } => "upstream_auth_failed".into(),
            Self::UpstreamTimeout { .. } => "upstream_timeout".into(),
            Self::UpstreamUnreachable { .. } => "upstream_unreachable".into(),
            Self::StreamTruncated { .. } => "stream_truncated".into(),
            // The same code as a refusal: both mean the budget allowed no more for this request.
            Self::BudgetExceeded { .. } | Self::ReservationExceeded { .. } => {
                "budget_exceeded".into()
            }
            Self::AdminDisabled => "admin_api_disabled".into(),
            Self::NotAdmin => "invalid_admin_key".into(),
            Self::NotFound(_) => "not_found".into(),
            Self::Conflict(_) => "conflict".into(),
            Self::Unavailable(_) => "unavailable".into(),
            Self::BudgetOwnerUnavailable { .. } => "budget_unavailable".into(),
            Self::Internal(_) => "internal_error".into(),
        }
    }

    fn error_type(&self) -> String {
        match self {
            Self::MissingApiKey | Self::InvalidApiKey | Self::NotAdmin => {
                "authentication_error".into()
            }
            Self::BudgetExceeded { .. } | Self::ReservationExceeded { .. } => {
                "insufficient_quota".into()
            }
            Self::Unavailable(_) | Self::BudgetOwnerUnavailable { .. } => "server_error".into(),
            Self::ModelNotAllowed(_) | Self::NoEligibleDeployment { .. } => {
                "permission_error".into()
            }
            Self::AllCoolingDown { .. } => "upstream_error".into(),
            Self::RateLimited(_) => "rate_limit_error".into(),
            Self::UpstreamRejected(e) => e
                .error_type
                .clone()
                .unwrap_or_else(|| "upstream_error".into()),
            Self::UpstreamFailed { .. }
            | Self::UpstreamAuthFailed { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::StreamTruncated { .. } => "upstream_error".into(),
            Self::Internal(_) => "server_error".into(),
            _ => "invalid_request_error".into(),
        }
    }

    /// The OpenAI error object: `{"error":{"message","type","param","code"}}`.
    #[must_use]
    pub fn body(&self) -> Value {
        let (message, param, code) = match self {
            Self::UpstreamRejected(e) => (
                e.message.clone(),
                e.param.clone().unwrap_or(Value::Null),
                if e.quota_exhausted {
                    Value::String(self.code())
                } else {
                    e.code.clone().unwrap_or(Value::Null)
                },
            ),
            Self::InvalidRequest { message, param } => (
                message.clone(),
                param.map_or(Value::Null, |p| Value::String(p.into())),
                Value::String(self.code()),
            ),
            _ => (self.to_string(), Value::Null, Value::String(self.code())),
        };
        json!({"error": {"message": message, "type": self.error_type(), "param": param, "code": code}})
    }

    /// The same error as one SSE event, for failures after a stream's headers went out.
    #[must_use]
    pub fn stream_chunk(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", self.body()))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Self::UpstreamRejected(e) = &self {
            match &e.retry_after {
                Some(retry_after) => {
                    headers.insert(http::header::RETRY_AFTER, retry_after.clone());
                }
                // A 429 without a hint (wires that report throttling inside a 200): the key now cools for at
                // least the base cooldown, so that is when a retry can reach it again.
                None if e.status == StatusCode::TOO_MANY_REQUESTS && !e.quota_exhausted => {
                    let secs = crate::routing::health::BASE_COOLDOWN.as_secs().max(1);
                    headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
                }
                None => {}
            }
        }
        let retry_after = match &self {
            Self::AllCoolingDown { retry_after, .. } => Some(*retry_after),
            Self::BudgetExceeded { retry_after, .. } => *retry_after,
            Self::BudgetOwnerUnavailable { retry_after, .. } => Some(*retry_after),
            Self::RateLimited(r) => {
                for (name, value) in &r.headers {
                    if let Ok(v) = HeaderValue::from_str(value) {
                        headers.insert(*name, v);
                    }
                }
                Some(r.retry_after)
            }
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        // The OpenAI SDKs honour `x-should-retry`; tell them when a retry is pointless.
        // A spent budget does not come back in seconds: no retry either.
        if (matches!(self.origin(), Origin::Client) && !matches!(self, Self::RateLimited(_)))
            || matches!(&self, Self::UpstreamRejected(e) if e.quota_exhausted)
        {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_have_openai_shape_and_status() {
        let cases = [
            (
                GatewayError::MalformedJson("eof".into()),
                400,
                "invalid_json",
            ),
            (
                GatewayError::UnsupportedContentType("text/plain".into()),
                415,
                "unsupported_content_type",
            ),
            (
                GatewayError::BodyTooLarge { limit: 10 },
                413,
                "body_too_large",
            ),
            (GatewayError::MissingApiKey, 401, "missing_api_key"),
            (GatewayError::InvalidApiKey, 401, "invalid_api_key"),
            (
                GatewayError::ModelNotAllowed("m".into()),
                403,
                "model_not_allowed",
            ),
            (
                GatewayError::UnknownModel("m".into()),
                404,
                "model_not_found",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            let body = err.body();
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert!(body["error"]["type"].is_string());
            assert!(body["error"].get("param").is_some());
            assert_eq!(err.origin(), Origin::Client);
            assert!(!err.retryable());
        }
    }

    #[test]
    fn upstream_failures_map_to_gateway_statuses_and_are_retryable() {
        let timeout = GatewayError::UpstreamTimeout {
            provider: "p".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(timeout.retryable());
        let failed = GatewayError::UpstreamFailed {
            provider: "p".into(),
            status: Some(503),
            message: "x".into(),
        };
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
        assert!(failed.retryable());
    }

    #[test]
    fn quota_exhausted_429_is_not_retryable_and_says_so() {
        let err = GatewayError::UpstreamRejected(Box::new(UpstreamError {
            provider: "p".into(),
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "You exceeded your current quota".into(),
            error_type: Some("insufficient_quota".into()),
            code: Some(Value::String("insufficient_quota".into())),
            param: None,
            quota_exhausted: true,
            retry_after: None,
        }));
        assert!(!err.retryable());
        assert_eq!(err.code(), "upstream_quota_exhausted");
        let response = err.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["x-should-retry"], "false");
    }

    #[test]
    fn an_unanswering_budget_owner_is_a_retryable_503_not_a_spent_budget() {
        let err = GatewayError::BudgetOwnerUnavailable {
            subject: "tenant acme".into(),
            period: "monthly".into(),
            retry_after: Duration::from_millis(2_500),
        };
        assert_eq!(err.code(), "budget_unavailable");
        assert_eq!(err.origin(), Origin::Gateway);
        assert_eq!(err.body()["error"]["type"], "server_error");
        let response = err.into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "3");
        assert!(response.headers().get("x-should-retry").is_none());
    }
}
