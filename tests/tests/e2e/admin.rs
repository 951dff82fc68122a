//! The admin API on the embedded default: issuing, rotating and revoking keys and setting budgets as control
//! events, replayed by a gateway started later on the same store; config-declared keys and budgets untouchable;
//! the OpenAPI description lists every admin route.

use crate::common;

use common::{admin_config, user, Harness, ADMIN_KEY, KEY};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tollgate_gateway::Gateway;

async fn admin(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = h.client.request(method, h.url(path)).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Issues a key through the API (201) and returns its secret.
async fn issue_key(h: &Harness, body: Value) -> String {
    let (status, issued) = admin(h, reqwest::Method::POST, "/admin/keys", Some(body)).await;
    assert_eq!(status, 201, "{issued}");
    issued["key"].as_str().unwrap().to_string()
}

/// Rotates `key_id` through the API (200) and returns the new secret.
async fn rotate_key(h: &Harness, key_id: &str) -> String {
    let path = format!("/admin/keys/{key_id}/rotate");
    let (status, rotated) = admin(h, reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200, "{rotated}");
    rotated["key"].as_str().unwrap().to_string()
}

async fn chat_as(h: &Harness, base: &str, key: &str) -> u16 {
    h.client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn keys_are_issued_rotated_and_revoked_and_a_restarted_gateway_replays_them() {
    let h = Harness::start_with(&admin_config()).await;
    let base = h.url("");
    let key1 = issue_key(
        &h,
        json!({"key_id": "svc-a", "tenant": "initech", "team": "bots", "models": ["gpt-4o-mini"]}),
    )
    .await;
    assert!(key1.starts_with("tg-"));
    assert_eq!(chat_as(&h, &base, &key1).await, 200);
    // The key is charged to its tenant and team.
    let e = h.events().await.into_iter().last().unwrap();
    assert_eq!(
        (e.tenant.as_str(), e.team.as_str(), e.key_id.as_str()),
        ("initech", "bots", "svc-a")
    );
    // Listing shows config and admin keys, never a secret.
    let (_, list) = admin(&h, reqwest::Method::GET, "/admin/keys", None).await;
    let text = list.to_string();
    assert!(!text.contains(&key1) && !text.contains(KEY));
    let sources: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().into(),
                k["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(sources.contains(&("svc-a".into(), "admin".into())));
    assert!(sources.contains(&("all".into(), "config".into())));
    // Duplicate names and unknown models are refused.
    let (status, _) = admin(
        &h,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"key_id": "svc-a", "tenant": "x"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = admin(
        &h,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"key_id": "svc-b", "tenant": "x", "models": ["nope"]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Rotation: the old key stops, the new one works.
    let key2 = rotate_key(&h, "svc-a").await;
    assert_ne!(key1, key2);
    assert_eq!(chat_as(&h, &base, &key1).await, 401);
    assert_eq!(chat_as(&h, &base, &key2).await, 200);

    // Another gateway started on the same store replays the control log: key2 works there, key1 does not.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    let gateway = Gateway::try_new(&h.config).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    assert_eq!(chat_as(&h, &other, &key2).await, 200);
    assert_eq!(chat_as(&h, &other, &key1).await, 401);
    let _ = stop.send(());
    let _ = server.await;

    // Revocation.
    let (status, _) = admin(&h, reqwest::Method::DELETE, "/admin/keys/svc-a", None).await;
    assert_eq!(status, 200);
    assert_eq!(chat_as(&h, &base, &key2).await, 401);
    let (status, _) = admin(&h, reqwest::Method::DELETE, "/admin/keys/svc-a", None).await;
    assert_eq!(status, 404);
    // Config keys are the file's business.
    let (status, body) = admin(&h, reqwest::Method::DELETE, "/admin/keys/all", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(chat_as(&h, &base, KEY).await, 200);
}

#[tokio::test]
async fn an_issued_key_carries_its_rate_limits_across_rotation() {
    let h = Harness::start_with(&admin_config()).await;
    let base = h.url("");
    let key = issue_key(
        &h,
        json!({"key_id": "limited", "tenant": "t", "limits": {"rpm": 2}}),
    )
    .await;
    assert_eq!(chat_as(&h, &base, &key).await, 200);
    assert_eq!(chat_as(&h, &base, &key).await, 200);
    assert_eq!(chat_as(&h, &base, &key).await, 429);
    let key2 = rotate_key(&h, "limited").await;
    // The same limits, fresh buckets.
    assert_eq!(chat_as(&h, &base, &key2).await, 200);
    assert_eq!(chat_as(&h, &base, &key2).await, 200);
    assert_eq!(chat_as(&h, &base, &key2).await, 429);
    let (status, _) = admin(
        &h,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"key_id": "zero", "tenant": "t", "limits": {"tpm": 0}})),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn budgets_set_through_the_api_take_effect_and_can_be_removed() {
    let h = Harness::start_with(&admin_config()).await;
    let (status, b) = admin(
        &h,
        reqwest::Method::PUT,
        "/admin/budgets/acme-day",
        Some(json!({"subject": "tenant:acme", "period": "daily", "limit": "0.0001"})),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        (
            b["limit"].as_str(),
            b["limit_nanos"].as_u64(),
            b["source"].as_str()
        ),
        (Some("0.0001"), Some(100_000), Some("admin"))
    );
    let mut refused = false;
    for _ in 0..60 {
        let r = h
            .chat(&json!({"model": "gpt-4o-mini", "max_tokens": 30,
            "messages": user("x [mock:completion_tokens=30]")}))
            .await;
        if r.status() == 429 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "budget_exceeded");
            refused = true;
            break;
        }
        assert_eq!(r.status(), 200);
    }
    assert!(refused, "the admin budget never applied");
    let (_, list) = admin(&h, reqwest::Method::GET, "/admin/budgets", None).await;
    let books = &list["data"][0]["books"][0];
    assert_eq!(books["subject"], "acme");
    assert!(books["spent_nanos"].as_u64().unwrap() > 0);
    // Raising the limit keeps the books and admits again.
    let (status, _) = admin(
        &h,
        reqwest::Method::PUT,
        "/admin/budgets/acme-day",
        Some(json!({"subject": "tenant:acme", "period": "daily", "limit": "1"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = admin(&h, reqwest::Method::GET, "/admin/budgets", None).await;
    assert!(
        list["data"][0]["books"][0]["spent_nanos"].as_u64().unwrap() > 0,
        "books were lost: {list}"
    );
    let (status, _) = admin(
        &h,
        reqwest::Method::PUT,
        "/admin/budgets/acme-day",
        Some(json!({"subject": "tenant:acme", "period": "daily", "limit": "0.0001"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        h.chat(&json!({"model": "gpt-4o-mini", "max_tokens": 30, "messages": user("y")}))
            .await
            .status(),
        429
    );
    let (status, _) = admin(&h, reqwest::Method::DELETE, "/admin/budgets/acme-day", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        h.chat(&json!({"model": "gpt-4o-mini", "max_tokens": 30, "messages": user("z")}))
            .await
            .status(),
        200
    );
    // Bad budgets are refused with a clear message.
    for (body, needle) in [
        (
            json!({"subject": "planet:mars", "period": "daily", "limit": "1"}),
            "subject",
        ),
        (
            json!({"subject": "tenant:acme", "period": "hourly", "limit": "1"}),
            "period",
        ),
        (
            json!({"subject": "tenant:acme", "period": "daily", "limit": "1e3"}),
            "limit",
        ),
        (
            json!({"subject": "tenant:acme", "period": "daily", "limit": "1", "alert_at": [50]}),
            "webhook",
        ),
    ] {
        let (status, e) = admin(&h, reqwest::Method::PUT, "/admin/budgets/b", Some(body)).await;
        assert_eq!(status, 400);
        assert!(
            e["error"]["message"].as_str().unwrap().contains(needle),
            "{e}"
        );
    }
}

#[tokio::test]
async fn the_admin_api_needs_its_key_and_is_off_without_admin_config() {
    let h = Harness::start_with(&admin_config()).await;
    let r = h
        .client
        .get(h.url("/admin/keys"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_admin_key");
    // The OpenAPI description names every admin route the router serves.
    let doc: Value = h
        .client
        .get(h.url("/admin/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/admin/keys",
        "/admin/keys/{key_id}/rotate",
        "/admin/keys/{key_id}",
        "/admin/budgets",
        "/admin/budgets/{budget_id}",
        "/admin/usage",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let off = Harness::start().await;
    let r = off
        .client
        .post(off.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"key_id": "x", "tenant": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
