//! Budgets per tenant / team / key / end user / tag, with a stated overspend bound.
//!
//! Before a request goes upstream its **worst-case cost** is reserved on every budget that applies to it
//! ([`Budgets::reserve`]): prompt tokens bounded from above by the body's byte count (a token is at least one
//! byte of text), plus its output cap (the client's `max_tokens`, else the configured default, which the
//! gateway then sends upstream), each at the highest price of any deployment the request may be routed to.
//! When the exchange ends the actual cost replaces the reservation ([`BudgetHold::settle`]). A hard budget
//! admits a request only if `spent + reserved + worst case ≤ limit`; so the spend recorded for a period can
//! pass its limit only by what requests in flight cost beyond their reservation — see README "Budgets".
//!
//! - [`period`] — calendar windows (daily, weekly, monthly, total) in a configured time zone.
//! - [`ledger`] — one subject's books for its current window.
//! - [`alerts`] — threshold webhooks, HMAC-signed, retried with backoff, once per threshold per period.
//! - [`lease`] — with several replicas (Kafka): hard budgets are spent only out of leases granted by the
//!   budget owner in `tollgate-metering` (its ClickHouse baseline plus every lease), asked for over the
//!   budget-requests topic and answered on the budget-decisions topic.
//!
//! In embedded mode this module is the owner: the books live in-process and are recovered from the usage
//! store at start. Soft budgets, and every budget in embedded mode, use those in-process books.

pub mod alerts;
pub mod lease;
pub mod ledger;
pub mod period;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono_tz::Tz;
use tollgate_schemas::price::format_nanos;

use crate::clock::now_ms;
use crate::error::GatewayError;

/// Lease requests one reservation may make when concurrent requests of this replica take the grants first.
const LEASE_ASKS: usize = 3;
pub use ledger::Ledger;
pub use period::Period;

/// Who a budget is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Tenant(String),
    Team(String),
    Key(String),
    /// One end user, or (`None`) every end user separately (a per-end-user cap).
    EndUser(Option<String>),
    /// Requests carrying tag `key` = `value`.
    Tag(String, String),
}

impl Subject {
    /// `tenant:acme`, `team:search`, `key:ci`, `end_user:alice`, `end_user:*`, `tag:feature=summarize`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, value) = s.split_once(':')?;
        if value.is_empty() {
            return None;
        }
        Some(match kind {
            "tenant" => Self::Tenant(value.into()),
            "team" => Self::Team(value.into()),
            "key" => Self::Key(value.into()),
            "end_user" if value == "*" => Self::EndUser(None),
            "end_user" => Self::EndUser(Some(value.into())),
            "tag" => {
                let (k, v) = value.split_once('=')?;
                Self::Tag(k.into(), v.into())
            }
            _ => return None,
        })
    }

    /// The subject value this request is charged under, or `None` when the budget does not apply to it.
    #[must_use]
    pub fn applies_to(&self, who: &Charged<'_>) -> Option<String> {
        match self {
            Self::Tenant(t) => (t == who.tenant).then(|| t.clone()),
            Self::Team(t) => (t == who.team).then(|| t.clone()),
            Self::Key(k) => (k == who.key).then(|| k.clone()),
            Self::EndUser(Some(u)) => (Some(u.as_str()) == who.end_user).then(|| u.clone()),
            Self::EndUser(None) => who.end_user.map(str::to_string),
            Self::Tag(k, v) => (who.tags.get(k) == Some(v)).then(|| format!("{k}={v}")),
        }
    }

    /// `tenant`, `team`, `key`, `end_user`, `tag`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tenant(_) => "tenant",
            Self::Team(_) => "team",
            Self::Key(_) => "key",
            Self::EndUser(_) => "end_user",
            Self::Tag(..) => "tag",
        }
    }
}

impl std::fmt::Display for Subject {
    /// The text [`Subject::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tenant(v) => write!(f, "tenant:{v}"),
            Self::Team(v) => write!(f, "team:{v}"),
            Self::Key(v) => write!(f, "key:{v}"),
            Self::EndUser(Some(v)) => write!(f, "end_user:{v}"),
            Self::EndUser(None) => write!(f, "end_user:*"),
            Self::Tag(k, v) => write!(f, "tag:{k}={v}"),
        }
    }
}

/// One configured budget.
#[derive(Debug, Clone)]
pub struct BudgetSpec {
    pub id: String,
    pub subject: Subject,
    pub period: Period,
    /// Nano-units of the reporting currency.
    pub limit: u64,
    /// Hard budgets refuse; soft ones only alert.
    pub hard: bool,
    /// Alert thresholds in percent of the limit.
    pub alert_at: Vec<u8>,
}

/// Budget settings shared by every budget.
#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub timezone: Tz,
    /// Output cap reserved (and sent upstream) for a request that sets none.
    pub default_max_tokens: u32,
    pub currency: String,
}

/// Who a request is charged to.
#[derive(Debug, Clone, Copy)]
pub struct Charged<'a> {
    pub tenant: &'a str,
    pub team: &'a str,
    pub key: &'a str,
    pub end_user: Option<&'a str>,
    pub tags: &'a BTreeMap<String, String>,
}

/// `(budget id, subject, spent, reserved, window [start, end) in epoch ms)`.
pub type LedgerView = (String, String, u64, u64, (i64, i64));

/// Spend already recorded for a budget subject in its current period, recovered at start.
pub type RecoveredSpend = HashMap<(String, String), u64>;

/// Every budget's books: the config file's budgets plus those set through the admin API (control events).
pub struct Budgets {
    /// Swapped whole on every change, so the request path reads it without a lock.
    specs: ArcSwap<Vec<Arc<BudgetSpec>>>,
    /// Ids declared in the config file: the admin API cannot change them.
    configured: Vec<String>,
    settings: BudgetSettings,
    ledgers: Mutex<HashMap<(String, String), Arc<Ledger>>>,
    recovered: Mutex<RecoveredSpend>,
    alerts: Option<alerts::AlertSender>,
    /// With several replicas (Kafka): hard budgets are spent only out of leases from the budget owner.
    cluster: Option<Arc<lease::LeaseClient>>,
    leases: Mutex<HashMap<(String, String), Arc<lease::Leases>>>,
    /// Added to the wall clock for periods (0 in production; tests move it to cross a period boundary).
    clock_shift_ms: std::sync::atomic::AtomicI64,
}

/// Reservations one request holds; settled with the actual cost when its exchange ends.
pub struct BudgetHold {
    holds: Vec<(Arc<Ledger>, ledger::Hold, Arc<BudgetSpec>, String)>,
    /// Reservations on cluster leases: (the subject's leases, lease id, amount reserved).
    leased: Vec<(Arc<lease::Leases>, uuid::Uuid, u64)>,
    budgets: Arc<Budgets>,
    settled: bool,
}

impl Budgets {
    /// Books for `specs`, starting from `recovered` spend (by budget id and subject value).
    #[must_use]
    pub fn new(
        specs: Vec<BudgetSpec>,
        settings: BudgetSettings,
        recovered: RecoveredSpend,
        alerts: Option<alerts::AlertSender>,
    ) -> Self {
        Self {
            configured: specs.iter().map(|s| s.id.clone()).collect(),
            specs: ArcSwap::from_pointee(specs.into_iter().map(Arc::new).collect()),
            settings,
            ledgers: Mutex::new(HashMap::new()),
            recovered: Mutex::new(recovered),
            alerts,
            cluster: None,
            leases: Mutex::new(HashMap::new()),
            clock_shift_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The budget clock: the wall clock, plus any shift set by [`Budgets::shift_clock`].
    fn now(&self) -> i64 {
        now_ms().saturating_add(
            self.clock_shift_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Moves the budget clock by `ms` (tests use it to cross a period boundary without waiting for one).
    #[doc(hidden)]
    pub fn shift_clock(&self, ms: i64) {
        self.clock_shift_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Spends hard budgets only out of leases from the budget owner (several replicas). Starts the task that
    /// gives expired leases back.
    #[must_use]
    pub fn with_cluster(mut self, client: Arc<lease::LeaseClient>) -> Self {
        self.cluster = Some(client);
        self
    }

    /// Gives back expired leases with nothing in flight (run every `every`; needs a tokio runtime).
    pub fn start_returning(self: &Arc<Self>, every: Duration) {
        let Some(client) = self.cluster.clone() else {
            return;
        };
        let budgets = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = budgets.upgrade() else { return };
                // Lease expiry is wall-clock time (the owner's).
                let now = now_ms();
                let all: Vec<((String, String), Arc<lease::Leases>)> = b
                    .leases
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for ((budget_id, subject), leases) in all {
                    for (id, window_start, settled) in leases.closed(now) {
                        let scope = tollgate_schemas::lease::LeaseScope {
                            budget_id: budget_id.clone(),
                            subject: subject.clone(),
                            window_start_ms: window_start,
                        };
                        client.give_back(id, scope, settled).await;
                    }
                }
            }
        });
    }

    fn leases_of(&self, id: &str, subject: &str) -> Arc<lease::Leases> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((id.to_string(), subject.to_string()))
            .or_default()
            .clone()
    }

    /// Reserves `worst_case` on a lease of `spec`/`subject`, asking the owner for more when none has room.
    async fn reserve_leased(
        &self,
        client: &lease::LeaseClient,
        spec: &BudgetSpec,
        subject: &str,
        worst_case: u64,
    ) -> Result<(Arc<lease::Leases>, uuid::Uuid), GatewayError> {
        let now = self.now();
        let (start, end) = spec.period.window(now, self.settings.timezone);
        let leases = self.leases_of(&spec.id, subject);
        if let Some(id) = leases.try_reserve(worst_case, start, now_ms()) {
            return Ok((leases, id));
        }
        let scope = tollgate_schemas::lease::LeaseScope {
            budget_id: spec.id.clone(),
            subject: subject.to_string(),
            window_start_ms: start,
        };
        let ask = worst_case.saturating_mul(lease::LEASE_REQUESTS).max(1);
        let currency = &self.settings.currency;
        // A grant big enough for this request can still be taken by concurrent requests of this replica
        // before this one reserves on it: ask again (a few times) rather than refuse with room left.
        let unavailable = |retry_after: Duration| GatewayError::BudgetOwnerUnavailable {
            subject: format!("{} {subject}", spec.subject.kind()),
            period: spec.period.as_str().into(),
            retry_after,
        };
        for _ in 0..LEASE_ASKS {
            // No answer in time: the owner is down or overloaded; lease requests take well under a second.
            let Some(decision) = client.request(&scope, end, ask).await else {
                return Err(unavailable(Duration::from_secs(1)));
            };
            if let Some(ms) = decision.unavailable_for_ms {
                return Err(unavailable(Duration::from_millis(ms)));
            }
            // Even a grant too small for this request is capacity for smaller ones.
            leases.add(&decision);
            if let Some(id) = leases.try_reserve(worst_case, start, now_ms()) {
                return Ok((leases, id));
            }
            if decision.granted < worst_case {
                return Err(GatewayError::BudgetExceeded {
                    subject: format!("{} {subject}", spec.subject.kind()),
                    period: spec.period.as_str().into(),
                    limit: format!("{} {currency}", format_nanos(i128::from(spec.limit))),
                    detail: format!(
                        "{} {currency} of the limit is committed across replicas, and this request may \
                         cost up to {} {currency}",
                        format_nanos(i128::from(decision.committed)),
                        format_nanos(i128::from(worst_case))
                    ),
                    retry_after: (end != i64::MAX).then(|| {
                        Duration::from_millis(u64::try_from(end.saturating_sub(now)).unwrap_or(0))
                    }),
                });
            }
        }
        // Every grant was taken by this replica's concurrent requests before this one reserved.
        Err(unavailable(Duration::from_secs(1)))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.specs.load().is_empty()
    }

    /// Whether `id` is declared in the config file.
    #[must_use]
    pub fn is_configured(&self, id: &str) -> bool {
        self.configured.iter().any(|c| c == id)
    }

    /// Adds or changes a budget set through the admin API. A changed limit or thresholds keep the books; a
    /// changed subject or period starts new books (from `recovered` spend for the new subject values).
    /// Config-declared budgets are never replaced.
    pub fn set(&self, spec: BudgetSpec, recovered: RecoveredSpend) {
        if self.is_configured(&spec.id) {
            return;
        }
        let mut ledgers = self
            .ledgers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.specs.load_full();
        let old = current.iter().find(|s| s.id == spec.id).cloned();
        match &old {
            Some(o) if o.subject == spec.subject && o.period == spec.period => {
                for ((id, _), l) in ledgers.iter() {
                    if *id == spec.id {
                        l.update(spec.limit, spec.alert_at.clone());
                    }
                }
            }
            _ => ledgers.retain(|(id, _), _| *id != spec.id),
        }
        self.recovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(recovered);
        let mut next: Vec<Arc<BudgetSpec>> = current
            .iter()
            .filter(|s| s.id != spec.id)
            .cloned()
            .collect();
        next.push(Arc::new(spec));
        self.specs.store(Arc::new(next));
    }

    /// Removes a budget set through the admin API; false when there is none by that id.
    pub fn delete(&self, id: &str) -> bool {
        if self.is_configured(id) {
            return false;
        }
        let mut ledgers = self
            .ledgers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.specs.load_full();
        if !current.iter().any(|s| s.id == id) {
            return false;
        }
        ledgers.retain(|(lid, _), _| lid != id);
        self.specs.store(Arc::new(
            current.iter().filter(|s| s.id != id).cloned().collect(),
        ));
        true
    }

    /// Replaces the spend recovered at start (after the control log was replayed, so it covers every budget).
    pub fn set_recovered(&self, recovered: RecoveredSpend) {
        *self
            .recovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = recovered;
    }

    #[must_use]
    pub fn settings(&self) -> &BudgetSettings {
        &self.settings
    }

    /// Every budget now.
    #[must_use]
    pub fn specs(&self) -> Vec<Arc<BudgetSpec>> {
        self.specs.load_full().as_ref().clone()
    }

    /// Whether any budget applies to this caller (then the request's output cap must be finite).
    #[must_use]
    pub fn applies(&self, who: &Charged<'_>) -> bool {
        self.specs
            .load()
            .iter()
            .any(|s| s.subject.applies_to(who).is_some())
    }

    fn ledger(&self, spec: &BudgetSpec, subject: &str, now_ms: i64) -> Arc<Ledger> {
        let mut map = self
            .ledgers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((spec.id.clone(), subject.to_string()))
            .or_insert_with(|| {
                let spent = self
                    .recovered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&(spec.id.clone(), subject.to_string()))
                    .copied()
                    .unwrap_or(0);
                Arc::new(Ledger::new(
                    spec.limit,
                    spec.period,
                    self.settings.timezone,
                    spec.alert_at.clone(),
                    now_ms,
                    spent,
                ))
            })
            .clone()
    }

    /// Reserves `worst_case` (reporting nano-units) on every budget that applies; all or nothing.
    ///
    /// # Errors
    /// [`GatewayError::BudgetExceeded`] naming the first hard budget without room.
    pub async fn reserve(
        self: &Arc<Self>,
        who: &Charged<'_>,
        worst_case: u64,
    ) -> Result<BudgetHold, GatewayError> {
        let now = self.now();
        let mut hold = BudgetHold {
            holds: Vec::new(),
            leased: Vec::new(),
            budgets: Arc::clone(self),
            settled: false,
        };
        let specs = self.specs.load_full();
        for spec in specs.iter() {
            let Some(subject) = spec.subject.applies_to(who) else {
                continue;
            };
            if let (Some(client), true) = (&self.cluster, spec.hard) {
                match self
                    .reserve_leased(client, spec, &subject, worst_case)
                    .await
                {
                    Ok((leases, id)) => {
                        hold.leased.push((leases, id, worst_case));
                        continue;
                    }
                    Err(e) => {
                        hold.release();
                        return Err(e);
                    }
                }
            }
            let ledger = self.ledger(spec, &subject, now);
            match ledger.reserve(worst_case, spec.hard, now) {
                Ok(h) => hold.holds.push((ledger, h, spec.clone(), subject)),
                Err(refusal) => {
                    // `hold` drops here and releases what it took, untouched by this request.
                    hold.release();
                    let currency = &self.settings.currency;
                    return Err(GatewayError::BudgetExceeded {
                        subject: format!("{} {subject}", spec.subject.kind()),
                        period: spec.period.as_str().into(),
                        limit: format!("{} {currency}", format_nanos(i128::from(spec.limit))),
                        detail: format!(
                            "spent {} {currency}, {} {currency} held by requests in flight, and this request \
                             may cost up to {} {currency}",
                            format_nanos(i128::from(refusal.spent)),
                            format_nanos(i128::from(refusal.reserved)),
                            format_nanos(i128::from(worst_case)),
                        ),
                        retry_after: (refusal.window_end != i64::MAX).then(|| {
                            Duration::from_millis(
                                u64::try_from(refusal.window_end.saturating_sub(now)).unwrap_or(0),
                            )
                        }),
                    });
                }
            }
        }
        Ok(hold)
    }

    /// Every ledger in use, sorted by budget and subject (for tests and operators).
    #[must_use]
    pub fn snapshot(&self) -> Vec<LedgerView> {
        let now = self.now();
        let map = self
            .ledgers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<_> = map
            .iter()
            .map(|((id, subject), l)| {
                let (spent, reserved, window) = l.snapshot(now);
                (id.clone(), subject.clone(), spent, reserved, window)
            })
            .collect();
        out.sort();
        out
    }
}

impl BudgetHold {
    /// Whether any budget applied.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty() && self.leased.is_empty()
    }

    /// The reservation taken on each budget (the same worst case on all).
    #[must_use]
    pub fn reserved(&self) -> u64 {
        self.holds
            .first()
            .map(|(_, h, ..)| h.amount)
            .or_else(|| self.leased.first().map(|(.., amount)| *amount))
            .unwrap_or(0)
    }

    /// The cluster leases the reservations were taken from (recorded on the usage event).
    #[must_use]
    pub fn leases(&self) -> Vec<uuid::Uuid> {
        self.leased.iter().map(|(_, id, _)| *id).collect()
    }

    /// Replaces every reservation with `actual` (reporting nano-units) and fires alerts for thresholds crossed.
    pub fn settle(mut self, actual: u64) {
        self.settle_with(actual);
    }

    fn settle_with(&mut self, actual: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        let now = self.budgets.now();
        for (leases, id, reserved) in self.leased.drain(..) {
            leases.settle(id, reserved, actual);
        }
        for (ledger, hold, spec, subject) in self.holds.drain(..) {
            let crossed = ledger.settle(hold, actual, now);
            if crossed.is_empty() {
                continue;
            }
            if let Some(alerts) = &self.budgets.alerts {
                let (spent, _, window) = ledger.snapshot(now);
                for threshold in crossed {
                    alerts.send(alerts::Alert {
                        budget_id: spec.id.clone(),
                        subject_kind: spec.subject.kind().into(),
                        subject: subject.clone(),
                        period: spec.period.as_str().into(),
                        period_start_ms: window.0,
                        threshold_percent: threshold,
                        spent: format_nanos(i128::from(spent)),
                        limit: format_nanos(i128::from(ledger.limit())),
                        currency: self.budgets.settings.currency.clone(),
                        hard: spec.hard,
                    });
                }
            }
        }
    }

    /// Gives every reservation back unspent (the request was refused before it cost anything).
    fn release(&mut self) {
        self.settle_with(0);
    }
}

impl Drop for BudgetHold {
    /// A hold dropped unsettled keeps its whole reservation as spent: never optimistic.
    fn drop(&mut self) {
        if !self.settled {
            let reserved = self.reserved();
            self.settle_with(reserved);
        }
    }
}

/// Spend per (budget id, subject value) in each budget's current period, from stored events.
#[must_use]
pub fn recover(
    specs: &[BudgetSpec],
    tz: Tz,
    rows: &[crate::events::embedded::SpendRow],
) -> RecoveredSpend {
    let now = now_ms();
    let mut spent = RecoveredSpend::new();
    for spec in specs {
        let (start, end) = spec.period.window(now, tz);
        for row in rows
            .iter()
            .filter(|r| r.started_at_ms >= start && r.started_at_ms < end)
        {
            let who = Charged {
                tenant: &row.tenant,
                team: &row.team,
                key: &row.key_id,
                end_user: row.end_user.as_deref(),
                tags: &row.tags,
            };
            if let Some(subject) = spec.subject.applies_to(&who) {
                let e = spent.entry((spec.id.clone(), subject)).or_insert(0);
                *e = e.saturating_add(row.reporting_cost_nanos);
            }
        }
    }
    spent
}

/// The earliest period start of any budget now (what recovery must read from).
#[must_use]
pub fn earliest_window_start(specs: &[BudgetSpec], tz: Tz) -> i64 {
    let now = now_ms();
    specs
        .iter()
        .map(|s| s.period.window(now, tz).0)
        .min()
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(specs: Vec<BudgetSpec>) -> Arc<Budgets> {
        Arc::new(Budgets::new(
            specs,
            BudgetSettings {
                timezone: chrono_tz::UTC,
                default_max_tokens: 1024,
                currency: "USD".into(),
            },
            HashMap::new(),
            None,
        ))
    }

    fn spec(id: &str, subject: &str, limit: u64, hard: bool) -> BudgetSpec {
        BudgetSpec {
            id: id.into(),
            subject: Subject::parse(subject).unwrap(),
            period: Period::Daily,
            limit,
            hard,
            alert_at: vec![],
        }
    }

    #[test]
    fn subjects_parse_and_match_their_requests() {
        let tags: BTreeMap<String, String> = [("feature".to_string(), "sum".to_string())].into();
        let who = Charged {
            tenant: "acme",
            team: "search",
            key: "ci",
            end_user: Some("alice"),
            tags: &tags,
        };
        for (s, expected) in [
            ("tenant:acme", Some("acme")),
            ("tenant:globex", None),
            ("team:search", Some("search")),
            ("key:ci", Some("ci")),
            ("end_user:*", Some("alice")),
            ("end_user:bob", None),
            ("tag:feature=sum", Some("feature=sum")),
            ("tag:feature=other", None),
        ] {
            assert_eq!(
                Subject::parse(s).unwrap().applies_to(&who).as_deref(),
                expected,
                "{s}"
            );
        }
        for bad in ["tenant:", "nobody:x", "tag:novalue", "acme"] {
            assert!(Subject::parse(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_refusal_on_one_budget_releases_the_others() {
        let b = budgets(vec![
            spec("t", "tenant:acme", 1_000, true),
            spec("k", "key:ci", 100, true),
        ]);
        let tags = BTreeMap::new();
        let who = Charged {
            tenant: "acme",
            team: "x",
            key: "ci",
            end_user: None,
            tags: &tags,
        };
        let e = b.reserve(&who, 150).await.err().unwrap();
        assert_eq!(e.code(), "budget_exceeded");
        assert_eq!(e.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert!(e.to_string().contains("key ci"), "{e}");
        // The tenant's reservation was given back.
        assert!(b.snapshot().iter().all(|(.., reserved, _)| *reserved == 0));
        let h = b.reserve(&who, 100).await.unwrap();
        h.settle(30);
        let spent: Vec<u64> = b.snapshot().iter().map(|s| s.2).collect();
        assert_eq!(spent, [30, 30]);
    }

    #[tokio::test]
    async fn a_dropped_hold_is_charged_its_whole_reservation() {
        let b = budgets(vec![spec("t", "tenant:acme", 1_000, true)]);
        let tags = BTreeMap::new();
        let who = Charged {
            tenant: "acme",
            team: "x",
            key: "ci",
            end_user: None,
            tags: &tags,
        };
        drop(b.reserve(&who, 400).await.unwrap());
        assert_eq!(b.snapshot()[0].2, 400);
    }
}
