//! Preemption, pure: kube-scheduler's DefaultPreemption PostFilter over the snapshot. When
//! a pod fits nowhere, find a node where deleting pods of strictly lower priority makes it
//! fit, and say which pods; the task in [`super`] does the deleting.
//!
//! ```text
//!  FitError ─▶ eligible? (preemptionPolicy ≠ Never; no lower-priority pod still
//!     │          terminating on the pod's nominated node: its room is coming)
//!     ▼
//!  nodes where evicting could help (failed on ports or resources), from a per-pod offset,
//!  until enough candidates (10 % of them, at least 100; all when none is found):
//!     remove every lower-priority pod ─▶ fits? ─▶ reprieve them one by one, most important
//!     first, budget-protected ones before the others; whatever no longer fits is a victim
//!     ▼
//!  best node: fewest PodDisruptionBudget violations ▸ lowest highest victim priority ▸
//!  smallest sum of priorities ▸ fewest victims ▸ latest start of its earliest top victim
//!     ▼
//!  Nominate { node, victims, lower-priority nominations there to clear }
//! ```
//!
//! Fit is checked with the scheduler's own filters ([`filter`]) against the node's usage
//! including pods nominated there with at least the preemptor's priority, as kube does.

use std::cmp::{Ordering, Reverse};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::algorithm::{filter, histogram, FitError};
use super::facts::PodFacts;
use super::snapshot::NodesSnapshot;

pub use super::budgets::{Budget, Budgets};

/// kube-scheduler's `minCandidateNodesPercentage` / `minCandidateNodesAbsolute` defaults:
/// how many candidate nodes a preemption looks for before choosing among them.
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NEVER: &str = "not eligible due to preemptionPolicy=Never.";
const TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// A pod preemption acts on (a victim, or a pod whose nomination is cleared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub priority: i32,
}

impl PodRef {
    fn of(facts: &PodFacts) -> PodRef {
        let (namespace, name) = facts.namespace_and_name();
        PodRef { namespace: namespace.into(), name: name.into(), uid: facts.uid.clone(), priority: facts.priority }
    }

    /// `namespace/name`, the scheduler's pod key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A preemption decided: delete `victims` on `node` and nominate the pod there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    pub node: String,
    /// Most important first.
    pub victims: Vec<PodRef>,
    /// Victims whose deletion exceeds a PodDisruptionBudget (when no node avoids that).
    pub pdb_violations: usize,
    /// Pending pods of lower priority nominated to `node`: they may not fit there any more,
    /// so their nomination is cleared and they are tried again.
    pub demoted: Vec<PodRef>,
    /// The pod's FitError text: a preemption that found room adds no verdict to it.
    pub message: String,
}

/// The PostFilter's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostFilter {
    Nominate(Preemption),
    /// No preemption; `message` carries its reason. `clear_nomination`: no node can make
    /// room, so a nomination the pod holds is void (kube resets `nominatedNodeName`).
    Unschedulable {
        message: String,
        clear_nomination: bool,
    },
}

/// A node where the pod fits once `victims` are gone.
struct Candidate<'s> {
    slot: usize,
    victims: Vec<&'s PodFacts>,
    violations: usize,
}

/// kube's `MoreImportantPod`: higher priority, then started earlier (a pod not started
/// yet counts as starting now, the latest); the key makes the order total.
fn more_important(a: &PodFacts, b: &PodFacts) -> Ordering {
    b.priority.cmp(&a.priority).then_with(|| start_order(a).cmp(&start_order(b))).then_with(|| a.key.cmp(&b.key))
}

/// Orders start times with "not started" last.
fn start_order(p: &PodFacts) -> (bool, Option<Timestamp>) {
    (p.start_time.is_none(), p.start_time)
}

/// kube's `calculateNumCandidates`.
pub fn num_candidates(potential_nodes: usize) -> usize {
    (potential_nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(potential_nodes)
}

/// Whether the pod may preempt at all (kube's `PodEligibleToPreemptOthers`).
fn eligible(pod: &Pod, facts: &PodFacts, snapshot: &NodesSnapshot, fit: &FitError) -> Result<(), &'static str> {
    if pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err(NEVER);
    }
    let Some(slot) = snapshot.nomination(&facts.key).and_then(|n| snapshot.slot_of(n)) else { return Ok(()) };
    // Its nominated node is gone, or cannot take it whatever is evicted (a taint
    // appeared, say): look for another node.
    if snapshot.slots()[slot].facts.is_none() || !fit.resolvable.contains(&slot) {
        return Ok(());
    }
    // Victims of its earlier preemption are still going: wait for them rather than evict more.
    if snapshot.pods_on(slot).any(|p| p.priority < facts.priority && p.deleting) {
        return Err(TERMINATING);
    }
    Ok(())
}

/// Victims on one node (kube's `SelectVictimsOnNode`), or the reasons the node cannot help.
fn select_victims<'s>(
    pod: &Pod,
    facts: &PodFacts,
    snapshot: &'s NodesSnapshot,
    slot: usize,
    budgets: &Budgets,
) -> Result<Candidate<'s>, Vec<String>> {
    let info = &snapshot.slots()[slot];
    let Some(node) = info.facts.as_ref() else { return Err(vec![NOT_HELPFUL.into()]) };
    let mut usage = info.usage_for(facts).into_owned();
    let mut potential: Vec<&PodFacts> = snapshot.pods_on(slot).filter(|p| p.priority < facts.priority).collect();
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.into()]);
    }
    for v in &potential {
        usage.remove(v.requests, &v.host_ports);
    }
    // Not even an empty node (of lower-priority pods) takes it.
    filter(pod, facts, node, &usage).map_err(|f| f.reasons())?;
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, other) = split_by_budgets(&potential, budgets);
    let mut victims = Vec::new();
    let mut violations = 0;
    // Reprieve as many as still let the pod fit: budget-protected pods get the first
    // chance, then the rest; the most important first within each group.
    for (v, protected) in violating.iter().map(|v| (*v, true)).chain(other.iter().map(|v| (*v, false))) {
        usage.add(v.requests, &v.host_ports);
        if filter(pod, facts, node, &usage).is_err() {
            usage.remove(v.requests, &v.host_ports);
            victims.push(v);
            violations += usize::from(protected);
        }
    }
    if !violating.is_empty() && !other.is_empty() {
        victims.sort_by(|a, b| more_important(a, b));
    }
    Ok(Candidate { slot, victims, violations })
}

/// kube's `filterPodsWithPDBViolation`: walking the pods in order, each covered pod spends
/// one disruption of every budget covering it; a pod that takes a budget below zero
/// would violate it.
fn split_by_budgets<'s>(pods: &[&'s PodFacts], budgets: &Budgets) -> (Vec<&'s PodFacts>, Vec<&'s PodFacts>) {
    let mut allowed: Vec<i64> = budgets.iter().map(|b| i64::from(b.allowed)).collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violates = false;
        // A pod without labels matches no budget.
        if !pod.labels.is_empty() {
            for (left, budget) in allowed.iter_mut().zip(budgets.iter()) {
                if budget.covers(pod) {
                    *left -= 1;
                    violates |= *left < 0;
                }
            }
        }
        if violates {
            violating.push(*pod);
        } else {
            other.push(*pod);
        }
    }
    (violating, other)
}

/// kube's `pickOneNodeForPreemption`: the first candidate with the smallest key.
fn pick<'c, 's>(candidates: &'c [Candidate<'s>]) -> Option<&'c Candidate<'s>> {
    candidates.iter().min_by_key(|c| {
        let highest = c.victims.first().map_or(i32::MIN, |v| v.priority);
        // kube shifts every priority by 2^31 so the sum grows with each victim.
        let sum: i64 = c.victims.iter().map(|v| i64::from(v.priority) + (1i64 << 31)).sum();
        // The earliest start among the highest-priority victims: later is better (the
        // pods lost have run for less time).
        let earliest = c.victims.iter().filter(|v| v.priority == highest).map(|v| start_order(v)).min();
        (c.violations, highest, sum, c.victims.len(), Reverse(earliest))
    })
}

/// The PostFilter: what to do about `pod`, which fits nowhere per `fit`.
pub fn post_filter(
    pod: &Pod,
    facts: &PodFacts,
    snapshot: &NodesSnapshot,
    budgets: &Budgets,
    fit: &FitError,
) -> PostFilter {
    if fit.nodes == 0 {
        // Not a FitError in kube: nothing to preempt on.
        return PostFilter::Unschedulable { message: fit.message(None), clear_nomination: false };
    }
    if let Err(why) = eligible(pod, facts, snapshot, fit) {
        let message = fit.message(Some(&format!("preemption: {why}")));
        return PostFilter::Unschedulable { message, clear_nomination: false };
    }
    let potential = &fit.resolvable;
    let wanted = num_candidates(potential.len());
    let offset = if potential.is_empty() { 0 } else { (facts.hash % potential.len() as u64) as usize };
    let (mut clean, mut violating) = (Vec::new(), Vec::new());
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for k in 0..potential.len() {
        match select_victims(pod, facts, snapshot, potential[(offset + k) % potential.len()], budgets) {
            Ok(c) if c.violations == 0 => clean.push(c),
            Ok(c) => violating.push(c),
            Err(why) => {
                for reason in why {
                    match reasons.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, n)) => *n += 1,
                        None => reasons.push((reason, 1)),
                    }
                }
            }
        }
        // Enough to choose from; keep looking while every candidate breaks a budget.
        if !clean.is_empty() && clean.len() + violating.len() >= wanted {
            break;
        }
    }
    clean.append(&mut violating);
    let Some(best) = pick(&clean) else {
        // Every potential node was examined; the others cannot be helped by evictions.
        let examined: usize = potential.len();
        let entries =
            reasons.into_iter().map(|(r, n)| (n, r)).chain([(fit.nodes.saturating_sub(examined), NOT_HELPFUL.into())]);
        let verdict = format!("preemption: 0/{} nodes are available: {}.", fit.nodes, histogram(entries));
        tracing::debug!(pod = %facts.key, %verdict, "no preemption candidates");
        return PostFilter::Unschedulable { message: fit.message(Some(&verdict)), clear_nomination: true };
    };
    let info = &snapshot.slots()[best.slot];
    let demoted = info
        .nominated
        .iter()
        .filter(|n| n.priority < facts.priority && n.key != facts.key)
        .map(|n| {
            let (namespace, name) = n.key.split_once('/').unwrap_or(("", &n.key));
            PodRef { namespace: namespace.into(), name: name.into(), uid: n.uid.clone(), priority: n.priority }
        })
        .collect();
    PostFilter::Nominate(Preemption {
        node: info.name.clone(),
        victims: best.victims.iter().map(|v| PodRef::of(v)).collect(),
        pdb_violations: best.violations,
        demoted,
        message: fit.message(None),
    })
}
