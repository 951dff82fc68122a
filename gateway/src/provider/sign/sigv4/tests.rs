//! SigV4 against the official AWS test suite and openai-python's Bedrock vectors
//! (`tests/fixtures/aws-sigv4`), plus the Bedrock double-encoding rule.

use super::*;
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const SUITE_ACCESS_KEY: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the suite's signing time.
const SUITE_TIME: u64 = 1_440_938_160;
/// The one suite case whose token is added after signing instead of signed (see its `readme.txt`).
const TOKEN_APPENDED_AFTER_SIGNING: &str = "post-sts-header-after";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-sigv4")
}

/// Every folder holding `<folder>.req`, at any depth.
fn suite_cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.is_dir()) {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.join(format!("{name}.req")).is_file() {
            out.push(path.clone());
        }
        suite_cases(&path, out);
    }
}

/// A raw `.req`: request line, `Name:value` headers (obs-fold continuation lines joined with a space), body.
struct RawRequest {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse_raw_request(text: &str) -> RawRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let (method, rest) = request_line.split_once(' ').unwrap();
    let (target, _version) = rest.rsplit_once(' ').unwrap();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').unwrap();
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    RawRequest {
        method: method.parse().unwrap(),
        target: target.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// `(lowercase name, value)` of each header line of a `.sreq`.
fn signed_request_headers(text: &str) -> Vec<(String, String)> {
    let head = text.split_once("\n\n").map_or(text, |(h, _)| h);
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn official_suite_every_case() {
    let mut cases = Vec::new();
    suite_cases(&fixtures(), &mut cases);
    assert_eq!(cases.len(), 34, "the suite has 34 cases");
    for dir in cases {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let file = |ext: &str| read(&dir.join(format!("{name}.{ext}")));
        let raw = parse_raw_request(&file("req"));
        let sreq = signed_request_headers(&file("sreq"));
        let mut headers = raw.headers.clone();
        let date = headers.remove("x-amz-date").unwrap();
        assert_eq!(date, "20150830T123600Z", "{name}: the suite time");
        let host = headers["host"].to_str().unwrap().to_owned();
        let url = format!("https://{host}{}", raw.target);
        // Session tokens are not in the `.req`: the signed request shows which one was used.
        let token = sreq
            .iter()
            .find(|(n, _)| n == "x-amz-security-token")
            .map(|(_, v)| Secret::new(v.clone()));
        let credentials = Credentials {
            access_key_id: SUITE_ACCESS_KEY.into(),
            secret_access_key: Secret::new(SUITE_SECRET.into()),
            session_token: token,
        };
        let options = Options {
            content_sha256_header: false,
            session_token: if name == TOKEN_APPENDED_AFTER_SIGNING {
                SessionTokenPlacement::AppendedAfterSigning
            } else {
                SessionTokenPlacement::Signed
            },
        };
        let request = Request {
            method: &raw.method,
            url: &url,
            headers: &headers,
            body: &raw.body,
        };
        let scope = Scope {
            region: "us-east-1",
            service: "service",
        };
        let time = UtcTimestamp::from_unix_seconds(SUITE_TIME);
        let signature = compute(&credentials, &scope, &request, time, &options).unwrap();
        assert_eq!(signature.canonical_request, file("creq"), "{name}: creq");
        assert_eq!(signature.string_to_sign, file("sts"), "{name}: sts");
        let authorization = &signature
            .headers
            .iter()
            .find(|(n, _)| n == http::header::AUTHORIZATION)
            .unwrap()
            .1;
        assert_eq!(authorization, file("authz").as_str(), "{name}: authz");
        // The `.sreq` must carry every other header we add. (Its Authorization line is not compared: in
        // upstream's get-vanilla-with-session-token.sreq it is not the `.authz` value, which is the one the
        // `.sts` produces.)
        for (header, value) in &signature.headers {
            if header == http::header::AUTHORIZATION {
                continue;
            }
            let pair = (
                header.as_str().to_owned(),
                value.to_str().unwrap().to_owned(),
            );
            assert!(sreq.contains(&pair), "{name}: sreq lacks {}", pair.0);
        }
    }
}

fn bedrock_fixture(file: &str) -> Value {
    serde_json::from_str(&read(&fixtures().join("openai-python-bedrock").join(file))).unwrap()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` as a `SystemTime`, through httpdate's parser (which insists on the right
/// weekday, so each is tried).
fn unix_time(rfc3339: &str) -> SystemTime {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (date, clock) = rfc3339.trim_end_matches('Z').split_once('T').unwrap();
    let clock = clock.split('.').next().unwrap();
    let ymd: Vec<&str> = date.split('-').collect();
    let month = MONTHS[ymd[1].parse::<usize>().unwrap() - 1];
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|weekday| {
            let text = format!("{weekday}, {} {month} {} {clock} GMT", ymd[2], ymd[0]);
            httpdate::parse_http_date(&text).ok()
        })
        .unwrap()
}

fn header_value<'h>(headers: &'h [(HeaderName, HeaderValue)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.to_str().unwrap())
}

#[test]
fn openai_python_bedrock_mantle_vector() {
    let case = bedrock_fixture("sigv4.json");
    let creds = &case["credentials"];
    let credentials = Credentials {
        access_key_id: creds["accessKeyId"].as_str().unwrap().into(),
        secret_access_key: Secret::new(creds["secretAccessKey"].as_str().unwrap().into()),
        session_token: creds["sessionToken"]
            .as_str()
            .map(|t| Secret::new(t.into())),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        case["request"]["contentType"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );
    let method: Method = case["request"]["method"].as_str().unwrap().parse().unwrap();
    let body = case["request"]["body"].as_str().unwrap().as_bytes();
    let request = Request {
        method: &method,
        url: case["request"]["url"].as_str().unwrap(),
        headers: &headers,
        body,
    };
    let scope = Scope {
        region: case["region"].as_str().unwrap(),
        service: case["service"].as_str().unwrap(),
    };
    let time =
        UtcTimestamp::from_system_time(unix_time(case["signingDate"].as_str().unwrap())).unwrap();
    let options = Options {
        content_sha256_header: true,
        ..Options::default()
    };
    let signature = compute(&credentials, &scope, &request, time, &options).unwrap();
    let expected = &case["expected"];
    assert_eq!(sha256_hex(body), expected["payloadHash"]);
    assert_eq!(
        sha256_hex(signature.canonical_request.as_bytes()),
        expected["canonicalRequestHash"]
    );
    assert_eq!(
        header_value(&signature.headers, "x-amz-date"),
        expected["date"].as_str()
    );
    assert_eq!(
        header_value(&signature.headers, "authorization"),
        expected["authorization"].as_str()
    );
}

#[test]
fn openai_python_bedrock_auth_signing_cases() {
    let suite = bedrock_fixture("bedrock_auth_cases.json");
    let cases: Vec<&Value> = suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "sigv4")
        .collect();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let given = &case["given"];
        let creds = &given["credentials"];
        let credentials = Credentials {
            access_key_id: creds["access_key_id"].as_str().unwrap().into(),
            secret_access_key: Secret::new(creds["secret_access_key"].as_str().unwrap().into()),
            session_token: creds["session_token"]
                .as_str()
                .map(|t| Secret::new(t.into())),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in given["request"]["headers"].as_object().unwrap() {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.as_str().unwrap().parse().unwrap(),
            );
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(given["request"]["body_base64"].as_str().unwrap())
            .unwrap();
        let method: Method = given["request"]["method"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let request = Request {
            method: &method,
            url: given["request"]["url"].as_str().unwrap(),
            headers: &headers,
            body: &body,
        };
        let scope = Scope {
            region: given["signing"]["region"].as_str().unwrap(),
            service: given["signing"]["service"].as_str().unwrap(),
        };
        let time = UtcTimestamp::from_system_time(unix_time(
            given["signing"]["timestamp"].as_str().unwrap(),
        ))
        .unwrap();
        let options = Options {
            content_sha256_header: true,
            ..Options::default()
        };
        let signature = compute(&credentials, &scope, &request, time, &options).unwrap();
        let expected = &case["expected"];
        assert_eq!(sha256_hex(&body), expected["payload_sha256"], "{id}");
        assert_eq!(
            sha256_hex(signature.canonical_request.as_bytes()),
            expected["canonical_request_sha256"],
            "{id}"
        );
        let expected_headers = expected["headers"].as_object().unwrap();
        assert_eq!(signature.headers.len(), expected_headers.len(), "{id}");
        for (name, value) in expected_headers {
            assert_eq!(
                header_value(&signature.headers, name),
                value.as_str(),
                "{id}: {name}"
            );
        }
    }
}

#[test]
fn secrets_never_show_in_debug_output() {
    let suite = bedrock_fixture("bedrock_auth_cases.json");
    let case = suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "redaction")
        .unwrap();
    let forbidden: Vec<&str> = case["expected"]["forbidden_substrings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let credentials = Credentials {
        access_key_id: SUITE_ACCESS_KEY.into(),
        secret_access_key: Secret::new(SUITE_SECRET.into()),
        session_token: Some(Secret::new("fixture-session-token".into())),
    };
    let headers = HeaderMap::new();
    let signed = sign(
        &credentials,
        &Scope::bedrock("us-east-1"),
        &Request {
            method: &Method::POST,
            url: "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
            headers: &headers,
            body: b"{}",
        },
        UNIX_EPOCH + Duration::from_secs(SUITE_TIME),
        &Options::default(),
    )
    .unwrap();
    let printed = format!("{credentials:?} {signed:?}");
    for secret in forbidden.iter().chain([&SUITE_SECRET]) {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(printed.contains("x-amz-security-token"));
}

#[test]
fn bedrock_model_id_is_encoded_twice_in_the_canonical_uri() {
    let model = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    let path = format!("/model/{}/converse", encode_path_segment(model));
    assert_eq!(
        path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        canonical_uri(&path),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
    );
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude";
    assert_eq!(
        canonical_uri(&format!("/model/{}/converse", encode_path_segment(arn))),
        "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A123456789012%253Ainference-profile%252Fus.anthropic.claude/converse"
    );
}

#[test]
fn host_header_drops_user_info_and_default_ports() {
    let host = |url: &str| UrlParts::split(url).unwrap().host_header();
    assert_eq!(host("https://Bedrock.Example.com/x"), "bedrock.example.com");
    assert_eq!(host("https://h.example.com:443/x"), "h.example.com");
    assert_eq!(host("http://h.example.com:80?q"), "h.example.com");
    assert_eq!(host("http://h.example.com:8080/x"), "h.example.com:8080");
    assert_eq!(
        host("https://user:pw@h.example.com:8443"),
        "h.example.com:8443"
    );
    assert_eq!(host("http://[::1]:9000/x"), "[::1]:9000");
    assert_eq!(host("https://[::1]/x"), "[::1]");
    assert!(UrlParts::split("/relative/path").is_err());
}

#[test]
fn url_parts_keep_the_wire_form() {
    let parts = UrlParts::split("https://h/a%3Ab/./c?x=%20y&z#frag").unwrap();
    assert_eq!(parts.path, "/a%3Ab/./c");
    assert_eq!(parts.query, Some("x=%20y&z"));
    assert_eq!(canonical_query(parts.query), "x=%20y&z=");
}
