//! Tencent Cloud API 3.0 signature v3 (`TC3-HMAC-SHA256`), used by Hunyuan's native API.
//!
//! [`sign`] returns every header a 3.0 call needs besides `Host`: `Content-Type` (signed, so it must be the
//! one sent), `X-TC-Action`, `X-TC-Version`, `X-TC-Timestamp`, `X-TC-Region` when set, `X-TC-Token` for
//! temporary credentials, and `Authorization`.
//!
//! Canonical request: `METHOD\n/\nQUERY\ncontent-type:…\nhost:…[\nx-tc-action:…]\n\nSIGNED\nhex(sha256(body))`,
//! header values lower-cased; the credential scope is `YYYY-MM-DD/service/tc3_request` with the **UTC** date
//! of the timestamp; the key chain is `HMAC("TC3"+key, date)` → service → `tc3_request`. Tencent rejects a
//! timestamp more than five minutes from its clock.

use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Method};

use super::calendar::UtcTimestamp;
use super::{hmac_sha256, sha256_hex};
use crate::config::Secret;
use crate::error::GatewayError;

/// Hunyuan's native API host.
pub const HUNYUAN_HOST: &str = "hunyuan.tencentcloudapi.com";

/// A Tencent Cloud `SecretId` / `SecretKey` pair, with the token of temporary credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Not secret: it names the key (and appears in the `Authorization` header).
    pub secret_id: String,
    pub secret_key: Secret,
    pub token: Option<Secret>,
}

/// Which headers are signed: `content-type;host` (the minimum) or also `x-tc-action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedHeaders {
    ContentTypeHost,
    ContentTypeHostAction,
}

impl SignedHeaders {
    fn list(self) -> &'static str {
        match self {
            Self::ContentTypeHost => "content-type;host",
            Self::ContentTypeHostAction => "content-type;host;x-tc-action",
        }
    }
}

/// One API 3.0 call to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The product's signing name, e.g. `hunyuan`.
    pub service: &'a str,
    pub host: &'a str,
    /// e.g. `ChatCompletions` (sent as is, signed lower-cased).
    pub action: &'a str,
    /// e.g. `2023-09-01`.
    pub version: &'a str,
    /// Omitted for Hunyuan by the SDK-compatible clients; required by regional products.
    pub region: Option<&'a str>,
    pub method: &'a Method,
    /// The URL query exactly as sent (empty for POST).
    pub query: &'a str,
    pub content_type: &'a str,
    pub payload: &'a [u8],
    pub signed_headers: SignedHeaders,
}

impl<'a> Request<'a> {
    /// Hunyuan `ChatCompletions` (version `2023-09-01`), POSTed as JSON, `x-tc-action` signed.
    #[must_use]
    pub fn hunyuan_chat_completions(payload: &'a [u8]) -> Self {
        Self {
            service: "hunyuan",
            host: HUNYUAN_HOST,
            action: "ChatCompletions",
            version: "2023-09-01",
            region: None,
            method: &Method::POST,
            query: "",
            content_type: "application/json",
            payload,
            signed_headers: SignedHeaders::ContentTypeHostAction,
        }
    }
}

/// Signs `request` at `time` (whole seconds) and returns the headers to add.
///
/// # Errors
/// [`GatewayError::Internal`] when the clock is before 1970 or a value (content type, action, region, token)
/// cannot be a header value.
pub fn sign(
    credentials: &Credentials,
    request: &Request<'_>,
    time: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let time = UtcTimestamp::from_system_time(time)?;
    let signature = compute(credentials, request, time);
    let mut headers = vec![
        header("authorization", &signature.authorization, true)?,
        header("content-type", request.content_type, false)?,
        header("x-tc-action", request.action, false)?,
        header("x-tc-timestamp", &time.unix_seconds().to_string(), false)?,
        header("x-tc-version", request.version, false)?,
    ];
    if let Some(region) = request.region {
        headers.push(header("x-tc-region", region, false)?);
    }
    if let Some(token) = &credentials.token {
        headers.push(header("x-tc-token", token.expose(), true)?);
    }
    Ok(headers)
}

/// Every intermediate value of one signature (private: the keys derive from the secret). Only the
/// `Authorization` value leaves [`sign`]; the fixture tests read the rest.
#[cfg_attr(not(test), allow(dead_code))]
struct Signature {
    canonical_request: String,
    string_to_sign: String,
    keys: SigningKeys,
    signature: String,
    authorization: String,
}

/// The HMAC chain: date key, service key, signing key.
#[cfg_attr(not(test), allow(dead_code))]
struct SigningKeys {
    date: [u8; 32],
    service: [u8; 32],
    signing: [u8; 32],
}

fn compute(credentials: &Credentials, request: &Request<'_>, time: UtcTimestamp) -> Signature {
    let canonical_request = canonical_request(request);
    let date = time.iso_date();
    let scope = credential_scope(&date, request.service);
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{}\n{scope}\n{}",
        time.unix_seconds(),
        sha256_hex(canonical_request.as_bytes())
    );
    let keys = signing_keys(&credentials.secret_key, &date, request.service);
    let signature = hex::encode(hmac_sha256(&keys.signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "TC3-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        credentials.secret_id,
        request.signed_headers.list()
    );
    Signature {
        canonical_request,
        string_to_sign,
        keys,
        signature,
        authorization,
    }
}

fn canonical_headers(request: &Request<'_>) -> String {
    let mut headers = format!(
        "content-type:{}\nhost:{}\n",
        request.content_type.to_ascii_lowercase(),
        request.host.to_ascii_lowercase()
    );
    if request.signed_headers == SignedHeaders::ContentTypeHostAction {
        headers.push_str(&format!(
            "x-tc-action:{}\n",
            request.action.to_ascii_lowercase()
        ));
    }
    headers
}

fn canonical_request(request: &Request<'_>) -> String {
    format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        request.method.as_str(),
        request.query,
        canonical_headers(request),
        request.signed_headers.list(),
        sha256_hex(request.payload)
    )
}

fn credential_scope(date: &str, service: &str) -> String {
    format!("{date}/{service}/tc3_request")
}

fn signing_keys(secret_key: &Secret, date: &str, service: &str) -> SigningKeys {
    let seed = format!("TC3{}", secret_key.expose());
    let date = hmac_sha256(seed.as_bytes(), date.as_bytes());
    let service = hmac_sha256(&date, service.as_bytes());
    let signing = hmac_sha256(&service, b"tc3_request");
    SigningKeys {
        date,
        service,
        signing,
    }
}

fn header(
    name: &'static str,
    value: &str,
    sensitive: bool,
) -> Result<(HeaderName, HeaderValue), GatewayError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        GatewayError::Internal(format!("the value of {name} cannot be a header value"))
    })?;
    value.set_sensitive(sensitive);
    Ok((HeaderName::from_static(name), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::{Duration, UNIX_EPOCH};

    fn examples() -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tencent/tc3-hmac-sha256-examples.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["cases"].as_array().unwrap().clone()
    }

    fn str_of<'v>(value: &'v Value, key: &str) -> &'v str {
        value[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"))
    }

    #[test]
    fn published_examples_every_intermediate_value() {
        let cases = examples();
        assert_eq!(cases.len(), 4);
        for case in &cases {
            let id = str_of(case, "id");
            let input = &case["inputs"];
            let expected = &case["expected"];
            let credentials = Credentials {
                secret_id: str_of(input, "secret_id").into(),
                secret_key: Secret::new(str_of(input, "secret_key").into()),
                token: None,
            };
            assert_eq!(str_of(input, "canonical_uri"), "/", "{id}");
            let signed_headers = match str_of(input, "signed_headers") {
                "content-type;host" => SignedHeaders::ContentTypeHost,
                "content-type;host;x-tc-action" => SignedHeaders::ContentTypeHostAction,
                other => panic!("{id}: unexpected signed headers {other}"),
            };
            let method: Method = str_of(input, "http_method").parse().unwrap();
            let request = Request {
                service: str_of(input, "service"),
                host: str_of(input, "host"),
                action: str_of(input, "action"),
                version: str_of(input, "version"),
                region: input["region"].as_str(),
                method: &method,
                query: str_of(input, "canonical_query_string"),
                content_type: str_of(input, "content_type"),
                payload: str_of(input, "payload").as_bytes(),
                signed_headers,
            };
            let timestamp = input["timestamp"].as_u64().unwrap();
            let time = UtcTimestamp::from_unix_seconds(timestamp);
            let signature = compute(&credentials, &request, time);

            assert_eq!(time.iso_date(), str_of(expected, "date"), "{id}");
            assert_eq!(
                sha256_hex(request.payload),
                str_of(expected, "hashed_request_payload"),
                "{id}"
            );
            assert_eq!(
                canonical_headers(&request),
                str_of(expected, "canonical_headers"),
                "{id}"
            );
            assert_eq!(
                signature.canonical_request,
                str_of(expected, "canonical_request"),
                "{id}"
            );
            assert_eq!(
                sha256_hex(signature.canonical_request.as_bytes()),
                str_of(expected, "hashed_canonical_request"),
                "{id}"
            );
            assert_eq!(
                credential_scope(&time.iso_date(), request.service),
                str_of(expected, "credential_scope"),
                "{id}"
            );
            assert_eq!(
                signature.string_to_sign,
                str_of(expected, "string_to_sign"),
                "{id}"
            );
            assert_eq!(
                hex::encode(signature.keys.date),
                str_of(expected, "secret_date_hex"),
                "{id}"
            );
            assert_eq!(
                hex::encode(signature.keys.service),
                str_of(expected, "secret_service_hex"),
                "{id}"
            );
            assert_eq!(
                hex::encode(signature.keys.signing),
                str_of(expected, "secret_signing_hex"),
                "{id}"
            );
            assert_eq!(signature.signature, str_of(expected, "signature"), "{id}");
            assert_eq!(
                signature.authorization,
                str_of(expected, "authorization"),
                "{id}"
            );

            // The public entry point returns the published request headers (all but Host, which the URL gives).
            let headers = sign(
                &credentials,
                &request,
                UNIX_EPOCH + Duration::from_secs(timestamp),
            )
            .unwrap();
            let published = expected["request_headers"].as_object().unwrap();
            assert_eq!(headers.len() + 1, published.len(), "{id}");
            for (name, value) in published {
                let ours = headers
                    .iter()
                    .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_str().unwrap());
                if name == "Host" {
                    assert_eq!(ours, None, "{id}");
                    assert_eq!(value, request.host, "{id}");
                } else {
                    assert_eq!(ours, value.as_str(), "{id}: {name}");
                }
            }
        }
    }

    #[test]
    fn hunyuan_request_signs_the_lowercased_action_and_adds_the_token() {
        let credentials = Credentials {
            secret_id: "AKIDEXAMPLE".into(),
            secret_key: Secret::new("secret-key-example".into()),
            token: Some(Secret::new("temporary-token".into())),
        };
        let body = br#"{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"hi"}]}"#;
        let request = Request::hunyuan_chat_completions(body);
        let time = UtcTimestamp::from_unix_seconds(1_700_000_000);
        let signature = compute(&credentials, &request, time);
        let expected_prefix =
            "POST\n/\n\ncontent-type:application/json\nhost:hunyuan.tencentcloudapi.com\n\
                               x-tc-action:chatcompletions\n\ncontent-type;host;x-tc-action\n";
        assert!(
            signature.canonical_request.starts_with(expected_prefix),
            "{}",
            signature.canonical_request
        );
        assert!(signature.authorization.contains(
            "/2023-11-14/hunyuan/tc3_request, SignedHeaders=content-type;host;x-tc-action"
        ));
        let headers = sign(
            &credentials,
            &request,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "content-type",
                "x-tc-action",
                "x-tc-timestamp",
                "x-tc-version",
                "x-tc-token"
            ]
        );
        let printed = format!("{credentials:?} {headers:?}");
        assert!(!printed.contains("secret-key-example") && !printed.contains("temporary-token"));
    }
}
