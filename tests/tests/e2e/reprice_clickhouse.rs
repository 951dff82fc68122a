//! Re-pricing over ClickHouse: usage rows in `usage_events`, then the `tollgate reprice` binary with a
//! corrected table. The corrections' materialized view makes `cost_by_minute` hold the spend at the new
//! prices — checked against a total recomputed here — and a second run inserts nothing.
//!
//! Needs ClickHouse from `scripts/services.sh` (`TOLLGATE_CLICKHOUSE_URL` overrides) and the workspace
//! binaries (`cargo build --workspace`), so it is `#[ignore]`d in a plain `cargo test` and run by
//! `scripts/test.sh` with `--ignored --test-threads=1`. Each run uses its own database.

use crate::pipeline_support;

use std::collections::BTreeMap;
use std::process::Command;

use pipeline_support::{binary, ch, ch_u64, clickhouse_url, service};
use tollgate_schemas::clickhouse::MIGRATIONS;
use tollgate_schemas::price::{format_nanos, ExchangeRates, PriceTable};
use tollgate_schemas::UsageVector;

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
"#;

const EVENTS: u64 = 12_000;
const BASE_MS: u64 = 1_790_000_000_000;
const STEP_MS: u64 = 250;

struct Row {
    json: String,
    tenant: &'static str,
    started_at_ms: u64,
    kind: &'static str,
    upstream: &'static str,
    usage: UsageVector,
    currency: String,
    cost: u64,
    reporting: u64,
}

fn rows() -> Vec<Row> {
    let seed = PriceTable::seed().expect("seed");
    let rates =
        ExchangeRates::new("USD", &BTreeMap::from([("CNY".into(), "0.14".into())])).expect("rates");
    let models = [
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("qwen", "dashscope", "qwen-plus"),
        ("glm", "zhipu", "glm-4"),
        ("embed", "openai", "text-embedding-3-small"),
    ];
    (0..EVENTS)
        .map(|i| {
            let (model, kind, upstream) = models[(i % 4) as usize];
            let usage = UsageVector {
                prompt_tokens: 10 + (i * 7_919) % 1_000,
                completion_tokens: (i * 104_729) % 300,
                ..UsageVector::default()
            };
            let (currency, cost, reporting, version) = match seed.lookup(kind, upstream) {
                Some(p) => {
                    let n = p.cost_nanos(&usage);
                    let r = rates.to_reporting(n, &p.currency).expect("rate");
                    (p.currency.clone(), n, r, seed.version.clone())
                }
                None => (String::new(), 0, 0, String::new()),
            };
            let started_at_ms = BASE_MS + i * STEP_MS;
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            let json = serde_json::json!({
                "event_id": uuid::Uuid::now_v7().to_string(),
                "schema_version": 1,
                "started_at": started_at_ms / 1000,
                "started_at_ms": started_at_ms,
                "finished_at_ms": started_at_ms + 100,
                "tenant": tenant,
                "team": "t",
                "key_id": "k",
                "end_user": "",
                "endpoint": "chat_completions",
                "model": model,
                "provider": format!("{kind}-main"),
                "provider_kind": kind,
                "deployment": format!("{kind}-main/{upstream}"),
                "upstream_model": upstream,
                "outcome": "success",
                "http_status": 200,
                "attempts": 1,
                "latency_ms": 100,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "usage_source": "provider",
                "cost_nanos": cost,
                "currency": currency,
                "reporting_cost_nanos": reporting,
                "reporting_currency": "USD",
                "price_version": version,
                "price_missing": u8::from(currency.is_empty()),
            })
            .to_string();
            Row {
                json,
                tenant,
                started_at_ms,
                kind,
                upstream,
                usage,
                currency,
                cost,
                reporting,
            }
        })
        .collect()
}

/// What a row costs at the corrected prices, if the table covers it: (currency, nanos, reporting nanos).
fn corrected(r: &Row) -> Option<(&'static str, i128, i128)> {
    let (p, c) = (
        i128::from(r.usage.prompt_tokens),
        i128::from(r.usage.completion_tokens),
    );
    match (r.kind, r.upstream) {
        ("openai", "gpt-4o-mini") => {
            let n = p * 200 + c * 900;
            Some(("USD", n, n))
        }
        ("dashscope", "qwen-plus") => {
            let n = p * 500 + c * 1_500;
            Some(("CNY", n, (n * 140_000_000 + 500_000_000) / 1_000_000_000))
        }
        _ => None,
    }
}

fn reprice(args: &[&str]) -> String {
    let out = Command::new(binary("tollgate"))
        .args(args)
        .output()
        .expect("run tollgate reprice");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tollgate reprice failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn line<'a>(summary: &'a str, label: &str) -> &'a str {
    summary
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in {summary}"))
}

#[tokio::test]
#[ignore = "needs ClickHouse (scripts/services.sh) and `cargo build --workspace`; run with --ignored --test-threads=1"]
async fn corrections_make_cost_by_minute_the_spend_at_the_new_prices() {
    service("start", "clickhouse");
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let db = format!("tg_reprice_{}", &unique[unique.len() - 10..]);
    ch(&format!("CREATE DATABASE {db}"))
        .await
        .expect("database");
    for m in MIGRATIONS {
        for statement in m.statements(&db) {
            ch(&statement)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", m.name));
        }
    }
    let rows = rows();
    let body: Vec<&str> = rows.iter().map(|r| r.json.as_str()).collect();
    ch(&format!(
        "INSERT INTO {db}.usage_events FORMAT JSONEachRow\n{}",
        body.join("\n")
    ))
    .await
    .expect("insert usage rows");

    // The range leaves 1,000 rows out at each end; the rest spans three pages of the command.
    let (from, to) = (
        BASE_MS + 1_000 * STEP_MS,
        BASE_MS + (EVENTS - 1_000) * STEP_MS,
    );
    let in_range = |r: &Row| r.started_at_ms >= from && r.started_at_ms < to;
    let mut want_reporting: i128 = 0;
    // What the budget owner must count for tenant acme over the re-priced range: the corrected spend.
    let mut want_acme_in_range: i128 = 0;
    let mut want_by_currency: BTreeMap<String, i128> = BTreeMap::new();
    let (mut to_correct, mut unpriced, mut scanned) = (0_u64, 0_u64, 0_u64);
    for r in &rows {
        scanned += u64::from(in_range(r));
        let (currency, cost, reporting) = match corrected(r) {
            Some((cur, n, rep)) if in_range(r) => {
                let changed = (cur, n, rep)
                    != (
                        r.currency.as_str(),
                        i128::from(r.cost),
                        i128::from(r.reporting),
                    );
                to_correct += u64::from(changed);
                (cur.to_string(), n, rep)
            }
            _ => (
                r.currency.clone(),
                i128::from(r.cost),
                i128::from(r.reporting),
            ),
        };
        unpriced += u64::from(in_range(r) && r.kind == "zhipu");
        want_reporting += reporting;
        if r.tenant == "acme" && in_range(r) {
            want_acme_in_range += reporting;
        }
        *want_by_currency.entry(currency).or_default() += cost;
    }
    let before: i128 = rows.iter().map(|r| i128::from(r.reporting)).sum();
    assert!(to_correct > 4_000 && before != want_reporting);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\n[pricing.rates]\nCNY = \"0.14\"\n",
            dir.path().join("unused.db").display().to_string()
        ),
    )
    .expect("config");
    let prices = dir.path().join("corrected.toml");
    std::fs::write(&prices, CORRECTED).expect("prices");
    let (from_s, to_s, url) = (from.to_string(), to.to_string(), clickhouse_url());
    let mut args = vec![
        "--config",
        config.to_str().expect("utf-8"),
        "reprice",
        "--from",
        &from_s,
        "--to",
        &to_s,
        "--prices",
        prices.to_str().expect("utf-8"),
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        &db,
    ];

    let spend = format!("SELECT sum(reporting_cost_nanos) FROM {db}.cost_by_minute");
    let corrections = format!("SELECT count() FROM {db}.cost_corrections");
    args.push("--dry-run");
    let dry = reprice(&args);
    args.pop();
    assert_eq!(line(&dry, "events scanned:"), scanned.to_string());
    assert!(
        line(&dry, "events corrected:").starts_with(&format!("{to_correct} ")),
        "{dry}"
    );
    assert_eq!(ch_u64(&corrections).await, 0);

    let run = reprice(&args);
    assert!(
        line(&run, "events corrected:").starts_with(&format!("{to_correct} ")),
        "{run}"
    );
    assert!(
        line(&run, "unpriced events:").starts_with(&format!("{unpriced} ")),
        "{run}"
    );
    assert!(run.contains("zhipu/glm-4 (no price)"), "{run}");
    assert_eq!(
        line(&run, "delta reporting USD:"),
        format_nanos(want_reporting - before)
    );
    assert_eq!(ch_u64(&corrections).await, to_correct);

    // The spend dashboards read is the spend at the corrected prices, to the nano-unit, in every currency;
    // the request count is untouched.
    let got: i128 = ch(&spend)
        .await
        .expect("spend")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(got, want_reporting);
    let by_currency = ch(&format!(
        "SELECT currency, sum(cost_nanos) FROM {db}.cost_by_minute GROUP BY currency ORDER BY currency"
    ))
    .await
    .expect("by currency");
    let got: BTreeMap<String, i128> = by_currency
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(c, n)| (c.to_string(), n.parse().expect("number")))
        .collect();
    assert_eq!(got, want_by_currency);
    assert_eq!(
        ch_u64(&format!("SELECT sum(requests) FROM {db}.cost_by_minute")).await,
        EVENTS
    );
    // Budgets count the same corrected spend: the owner's baseline for a scope is its raw rows plus their
    // corrections.
    let warehouse =
        tollgate_metering::warehouse::Warehouse::new(&clickhouse_url(), &db, "default", "");
    let scope = tollgate_schemas::lease::LeaseScope {
        budget_id: "acme-monthly".into(),
        subject: "acme".into(),
        window_start_ms: i64::try_from(from).expect("ms"),
    };
    let end = i64::try_from(to).expect("ms");
    let baseline = tollgate_metering::budget_service::baseline(
        warehouse.client(),
        &db,
        "tenant",
        &scope,
        end,
        None,
    )
    .await
    .expect("baseline");
    assert_eq!(i128::from(baseline), want_acme_in_range);

    // Nothing left to correct.
    let again = reprice(&args);
    assert!(
        line(&again, "events corrected:").starts_with("0 "),
        "{again}"
    );
    assert_eq!(ch_u64(&corrections).await, to_correct);
    let got: i128 = ch(&spend)
        .await
        .expect("spend")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(got, want_reporting);

    ch(&format!("DROP DATABASE {db}")).await.expect("drop");
}
