//! Anthropic error answers → [`GatewayError`].
//!
//! Body: `{"type":"error","error":{"type","message"},"request_id"}`. The generic classifier reads it (the
//! `error` object's `message` / `type`), and decides by status: 429 `rate_limit_error` retryable with its
//! `retry-after`; 529 `overloaded_error`, 500 `api_error`, 504 `timeout_error` retryable upstream failures
//! (502 to the client); 401 → `upstream_auth_failed`; 400 / 403 / 404 / 413 passed on, not retried. What is
//! Anthropic's own: a spent account (`billing_error`, or a 400 saying the credit balance is too low) is
//! quota exhaustion, never retried on the same account.

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::error::GatewayError;
use crate::provider::upstream_error;
use crate::provider::ProviderKind;

/// Classifies a non-2xx Messages answer.
#[must_use]
pub fn classify(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> GatewayError {
    upstream_error::classify(provider, ProviderKind::Anthropic, status, headers, body)
}

/// Whether an Anthropic error means the account cannot pay.
#[must_use]
pub fn is_quota_exhausted(error_type: Option<&str>, message: Option<&str>) -> bool {
    error_type == Some("billing_error")
        || message.is_some_and(|m| m.to_ascii_lowercase().contains("credit balance is too low"))
}

/// The `error.type` of an Anthropic error body, if it is one.
#[must_use]
pub fn error_type(body: &Value) -> Option<&str> {
    body.get("error")?.get("type")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: u16, ty: &str, message: &str, retry_after: Option<&str>) -> GatewayError {
        let mut headers = HeaderMap::new();
        if let Some(ra) = retry_after {
            headers.insert("retry-after", ra.parse().unwrap());
        }
        let body = serde_json::json!({"type": "error", "error": {"type": ty, "message": message}, "request_id": "req_1"});
        classify(
            "claude",
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn each_error_class() {
        let e = run(429, "rate_limit_error", "slow down", Some("7"));
        assert!(e.retryable());
        assert_eq!(e.status(), 429);
        assert_eq!(e.body()["error"]["type"], "rate_limit_error");
        assert!(
            matches!(&e, GatewayError::UpstreamRejected(u) if u.retry_after.as_ref().is_some_and(|v| v == "7"))
        );
        for status in [529, 500, 504] {
            let e = run(status, "overloaded_error", "Overloaded", None);
            assert!(e.retryable(), "{status}");
            assert_eq!(e.status(), 502, "{status}");
        }
        for (status, ty) in [
            (400, "invalid_request_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
        ] {
            let e = run(status, ty, "no", None);
            assert!(!e.retryable(), "{status}");
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.body()["error"]["type"], ty);
            assert_eq!(e.body()["error"]["message"], "no");
        }
        let e = run(
            401,
            "authentication_error",
            "invalid x-api-key sk-ant-abc",
            None,
        );
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (502, "upstream_auth_failed")
        );
        assert!(!e.to_string().contains("sk-ant"));
        let e = run(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
            None,
        );
        assert_eq!(e.code(), "upstream_quota_exhausted");
        assert!(!run(402, "billing_error", "pay", None).retryable());
    }
}
