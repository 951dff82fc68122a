//! Turning an upstream's error response into a [`GatewayError`], with its retryability decided from data.
//!
//! Error shapes read: OpenAI `{"error":{message,type,param,code}}` (also Zhipu with string codes, current
//! vLLM, llama.cpp, Ollama), `{"error":"text"}`, vLLM's legacy flat `{"object":"error","message",…}`, Huawei
//! APIG / Baidu `{"error_msg","error_code"}`, DashScope `{"code","message"}`, and Anthropic
//! `{"type":"error","error":{"type","message"}}` (read as the OpenAI shape; its quota errors in `anthropic::error`).

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::kind::ProviderKind;
use crate::error::{GatewayError, UpstreamError};

/// Longest upstream message passed on (a misbehaving upstream could send megabytes of HTML).
const MAX_MESSAGE_CHARS: usize = 1000;

/// Classifies a non-2xx upstream answer.
#[must_use]
pub fn classify(
    provider: &str,
    kind: ProviderKind,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let fields = parsed.as_ref().map(ErrorFields::read).unwrap_or_default();
    let message = fields
        .message
        .clone()
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect::<String>();
    let message = if message.is_empty() {
        format!("status {}", status.as_u16())
    } else {
        message
    };

    if status == StatusCode::UNAUTHORIZED {
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
    let quota_exhausted = is_quota_exhausted(kind, &fields);
    GatewayError::UpstreamRejected(Box::new(UpstreamError {
        provider: provider.into(),
        status: if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_GATEWAY
        },
        message,
        error_type: fields.error_type,
        code: fields.code,
        param: fields.param,
        quota_exhausted,
        retry_after: headers.get(http::header::RETRY_AFTER).cloned(),
    }))
}

/// Errors that mean "this account cannot pay": retrying cannot help (pitfalls checklist item 6).
fn is_quota_exhausted(kind: ProviderKind, f: &ErrorFields) -> bool {
    let code = f.code.as_ref().map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let code = code.as_deref();
    let ty = f.error_type.as_deref();
    if code == Some("insufficient_quota") || ty == Some("insufficient_quota") {
        return true;
    }
    match kind {
        // 1113: arrears; 1112 / 1121: account locked (docs.z.ai api-code).
        ProviderKind::Zhipu => matches!(code, Some("1113" | "1112" | "1121")),
        ProviderKind::Moonshot => {
            ty == Some("exceeded_current_quota_error")
                || code == Some("exceeded_current_quota_error")
        }
        ProviderKind::DashScope => code == Some("Arrearage"),
        ProviderKind::Anthropic => {
            super::anthropic::error::is_quota_exhausted(ty, f.message.as_deref())
        }
        _ => false,
    }
}

#[derive(Debug, Default)]
struct ErrorFields {
    message: Option<String>,
    error_type: Option<String>,
    code: Option<Value>,
    param: Option<Value>,
}

impl ErrorFields {
    fn read(v: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let present = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
        match v.get("error") {
            Some(Value::Object(e)) => Self {
                message: text(e.get("message")),
                error_type: text(e.get("type")),
                code: present(e.get("code")),
                param: present(e.get("param")),
            },
            Some(Value::String(s)) => Self {
                message: Some(s.clone()),
                ..Self::default()
            },
            _ => Self {
                message: text(v.get("message")).or_else(|| text(v.get("error_msg"))),
                error_type: text(v.get("type")),
                code: present(v.get("code")).or_else(|| present(v.get("error_code"))),
                param: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: ProviderKind, status: u16, body: &str) -> GatewayError {
        classify(
            "p",
            kind,
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    fn upstream(e: &GatewayError) -> &UpstreamError {
        match e {
            GatewayError::UpstreamRejected(u) => u,
            other => panic!("expected UpstreamRejected, got {other:?}"),
        }
    }

    #[test]
    fn quota_errors_are_marked_and_not_retryable() {
        let cases = [
            (
                ProviderKind::OpenAi,
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            ),
            (
                ProviderKind::Zhipu,
                429,
                r#"{"error":{"code":"1113","message":"余额不足或无可用资源包,请充值。"}}"#,
            ),
            (
                ProviderKind::Moonshot,
                429,
                r#"{"error":{"message":"quota exceeded","type":"exceeded_current_quota_error"}}"#,
            ),
            (
                ProviderKind::DashScope,
                400,
                r#"{"error":{"code":"Arrearage","message":"Access denied, please make sure your account is in good standing.","type":"Arrearage"}}"#,
            ),
        ];
        for (kind, status, body) in cases {
            let e = run(kind, status, body);
            assert!(upstream(&e).quota_exhausted, "{kind:?}");
            assert!(!e.retryable(), "{kind:?}");
            assert_eq!(e.status().as_u16(), status);
        }
    }

    #[test]
    fn ordinary_rate_limits_stay_retryable() {
        let e = run(
            ProviderKind::Zhipu,
            429,
            r#"{"error":{"code":"1302","message":"并发数过高"}}"#,
        );
        assert!(!upstream(&e).quota_exhausted);
        assert!(e.retryable());
        let e = run(
            ProviderKind::Moonshot,
            429,
            r#"{"error":{"message":"busy","type":"engine_overloaded_error"}}"#,
        );
        assert!(e.retryable());
        // Zhipu's arrears code means nothing special elsewhere.
        let e = run(
            ProviderKind::OpenAi,
            429,
            r#"{"error":{"code":"1113","message":"x"}}"#,
        );
        assert!(e.retryable());
    }

    #[test]
    fn passes_the_upstream_message_and_reads_other_shapes() {
        let e = run(
            ProviderKind::OpenAi,
            400,
            r#"{"error":{"message":"bad tools","type":"invalid_request_error","param":"tools","code":null}}"#,
        );
        assert_eq!(e.body()["error"]["message"], "bad tools");
        assert_eq!(e.body()["error"]["param"], "tools");
        let legacy = run(
            ProviderKind::Vllm,
            400,
            r#"{"object":"error","message":"context too long","type":"BadRequestError","param":null,"code":400}"#,
        );
        assert_eq!(legacy.body()["error"]["message"], "context too long");
        let apig = run(
            ProviderKind::ModelArts,
            404,
            r#"{"error_msg":"no route","error_code":"APIG.0101","request_id":"r"}"#,
        );
        assert_eq!(apig.body()["error"]["message"], "no route");
        assert_eq!(apig.code(), "APIG.0101");
        let html = run(ProviderKind::OpenAi, 404, &"<html>".repeat(1000));
        assert_eq!(
            html.body()["error"]["message"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn server_errors_become_502_and_401_hides_the_upstream_message() {
        let e = run(
            ProviderKind::OpenAi,
            503,
            r#"{"error":{"message":"overloaded"}}"#,
        );
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let e = run(
            ProviderKind::OpenAi,
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-ab***cd"}}"#,
        );
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(!e.to_string().contains("sk-"));
    }
}
