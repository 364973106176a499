//! The pure decision: `schedule(pod, snapshot) -> node | Unschedulable`.
//!
//! ```text
//!  pod ─▶ facts ─▶ nominated node first: feasible? ─▶ that node (kube's evaluateNominatedNode)
//!                  │ no
//!                  ▼
//!                  for nodes from a rotating start:                  ─▶ score feasible ─▶ best
//!                    NodeUnschedulable ▸ TaintToleration ▸ NodeAffinity   (fit, balance,    (tie:
//!                    ▸ NodePorts ▸ NodeResourcesFit                        affinity, taints,  hash)
//!                  (first failing filter is the node's reason)             spread)
//!                  stop after enough feasible nodes (percentageOfNodesToScore)
//!                  none feasible ─▶ FitError ─▶ [`super::preemption`] (PostFilter)
//! ```
//!
//! Resources fit next to what a node holds *and* the pods nominated to it with at least
//! the pod's priority ([`NodeInfo::usage_for`](super::snapshot::NodeInfo::usage_for)). Filters and message texts follow
//! kube-scheduler's default plugins so users see the same explanations; scores follow its
//! default plugin weights.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};

use super::facts::{NodeFacts, PodFacts, Resources, TAINT_UNSCHEDULABLE};
use super::preemption::{self, Budgets, PostFilter};
use super::snapshot::{NodesSnapshot, Usage};

/// kube-scheduler's `minFeasibleNodesToFind`: below this many nodes every node is scored.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;
const MAX_NODE_SCORE: i64 = 100;

// Default plugin weights (kube-scheduler's default profile).
const WEIGHT_FIT: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_TAINT: i64 = 3;
const WEIGHT_SPREAD: i64 = 2;

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_CPU: &str = "Insufficient cpu";
pub const REASON_MEMORY: &str = "Insufficient memory";
const NO_NODES: &str = "no nodes available to schedule pods";

/// The pod fits nowhere; `message` is kube-scheduler's FitError text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
}

/// Why one node was filtered out (the first failing filter, as kube-scheduler stops there).
#[derive(Debug, Clone, PartialEq)]
pub enum Failure<'a> {
    Unschedulable,
    Taint(&'a Taint),
    Affinity,
    Ports,
    Resources { pods: bool, cpu: bool, memory: bool },
}

impl Failure<'_> {
    /// The reason strings this failure adds to the histogram.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Failure::Unschedulable => vec![REASON_UNSCHEDULABLE.into()],
            Failure::Taint(t) => vec![taint_reason(t)],
            Failure::Affinity => vec![REASON_AFFINITY.into()],
            Failure::Ports => vec![REASON_PORTS.into()],
            Failure::Resources { pods, cpu, memory } => {
                [(*pods, REASON_TOO_MANY_PODS), (*cpu, REASON_CPU), (*memory, REASON_MEMORY)]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, r)| r.to_string())
                    .collect()
            }
        }
    }

    /// Whether evicting pods could help (kube: `Unschedulable` vs `UnschedulableAndUnresolvable`).
    pub fn resolvable(&self) -> bool {
        matches!(self, Failure::Ports | Failure::Resources { .. })
    }
}

fn taint_reason(t: &Taint) -> String {
    format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or(""))
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect = t.effect.as_deref().unwrap_or("");
        if !effect.is_empty() && effect != taint.effect {
            return false;
        }
        let key = t.key.as_deref().unwrap_or("");
        let operator = t.operator.as_deref().unwrap_or("Equal");
        if key.is_empty() {
            // An empty key with Exists tolerates everything.
            return operator == "Exists";
        }
        key == taint.key
            && match operator {
                "Exists" => true,
                "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
                _ => false,
            }
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(int), values.first().and_then(|b| int(b))) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A required node selector term: every expression and field requirement holds. An empty
/// term matches nothing (API semantics).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeFacts) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // `metadata.name` is the only supported field (what DaemonSets use).
            r.key == "metadata.name" && requirement_matches(r, Some(&node.name))
        })
}

/// nodeSelector and required node affinity.
pub fn matches_node_selection(pod: &Pod, node: &NodeFacts) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    if let Some(selector) = &spec.node_selector {
        if !selector.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

/// Runs the filters in kube-scheduler's order against what the node has in use (see
/// [`NodeInfo::usage_for`](super::snapshot::NodeInfo::usage_for)); the first failure is the node's reason.
pub fn filter<'n>(pod: &Pod, facts: &PodFacts, node: &'n NodeFacts, usage: &Usage) -> Result<(), Failure<'n>> {
    let tolerations = tolerations(pod);
    if node.unschedulable {
        let cordon = Taint { key: TAINT_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Default::default() };
        if !tolerates(tolerations, &cordon) {
            return Err(Failure::Unschedulable);
        }
    }
    if let Some(t) = node
        .taints
        .iter()
        .find(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerates(tolerations, t))
    {
        return Err(Failure::Taint(t));
    }
    if !matches_node_selection(pod, node) {
        return Err(Failure::Affinity);
    }
    if facts.host_ports.iter().any(|p| usage.ports.iter().any(|(used, _)| used.conflicts(p))) {
        return Err(Failure::Ports);
    }
    let free = node.allocatable.minus(usage.requested);
    let pods = usage.pod_count + 1 > node.allowed_pods;
    // A zero request never fails (even on an over-committed node), as in kube.
    let cpu = facts.requests.milli_cpu > 0 && facts.requests.milli_cpu > free.milli_cpu;
    let memory = facts.requests.memory > 0 && facts.requests.memory > free.memory;
    if pods || cpu || memory {
        return Err(Failure::Resources { pods, cpu, memory });
    }
    Ok(())
}

/// kube-scheduler's adaptive `percentageOfNodesToScore`: big clusters score a sample.
pub fn num_feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// NodeResourcesFit / LeastAllocated on non-zero requests, cpu and memory weighted 1:1.
fn least_allocated(requested: Resources, allocatable: Resources) -> i64 {
    let one = |req: i64, cap: i64| if cap <= 0 || req > cap { 0 } else { (cap - req) * MAX_NODE_SCORE / cap };
    (one(requested.milli_cpu, allocatable.milli_cpu) + one(requested.memory, allocatable.memory)) / 2
}

/// NodeResourcesBalancedAllocation: 100 × (1 − standard deviation of the usage fractions).
fn balanced(requested: Resources, allocatable: Resources) -> i64 {
    let fraction = |req: i64, cap: i64| (cap > 0).then(|| (req as f64 / cap as f64).min(1.0));
    match (fraction(requested.milli_cpu, allocatable.milli_cpu), fraction(requested.memory, allocatable.memory)) {
        // With two resources the standard deviation is half their difference.
        (Some(c), Some(m)) => ((1.0 - (c - m).abs() / 2.0) * MAX_NODE_SCORE as f64) as i64,
        _ => MAX_NODE_SCORE,
    }
}

fn preferred_affinity(pod: &Pod, node: &NodeFacts) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or(&[]);
    // term_matches treats an empty term as no match: an empty preference is a no-op (API docs).
    preferred.iter().filter(|p| term_matches(&p.preference, node)).map(|p| i64::from(p.weight)).sum()
}

fn intolerable_prefer_no_schedule(tolerations: &[Toleration], node: &NodeFacts) -> i64 {
    node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerates(tolerations, t)).count() as i64
}

/// splitmix64's finaliser: a well-mixed tie-break from (pod, node).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

struct Candidate {
    slot: usize,
    fit: i64,
    balance: i64,
    affinity: i64,
    taints: i64,
    owned: u32,
}

/// Why no node fits: the filters' reasons across nodes, and which failed nodes removing
/// pods might fix (what kube-scheduler's PostFilter gets as its node-to-status map).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    /// Nodes that exist.
    pub nodes: usize,
    reasons: Vec<(String, usize)>,
    /// Slots whose failure evictions might resolve (NodePorts, NodeResourcesFit), ascending.
    pub resolvable: Vec<usize>,
    /// Failed nodes no eviction helps (taints, affinity, cordon).
    pub unresolvable: usize,
}

impl FitError {
    fn add(&mut self, slot: usize, failure: &Failure<'_>) {
        for reason in failure.reasons() {
            match self.reasons.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => self.reasons.push((reason, 1)),
            }
        }
        if failure.resolvable() {
            self.resolvable.push(slot);
        } else {
            self.unresolvable += 1;
        }
    }

    /// kube-scheduler's FitError text; `post_filter` is preemption's verdict, when it has
    /// one to add (a successful preemption adds nothing).
    pub fn message(&self, post_filter: Option<&str>) -> String {
        if self.nodes == 0 {
            return NO_NODES.into();
        }
        let filters = histogram(self.reasons.iter().map(|(r, n)| (*n, r.clone())));
        match post_filter {
            Some(verdict) => format!("0/{} nodes are available: {filters}. {verdict}", self.nodes),
            None => format!("0/{} nodes are available: {filters}.", self.nodes),
        }
    }
}

/// "N reason" entries sorted as strings, as kube-scheduler's `sortReasonsHistogram`.
pub fn histogram(entries: impl IntoIterator<Item = (usize, String)>) -> String {
    let mut parts: Vec<String> = entries.into_iter().filter(|(n, _)| *n > 0).map(|(n, r)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

/// Picks a node for `pod` (see the module docs), or says why none fits with
/// kube-scheduler's text — including what preemption would do, judged as a dry run
/// without PodDisruptionBudgets (the queue runs [`preemption::post_filter`] itself, with them).
pub fn schedule(pod: &Pod, snapshot: &NodesSnapshot) -> Result<String, Unschedulable> {
    schedule_with(pod, &PodFacts::of(pod), snapshot)
}

/// [`schedule`] with the pod's facts already computed.
pub fn schedule_with(pod: &Pod, facts: &PodFacts, snapshot: &NodesSnapshot) -> Result<String, Unschedulable> {
    find_fit(pod, facts, snapshot).map_err(|fit| {
        let message = match preemption::post_filter(pod, facts, snapshot, &Budgets::default(), &fit) {
            PostFilter::Nominate(p) => p.message,
            PostFilter::Unschedulable { message, .. } => message,
        };
        Unschedulable { message }
    })
}

/// Filter and score: the node for `pod`, or why there is none.
pub fn find_fit(pod: &Pod, facts: &PodFacts, snapshot: &NodesSnapshot) -> Result<String, FitError> {
    let slots = snapshot.slots();
    let mut diagnosis = FitError { nodes: snapshot.num_nodes(), ..Default::default() };
    // The node a preemption made room on is tried first and, if the pod fits there, taken
    // without scoring (kube-scheduler's evaluateNominatedNode): that room is the pod's.
    let nominated = snapshot.nomination(&facts.key).and_then(|n| snapshot.slot_of(n));
    if let Some(i) = nominated {
        if let Some(node) = slots[i].facts.as_ref() {
            match filter(pod, facts, node, &slots[i].usage_for(facts)) {
                Ok(()) => return Ok(slots[i].name.clone()),
                Err(f) => diagnosis.add(i, &f),
            }
        }
    }
    let wanted = num_feasible_nodes_to_find(snapshot.num_nodes());
    let mut feasible: Vec<Candidate> = Vec::with_capacity(wanted.min(slots.len()));
    let tolerations = tolerations(pod);
    let owner = facts.owner.as_deref().and_then(|o| snapshot.owner_id(o));
    // Start at a per-pod offset: with sampling, different pods look at different nodes
    // (kube-scheduler rotates a start index for the same reason).
    let start = if slots.is_empty() { 0 } else { (facts.hash % slots.len() as u64) as usize };
    for offset in 0..slots.len() {
        if feasible.len() >= wanted {
            break;
        }
        let i = (start + offset) % slots.len();
        if Some(i) == nominated {
            continue;
        }
        let info = &slots[i];
        let Some(node) = info.facts.as_ref() else { continue };
        match filter(pod, facts, node, &info.usage_for(facts)) {
            Ok(()) => feasible.push(Candidate {
                slot: i,
                fit: least_allocated(info.nonzero_requested.plus(facts.nonzero), node.allocatable),
                balance: if facts.requests == Resources::default() {
                    // kube skips balance for best-effort pods: they change nothing.
                    0
                } else {
                    balanced(info.usage.requested.plus(facts.requests), node.allocatable)
                },
                affinity: preferred_affinity(pod, node),
                taints: intolerable_prefer_no_schedule(tolerations, node),
                owned: info.owner_count(owner),
            }),
            Err(f) => diagnosis.add(i, &f),
        }
    }
    if feasible.is_empty() {
        diagnosis.resolvable.sort_unstable();
        return Err(diagnosis);
    }
    // Normalisation over the feasible set, as the plugins' NormalizeScore.
    let max_affinity = feasible.iter().map(|c| c.affinity).max().unwrap_or(0);
    let max_taints = feasible.iter().map(|c| c.taints).max().unwrap_or(0);
    let max_owned = i64::from(feasible.iter().map(|c| c.owned).max().unwrap_or(0));
    let best = feasible
        .iter()
        .map(|c| {
            let affinity = if max_affinity > 0 { c.affinity * MAX_NODE_SCORE / max_affinity } else { 0 };
            let taints =
                if max_taints > 0 { MAX_NODE_SCORE - c.taints * MAX_NODE_SCORE / max_taints } else { MAX_NODE_SCORE };
            let spread = if max_owned > 0 {
                (max_owned - i64::from(c.owned)) * MAX_NODE_SCORE / max_owned
            } else {
                MAX_NODE_SCORE
            };
            let score = WEIGHT_FIT * c.fit
                + WEIGHT_BALANCED * c.balance
                + WEIGHT_NODE_AFFINITY * affinity
                + WEIGHT_TAINT * taints
                + WEIGHT_SPREAD * spread;
            let node = slots[c.slot].facts.as_ref().expect("feasible nodes exist");
            // Equal scores: a per-(pod, node) hash, so identical pods fan out.
            (score, mix(facts.hash ^ node.name_hash), c.slot)
        })
        .max()
        .expect("non-empty");
    Ok(slots[best.2].name.clone())
}
