//! The budget owner: grants budget leases to gateway replicas so that, together, they never reserve more than
//! a budget's limit.
//!
//! For each scope (budget, subject value, period window) the owner keeps what is **committed**: the spend
//! recorded before it started (a ClickHouse sum, the baseline) plus, for every lease it granted, the larger of
//! the lease's grant and what usage events show the lease spent (after the lease is returned: the larger of
//! that and what the replica says it settled). A request for capacity gets `min(asked, limit − committed)`.
//! Replicas reserve each request's worst case against their leases, so all replicas together never reserve
//! more than `limit − baseline`, and recorded spend can pass the limit only by what requests cost beyond
//! their reservation — the same bound as one replica.
//!
//! Restart safety: leases granted before this owner started are unknown to it, so it grants nothing until every
//! such lease has expired and its usage has reached ClickHouse (`lease TTL + grace`), then takes the baseline.
//! One owner at a time: [`crate::budget_service`] runs these books only while its candidate holds the role.

use std::collections::HashMap;

use tollgate_gateway::budget::ledger::reached;
use tollgate_schemas::lease::{LeaseDecision, LeaseMessage, LeaseScope};
use uuid::Uuid;

/// A budget as the control log states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedBudget {
    /// `tenant`, `team`, `key`, `end_user`, `tag`.
    pub subject_kind: String,
    pub limit: u64,
    pub hard: bool,
    /// Who it is for and its period, for tracking spend per period (alerts).
    pub subject: Option<tollgate_gateway::budget::Subject>,
    pub period: Option<tollgate_gateway::budget::Period>,
    /// Alert thresholds in percent.
    pub alert_at: Vec<u8>,
    /// The limit's currency (the reporting currency).
    pub currency: String,
}

/// A threshold crossed by recorded spend: one webhook, once per (budget, subject, period window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDue {
    pub budget_id: String,
    pub subject_kind: String,
    pub subject: String,
    pub period: String,
    pub window_start_ms: i64,
    pub threshold: u8,
    pub spent: u64,
    pub limit: u64,
    pub hard: bool,
    pub currency: String,
}

/// Recorded spend of one (budget, subject, window), for alerts.
#[derive(Debug, Default)]
struct SpendBooks {
    spent: u64,
    alerted: Vec<u8>,
}

/// One stored usage row as the owner sees it.
#[derive(Debug, Clone)]
pub struct StoredSpend<'a> {
    pub tenant: &'a str,
    pub team: &'a str,
    pub key_id: &'a str,
    pub end_user: Option<&'a str>,
    pub tags: &'a std::collections::BTreeMap<String, String>,
    pub started_at_ms: i64,
    pub reporting_cost: u64,
}

#[derive(Debug, Default)]
struct LeaseBooks {
    granted: u64,
    /// Cost of usage events carrying this lease.
    seen: u64,
    /// What the replica says the lease settled, once returned.
    returned: Option<u64>,
}

impl LeaseBooks {
    fn committed(&self) -> u64 {
        match self.returned {
            Some(settled) => self.seen.max(settled),
            None => self.seen.max(self.granted),
        }
    }
}

#[derive(Debug, Default)]
struct ScopeBooks {
    baseline: u64,
    leases: HashMap<Uuid, LeaseBooks>,
}

impl ScopeBooks {
    fn committed(&self) -> u64 {
        self.leases
            .values()
            .map(LeaseBooks::committed)
            .fold(self.baseline, u64::saturating_add)
    }
}

/// The owner's books.
#[derive(Debug, Default)]
pub struct Owner {
    budgets: HashMap<String, OwnedBudget>,
    scopes: HashMap<LeaseScope, ScopeBooks>,
    lease_scope: HashMap<Uuid, LeaseScope>,
    /// Recorded spend per (budget, subject, window) for alerts; absent until its baseline is known.
    spend: HashMap<LeaseScope, SpendBooks>,
}

/// What the owner needs before it can answer a request: the scope's baseline from ClickHouse.
pub enum Step {
    Decided(LeaseDecision),
    NeedsBaseline(LeaseScope),
}

impl Owner {
    /// Forgets every lease and spend book, keeping the budgets: what an owner that just took over (or gave
    /// up) the role must do, since leases granted meanwhile by another owner are unknown to it.
    pub fn forget_books(&mut self) {
        self.scopes.clear();
        self.lease_scope.clear();
        self.spend.clear();
    }

    pub fn set_budget(&mut self, id: &str, budget: Option<OwnedBudget>) {
        match budget {
            Some(b) => {
                self.budgets.insert(id.to_string(), b);
            }
            None => {
                self.budgets.remove(id);
            }
        }
    }

    #[must_use]
    pub fn budget(&self, id: &str) -> Option<&OwnedBudget> {
        self.budgets.get(id)
    }

    /// Records the spend before this owner's first grant in `scope`.
    pub fn set_baseline(&mut self, scope: LeaseScope, spent: u64) {
        self.scopes.entry(scope).or_default().baseline = spent;
    }

    /// Answers a lease request (or asks for the scope's baseline first).
    pub fn request(
        &mut self,
        request_id: Uuid,
        replica: &str,
        scope: &LeaseScope,
        amount: u64,
        expires_at_ms: i64,
    ) -> Step {
        let Some(budget) = self.budgets.get(&scope.budget_id).cloned() else {
            // Unknown (deleted, or not yet in the log): nothing to grant.
            return Step::Decided(decision(
                request_id,
                replica,
                scope,
                None,
                0,
                expires_at_ms,
                0,
                0,
            ));
        };
        let Some(books) = self.scopes.get_mut(scope) else {
            return Step::NeedsBaseline(scope.clone());
        };
        let committed = books.committed();
        let available = budget.limit.saturating_sub(committed);
        let granted = amount.min(available);
        if granted == 0 {
            return Step::Decided(decision(
                request_id,
                replica,
                scope,
                None,
                0,
                expires_at_ms,
                budget.limit,
                committed,
            ));
        }
        let lease_id = Uuid::now_v7();
        books.leases.insert(
            lease_id,
            LeaseBooks {
                granted,
                ..LeaseBooks::default()
            },
        );
        self.lease_scope.insert(lease_id, scope.clone());
        Step::Decided(decision(
            request_id,
            replica,
            scope,
            Some(lease_id),
            granted,
            expires_at_ms,
            budget.limit,
            committed,
        ))
    }

    /// A replica closed a lease, having settled `settled` on it.
    pub fn returned(&mut self, lease_id: Uuid, settled: u64) {
        if let Some(scope) = self.lease_scope.get(&lease_id) {
            if let Some(l) = self
                .scopes
                .get_mut(scope)
                .and_then(|b| b.leases.get_mut(&lease_id))
            {
                l.returned = Some(settled);
            }
        }
    }

    /// A usage event was stored: its cost counts against each of its leases this owner granted.
    pub fn observed(&mut self, leases: &[Uuid], reporting_cost: u64) {
        for id in leases {
            if let Some(scope) = self.lease_scope.get(id) {
                if let Some(l) = self
                    .scopes
                    .get_mut(scope)
                    .and_then(|b| b.leases.get_mut(id))
                {
                    l.seen = l.seen.saturating_add(reporting_cost);
                }
            }
        }
    }

    /// The (budget, subject, window) scopes a stored row counts toward under every budget with alerts, in
    /// time zone `tz`.
    #[must_use]
    pub fn alert_scopes(&self, row: &StoredSpend<'_>, tz: chrono_tz::Tz) -> Vec<LeaseScope> {
        let who = tollgate_gateway::budget::Charged {
            tenant: row.tenant,
            team: row.team,
            key: row.key_id,
            end_user: row.end_user,
            tags: row.tags,
        };
        self.budgets
            .iter()
            .filter(|(_, b)| !b.alert_at.is_empty())
            .filter_map(|(id, b)| {
                let subject = b.subject.as_ref()?.applies_to(&who)?;
                let (start, _) = b.period?.window(row.started_at_ms, tz);
                Some(LeaseScope {
                    budget_id: id.clone(),
                    subject,
                    window_start_ms: start,
                })
            })
            .collect()
    }

    /// Whether the spend of `scope` is tracked yet (else its baseline must be set first).
    #[must_use]
    pub fn tracks_spend(&self, scope: &LeaseScope) -> bool {
        self.spend.contains_key(scope)
    }

    /// Starts tracking `scope` at `baseline` spend; thresholds it already crossed count as alerted.
    pub fn set_spend_baseline(&mut self, scope: LeaseScope, baseline: u64) {
        let alerted = self
            .budgets
            .get(&scope.budget_id)
            .map(|b| {
                b.alert_at
                    .iter()
                    .copied()
                    .filter(|t| reached(baseline, b.limit, *t))
                    .collect()
            })
            .unwrap_or_default();
        self.spend.insert(
            scope,
            SpendBooks {
                spent: baseline,
                alerted,
            },
        );
    }

    /// Adds a stored row's cost to `scope`; the thresholds it crossed.
    pub fn spend(&mut self, scope: &LeaseScope, cost: u64) -> Vec<AlertDue> {
        let Some(budget) = self.budgets.get(&scope.budget_id) else {
            return Vec::new();
        };
        let Some(books) = self.spend.get_mut(scope) else {
            return Vec::new();
        };
        books.spent = books.spent.saturating_add(cost);
        let mut due = Vec::new();
        for t in &budget.alert_at {
            if reached(books.spent, budget.limit, *t) && !books.alerted.contains(t) {
                books.alerted.push(*t);
                due.push(AlertDue {
                    budget_id: scope.budget_id.clone(),
                    subject_kind: budget.subject_kind.clone(),
                    subject: scope.subject.clone(),
                    period: budget.period.map_or("", |p| p.as_str()).to_string(),
                    window_start_ms: scope.window_start_ms,
                    threshold: *t,
                    spent: books.spent,
                    limit: budget.limit,
                    hard: budget.hard,
                    currency: budget.currency.clone(),
                });
            }
        }
        due
    }

    /// `committed` of a scope (for tests and logs).
    #[must_use]
    pub fn committed(&self, scope: &LeaseScope) -> Option<u64> {
        self.scopes.get(scope).map(ScopeBooks::committed)
    }

    /// Applies one message from the requests topic; a decision to publish, or the scope whose baseline is
    /// missing.
    pub fn handle(&mut self, message: &LeaseMessage, expires_at_ms: i64) -> Option<Step> {
        match message {
            LeaseMessage::Requested {
                request_id,
                replica,
                scope,
                amount,
                ..
            } => Some(self.request(*request_id, replica, scope, *amount, expires_at_ms)),
            LeaseMessage::Returned {
                lease_id, settled, ..
            } => {
                self.returned(*lease_id, *settled);
                None
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decision(
    request_id: Uuid,
    replica: &str,
    scope: &LeaseScope,
    lease_id: Option<Uuid>,
    granted: u64,
    expires_at_ms: i64,
    limit: u64,
    committed: u64,
) -> LeaseDecision {
    LeaseDecision {
        request_id,
        replica: replica.to_string(),
        scope: scope.clone(),
        lease_id,
        granted,
        expires_at_ms,
        limit,
        committed,
        unavailable_for_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> LeaseScope {
        LeaseScope {
            budget_id: "b".into(),
            subject: "acme".into(),
            window_start_ms: 0,
        }
    }

    fn granted(step: Step) -> (Option<Uuid>, u64) {
        match step {
            Step::Decided(d) => (d.lease_id, d.granted),
            Step::NeedsBaseline(_) => panic!("baseline missing"),
        }
    }

    #[test]
    fn grants_never_exceed_the_limit_and_unused_capacity_comes_back() {
        let mut o = Owner::default();
        o.set_budget(
            "b",
            Some(OwnedBudget {
                subject_kind: "tenant".into(),
                limit: 100,
                hard: true,
                subject: None,
                period: None,
                alert_at: vec![],
                currency: "USD".into(),
            }),
        );
        assert!(matches!(
            o.request(Uuid::now_v7(), "r1", &scope(), 10, 0),
            Step::NeedsBaseline(_)
        ));
        o.set_baseline(scope(), 30);
        let (a, g) = granted(o.request(Uuid::now_v7(), "r1", &scope(), 50, 0));
        assert_eq!(g, 50);
        let (_, g) = granted(o.request(Uuid::now_v7(), "r2", &scope(), 50, 0));
        assert_eq!(g, 20, "only limit − baseline − other leases");
        assert_eq!(
            granted(o.request(Uuid::now_v7(), "r2", &scope(), 5, 0)),
            (None, 0)
        );
        // r1's lease spent 10 by events and was returned having settled 12: 38 comes back.
        o.observed(&[a.unwrap()], 10);
        o.returned(a.unwrap(), 12);
        assert_eq!(o.committed(&scope()), Some(30 + 12 + 20));
        let (_, g) = granted(o.request(Uuid::now_v7(), "r2", &scope(), 100, 0));
        assert_eq!(g, 38);
    }

    #[test]
    fn a_lease_that_overspent_counts_at_what_it_spent() {
        let mut o = Owner::default();
        o.set_budget(
            "b",
            Some(OwnedBudget {
                subject_kind: "tenant".into(),
                limit: 100,
                hard: true,
                subject: None,
                period: None,
                alert_at: vec![],
                currency: "USD".into(),
            }),
        );
        o.set_baseline(scope(), 0);
        let (a, _) = granted(o.request(Uuid::now_v7(), "r1", &scope(), 40, 0));
        o.observed(&[a.unwrap()], 55);
        assert_eq!(o.committed(&scope()), Some(55));
        // A returned lease whose events have not all arrived yet counts at what the replica settled.
        o.returned(a.unwrap(), 60);
        assert_eq!(o.committed(&scope()), Some(60));
    }

    #[test]
    fn recorded_spend_alerts_once_per_threshold_and_window_from_its_baseline() {
        let mut o = Owner::default();
        o.set_budget(
            "b",
            Some(OwnedBudget {
                subject_kind: "tenant".into(),
                limit: 100,
                hard: false,
                subject: tollgate_gateway::budget::Subject::parse("tenant:acme"),
                period: Some(tollgate_gateway::budget::Period::Daily),
                alert_at: vec![50, 80, 100],
                currency: "USD".into(),
            }),
        );
        let tags = std::collections::BTreeMap::new();
        let row = StoredSpend {
            tenant: "acme",
            team: "t",
            key_id: "k",
            end_user: None,
            tags: &tags,
            started_at_ms: 86_400_000 + 5,
            reporting_cost: 30,
        };
        let scopes = o.alert_scopes(&row, chrono_tz::UTC);
        assert_eq!(scopes.len(), 1);
        assert_eq!(scopes[0].window_start_ms, 86_400_000);
        let other = StoredSpend {
            tenant: "globex",
            ..row.clone()
        };
        assert!(o.alert_scopes(&other, chrono_tz::UTC).is_empty());
        // Baseline 55 (already past 50: no repeat), then +30 crosses 80, then +20 crosses 100.
        o.set_spend_baseline(scopes[0].clone(), 55);
        let due: Vec<u8> = o
            .spend(&scopes[0], 30)
            .iter()
            .map(|a| a.threshold)
            .collect();
        assert_eq!(due, [80]);
        let due: Vec<u8> = o
            .spend(&scopes[0], 20)
            .iter()
            .map(|a| a.threshold)
            .collect();
        assert_eq!(due, [100]);
        assert!(o.spend(&scopes[0], 1).is_empty());
    }
}
