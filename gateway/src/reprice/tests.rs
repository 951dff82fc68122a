//! The delta computation: exact corrections, idempotence, precedence of prices, unpriced events, currencies.

use super::*;
use crate::config::Config;

const CONFIG: &str = r#"
[pricing.rates]
CNY = "0.14"
[providers.oa]
kind = "openai"
api_key = "sk-x"
[providers.ds]
kind = "dashscope"
api_key = "sk-y"
[providers.local]
kind = "vllm"
base_url = "http://127.0.0.1:9/v1"
[models.mini]
deployments = [{ provider = "oa", model = "gpt-4o-mini", price = { input_per_mtok = "1", output_per_mtok = "2" } }]
[models.qwen]
deployments = [{ provider = "ds", model = "qwen-plus" }]
[models.llama]
deployments = [{ provider = "local", model = "llama" }]
[models.named]
deployments = [{ provider = "oa", model = "prod-deployment-7", price_as = "gpt-4o" }]
"#;

fn config() -> Config {
    Config::from_toml(CONFIG, &|_: &str| None).unwrap_or_else(|e| panic!("{e}"))
}

fn table(text: &str) -> PriceTable {
    PriceTable::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A table in the shipped format with one row.
fn one_row(provider: &str, model: &str, currency: &str, input: &str, output: &str) -> PriceTable {
    table(&format!(
        "version = \"fix-1\"\n[[price]]\nprovider = \"{provider}\"\nmodel = \"{model}\"\ncurrency = \"{currency}\"\ninput = \"{input}\"\noutput = \"{output}\"\n"
    ))
}

/// An event as the gateway stored it, priced at `price` (version `version`) with the config's rates.
fn event(
    model: &str,
    provider: &str,
    kind: &str,
    upstream: &str,
    usage: UsageVector,
    priced: Option<(&Price, &str)>,
) -> StoredEvent {
    let rates = config().pricing.rates;
    let (nanos, currency, reporting, version) = match priced {
        Some((p, v)) => {
            let n = p.cost_nanos(&usage);
            let r = rates.to_reporting(n, &p.currency).unwrap_or(u64::MAX);
            (n, p.currency.clone(), r, v.to_string())
        }
        None => (0, String::new(), 0, String::new()),
    };
    StoredEvent {
        event_id: Uuid::now_v7(),
        started_at_ms: 1_790_000_000_000,
        attribution: Attribution {
            tenant: "acme".into(),
            team: "search".into(),
            key_id: "k".into(),
            end_user: String::new(),
            model: model.into(),
            provider: provider.into(),
        },
        provider_kind: kind.into(),
        upstream_model: upstream.into(),
        usage,
        cost_nanos: i64::try_from(nanos).unwrap_or(i64::MAX),
        currency,
        reporting_cost_nanos: i64::try_from(reporting).unwrap_or(i64::MAX),
        reporting_currency: "USD".into(),
        price_version: version,
    }
}

fn usage(prompt: u64, completion: u64) -> UsageVector {
    UsageVector {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..UsageVector::default()
    }
}

fn seed(kind: &str, model: &str) -> Price {
    PriceTable::seed()
        .ok()
        .and_then(|t| t.lookup(kind, model).cloned())
        .unwrap_or_else(|| panic!("{kind}/{model} not in the seed table"))
}

/// The `mini` deployment's own price (1 / 2 USD per million tokens, version `config`).
fn mini_price(cfg: &Config) -> DeploymentPrice {
    cfg.models
        .iter()
        .find(|m| m.name == "mini")
        .and_then(|m| m.tiers[0][0].price.clone())
        .unwrap_or_else(|| panic!("mini is priced"))
}

fn rows(v: Verdict) -> Vec<Correction> {
    match v {
        Verdict::Corrected(r) => r,
        other => panic!("expected corrections, got {other:?}"),
    }
}

/// Recorded cost plus corrections, per (currency, reporting currency), zero entries dropped.
fn corrected_total(e: &StoredEvent, applied: &[AppliedCorrection]) -> Amounts {
    let mut total = Amounts::new();
    let mut add = |c: &str, r: &str, n: i64, rn: i64| {
        let x = total.entry((c.into(), r.into())).or_insert((0, 0));
        x.0 += i128::from(n);
        x.1 += i128::from(rn);
    };
    add(
        &e.currency,
        &e.reporting_currency,
        e.cost_nanos,
        e.reporting_cost_nanos,
    );
    for c in applied {
        add(
            &c.currency,
            &c.reporting_currency,
            c.delta_cost_nanos,
            c.delta_reporting_cost_nanos,
        );
    }
    total.retain(|_, v| *v != (0, 0));
    total
}

#[test]
fn a_corrected_table_yields_the_exact_difference_and_a_second_pass_corrects_nothing() {
    let cfg = config();
    let old = mini_price(&cfg);
    let e = event(
        "mini",
        "oa",
        "openai",
        "gpt-4o-mini",
        usage(1_234, 567),
        Some((&old.price, &old.version)),
    );
    // 0.5 / 1.25 USD per million tokens = 500 / 1_250 nano-USD per token.
    let pricer = Pricer::new(
        &cfg,
        Some(one_row("openai", "gpt-4o-mini", "USD", "0.5", "1.25")),
    );
    let run = Run::now();
    let first = rows(assess(&e, &[], &pricer, run).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(first.len(), 1);
    let c = &first[0];
    let was: i64 = 1_234 * 1_000 + 567 * 2_000;
    let now: i64 = 1_234 * 500 + 567 * 1_250;
    assert_eq!(e.cost_nanos, was);
    assert_eq!(
        (c.delta_cost_nanos, c.delta_reporting_cost_nanos),
        (now - was, now - was)
    );
    assert_eq!(
        (c.currency.as_str(), c.reporting_currency.as_str()),
        ("USD", "USD")
    );
    assert_eq!(
        (c.old_price_version.as_str(), c.new_price_version.as_str()),
        ("config", "fix-1")
    );
    assert_eq!(
        (c.correction_id, c.event_id),
        (run.correction_id, e.event_id)
    );
    assert_eq!(c.attribution, e.attribution);

    let applied: Vec<_> = first.iter().map(Correction::applied).collect();
    assert_eq!(
        assess(&e, &applied, &pricer, Run::now()).ok(),
        Some(Verdict::Unchanged)
    );
    // Back to the config's price: the correction is taken back, naming the table it came from.
    let back = rows(
        assess(&e, &applied, &Pricer::new(&cfg, None), Run::now())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].delta_cost_nanos, was - now);
    assert_eq!(
        (
            back[0].old_price_version.as_str(),
            back[0].new_price_version.as_str()
        ),
        ("fix-1", "config")
    );
}

#[test]
fn without_a_table_the_config_prices_apply_in_the_gateway_order() {
    let cfg = config();
    let pricer = Pricer::new(&cfg, None);
    let mini = seed("openai", "gpt-4o-mini");
    // Recorded at the shipped price, but the deployment now has its own price (1 / 2 USD).
    let e = event(
        "mini",
        "oa",
        "openai",
        "gpt-4o-mini",
        usage(100, 10),
        Some((&mini, "old")),
    );
    let c = rows(assess(&e, &[], &pricer, Run::now()).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        c[0].delta_cost_nanos,
        (100 * 1_000 + 10 * 2_000) - e.cost_nanos
    );
    assert_eq!(c[0].new_price_version, "config");
    // A public model no longer in the config: the shipped table by provider kind and upstream id (prefix).
    let gone = event(
        "retired",
        "oa",
        "openai",
        "gpt-4o-mini-2024-07-18",
        usage(100, 10),
        Some((&mini, "old")),
    );
    let seed_version = PriceTable::seed().map(|t| t.version).unwrap_or_default();
    match assess(&gone, &[], &pricer, Run::now()) {
        Ok(Verdict::Corrected(_)) => panic!("same price: nothing to correct"),
        Ok(Verdict::Unchanged) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pricer.price(&gone).map(|(p, v)| (p.clone(), v.to_string())),
        Some((mini, seed_version))
    );
}

#[test]
fn unpriced_events_are_listed_never_corrected_and_empty_ones_ignored() {
    let cfg = config();
    let pricer = Pricer::new(&cfg, None);
    let llama = event("llama", "local", "vllm", "llama", usage(40, 2), None);
    assert_eq!(
        assess(&llama, &[], &pricer, Run::now()).ok(),
        Some(Verdict::Unpriced(Unpriced::NoPrice))
    );
    let nothing_used = event("llama", "local", "vllm", "llama", usage(0, 0), None);
    assert_eq!(
        assess(&nothing_used, &[], &pricer, Run::now()).ok(),
        Some(Verdict::Unchanged)
    );
    // A corrected table priced in a currency without a rate: listed with the reason.
    let eur = Pricer::new(&cfg, Some(one_row("vllm", "llama", "EUR", "1", "1")));
    assert_eq!(
        assess(&llama, &[], &eur, Run::now()).ok(),
        Some(Verdict::Unpriced(Unpriced::NoRate("EUR".into())))
    );

    let mut summary = Summary {
        correction_id: Uuid::now_v7(),
        dry_run: true,
        store: "test".into(),
        selection: Selection {
            from_ms: 0,
            to_ms: 1,
            tenant: None,
            model: None,
        },
        scanned: 0,
        corrected: 0,
        rows: 0,
        delta: BTreeMap::new(),
        delta_reporting: BTreeMap::new(),
        unpriced: BTreeMap::new(),
    };
    for e in [&llama, &nothing_used, &llama] {
        let v = assess(e, &[], &pricer, Run::now()).unwrap_or_else(|e| panic!("{e}"));
        summary.count(e, &v);
    }
    assert_eq!(
        (
            summary.scanned,
            summary.corrected,
            summary.unpriced_events()
        ),
        (3, 0, 2)
    );
    let text = summary.to_string();
    assert!(text.contains("vllm/llama (no price): 2 events"), "{text}");
    assert!(text.contains(&llama.event_id.to_string()), "{text}");
}

#[test]
fn cny_prices_convert_exactly_and_corrections_sum_to_the_new_cost() {
    let cfg = config();
    let qwen = seed("dashscope", "qwen-plus");
    assert_eq!(qwen.currency, "CNY");
    let pricer = Pricer::new(
        &cfg,
        Some(one_row("dashscope", "qwen-plus", "CNY", "0.4", "1.2")),
    );
    for (p, c) in [(1, 0), (3, 1), (12_345, 6_789), (7, 0)] {
        let e = event(
            "qwen",
            "ds",
            "dashscope",
            "qwen-plus",
            usage(p, c),
            Some((&qwen, "old")),
        );
        let new_cny = i128::from(p * 400 + c * 1_200);
        // 0.14 USD per CNY, rounded half up once on the event's total.
        let new_usd = (new_cny * 140_000_000 + 500_000_000) / 1_000_000_000;
        let r = rows(assess(&e, &[], &pricer, Run::now()).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].currency.as_str(), r[0].reporting_currency.as_str()),
            ("CNY", "USD")
        );
        let applied: Vec<_> = r.iter().map(Correction::applied).collect();
        let total = corrected_total(&e, &applied);
        assert_eq!(
            total.get(&("CNY".to_string(), "USD".to_string())),
            Some(&(new_cny, new_usd)),
            "{p}/{c}"
        );
        assert_eq!(total.len(), 1);
        assert_eq!(
            assess(&e, &applied, &pricer, Run::now()).ok(),
            Some(Verdict::Unchanged)
        );
    }
}

#[test]
fn a_change_of_currency_takes_back_the_old_amount_and_adds_the_new_one() {
    let cfg = config();
    let old = mini_price(&cfg);
    let e = event(
        "mini",
        "oa",
        "openai",
        "gpt-4o-mini",
        usage(1_000, 100),
        Some((&old.price, &old.version)),
    );
    let pricer = Pricer::new(
        &cfg,
        Some(one_row("openai", "gpt-4o-mini", "CNY", "7", "14")),
    );
    let r = rows(assess(&e, &[], &pricer, Run::now()).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(r.len(), 2);
    let applied: Vec<_> = r.iter().map(Correction::applied).collect();
    let total = corrected_total(&e, &applied);
    let cny = i128::from(1_000 * 7_000 + 100 * 14_000_u64);
    assert_eq!(
        total.into_iter().collect::<Vec<_>>(),
        vec![(
            ("CNY".to_string(), "USD".to_string()),
            (cny, cny * 14 / 100)
        )]
    );
    assert_eq!(
        assess(&e, &applied, &pricer, Run::now()).ok(),
        Some(Verdict::Unchanged)
    );
}

#[test]
fn a_new_rate_alone_corrects_only_the_reporting_cost() {
    let cfg = config();
    let qwen = seed("dashscope", "qwen-plus");
    let mut e = event(
        "qwen",
        "ds",
        "dashscope",
        "qwen-plus",
        usage(5_000, 500),
        Some((&qwen, "v")),
    );
    // Recorded when CNY was 0.15 USD.
    let cny = e.cost_nanos;
    e.reporting_cost_nanos = cny * 15 / 100;
    let r = rows(
        assess(&e, &[], &Pricer::new(&cfg, None), Run::now()).unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].delta_cost_nanos, r[0].delta_reporting_cost_nanos),
        (0, cny * 14 / 100 - cny * 15 / 100)
    );
}

#[test]
fn instants_are_rfc3339_or_epoch_milliseconds() {
    assert_eq!(parse_instant("1790000000123"), Ok(1_790_000_000_123));
    assert_eq!(parse_instant("1970-01-01T00:00:01.5Z"), Ok(1_500));
    assert_eq!(parse_instant("1970-01-01T08:00:00+08:00"), Ok(0));
    for bad in ["", "yesterday", "-5", "2026-13-01T00:00:00Z", "1.5"] {
        assert!(parse_instant(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_deployment_priced_as_another_model_id_is_repriced_by_that_id() {
    let cfg = config();
    let gpt4o = seed("openai", "gpt-4o");
    // The gateway priced the deployment name as gpt-4o.
    let named = cfg
        .models
        .iter()
        .find(|m| m.name == "named")
        .and_then(|m| m.tiers[0][0].price.clone())
        .unwrap_or_else(|| panic!("named is priced"));
    assert_eq!(named.price, gpt4o);
    let e = event(
        "named",
        "oa",
        "openai",
        "prod-deployment-7",
        usage(1_000, 100),
        Some((&gpt4o, "old")),
    );
    // A corrected gpt-4o row reaches it although no row names the deployment.
    let pricer = Pricer::new(&cfg, Some(one_row("openai", "gpt-4o", "USD", "1", "4")));
    let c = rows(assess(&e, &[], &pricer, Run::now()).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        c[0].delta_cost_nanos,
        (1_000 * 1_000 + 100 * 4_000) - e.cost_nanos
    );
    assert_eq!(c[0].new_price_version, "fix-1");
}
