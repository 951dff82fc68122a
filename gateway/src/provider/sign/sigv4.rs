//! AWS Signature Version 4 (header-based) for Bedrock and other non-S3 services.
//!
//! [`sign`] takes the request exactly as it will go on the wire (URL already percent-encoded, body bytes) and
//! returns the headers to add: `x-amz-date`, optionally `x-amz-content-sha256`, `x-amz-security-token` for
//! session credentials, and `Authorization`. The `Host` header is signed but not returned: it is derived from
//! the URL the way the HTTP client derives it (no default port), so the request carries exactly one.
//!
//! The canonical request follows the non-S3 rules: the path has its dot segments and empty segments removed,
//! then every byte but RFC 3986 unreserved characters and `/` is percent-encoded — *on top of* the encoding
//! already in the URL. So a Bedrock model id sent as `anthropic.claude-3-5-sonnet-20240620-v1%3A0` is signed as
//! `…-v1%253A0` (build the path with [`encode_path_segment`]). Query names and values are decoded, re-encoded
//! strictly and sorted by name, then value. Header values are trimmed and inner runs of whitespace collapsed;
//! repeated headers are joined with `,` in their original order. Hop-by-hop and tracing headers are not signed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::calendar::UtcTimestamp;
use super::{hmac_sha256, sha256_hex};
use crate::config::Secret;
use crate::error::GatewayError;

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` (the canonical URI encodes segments, not separators).
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Headers never signed: hop-by-hop headers a proxy may change, and tracing headers (botocore's list).
const UNSIGNED_HEADERS: &[&str] = &[
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
    "authorization",
];

const AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// An AWS access key, optionally with the session token of temporary (STS) credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Not secret: it names the key (and appears in the `Authorization` header).
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// The credential scope's region and signing service (`bedrock` for Bedrock Runtime, not `bedrock-runtime`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

impl<'a> Scope<'a> {
    /// Bedrock Runtime in `region` (signing name `bedrock`).
    #[must_use]
    pub fn bedrock(region: &'a str) -> Self {
        Self {
            region,
            service: "bedrock",
        }
    }
}

/// Where the session token goes: most services (Bedrock included) require it signed; a few want it added
/// after signing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionTokenPlacement {
    #[default]
    Signed,
    AppendedAfterSigning,
}

/// Signing choices beyond the scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also send (and sign) `x-amz-content-sha256` with the body's hash; optional for Bedrock.
    pub content_sha256_header: bool,
    pub session_token: SessionTokenPlacement,
}

/// The request to sign, as it will be sent.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// Absolute URL, already percent-encoded as it goes on the wire (e.g. `reqwest::Url::as_str`).
    pub url: &'a str,
    /// Headers the request will carry; each is signed except hop-by-hop / tracing ones and those the signer
    /// sets itself (`authorization`, `x-amz-date`, `x-amz-security-token`, `x-amz-content-sha256`).
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Signs `request` at `time` and returns the headers to add (sensitive ones marked so).
///
/// # Errors
/// [`GatewayError::Internal`] when the URL is not absolute, a header value is not UTF-8, the clock is before
/// 1970, or the session token cannot be a header value.
pub fn sign(
    credentials: &Credentials,
    scope: &Scope<'_>,
    request: &Request<'_>,
    time: SystemTime,
    options: &Options,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let time = UtcTimestamp::from_system_time(time)?;
    Ok(compute(credentials, scope, request, time, options)?.headers)
}

/// Percent-encodes one path segment the way AWS expects it on the wire (`:` → `%3A`, `/` → `%2F`), for
/// building URLs such as `/model/{model_id}/converse`.
#[must_use]
pub fn encode_path_segment(segment: &str) -> String {
    percent_encode(segment.as_bytes(), UNRESERVED).to_string()
}

/// Every intermediate value of one signature (kept private: the canonical request holds the session token).
/// Only the headers leave [`sign`]; the fixture tests read the rest.
#[cfg_attr(not(test), allow(dead_code))]
struct Signature {
    canonical_request: String,
    string_to_sign: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

fn compute(
    credentials: &Credentials,
    scope: &Scope<'_>,
    request: &Request<'_>,
    time: UtcTimestamp,
    options: &Options,
) -> Result<Signature, GatewayError> {
    let url = UrlParts::split(request.url)?;
    let payload_hash = sha256_hex(request.body);
    let mut added = vec![(AMZ_DATE, time.compact_date_time(), false)];
    if options.content_sha256_header {
        added.push((AMZ_CONTENT_SHA256, payload_hash.clone(), false));
    }
    let token = credentials.session_token.as_ref().map(Secret::expose);
    let signed_token = options.session_token == SessionTokenPlacement::Signed;
    if let (Some(token), true) = (token, signed_token) {
        added.push((AMZ_SECURITY_TOKEN, token.to_owned(), true));
    }

    let mut signed = headers_to_sign(request.headers)?;
    signed
        .entry("host".to_owned())
        .or_insert_with(|| vec![url.host_header()]);
    for (name, value, _) in &added {
        signed.insert(name.as_str().to_owned(), vec![value.clone()]);
    }
    let signed_names = signed
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request =
        canonical_request(request.method, &url, &signed, &signed_names, &payload_hash);

    let credential_scope = format!(
        "{}/{}/{}/aws4_request",
        time.compact_date(),
        scope.region,
        scope.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{credential_scope}\n{}",
        time.compact_date_time(),
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(&credentials.secret_access_key, &time, scope);
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_names}, Signature={signature}",
        credentials.access_key_id
    );

    if let (Some(token), false) = (token, signed_token) {
        added.push((AMZ_SECURITY_TOKEN, token.to_owned(), true));
    }
    added.push((http::header::AUTHORIZATION, authorization, true));
    let headers = added
        .into_iter()
        .map(|(name, value, sensitive)| header(name, &value, sensitive))
        .collect::<Result<_, _>>()?;
    Ok(Signature {
        canonical_request,
        string_to_sign,
        headers,
    })
}

/// The caller's headers that get signed: lowercase name → trimmed values in order.
fn headers_to_sign(headers: &HeaderMap) -> Result<BTreeMap<String, Vec<String>>, GatewayError> {
    let mut signed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let owned = [&AMZ_DATE, &AMZ_CONTENT_SHA256, &AMZ_SECURITY_TOKEN]
            .iter()
            .any(|h| h.as_str() == name);
        if owned || UNSIGNED_HEADERS.contains(&name) {
            continue;
        }
        let value = std::str::from_utf8(value.as_bytes()).map_err(|_| {
            GatewayError::Internal(format!("header {name} is not UTF-8 and cannot be signed"))
        })?;
        signed
            .entry(name.to_owned())
            .or_default()
            .push(trim_all(value));
    }
    Ok(signed)
}

/// Leading and trailing whitespace removed, inner runs collapsed to one space (SigV4's `Trimall`).
fn trim_all(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical_request(
    method: &Method,
    url: &UrlParts<'_>,
    signed: &BTreeMap<String, Vec<String>>,
    signed_names: &str,
    payload_hash: &str,
) -> String {
    let canonical_headers: String = signed
        .iter()
        .map(|(name, values)| format!("{name}:{}\n", values.join(",")))
        .collect();
    format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_names}\n{payload_hash}",
        method.as_str(),
        canonical_uri(url.path),
        canonical_query(url.query)
    )
}

/// The normalised path, each byte but unreserved ones and `/` percent-encoded (again).
fn canonical_uri(path: &str) -> String {
    percent_encode(normalize_path(path).as_bytes(), UNRESERVED_AND_SLASH).to_string()
}

/// RFC 3986 dot-segment removal, plus AWS's removal of empty segments; an empty path is `/`.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let leading = if path.starts_with('/') { "/" } else { "" };
    let trailing = if path.ends_with('/') && !kept.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{leading}{}{trailing}", kept.join("/"))
}

/// `name=value` pairs, each side decoded then strictly re-encoded, sorted by name then value, joined by `&`.
fn canonical_query(query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (reencode(name), reencode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn reencode(component: &str) -> String {
    let raw: Vec<u8> = percent_decode_str(component).collect();
    percent_encode(&raw, UNRESERVED).to_string()
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &Secret, time: &UtcTimestamp, scope: &Scope<'_>) -> [u8; 32] {
    let seed = format!("AWS4{}", secret.expose());
    let date_key = hmac_sha256(seed.as_bytes(), time.compact_date().as_bytes());
    let region_key = hmac_sha256(&date_key, scope.region.as_bytes());
    let service_key = hmac_sha256(&region_key, scope.service.as_bytes());
    hmac_sha256(&service_key, b"aws4_request")
}

fn header(
    name: HeaderName,
    value: &str,
    sensitive: bool,
) -> Result<(HeaderName, HeaderValue), GatewayError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        GatewayError::Internal(format!("the value of {name} cannot be a header value"))
    })?;
    value.set_sensitive(sensitive);
    Ok((name, value))
}

/// The pieces of an absolute URL the signer needs, cut from the string as is (no re-encoding, no
/// normalisation: the canonical form is built from what goes on the wire).
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Result<Self, GatewayError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            GatewayError::Internal("cannot sign a URL that is not absolute".into())
        })?;
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Ok(Self {
            scheme,
            authority,
            path,
            query,
        })
    }

    /// The `Host` header an HTTP client sends: no user info, lowercase, no port when it is the default.
    fn host_header(&self) -> String {
        let host_port = self
            .authority
            .rsplit_once('@')
            .map_or(self.authority, |(_, h)| h);
        let port_start = match host_port.rfind(']') {
            Some(bracket) => host_port[bracket..].find(':').map(|i| bracket + i),
            None => host_port.rfind(':'),
        };
        let (host, port) = match port_start {
            Some(i) => (&host_port[..i], Some(&host_port[i + 1..])),
            None => (host_port, None),
        };
        let default_port = match self.scheme.to_ascii_lowercase().as_str() {
            "https" => Some("443"),
            "http" => Some("80"),
            _ => None,
        };
        match port {
            Some(port) if !port.is_empty() && Some(port) != default_port => {
                format!("{}:{port}", host.to_ascii_lowercase())
            }
            _ => host.to_ascii_lowercase(),
        }
    }
}

#[cfg(test)]
mod tests;
