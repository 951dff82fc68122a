//! Google API error answers (Gemini API and Vertex AI) → [`GatewayError`].
//!
//! Body: `{"error":{"code","message","status","details":[{"@type": "…google.rpc.RetryInfo","retryDelay":"1.5s"},
//! {"@type": "…google.rpc.QuotaFailure","violations":[{"quotaId"}]}, {"@type": "…google.rpc.ErrorInfo","reason"}]}}`
//! (also wrapped in a one-element array). By status:
//!
//! | upstream | gateway |
//! |---|---|
//! | 429 `RESOURCE_EXHAUSTED` | retryable, the `RetryInfo.retryDelay` as retry hint and `retry-after` (Google sends no header); a per-day `QuotaFailure` is quota exhaustion: not retried on that key |
//! | 500 `INTERNAL`, 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED` | retryable upstream failure (502 to the client) |
//! | 401, or 400 with `ErrorInfo.reason` `API_KEY_INVALID` (Google's answer to a bad key) | `upstream_auth_failed` (502), message dropped |
//! | 400 `INVALID_ARGUMENT` / `FAILED_PRECONDITION`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND` | passed on with their status, not retried |
//!
//! The OpenAI error's `code` is Google's `status` (`RESOURCE_EXHAUSTED`, …); its `type` follows the HTTP
//! status as OpenAI's would (`rate_limit_error`, `invalid_request_error`, …).

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use crate::error::{GatewayError, UpstreamError};

/// Longest upstream message passed on.
const MAX_MESSAGE_CHARS: usize = 1000;

/// The `error` object of a Google error body (plain or in a one-element array).
#[must_use]
pub fn error_object(body: &Value) -> Option<&Value> {
    match body {
        Value::Array(items) => items.first()?.get("error"),
        other => other.get("error"),
    }
}

/// `"1.5s"` / `"38s"` → whole seconds, rounded up.
#[must_use]
pub fn parse_delay(delay: &str) -> Option<u64> {
    let secs: f64 = delay.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| {
        // Bounded by the retry module anyway; `as` saturates.
        secs.ceil() as u64
    })
}

fn details<'a>(error: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(kind))
        })
}

/// OpenAI's error `type` for an HTTP status.
fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "invalid_request_error",
    }
}

/// Classifies a non-2xx Google answer.
#[must_use]
pub fn classify(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(error_object);
    let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
    let message: String = text("message")
        .map_or_else(
            || String::from_utf8_lossy(body).trim().to_string(),
            str::to_string,
        )
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let message = if message.is_empty() {
        format!("status {}", status.as_u16())
    } else {
        message
    };
    let key_refused = error.is_some_and(|e| {
        details(e, "google.rpc.ErrorInfo")
            .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
    });
    if status == StatusCode::UNAUTHORIZED || (status == StatusCode::BAD_REQUEST && key_refused) {
        return GatewayError::UpstreamAuthFailed {
            provider: provider.into(),
        };
    }
    if status.is_server_error() {
        return GatewayError::UpstreamFailed {
            provider: provider.into(),
            status: Some(status.as_u16()),
            message,
        };
    }
    let quota_exhausted = status == StatusCode::TOO_MANY_REQUESTS
        && error.is_some_and(|e| {
            details(e, "google.rpc.QuotaFailure").any(|d| {
                d.get("violations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|v| {
                        v.get("quotaId")
                            .and_then(Value::as_str)
                            .is_some_and(|q| q.contains("PerDay"))
                    })
            })
        });
    let retry_after = headers.get(http::header::RETRY_AFTER).cloned().or_else(|| {
        let delay = error.and_then(|e| {
            details(e, "google.rpc.RetryInfo")
                .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        })?;
        parse_delay(delay).map(|secs| HeaderValue::from(secs.max(1)))
    });
    let status = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_GATEWAY
    };
    GatewayError::UpstreamRejected(Box::new(UpstreamError {
        provider: provider.into(),
        status,
        message,
        error_type: Some(openai_type(status.as_u16()).into()),
        code: text("status").map(|s| Value::String(s.into())),
        param: None,
        quota_exhausted,
        retry_after,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/gemini/mock-responses"
    );

    fn run(status: u16, body: &Value) -> GatewayError {
        classify(
            "gemini",
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.to_string().as_bytes(),
        )
    }

    fn google(code: u16, status: &str, message: &str, details: Value) -> Value {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}})
    }

    #[test]
    fn rate_limits_carry_retry_info_and_daily_quota_is_exhaustion() {
        let e = run(
            429,
            &google(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted",
                json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                     "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]),
            ),
        );
        assert!(e.retryable());
        assert_eq!(e.status(), 429);
        assert_eq!(e.code(), "RESOURCE_EXHAUSTED");
        assert_eq!(e.body()["error"]["type"], "rate_limit_error");
        assert!(
            matches!(&e, GatewayError::UpstreamRejected(u) if u.retry_after.as_ref().is_some_and(|v| v == "2"))
        );
        let daily = run(
            429,
            &json!([google(
                429,
                "RESOURCE_EXHAUSTED",
                "quota",
                json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}])
            )]),
        );
        assert!(!daily.retryable());
        assert_eq!(daily.code(), "upstream_quota_exhausted");
        assert_eq!(parse_delay("45.837906927s"), Some(46));
        assert_eq!(parse_delay("38s"), Some(38));
        assert_eq!(parse_delay("soon"), None);
    }

    #[test]
    fn each_error_class_from_the_fixtures() {
        let file = |name: &str| -> Value {
            serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
        };
        let e = run(400, &file("googleai/unary-failure-api-key.json"));
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (502, "upstream_auth_failed")
        );
        assert!(!e.to_string().contains("key1234"));
        let e = run(
            403,
            &file("googleai/unary-failure-generativelanguage-api-not-enabled.json"),
        );
        assert_eq!((e.status().as_u16(), e.retryable()), (403, false));
        assert_eq!(e.code(), "PERMISSION_DENIED");
        let e = run(404, &file("googleai/unary-failure-unknown-model.json"));
        assert_eq!((e.status().as_u16(), e.retryable()), (404, false));
        assert!(e.body()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gemini-5.0-flash"));
        let e = run(400, &google(400, "INVALID_ARGUMENT", "bad", Value::Null));
        assert_eq!((e.status().as_u16(), e.retryable()), (400, false));
        assert_eq!(e.body()["error"]["type"], "invalid_request_error");
        for status in [500, 503, 504] {
            let e = run(
                status,
                &google(status, "UNAVAILABLE", "overloaded", Value::Null),
            );
            assert!(e.retryable(), "{status}");
            assert_eq!(e.status(), 502);
        }
        let e = run(
            401,
            &google(401, "UNAUTHENTICATED", "token ya29.x", Value::Null),
        );
        assert_eq!(e.code(), "upstream_auth_failed");
        assert!(!e.to_string().contains("ya29"));
    }
}
