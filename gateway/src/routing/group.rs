//! A deployment group: tiers of deployments and the strategy that orders each tier for one request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Candidate, Deployment};
use crate::config::{ModelConfig, Strategy};

#[derive(Debug)]
struct Tier {
    deployments: Vec<Arc<Deployment>>,
    /// Round-robin position over the tier's (deployment, key) slots.
    next_slot: AtomicUsize,
    /// Smooth weighted round-robin state (nginx's algorithm): one running weight per deployment.
    current_weights: Mutex<Vec<i64>>,
}

#[derive(Debug)]
pub struct DeploymentGroup {
    pub strategy: Strategy,
    pub max_attempts: u32,
    pub total_timeout: Duration,
    pub first_byte_timeout: Option<Duration>,
    tiers: Vec<Tier>,
}

impl DeploymentGroup {
    pub(super) fn new(config: &ModelConfig, tiers: Vec<Vec<Arc<Deployment>>>) -> Self {
        Self {
            strategy: config.strategy,
            max_attempts: config.max_attempts,
            total_timeout: config.total_timeout,
            first_byte_timeout: config.first_byte_timeout,
            tiers: tiers
                .into_iter()
                .map(|deployments| Tier {
                    current_weights: Mutex::new(vec![0; deployments.len()]),
                    deployments,
                    next_slot: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    /// Every allowed candidate, tier by tier, each tier ordered by the strategy.
    pub(super) fn candidates(&self, allowed: impl Fn(&Deployment) -> bool) -> Vec<Candidate> {
        let mut out = Vec::new();
        for tier in &self.tiers {
            let deployments: Vec<&Arc<Deployment>> =
                tier.deployments.iter().filter(|d| allowed(d)).collect();
            if deployments.is_empty() {
                continue;
            }
            match self.strategy {
                Strategy::RoundRobin => round_robin(tier, &deployments, &mut out),
                Strategy::Weighted => {
                    let first = weighted_pick(tier, &deployments);
                    let ordered = std::iter::once(first).chain(
                        deployments
                            .iter()
                            .copied()
                            .filter(|d| !Arc::ptr_eq(d, first)),
                    );
                    push_keys(ordered, &mut out);
                }
                Strategy::LowestLatency => {
                    let mut ordered = deployments.clone();
                    // Unmeasured deployments first, so each gets measured.
                    ordered.sort_by_key(|d| d.ttft_ewma().unwrap_or(Duration::ZERO));
                    push_keys(ordered.into_iter(), &mut out);
                }
                Strategy::LowestCost => {
                    let mut ordered = deployments.clone();
                    ordered.sort_by_key(|d| d.cost.rank());
                    push_keys(ordered.into_iter(), &mut out);
                }
            }
        }
        out
    }
}

/// Strict rotation over every (deployment, key) slot of the tier: with N slots, each gets every N-th request.
fn round_robin(tier: &Tier, deployments: &[&Arc<Deployment>], out: &mut Vec<Candidate>) {
    let n: usize = deployments.iter().map(|d| d.provider.key_count()).sum();
    if n == 0 {
        return;
    }
    let start = tier.next_slot.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        // Slot (start + i) mod n, counted over the deployments' keys in order.
        let mut slot = (start + i) % n;
        for d in deployments {
            let keys = d.provider.key_count();
            if slot < keys {
                out.push(Candidate {
                    deployment: Arc::clone(d),
                    key: slot,
                });
                break;
            }
            slot -= keys;
        }
    }
}

/// Each deployment's keys in rotation, deployment by deployment.
fn push_keys<'a>(deployments: impl Iterator<Item = &'a Arc<Deployment>>, out: &mut Vec<Candidate>) {
    for d in deployments {
        out.extend(d.key_order().map(|key| Candidate {
            deployment: Arc::clone(d),
            key,
        }));
    }
}

/// Smooth weighted round-robin: every pick adds each weight to its running total, takes the largest, and
/// subtracts the sum of weights from it. Over any window of Σw picks each deployment gets exactly its share.
fn weighted_pick<'a>(tier: &Tier, deployments: &[&'a Arc<Deployment>]) -> &'a Arc<Deployment> {
    let Ok(mut current) = tier.current_weights.lock() else {
        return deployments[0];
    };
    let total: i64 = deployments.iter().map(|d| i64::from(d.weight)).sum();
    let mut best: Option<(&'a Arc<Deployment>, usize, i64)> = None;
    for d in deployments {
        let Some(i) = tier.deployments.iter().position(|t| Arc::ptr_eq(t, d)) else {
            continue;
        };
        current[i] += i64::from(d.weight);
        if best.is_none_or(|(_, _, w)| current[i] > w) {
            best = Some((d, i, current[i]));
        }
    }
    match best {
        Some((d, i, _)) => {
            current[i] -= total;
            d
        }
        None => deployments[0],
    }
}
