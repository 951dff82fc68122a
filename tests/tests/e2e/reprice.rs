//! Re-pricing over the embedded store: real traffic through the gateway, then `reprice` with a corrected
//! table; every event's recorded cost plus its corrections equals its cost at the new prices, to the
//! nano-unit, and a second run records nothing.

use crate::common;

use std::collections::BTreeMap;

use common::{user, Harness};
use serde_json::json;
use tollgate_gateway::report::embedded::EmbeddedReports;
use tollgate_gateway::report::{Filters, UsageQuery};
use tollgate_gateway::reprice::{self, Pricer, Selection, Store};
use tollgate_schemas::price::PriceTable;
use tollgate_schemas::UsageEvent;

/// Per-token prices in nano-units: 0.2 / 0.9 USD, 0.5 / 1.5 CNY and 1 / 3 USD per million tokens.
const CORRECTED: &str = r#"
version = "2026-12-fix"
[[price]]
provider = "openai"
model = "gpt-4o-mini"
currency = "USD"
input = "0.2"
output = "0.9"
[[price]]
provider = "dashscope"
model = "qwen-plus"
currency = "CNY"
input = "0.5"
output = "1.5"
[[price]]
provider = "zeroone"
model = "yi-large"
currency = "USD"
input = "1"
output = "3"
"#;

/// Nano-units per (currency, reporting currency): (in the currency, in the reporting currency).
type Amounts = BTreeMap<(String, String), (i128, i128)>;

/// What an event should cost now: (currency, reporting currency) → (nanos, reporting nanos), or `None` for
/// events the corrected table does not cover (their cost must stay as recorded).
fn expected(e: &UsageEvent) -> Option<Amounts> {
    let (p, c) = (
        i128::from(e.usage.prompt_tokens),
        i128::from(e.usage.completion_tokens),
    );
    let usd = |n: i128| {
        Some(BTreeMap::from([(
            ("USD".to_string(), "USD".to_string()),
            (n, n),
        )]))
    };
    match (e.provider_kind.as_str(), e.upstream_model.as_str()) {
        ("openai", "gpt-4o-mini") => usd(p * 200 + c * 900),
        ("zeroone", "yi-large") => usd(p * 1_000 + c * 3_000),
        ("dashscope", "qwen-plus") => {
            let cny = p * 500 + c * 1_500;
            // 0.14 USD per CNY (the harness config), rounded half up once.
            let rep = (cny * 140_000_000 + 500_000_000) / 1_000_000_000;
            Some(BTreeMap::from([(
                ("CNY".to_string(), "USD".to_string()),
                (cny, rep),
            )]))
        }
        _ => None,
    }
}

/// Each event's corrections from the store: event id → (currency, reporting) → summed deltas.
fn corrections(conn: &rusqlite::Connection) -> BTreeMap<String, Amounts> {
    let mut stmt = conn
        .prepare(
            "SELECT event_id, currency, reporting_currency, delta_cost_nanos, delta_reporting_cost_nanos \
             FROM cost_corrections",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    let mut out: BTreeMap<String, Amounts> = BTreeMap::new();
    for (id, cur, rep, d, dr) in rows {
        let x = out
            .entry(id)
            .or_default()
            .entry((cur, rep))
            .or_insert((0, 0));
        x.0 += i128::from(d);
        x.1 += i128::from(dr);
    }
    out
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[tokio::test]
async fn corrections_bring_every_event_to_the_new_price_and_a_second_run_adds_none() {
    let h = Harness::start().await;
    let mut sent = 0;
    for (model, stream) in [
        ("gpt-4o-mini", false),
        ("gpt-4o-mini", true),
        ("gpt-4o-mini", false),
        ("qwen", false),
        ("qwen", true),
        ("qwen", false),
        ("yi", false),
        ("yi", false),
        ("glm", false),
        ("glm", false),
        ("unreachable", false),
    ] {
        let r = h
            .chat(&json!({"model": model, "stream": stream,
                "messages": user(&format!("request {sent} with a few words"))}))
            .await;
        let _ = r.bytes().await;
        sent += 1;
    }
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": "some text"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    sent += 1;
    let in_range = h.wait_events(sent).await;
    assert_eq!(in_range.len(), sent);
    // One more, after the range ends: it must not be touched.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = h
        .chat(&json!({"model": "gpt-4o-mini", "messages": user("late")}))
        .await;
    assert_eq!(r.status(), 200);
    let all = h.wait_events(sent + 1).await;
    let late = all
        .iter()
        .max_by_key(|e| e.started_at_ms)
        .expect("events")
        .clone();
    let config = h.config.clone();
    let (path, _dir) = h.stop().await;

    let from = in_range
        .iter()
        .map(|e| e.started_at_ms)
        .min()
        .expect("events");
    let to = late.started_at_ms;
    assert!(in_range.iter().all(|e| e.started_at_ms < to));
    let selection = Selection {
        from_ms: from,
        to_ms: to,
        tenant: None,
        model: None,
    };
    let table = PriceTable::parse(CORRECTED).expect("table");
    let pricer = Pricer::new(&config, Some(table));
    let should_change = in_range
        .iter()
        .filter(|e| {
            let Some(want) = expected(e) else {
                return false;
            };
            let mut was = BTreeMap::new();
            if e.cost.nanos > 0 || e.cost.reporting_nanos > 0 {
                was.insert(
                    (e.cost.currency.clone(), e.cost.reporting_currency.clone()),
                    (i128::from(e.cost.nanos), i128::from(e.cost.reporting_nanos)),
                );
            }
            want != was
        })
        .count() as u64;
    assert!(
        should_change >= 7,
        "the traffic must give the test something to correct"
    );

    // A dry run counts and writes nothing.
    let mut store = Store::open(&config, None).expect("store");
    let dry = reprice::run(&mut store, &pricer, &selection, true, 4)
        .await
        .expect("dry run");
    assert_eq!(dry.scanned, sent as u64);
    assert_eq!(dry.corrected, should_change);
    let conn = rusqlite::Connection::open(&path).expect("open");
    assert_eq!(count(&conn, "SELECT count(*) FROM cost_corrections"), 0);

    // The real run, in pages of 4 events.
    let summary = reprice::run(&mut store, &pricer, &selection, false, 4)
        .await
        .expect("run");
    assert_eq!(summary.scanned, sent as u64);
    assert_eq!(summary.corrected, should_change);
    assert_eq!(summary.rows, should_change);
    // The two glm requests had usage and still have no price: listed, not corrected.
    let glm: Vec<_> = in_range.iter().filter(|e| e.model == "glm").collect();
    assert_eq!(glm.len(), 2);
    assert!(glm.iter().all(|e| e.usage.total_tokens() > 0));
    assert_eq!(summary.unpriced_events(), 2);
    let text = summary.to_string();
    assert!(text.contains("zhipu/glm-4 (no price): 2 events"), "{text}");

    let stored = corrections(&conn);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM cost_corrections") as u64,
        should_change
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(DISTINCT correction_id) FROM cost_corrections"
        ),
        1
    );
    let mut totals: BTreeMap<String, i128> = BTreeMap::new();
    for e in &all {
        let id = e.event_id.to_string();
        let mut cost = Amounts::new();
        if e.cost.nanos > 0 || e.cost.reporting_nanos > 0 {
            cost.insert(
                (e.cost.currency.clone(), e.cost.reporting_currency.clone()),
                (i128::from(e.cost.nanos), i128::from(e.cost.reporting_nanos)),
            );
        }
        let before = cost.clone();
        for (k, (d, dr)) in stored.get(&id).cloned().unwrap_or_default() {
            let x = cost.entry(k).or_insert((0, 0));
            x.0 += d;
            x.1 += dr;
        }
        cost.retain(|_, v| *v != (0, 0));
        match expected(e) {
            Some(want) if e.event_id != late.event_id => {
                assert_eq!(cost, want, "event {id} ({})", e.model);
            }
            _ => assert_eq!(cost, before, "event {id} ({}) must not change", e.model),
        }
        for ((_, rep), (_, n)) in &cost {
            *totals.entry(rep.clone()).or_default() += n;
        }
    }
    // The summary's net delta is the change of total reporting spend.
    let before_total: i128 = all.iter().map(|e| i128::from(e.cost.reporting_nanos)).sum();
    assert_eq!(
        totals.get("USD").copied().unwrap_or(0) - before_total,
        summary.delta_reporting.get("USD").copied().unwrap_or(0)
    );

    // Reports and the budget books recovered at start count the corrected spend, not the raw one.
    let query = UsageQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        group_by: Vec::new(),
        filters: Filters::default(),
        bucket: None,
    };
    let reported: i128 = EmbeddedReports::new(&path, "USD")
        .run(&query)
        .await
        .expect("report")
        .iter()
        .filter(|r| r.currency == "USD")
        .map(|r| r.figures.cost_nanos)
        .sum();
    let want_total = totals.get("USD").copied().unwrap_or(0);
    assert_ne!(want_total, before_total);
    assert_eq!(reported, want_total);
    let recovered: i128 = tollgate_gateway::events::embedded::spend_since(&conn, 0)
        .expect("spend")
        .iter()
        .map(|r| i128::from(r.reporting_cost_nanos))
        .sum();
    assert_eq!(recovered, want_total);

    // Nothing left to correct: a second run writes nothing.
    let again = reprice::run(&mut store, &pricer, &selection, false, 4)
        .await
        .expect("second run");
    assert_eq!(
        (again.scanned, again.corrected, again.rows),
        (sent as u64, 0, 0)
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM cost_corrections") as u64,
        should_change
    );
    // The raw rows are untouched.
    let reread = tollgate_gateway::events::embedded::read_all(&conn).expect("read");
    assert_eq!(reread, all);
}

#[tokio::test]
async fn tenant_and_model_filters_narrow_the_run() {
    let h = Harness::start().await;
    for model in ["gpt-4o-mini", "qwen", "gpt-4o-mini"] {
        let r = h
            .chat(&json!({"model": model, "messages": user("hi")}))
            .await;
        assert_eq!(r.status(), 200);
    }
    let events = h.wait_events(3).await;
    let config = h.config.clone();
    let _kept = h.stop().await;
    let pricer = Pricer::new(&config, Some(PriceTable::parse(CORRECTED).expect("table")));
    let mut store = Store::open(&config, None).expect("store");
    let all = Selection {
        from_ms: 0,
        to_ms: i64::MAX,
        tenant: None,
        model: None,
    };
    let by_upstream_id = Selection {
        model: Some("qwen-plus".into()),
        ..all.clone()
    };
    let s = reprice::run(&mut store, &pricer, &by_upstream_id, true, 100)
        .await
        .expect("run");
    assert_eq!((s.scanned, s.corrected), (1, 1));
    let by_public_name = Selection {
        model: Some("gpt-4o-mini".into()),
        ..all.clone()
    };
    let s = reprice::run(&mut store, &pricer, &by_public_name, true, 100)
        .await
        .expect("run");
    assert_eq!(s.scanned, 2);
    let tenant = events[0].tenant.clone();
    let other = Selection {
        tenant: Some(format!("{tenant}-other")),
        ..all.clone()
    };
    let s = reprice::run(&mut store, &pricer, &other, true, 100)
        .await
        .expect("run");
    assert_eq!(s.scanned, 0);
    let mine = Selection {
        tenant: Some(tenant),
        ..all
    };
    let s = reprice::run(&mut store, &pricer, &mine, true, 100)
        .await
        .expect("run");
    assert_eq!(s.scanned, 3);
}
