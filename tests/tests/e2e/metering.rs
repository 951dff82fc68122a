//! One request, one usage event — for every outcome — and nothing lost on shutdown.

use crate::common;

use std::collections::HashSet;

use common::{request_id, sse_payloads, user, Harness, KEY, NARROW_KEY};
use serde_json::{json, Value};
use tollgate_schemas::Outcome;

#[tokio::test]
async fn every_authenticated_request_produces_exactly_one_event() {
    let h = Harness::start().await;
    let bodies = [
        json!({"model": "gpt-4o-mini", "messages": user("a")}),
        json!({"model": "gpt-4o-mini", "messages": user("b"), "stream": true}),
        json!({"model": "kimi", "messages": user("c"), "stream": true, "stream_options": {"include_usage": true}}),
        // Its own deployment: the keys this failure cools down are not the ones the others use.
        json!({"model": "once", "messages": user("[mock:status=500]")}),
        json!({"model": "gpt-4o-mini", "messages": user("[mock:cut_after=1]"), "stream": true}),
        json!({"model": "nope", "messages": user("d")}),
        json!({"messages": user("no model")}),
        json!({"model": "embed", "input": "e"}),
    ];
    let mut ids = Vec::new();
    for _ in 0..5 {
        for body in &bodies {
            let path = if body["model"] == "embed" {
                "/v1/embeddings"
            } else {
                "/v1/chat/completions"
            };
            let r = h.post(path, body).await;
            ids.push(request_id(&r));
            let _ = r.bytes().await;
        }
    }
    // Refused before authentication: no principal, no event.
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth("tg-wrong")
        .json(&bodies[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(expected.len(), ids.len(), "request ids are unique");
    let events = h.wait_events(ids.len()).await;
    let got: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(got.len(), ids.len());
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected);
    let outcomes = |o: Outcome| events.iter().filter(|e| e.outcome == o).count();
    assert_eq!(outcomes(Outcome::Success), 20);
    assert_eq!(outcomes(Outcome::UpstreamError), 10);
    assert_eq!(outcomes(Outcome::ClientError), 10);
    assert_eq!(h.sink.stats().dropped, 0);
}

#[tokio::test]
async fn graceful_shutdown_finishes_streams_and_writes_their_events() {
    let h = Harness::start().await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("[mock:chunks=5&chunk_delay_ms=150]"), "stream": true}))
        .await;
    let id = request_id(&r);
    let reader = tokio::spawn(async move { r.text().await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Shutdown starts mid-stream: the stream finishes, then the writer stores its event before stop returns.
    let (store, _dir) = h.stop().await;
    let body = reader.await.unwrap();
    assert_eq!(
        sse_payloads(&body).last().map(String::as_str),
        Some("[DONE]")
    );
    assert!(body.contains("tok4"), "{body}");
    let conn = rusqlite::Connection::open(&store).unwrap();
    let (count, outcome): (i64, String) = conn
        .query_row(
            "SELECT count(*), max(outcome) FROM usage_events WHERE event_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((count, outcome.as_str()), (1, "success"));
}

#[tokio::test]
async fn models_lists_only_what_the_key_may_use() {
    let h = Harness::start().await;
    let list = |key: &'static str| {
        let req = h.client.get(h.url("/v1/models")).bearer_auth(key);
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            assert_eq!(body["object"], "list");
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(KEY).await,
        [
            "embed",
            "glm",
            "gpt-4o-mini",
            "kimi",
            "once",
            "pangu",
            "qwen",
            "unreachable",
            "yi"
        ]
    );
    assert_eq!(list(NARROW_KEY).await, ["gpt-4o-mini"]);
    let r = h.client.get(h.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let one = |key: &'static str, model: &str| {
        h.client
            .get(h.url(&format!("/v1/models/{model}")))
            .bearer_auth(key)
            .send()
    };
    let r = one(KEY, "kimi").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "kimi");
    assert_eq!(
        one(NARROW_KEY, "kimi").await.unwrap().status(),
        404,
        "not allowed looks like unknown"
    );
    assert_eq!(one(KEY, "gpt-9").await.unwrap().status(), 404);
}

#[tokio::test]
async fn health_and_readiness() {
    let h = Harness::start().await;
    let r = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = h.client.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["sink"]["dropped"], 0);
}
