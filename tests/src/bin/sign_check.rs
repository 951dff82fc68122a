//! `tollgate-sign-check`: the gateway's signers behind a JSON-lines pipe, for cross-checks against independent
//! implementations (`tests/python/test_signatures.py` compares with botocore and PyJWT).
//!
//! Each stdin line is one request; each stdout line the answer for it:
//! - `{"kind":"sigv4","access_key_id","secret_access_key","session_token"?,"region","service","method","url",
//!   "headers":[[name,value],…],"body_base64","time":<unix s>,"content_sha256_header"?}` →
//!   `{"headers":{name:value,…}}` (the headers the signer adds, `authorization` included);
//! - `{"kind":"jwt","service_account_json","issued_at":<unix s>}` → `{"assertion":"…"}`;
//! - a request the signer refuses → `{"error":"…"}`.
//!
//! Test tooling: it prints signatures and tokens made from the (test) credentials it is given.

use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tollgate_gateway::config::Secret;
use tollgate_gateway::provider::sign::{jwt, sigv4};

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum CheckRequest {
    Sigv4(Sigv4Check),
    Jwt(JwtCheck),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sigv4Check {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    region: String,
    service: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body_base64: String,
    time: u64,
    #[serde(default)]
    content_sha256_header: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtCheck {
    service_account_json: String,
    issued_at: u64,
}

fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

fn sigv4_headers(check: Sigv4Check) -> anyhow::Result<Value> {
    let mut headers = HeaderMap::new();
    for (name, value) in &check.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).context("header name")?,
            HeaderValue::from_str(value).context("header value")?,
        );
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(&check.body_base64)
        .context("body_base64")?;
    let method = Method::from_bytes(check.method.as_bytes()).context("method")?;
    let credentials = sigv4::Credentials {
        access_key_id: check.access_key_id,
        secret_access_key: Secret::new(check.secret_access_key),
        session_token: check.session_token.map(Secret::new),
    };
    let scope = sigv4::Scope {
        region: &check.region,
        service: &check.service,
    };
    let request = sigv4::Request {
        method: &method,
        url: &check.url,
        headers: &headers,
        body: &body,
    };
    let options = sigv4::Options {
        content_sha256_header: check.content_sha256_header,
        ..sigv4::Options::default()
    };
    let signed = sigv4::sign(&credentials, &scope, &request, at(check.time), &options)?;
    let mut out = Map::new();
    for (name, value) in signed {
        out.insert(name.to_string(), json!(value.to_str()?));
    }
    Ok(json!({ "headers": out }))
}

fn jwt_assertion(check: JwtCheck) -> anyhow::Result<Value> {
    let signer = jwt::ServiceAccountSigner::from_json(&check.service_account_json)?;
    Ok(json!({ "assertion": signer.assertion(at(check.issued_at))? }))
}

fn answer(line: &str) -> Value {
    let outcome = serde_json::from_str::<CheckRequest>(line)
        .context("request")
        .and_then(|request| match request {
            CheckRequest::Sigv4(check) => sigv4_headers(check),
            CheckRequest::Jwt(check) => jwt_assertion(check),
        });
    outcome.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
}

fn main() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(stdout, "{}", answer(&line))?;
    }
    stdout.flush()?;
    Ok(())
}
