//! The cache with a scripted source (paused time), then both exchanges against a local axum token server.

use super::*;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

/// A source that answers from a script after `delay`, counting its fetches.
struct Scripted {
    fetches: AtomicUsize,
    delay: Duration,
    /// `Ok(lifetime)` or `Err(())`, in order; empty → one-hour tokens.
    script: Mutex<VecDeque<Result<Duration, ()>>>,
}

impl Scripted {
    fn new(delay: Duration, script: impl IntoIterator<Item = Result<Duration, ()>>) -> Self {
        Self {
            fetches: AtomicUsize::new(0),
            delay,
            script: Mutex::new(script.into_iter().collect()),
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for Scripted {
    async fn fetch(&self) -> Result<AccessToken, GatewayError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        let step = self.script.lock().unwrap().pop_front();
        match step.unwrap_or(Ok(Duration::from_secs(3600))) {
            Ok(expires_in) => Ok(AccessToken {
                value: Secret::new(format!("token-{n}")),
                expires_in,
            }),
            Err(()) => Err(GatewayError::UpstreamFailed {
                provider: "scripted".into(),
                status: Some(503),
                message: format!("fetch {n} failed"),
            }),
        }
    }
}

#[test]
fn margin_is_a_tenth_of_the_lifetime_capped_at_five_minutes() {
    assert_eq!(
        refresh_margin(Duration::from_secs(60)),
        Duration::from_secs(6)
    );
    assert_eq!(
        refresh_margin(Duration::from_secs(3599)),
        Duration::from_secs(300)
    );
    assert_eq!(
        refresh_margin(Duration::from_secs(2_592_000)),
        Duration::from_secs(300)
    );
    assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_fetch() {
    let cache = TokenCache::new(Scripted::new(Duration::from_millis(200), []));
    let tokens = join_all((0..50).map(|_| cache.token())).await;
    assert_eq!(cache.source.fetches(), 1);
    for token in tokens {
        assert_eq!(token.unwrap().expose(), "token-1");
    }
}

#[tokio::test(start_paused = true)]
async fn refreshes_within_the_margin_of_expiry() {
    let cache = TokenCache::new(Scripted::new(
        Duration::ZERO,
        [Ok(Duration::from_secs(100)), Ok(Duration::from_secs(100))],
    ));
    assert_eq!(cache.token().await.unwrap().expose(), "token-1");
    // Lifetime 100 s, margin 10 s: still cached at 89 s, refreshed at 91 s.
    tokio::time::advance(Duration::from_secs(89)).await;
    assert_eq!(cache.token().await.unwrap().expose(), "token-1");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.token().await.unwrap().expose(), "token-2");
    assert_eq!(cache.source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_reaches_its_waiters_and_is_not_cached() {
    let cache = TokenCache::new(Scripted::new(
        Duration::from_millis(200),
        [Err(()), Ok(Duration::from_secs(3600))],
    ));
    let outcomes = join_all((0..20).map(|_| cache.token())).await;
    assert_eq!(cache.source.fetches(), 1, "waiters share the failed fetch");
    for outcome in outcomes {
        let error = outcome.unwrap_err();
        assert!(error.retryable());
        assert_eq!(
            error.to_string(),
            "upstream scripted failed: fetch 1 failed"
        );
    }
    assert_eq!(cache.token().await.unwrap().expose(), "token-2");
    assert_eq!(cache.source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidate_drops_only_the_rejected_token() {
    let cache = TokenCache::new(Scripted::new(Duration::ZERO, []));
    let first = cache.token().await.unwrap();
    cache.invalidate(&Secret::new("some-older-token".into()));
    assert_eq!(cache.token().await.unwrap(), first);
    cache.invalidate(&first);
    assert_eq!(cache.token().await.unwrap().expose(), "token-2");
}

// ---- exchanges against a local token server ----

const CLIENT_ID: &str = "qianfan-api-key";
const CLIENT_SECRET: &str = "qianfan-secret-key-do-not-print";

/// What the token server does and has seen.
#[derive(Default)]
struct TokenServer {
    calls: AtomicUsize,
    /// The `expires_in` it answers (JSON), so a test can send a number or a string.
    expires_in: Mutex<Value>,
    /// Answer 503 instead of a token.
    unavailable: AtomicBool,
    /// Baidu style: answer 200 with an `error` field instead of a token.
    error_in_200: AtomicBool,
    /// The assertion's audience the server expects (the key file's `token_uri`).
    audience: String,
    public_key_der: Vec<u8>,
}

impl TokenServer {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn token_answer(&self, n: usize) -> (StatusCode, Json<Value>) {
        if self.unavailable.load(Ordering::SeqCst) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "backend"})),
            );
        }
        if self.error_in_200.load(Ordering::SeqCst) {
            return (
                StatusCode::OK,
                Json(json!({"error": "invalid_client", "error_description": "unknown client id"})),
            );
        }
        let expires_in = self.expires_in.lock().unwrap().clone();
        (
            StatusCode::OK,
            Json(
                json!({"access_token": format!("token-{n}"), "expires_in": expires_in, "token_type": "Bearer"}),
            ),
        )
    }

    /// Checks an assertion like Google would: RS256 signature, audience, lifetime.
    fn assertion_is_valid(&self, assertion: &str) -> bool {
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return false;
        };
        let signed = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key_der)
            .verify(
                format!("{header}.{claims}").as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap_or_default(),
            )
            .is_ok();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap_or_default())
                .unwrap_or_default();
        signed
            && claims["aud"] == self.audience
            && claims["scope"] == super::super::jwt::CLOUD_PLATFORM_SCOPE
            && claims["exp"].as_u64() == claims["iat"].as_u64().map(|iat| iat + 3600)
    }
}

fn form_fields(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

async fn jwt_bearer_endpoint(
    State(server): State<Arc<TokenServer>>,
    body: String,
) -> (StatusCode, Json<Value>) {
    let n = server.calls.fetch_add(1, Ordering::SeqCst) + 1;
    // Widen the window in which concurrent callers could start fetches of their own.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let form = form_fields(&body);
    let assertion = form
        .get("assertion")
        .map(String::as_str)
        .unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT)
        || !server.assertion_is_valid(assertion)
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        );
    }
    server.token_answer(n)
}

async fn client_credentials_endpoint(
    State(server): State<Arc<TokenServer>>,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let n = server.calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let field = |name: &str| query.get(name).map(String::as_str);
    if field("grant_type") != Some("client_credentials")
        || field("client_id") != Some(CLIENT_ID)
        || field("client_secret") != Some(CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "unknown client id"})),
        );
    }
    server.token_answer(n)
}

fn fixture(name: &str) -> String {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/google-service-account/"
    );
    std::fs::read_to_string(format!("{dir}{name}")).unwrap()
}

/// Starts the token server; returns its state and base URL.
async fn start_token_server(expires_in: Value) -> (Arc<TokenServer>, String) {
    let key_file: Value = serde_json::from_str(&fixture("service-account.json")).unwrap();
    let public_pem = fixture("public-key.pem");
    let public_b64: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let server = Arc::new(TokenServer {
        expires_in: Mutex::new(expires_in),
        audience: key_file["token_uri"].as_str().unwrap().to_owned(),
        public_key_der: base64::engine::general_purpose::STANDARD
            .decode(public_b64)
            .unwrap(),
        ..TokenServer::default()
    });
    let app = Router::new()
        .route("/google/token", post(jwt_bearer_endpoint))
        .route("/oauth/2.0/token", post(client_credentials_endpoint))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, url)
}

fn vertex_source(base: &str) -> JwtBearerSource {
    let signer = ServiceAccountSigner::from_json(&fixture("service-account.json")).unwrap();
    JwtBearerSource::new("vertex", reqwest::Client::new(), signer)
        .with_token_url(format!("{base}/google/token"))
}

fn qianfan_source(base: &str, secret: &str) -> ClientCredentialsSource {
    ClientCredentialsSource::new(
        "qianfan",
        reqwest::Client::new(),
        CLIENT_ID,
        Secret::new(secret.into()),
    )
    .with_token_url(format!("{base}/oauth/2.0/token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertex_one_exchange_for_many_callers_then_refresh_after_expiry() {
    let (server, base) = start_token_server(json!(1)).await;
    let cache = Arc::new(TokenCache::new(vertex_source(&base)));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().expose(), "token-1");
    }
    assert_eq!(server.calls(), 1);
    // One-second tokens are refreshed 100 ms before expiry.
    tokio::time::sleep(Duration::from_millis(950)).await;
    assert_eq!(cache.token().await.unwrap().expose(), "token-2");
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn vertex_rejected_assertion_is_an_auth_failure() {
    let (server, base) = start_token_server(json!(3599)).await;
    // A different audience than the server expects: Google answers 400 invalid_grant.
    let mut key_file: Value = serde_json::from_str(&fixture("service-account.json")).unwrap();
    key_file["token_uri"] = json!("https://example.invalid/token");
    let signer = ServiceAccountSigner::from_json(&key_file.to_string()).unwrap();
    let source = JwtBearerSource::new("vertex", reqwest::Client::new(), signer)
        .with_token_url(format!("{base}/google/token"));
    let error = source.fetch().await.unwrap_err();
    assert!(
        matches!(error, GatewayError::UpstreamAuthFailed { .. }),
        "{error}"
    );
    assert!(!error.retryable());
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn qianfan_client_credentials_token_is_cached() {
    let (server, base) = start_token_server(json!(2_592_000)).await;
    let cache = TokenCache::new(qianfan_source(&base, CLIENT_SECRET));
    assert_eq!(cache.token().await.unwrap().expose(), "token-1");
    assert_eq!(cache.token().await.unwrap().expose(), "token-1");
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn qianfan_expires_in_as_a_string_is_accepted() {
    let (_server, base) = start_token_server(json!("2592000")).await;
    let token = qianfan_source(&base, CLIENT_SECRET).fetch().await.unwrap();
    assert_eq!(token.expires_in, Duration::from_secs(2_592_000));
}

#[tokio::test]
async fn qianfan_refusals_are_auth_failures_not_cached_and_never_show_the_secret() {
    let (server, base) = start_token_server(json!(2_592_000)).await;
    let wrong = qianfan_source(&base, "wrong-secret-do-not-print");
    let error = wrong.fetch().await.unwrap_err();
    assert!(
        matches!(error, GatewayError::UpstreamAuthFailed { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("do-not-print"));

    // Baidu may also answer 200 with an `error` field.
    server.error_in_200.store(true, Ordering::SeqCst);
    let cache = TokenCache::new(qianfan_source(&base, CLIENT_SECRET));
    let error = cache.token().await.unwrap_err();
    assert!(
        matches!(error, GatewayError::UpstreamAuthFailed { .. }),
        "{error}"
    );
    server.error_in_200.store(false, Ordering::SeqCst);
    assert_eq!(cache.token().await.unwrap().expose(), "token-3");
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn token_endpoint_outage_is_a_retryable_upstream_failure() {
    let (server, base) = start_token_server(json!(2_592_000)).await;
    server.unavailable.store(true, Ordering::SeqCst);
    let cache = TokenCache::new(qianfan_source(&base, CLIENT_SECRET));
    let error = cache.token().await.unwrap_err();
    assert!(
        matches!(
            error,
            GatewayError::UpstreamFailed {
                status: Some(503),
                ..
            }
        ),
        "{error}"
    );
    assert!(error.retryable());
    server.unavailable.store(false, Ordering::SeqCst);
    assert!(cache.token().await.is_ok());
}

#[tokio::test]
async fn unreachable_endpoint_error_hides_the_url_and_its_secret() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = qianfan_source(&base, CLIENT_SECRET)
        .fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::UpstreamUnreachable { .. }),
        "{error}"
    );
    assert!(error.retryable());
    let message = error.to_string();
    assert!(
        !message.contains(CLIENT_SECRET) && !message.contains("client_secret"),
        "{message}"
    );
}
