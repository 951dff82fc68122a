//! Kafka topic names. Defined once; every producer and consumer imports them from here.

/// Usage events, keyed by tenant so each tenant's events stay in order.
pub const USAGE: &str = "tollgate.usage.v1";
/// Records the metering consumer could not decode, with the reason.
pub const USAGE_DEAD_LETTER: &str = "tollgate.usage.dlq.v1";
/// Control events (keys, budgets), compacted, keyed by entity (`key/<id>`, `budget/<id>`); one partition so
/// every replica applies them in one order.
pub const CONTROL: &str = "tollgate.control.v1";
/// Budget lease requests and returns (replicas → owner), keyed by budget and subject.
pub const BUDGET_REQUESTS: &str = "tollgate.budget.requests.v1";
/// Budget lease decisions (owner → replicas).
pub const BUDGET_DECISIONS: &str = "tollgate.budget.decisions.v1";
