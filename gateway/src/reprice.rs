//! Re-pricing (`tollgate reprice`): recompute the cost of stored usage events under a corrected price table
//! and record the difference as correction rows — no stored event is ever edited.
//!
//! An event's *recorded* cost is its own cost plus every correction already written for it, kept per
//! (currency, reporting currency). Its *target* cost is its usage vector priced now: the `--prices` table
//! when given (provider kind + upstream model: the exact id, else the longest entry it extends by a version
//! tag, as `PriceTable::lookup` says), else the gateway config's pricing (the deployment's own price,
//! `[[prices]]`, the shipped table), converted with the config's `[pricing]` rates. Where the two differ, one correction row per (currency, reporting currency) carries
//! `target − recorded` — so the sum of an event's cost and its corrections is always the target cost, and a
//! second run with the same prices finds nothing to correct. A price change within one currency is one
//! row; a change of currency is two (the old currency's amount taken back, the new one's added).
//!
//! Events with usage but no price (or no rate for their price's currency) are counted and listed, never
//! given a correction. Money is integer nano-units throughout.
//!
//! Backends: [`embedded`] (the gateway's SQLite store) and [`clickhouse`] (`usage_events` →
//! `cost_corrections`, whose materialized view feeds `cost_by_minute`). Both read events in pages ordered by
//! `event_id`, so a run that stops half-way can simply be run again.

pub mod clickhouse;
pub mod embedded;

use std::collections::BTreeMap;
use std::fmt;

use tollgate_schemas::price::{format_nanos, ExchangeRates, Price, PriceTable};
use tollgate_schemas::UsageVector;
use uuid::Uuid;

use crate::config::{Config, DeploymentPrice};
use crate::error::GatewayError;

/// Events read per page.
pub const PAGE_SIZE: usize = 5_000;

/// Unpriced events listed by id per (provider kind, upstream model) in a summary.
const UNPRICED_SAMPLE: usize = 5;

/// Which events a run looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Events that started at or after this instant (Unix epoch milliseconds)…
    pub from_ms: i64,
    /// …and strictly before this one.
    pub to_ms: i64,
    pub tenant: Option<String>,
    /// The public model name or the upstream model id.
    pub model: Option<String>,
}

/// Who an event (and so its correction) is attributed to: the columns the spend aggregates group by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attribution {
    pub tenant: String,
    pub team: String,
    pub key_id: String,
    /// Empty when none.
    pub end_user: String,
    /// Public model name.
    pub model: String,
    /// Configured provider name.
    pub provider: String,
}

/// One stored usage event, as much of it as re-pricing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub started_at_ms: i64,
    pub attribution: Attribution,
    pub provider_kind: String,
    pub upstream_model: String,
    pub usage: UsageVector,
    /// Its cost as first recorded.
    pub cost_nanos: i64,
    pub currency: String,
    pub reporting_cost_nanos: i64,
    pub reporting_currency: String,
    pub price_version: String,
}

/// A correction already in the store, as far as it matters for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCorrection {
    pub event_id: Uuid,
    pub currency: String,
    pub reporting_currency: String,
    pub delta_cost_nanos: i64,
    pub delta_reporting_cost_nanos: i64,
    pub new_price_version: String,
    pub created_at_ms: i64,
}

/// One correction row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// The run (UUIDv7).
    pub correction_id: Uuid,
    pub event_id: Uuid,
    pub started_at_ms: i64,
    pub attribution: Attribution,
    pub currency: String,
    pub reporting_currency: String,
    /// The version that priced the event so far (its own, or its latest correction's).
    pub old_price_version: String,
    pub new_price_version: String,
    pub delta_cost_nanos: i64,
    pub delta_reporting_cost_nanos: i64,
    pub created_at_ms: i64,
}

impl Correction {
    /// The row as it reads back from the store.
    #[must_use]
    pub fn applied(&self) -> AppliedCorrection {
        AppliedCorrection {
            event_id: self.event_id,
            currency: self.currency.clone(),
            reporting_currency: self.reporting_currency.clone(),
            delta_cost_nanos: self.delta_cost_nanos,
            delta_reporting_cost_nanos: self.delta_reporting_cost_nanos,
            new_price_version: self.new_price_version.clone(),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// The corrected prices: a `--prices` table first, then the config's pricing.
#[derive(Debug, Clone)]
pub struct Pricer {
    corrected: Option<PriceTable>,
    /// (public model, provider name, upstream model) → (provider kind, the deployment's resolved price).
    deployments: BTreeMap<(String, String, String), (String, DeploymentPrice)>,
    /// (public model, provider name, upstream model) → the model id its prices are looked up by (`price_as`).
    price_as: BTreeMap<(String, String, String), String>,
    overrides: PriceTable,
    table: PriceTable,
    rates: ExchangeRates,
}

impl Pricer {
    /// Prices from `config`, with `corrected` (a table in the shipped format) taking precedence.
    #[must_use]
    pub fn new(config: &Config, corrected: Option<PriceTable>) -> Self {
        let kinds: BTreeMap<&str, &str> = config
            .providers
            .iter()
            .map(|p| (p.name.as_str(), p.kind.name()))
            .collect();
        let mut deployments = BTreeMap::new();
        let mut price_as = BTreeMap::new();
        for m in &config.models {
            for d in m.tiers.iter().flatten() {
                if let Some(as_model) = &d.price_as {
                    price_as
                        .entry((m.name.clone(), d.provider.clone(), d.model.clone()))
                        .or_insert_with(|| as_model.clone());
                }
                let (Some(price), Some(kind)) = (&d.price, kinds.get(d.provider.as_str())) else {
                    continue;
                };
                deployments
                    .entry((m.name.clone(), d.provider.clone(), d.model.clone()))
                    .or_insert_with(|| ((*kind).to_string(), price.clone()));
            }
        }
        Self {
            corrected,
            deployments,
            price_as,
            overrides: config.pricing.overrides.clone(),
            table: config.pricing.table.clone(),
            rates: config.pricing.rates.clone(),
        }
    }

    /// The rates into the reporting currency.
    #[must_use]
    pub fn rates(&self) -> &ExchangeRates {
        &self.rates
    }

    /// The price of an event's deployment now, and the version to record (looked up by the deployment's
    /// `price_as` model id when it has one): the corrected table's entry; else
    /// the configured deployment's price (same public model, provider and kind); else a `[[prices]]` row;
    /// else the shipped table.
    #[must_use]
    pub fn price(&self, event: &StoredEvent) -> Option<(&Price, &str)> {
        let key = (
            event.attribution.model.clone(),
            event.attribution.provider.clone(),
            event.upstream_model.clone(),
        );
        // A deployment configured with `price_as` is looked up by that model id.
        let model = self
            .price_as
            .get(&key)
            .map_or(event.upstream_model.as_str(), String::as_str);
        let kind = event.provider_kind.as_str();
        if let Some(t) = &self.corrected {
            if let Some(p) = t.lookup(kind, model) {
                return Some((p, &t.version));
            }
        }
        if let Some((k, d)) = self.deployments.get(&key) {
            if k == kind {
                return Some((&d.price, &d.version));
            }
        }
        if let Some(p) = self.overrides.lookup(kind, model) {
            return Some((p, &self.overrides.version));
        }
        self.table
            .lookup(kind, model)
            .map(|p| (p, self.table.version.as_str()))
    }
}

/// Why an event with usage got no correction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unpriced {
    /// Neither the corrected table nor the config prices its model.
    NoPrice,
    /// Its price is in a currency `[pricing.rates]` cannot convert.
    NoRate(String),
}

impl fmt::Display for Unpriced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unpriced::NoPrice => f.write_str("no price"),
            Unpriced::NoRate(c) => write!(f, "priced in {c}, no rate for it in [pricing.rates]"),
        }
    }
}

/// What re-pricing decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Recorded cost and corrections already equal the cost at the current prices.
    Unchanged,
    /// These rows make them equal.
    Corrected(Vec<Correction>),
    Unpriced(Unpriced),
}

/// One run's identity, stamped on every row it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub correction_id: Uuid,
    pub created_at_ms: i64,
}

impl Run {
    /// A new run id (UUIDv7) at the current time.
    #[must_use]
    pub fn now() -> Self {
        let created_at_ms = crate::clock::now_ms();
        Self {
            correction_id: Uuid::now_v7(),
            created_at_ms,
        }
    }
}

/// Nano-units per (currency, reporting currency): (in the currency, in the reporting currency).
type Amounts = BTreeMap<(String, String), (i128, i128)>;

/// Compares `event`'s recorded cost (plus `applied`, its corrections so far) with its cost at `pricer`'s
/// prices.
///
/// # Errors
/// [`GatewayError::Internal`] if a delta does not fit an `i64` (no real cost comes near).
pub fn assess(
    event: &StoredEvent,
    applied: &[AppliedCorrection],
    pricer: &Pricer,
    run: Run,
) -> Result<Verdict, GatewayError> {
    let mut recorded = Amounts::new();
    let mut add = |currency: &str, reporting: &str, nanos: i64, reporting_nanos: i64| {
        let e = recorded
            .entry((currency.to_string(), reporting.to_string()))
            .or_insert((0, 0));
        e.0 += i128::from(nanos);
        e.1 += i128::from(reporting_nanos);
    };
    add(
        &event.currency,
        &event.reporting_currency,
        event.cost_nanos,
        event.reporting_cost_nanos,
    );
    let mut old_version = (i64::MIN, event.price_version.as_str());
    for c in applied.iter().filter(|c| c.event_id == event.event_id) {
        add(
            &c.currency,
            &c.reporting_currency,
            c.delta_cost_nanos,
            c.delta_reporting_cost_nanos,
        );
        if c.created_at_ms >= old_version.0 {
            old_version = (c.created_at_ms, c.new_price_version.as_str());
        }
    }

    let mut target = Amounts::new();
    let mut new_version = old_version.1;
    // Nothing used costs nothing, priced or not (as when the gateway priced it).
    if event.usage.total_tokens() > 0 {
        let Some((price, version)) = pricer.price(event) else {
            return Ok(Verdict::Unpriced(Unpriced::NoPrice));
        };
        let nanos = price.cost_nanos(&event.usage);
        let Some(reporting) = pricer.rates.to_reporting(nanos, &price.currency) else {
            return Ok(Verdict::Unpriced(Unpriced::NoRate(price.currency.clone())));
        };
        target.insert(
            (price.currency.clone(), pricer.rates.reporting.clone()),
            (i128::from(nanos), i128::from(reporting)),
        );
        new_version = version;
    }

    let mut keys: Vec<&(String, String)> = recorded.keys().chain(target.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    for key in keys {
        let (was, was_reporting) = recorded.get(key).copied().unwrap_or((0, 0));
        let (now, now_reporting) = target.get(key).copied().unwrap_or((0, 0));
        if (was, was_reporting) == (now, now_reporting) {
            continue;
        }
        let delta = |d: i128| {
            i64::try_from(d).map_err(|_| {
                GatewayError::Internal(format!(
                    "cost correction of event {} out of range: {d} nano-units",
                    event.event_id
                ))
            })
        };
        rows.push(Correction {
            correction_id: run.correction_id,
            event_id: event.event_id,
            started_at_ms: event.started_at_ms,
            attribution: event.attribution.clone(),
            currency: key.0.clone(),
            reporting_currency: key.1.clone(),
            old_price_version: old_version.1.to_string(),
            new_price_version: new_version.to_string(),
            delta_cost_nanos: delta(now - was)?,
            delta_reporting_cost_nanos: delta(now_reporting - was_reporting)?,
            created_at_ms: run.created_at_ms,
        });
    }
    Ok(if rows.is_empty() {
        Verdict::Unchanged
    } else {
        Verdict::Corrected(rows)
    })
}

/// Unpriced events of one (provider kind, upstream model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpricedModel {
    pub events: u64,
    /// The first few event ids.
    pub sample: Vec<Uuid>,
}

/// What a run found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub correction_id: Uuid,
    pub dry_run: bool,
    /// Where the events were read (and corrections written).
    pub store: String,
    pub selection: Selection,
    pub scanned: u64,
    /// Events that got at least one correction row.
    pub corrected: u64,
    pub rows: u64,
    /// Net correction per currency of the prices (nano-units).
    pub delta: BTreeMap<String, i128>,
    /// Net correction per reporting currency (nano-units).
    pub delta_reporting: BTreeMap<String, i128>,
    /// Per (provider kind, upstream model, reason).
    pub unpriced: BTreeMap<(String, String, Unpriced), UnpricedModel>,
}

impl Summary {
    /// Unpriced events in all.
    #[must_use]
    pub fn unpriced_events(&self) -> u64 {
        self.unpriced.values().map(|u| u.events).sum()
    }

    fn count(&mut self, event: &StoredEvent, verdict: &Verdict) {
        self.scanned += 1;
        match verdict {
            Verdict::Unchanged => {}
            Verdict::Corrected(rows) => {
                self.corrected += 1;
                self.rows += rows.len() as u64;
                for r in rows {
                    *self.delta.entry(r.currency.clone()).or_default() +=
                        i128::from(r.delta_cost_nanos);
                    *self
                        .delta_reporting
                        .entry(r.reporting_currency.clone())
                        .or_default() += i128::from(r.delta_reporting_cost_nanos);
                }
            }
            Verdict::Unpriced(why) => {
                let u = self
                    .unpriced
                    .entry((
                        event.provider_kind.clone(),
                        event.upstream_model.clone(),
                        why.clone(),
                    ))
                    .or_default();
                u.events += 1;
                if u.sample.len() < UNPRICED_SAMPLE {
                    u.sample.push(event.event_id);
                }
            }
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
        };
        writeln!(
            f,
            "re-pricing run {}{}",
            self.correction_id,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        writeln!(f, "store:            {}", self.store)?;
        let mut range = format!(
            "[{}, {})",
            at(self.selection.from_ms),
            at(self.selection.to_ms)
        );
        if let Some(t) = &self.selection.tenant {
            range.push_str(&format!(", tenant {t}"));
        }
        if let Some(m) = &self.selection.model {
            range.push_str(&format!(", model {m}"));
        }
        writeln!(f, "events started:   {range}")?;
        writeln!(f, "events scanned:   {}", self.scanned)?;
        writeln!(
            f,
            "events corrected: {} ({} correction rows{})",
            self.corrected,
            self.rows,
            if self.dry_run { " not written" } else { "" }
        )?;
        for (currency, nanos) in &self.delta {
            writeln!(f, "delta {currency}:        {}", format_nanos(*nanos))?;
        }
        for (currency, nanos) in &self.delta_reporting {
            writeln!(f, "delta reporting {currency}: {}", format_nanos(*nanos))?;
        }
        writeln!(
            f,
            "unpriced events:  {} (no correction recorded)",
            self.unpriced_events()
        )?;
        for ((kind, model, why), u) in &self.unpriced {
            let ids: Vec<String> = u.sample.iter().map(Uuid::to_string).collect();
            writeln!(
                f,
                "  {kind}/{model} ({why}): {} events, e.g. {}",
                u.events,
                ids.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Where events are read and corrections written.
pub enum Store {
    Embedded(embedded::EmbeddedStore),
    ClickHouse(Box<clickhouse::ClickHouseStore>),
}

impl Store {
    /// ClickHouse when `clickhouse` is given, else the config's embedded store.
    ///
    /// # Errors
    /// When the embedded store does not exist or cannot be opened.
    pub fn open(
        config: &Config,
        clickhouse: Option<&clickhouse::ClickHouseTarget>,
    ) -> Result<Self, GatewayError> {
        Ok(match clickhouse {
            Some(target) => Store::ClickHouse(Box::new(clickhouse::ClickHouseStore::new(target))),
            None => Store::Embedded(embedded::EmbeddedStore::open(&config.store.path)?),
        })
    }

    fn describe(&self) -> String {
        match self {
            Store::Embedded(s) => s.describe(),
            Store::ClickHouse(s) => s.describe(),
        }
    }

    async fn events(
        &mut self,
        selection: &Selection,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, GatewayError> {
        match self {
            Store::Embedded(s) => s.events(selection, after, limit),
            Store::ClickHouse(s) => s.events(selection, after, limit).await,
        }
    }

    async fn corrections(
        &mut self,
        selection: &Selection,
        events: &[StoredEvent],
    ) -> Result<Vec<AppliedCorrection>, GatewayError> {
        match self {
            Store::Embedded(s) => s.corrections(events),
            Store::ClickHouse(s) => s.corrections(selection, events).await,
        }
    }

    async fn record(&mut self, rows: &[Correction]) -> Result<(), GatewayError> {
        match self {
            Store::Embedded(s) => s.record(rows),
            Store::ClickHouse(s) => s.record(rows).await,
        }
    }
}

/// Re-prices every selected event in `store` at `pricer`'s prices, writing the corrections (one insert per
/// page) unless `dry_run`.
///
/// # Errors
/// When the store cannot be read or written; pages written before the failure stay written, and running
/// again completes the job without doubling anything.
pub async fn run(
    store: &mut Store,
    pricer: &Pricer,
    selection: &Selection,
    dry_run: bool,
    page_size: usize,
) -> Result<Summary, GatewayError> {
    let run = Run::now();
    let mut summary = Summary {
        correction_id: run.correction_id,
        dry_run,
        store: store.describe(),
        selection: selection.clone(),
        scanned: 0,
        corrected: 0,
        rows: 0,
        delta: BTreeMap::new(),
        delta_reporting: BTreeMap::new(),
        unpriced: BTreeMap::new(),
    };
    let page_size = page_size.max(1);
    let mut after = None;
    loop {
        let mut events = store.events(selection, after, page_size).await?;
        let fetched = events.len();
        // A raw row stored twice (never expected: the consumer dedupes) is still one event to price.
        events.dedup_by_key(|e| e.event_id);
        let Some(last) = events.last() else { break };
        after = Some(last.event_id);
        let mut applied: BTreeMap<Uuid, Vec<AppliedCorrection>> = BTreeMap::new();
        for c in store.corrections(selection, &events).await? {
            applied.entry(c.event_id).or_default().push(c);
        }
        let mut rows = Vec::new();
        for e in &events {
            let prior = applied.get(&e.event_id).map_or(&[][..], Vec::as_slice);
            let verdict = assess(e, prior, pricer, run)?;
            summary.count(e, &verdict);
            if let Verdict::Corrected(r) = verdict {
                rows.extend(r);
            }
        }
        if !dry_run && !rows.is_empty() {
            store.record(&rows).await?;
        }
        if fetched < page_size {
            break;
        }
    }
    Ok(summary)
}

/// `--from` / `--to`: RFC 3339 (`2026-11-01T00:00:00Z`) or Unix epoch milliseconds.
///
/// # Errors
/// A message naming the value.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|e| format!("{text:?} is not epoch milliseconds: {e}"));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!(
                "{text:?} is neither RFC 3339 (2026-11-01T00:00:00Z) nor epoch milliseconds: {e}"
            )
        })
}

#[cfg(test)]
mod tests;
