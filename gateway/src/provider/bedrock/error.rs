//! Bedrock error answers → [`GatewayError`].
//!
//! Body `{"message": "…"}` (some services write `Message`); the error's name is in the `x-amzn-errortype`
//! header (anything after `:` dropped, as botocore does), else in the body's `__type`.
//!
//! | error | status | gateway |
//! |---|---|---|
//! | `ThrottlingException`, `ModelNotReadyException` | 429 | rejected 429, retryable (next key / deployment) |
//! | `ModelTimeoutException` | 408 | rejected 408, retryable |
//! | `ServiceUnavailableException`, `InternalServerException` | 503 / 500 | upstream failure (502), retryable |
//! | `ValidationException`, `ResourceNotFoundException`, `ModelErrorException` | 400 / 404 / 424 | passed on, not retried |
//! | `ServiceQuotaExceededException` | 400 | passed on, quota exhausted (the key rests) |
//! | `AccessDeniedException` (no model access) | 403 | passed on, not retried |
//! | any 401; 403 `UnrecognizedClientException`, `InvalidSignatureException`, `ExpiredTokenException`, `IncompleteSignatureException`, `MissingAuthenticationTokenException`, or a 403 whose message is about the signature, token or API key | 401 / 403 | `upstream_auth_failed` (502), the message dropped |

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::error::{GatewayError, UpstreamError};

/// Longest upstream message passed on.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Error names that mean the gateway's credentials are wrong.
const AUTH_ERRORS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
];

/// The AWS error name of an answer.
#[must_use]
pub fn error_name<'a>(headers: &'a HeaderMap, body: &'a Value) -> Option<&'a str> {
    headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v))
        .or_else(|| {
            body.get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t))
        })
        .filter(|n| !n.is_empty())
}

fn is_auth_failure(status: StatusCode, name: Option<&str>, message: &str) -> bool {
    if status == StatusCode::UNAUTHORIZED || name.is_some_and(|n| AUTH_ERRORS.contains(&n)) {
        return true;
    }
    let m = message.to_ascii_lowercase();
    status == StatusCode::FORBIDDEN
        && (m.contains("signature")
            || m.contains("security token")
            || m.contains("api key")
            || m.contains("authentication failed")
            || m.contains("bearer token"))
}

/// Classifies a non-2xx Bedrock answer.
#[must_use]
pub fn classify(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> GatewayError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let name = error_name(headers, &parsed);
    let message: String = parsed
        .get("message")
        .or_else(|| parsed.get("Message"))
        .and_then(Value::as_str)
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
    if is_auth_failure(status, name, &message) {
        return GatewayError::UpstreamAuthFailed {
            provider: provider.into(),
        };
    }
    if status.is_server_error() {
        return GatewayError::UpstreamFailed {
            provider: provider.into(),
            status: Some(status.as_u16()),
            message: match name {
                Some(n) => format!("{n}: {message}"),
                None => message,
            },
        };
    }
    GatewayError::UpstreamRejected(Box::new(UpstreamError {
        provider: provider.into(),
        status: if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_GATEWAY
        },
        message,
        error_type: name.map(str::to_string),
        code: name.map(|n| Value::String(n.to_string())),
        param: None,
        quota_exhausted: name == Some("ServiceQuotaExceededException"),
        retry_after: headers.get(http::header::RETRY_AFTER).cloned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: u16, name: &str, message: &str) -> GatewayError {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/")
                .parse()
                .unwrap(),
        );
        let body = serde_json::json!({ "message": message });
        classify(
            "bedrock",
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn each_error_class() {
        for (status, name) in [
            (429, "ThrottlingException"),
            (429, "ModelNotReadyException"),
            (408, "ModelTimeoutException"),
        ] {
            let e = run(
                status,
                name,
                "Too many requests, please wait before trying again.",
            );
            assert!(e.retryable(), "{name}");
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.body()["error"]["type"], name);
            assert_eq!(e.body()["error"]["code"], name);
        }
        for (status, name) in [
            (503, "ServiceUnavailableException"),
            (500, "InternalServerException"),
        ] {
            let e = run(status, name, "try later");
            assert!(e.retryable(), "{name}");
            assert_eq!(e.status(), 502);
            assert!(e.to_string().contains(name));
        }
        for (status, name) in [
            (400, "ValidationException"),
            (404, "ResourceNotFoundException"),
            (424, "ModelErrorException"),
            (403, "AccessDeniedException"),
        ] {
            let e = run(
                status,
                name,
                "You don't have access to the model with the specified model ID.",
            );
            assert!(!e.retryable(), "{name}");
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.body()["error"]["type"], name);
        }
        let e = run(400, "ServiceQuotaExceededException", "quota");
        assert!(matches!(&e, GatewayError::UpstreamRejected(u) if u.quota_exhausted));
        for (status, name, message) in [
            (403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key AKIAEXAMPLE"),
            (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
            (403, "ExpiredTokenException", "The security token included in the request is expired"),
            (403, "AccessDeniedException", "Authentication failed: Please make sure your API Key is valid."),
            (401, "", "whatever"),
        ] {
            let e = run(status, name, message);
            assert_eq!(
                (e.status().as_u16(), e.code().as_str()),
                (502, "upstream_auth_failed"),
                "{name}"
            );
            assert!(!e.to_string().contains("AKIA"));
            assert!(!e.retryable());
        }
        // The name from the body when the header is missing.
        let e = classify(
            "b",
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            br#"{"__type":"com.amazon.bedrock#ThrottlingException","message":"slow"}"#,
        );
        assert_eq!(e.body()["error"]["type"], "ThrottlingException");
    }
}
