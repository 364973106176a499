//! The DaemonSet controller's decision, pure: given a DaemonSet, the Nodes and the pods of
//! its namespace, one sync yields the pods to create (one per node), the pods to delete and
//! the status. It follows Kubernetes' `pkg/controller/daemon` (`manage` /
//! `podsShouldBeOnNode`, `rollingUpdate` with and without surge, `updateDaemonSetStatus`):
//! * a node *should run* a daemon pod when the pod template (with the automatic daemon
//!   tolerations) matches its nodeSelector / required node affinity and tolerates its
//!   NoSchedule and NoExecute taints; a pod already there *may continue running* as long
//!   as it tolerates the NoExecute ones (`NodeShouldRunDaemonPod`);
//! * the pod is pinned to its node the way Kubernetes does it: a required node affinity
//!   term `matchFields metadata.name In [node]`, which the scheduler honours when it binds;
//! * the template's revision is a hash of the template and collision count
//!   ([`revision_hash`]); pods carry it as `controller-revision-hash`, and the
//!   DaemonSet's generation as `pod-template-generation`. The controller keeps a
//!   ControllerRevision per template (`crate::tasks::revisions`) and hands the current
//!   one's hash in; this plan reports which hashes live pods still carry, so those
//!   revisions outlive the history limit.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_proto::model::well_known;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::tasks::deployment::plan::{compute_hash, scaled_value};
use crate::tasks::ownership::{self, OwnerChange};
use crate::tasks::pod_control::PodRef;
use crate::tasks::scheduler::algorithm::{matches_node_selection, tolerates};
use crate::tasks::scheduler::facts::NodeFacts;

pub use berth_proto::model::well_known::LABEL_CONTROLLER_REVISION_HASH as CONTROLLER_REVISION_HASH;
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The tolerations Kubernetes' DaemonSet controller adds to every daemon pod
/// (`AddOrUpdateDaemonPodTolerations`): daemons keep running on nodes that are not ready,
/// unreachable, under pressure or cordoned.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut list = vec![
        t(well_known::TAINT_NODE_NOT_READY, "NoExecute"),
        t(well_known::TAINT_NODE_UNREACHABLE, "NoExecute"),
        t(well_known::TAINT_NODE_DISK_PRESSURE, "NoSchedule"),
        t(well_known::TAINT_NODE_MEMORY_PRESSURE, "NoSchedule"),
        t(well_known::TAINT_NODE_PID_PRESSURE, "NoSchedule"),
        t(well_known::TAINT_NODE_UNSCHEDULABLE, "NoSchedule"),
    ];
    if host_network {
        list.push(t(well_known::TAINT_NODE_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    list
}

/// The pod a DaemonSet runs on `node` (Kubernetes' `NewPod` plus the node affinity that
/// `syncNodes` sets): template, daemon tolerations, revision labels, controller reference.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(POD_TEMPLATE_GENERATION.into(), g.to_string());
    }
    let mut spec = template.spec.unwrap_or_default();
    let mut tolerations = spec.tolerations.take().unwrap_or_default();
    for t in daemon_tolerations(spec.host_network == Some(true)) {
        // Add or update: a user toleration for the same key and effect is replaced.
        tolerations.retain(|x| !(x.key == t.key && x.effect == t.effect));
        tolerations.push(t);
    }
    spec.tolerations = Some(tolerations);
    spec.affinity = Some(with_node_name_affinity(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or_default())),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node selector
/// becomes the single term `metadata.name In [node]` (the controller already checked the
/// template's own terms against the node); preferred terms and pod (anti-)affinity stay.
pub fn with_node_name_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        ..Default::default()
    };
    let mut affinity = affinity.unwrap_or_default();
    let mut node_affinity: NodeAffinity = affinity.node_affinity.take().unwrap_or_default();
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![term] });
    affinity.node_affinity = Some(node_affinity);
    affinity
}

/// The node a daemon pod is for: where it is bound, or where its `metadata.name`
/// affinity points (Kubernetes' `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        (r.key == "metadata.name" && r.operator == "In" && values.len() == 1).then(|| values[0].clone())
    })
}

/// Kubernetes' `NodeShouldRunDaemonPod`: (should run, may continue running).
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let Some(template_spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else { return (false, false) };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if template_spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return (false, false);
    }
    // The template as the pod will be: with the daemon tolerations.
    let mut tolerations = template_spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(daemon_tolerations(template_spec.host_network == Some(true)));
    let probe = Pod { spec: Some(template_spec.clone()), ..Default::default() };
    if !matches_node_selection(&probe, &NodeFacts::of(node)) {
        return (false, false);
    }
    let taints: &[Taint] = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let untolerated =
        |effects: &[&str]| taints.iter().any(|t| effects.contains(&t.effect.as_str()) && !tolerates(&tolerations, t));
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

/// The DaemonSet's current revision: a hash of its template and collision count.
pub fn revision_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    // No collisions and a collision count of 0 are the same revision.
    compute_hash(&template, ds.status.as_ref().and_then(|s| s.collision_count).filter(|c| *c != 0))
}

/// Whether a pod runs the DaemonSet's current template (`IsPodUpdated`, by hash).
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    ownership::labels(&pod.metadata).get(CONTROLLER_REVISION_HASH).is_some_and(|h| h == hash)
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef { name: pod.metadata.name.clone().unwrap_or_default(), uid: pod.metadata.uid.clone() }
}

/// Oldest first; equal times: a running pod before a pending one (`podByCreationTimestampAndPhase`).
fn by_age(a: &&Pod, b: &&Pod) -> Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let running = |p: &Pod| phase(p) == Some("Running");
    match (created(a), created(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => running(b).cmp(&running(a)).then_with(|| a.metadata.name.cmp(&b.metadata.name)),
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` nodes; both 0 becomes unavailability 1.
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true).max(0);
    let unavailable = scaled_value(ru.and_then(|r| r.max_unavailable.as_ref()), desired, true).max(0);
    if desired > 0 && surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn is_rolling(ds: &DaemonSet) -> bool {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.as_deref());
    strategy.is_none_or(|t| t == "RollingUpdate")
}

/// A failed daemon pod found on a node (Kubernetes records `FailedDaemonPod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPod {
    pub pod: String,
    pub node: String,
}

/// Everything one sync of a DaemonSet does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSetPlan {
    pub adopt: Vec<OwnerChange>,
    pub release: Vec<OwnerChange>,
    /// Nodes that get a new daemon pod.
    pub create_on: Vec<String>,
    pub delete: Vec<PodRef>,
    pub failed: Vec<FailedPod>,
    pub hash: String,
    /// The `controller-revision-hash` of every owned pod, terminating ones included (they
    /// still run): revisions with these hashes are kept.
    pub live_hashes: BTreeSet<String>,
    pub status: DaemonSetStatus,
    /// When to look again without events (a pod reaching minReadySeconds).
    pub requeue_after: Option<Duration>,
}

/// One node as the plan sees it.
struct NodeView<'a> {
    name: &'a str,
    should_run: bool,
    may_continue: bool,
    /// Owned pods targeting this node, deleting ones included.
    pods: Vec<&'a Pod>,
}

/// Decides one sync of `ds`, whose current revision's hash is `hash` (normally
/// [`revision_hash`]; an adopted revision of the same template may carry another).
/// `pods` are those it may claim (its own and its namespace's orphans), `nodes` every
/// Node. `manage` is false while this controller's earlier creations/deletions are not
/// visible in the cache yet (or the DaemonSet is being deleted): then only ownership and
/// status.
pub fn plan_daemonset(
    ds: &DaemonSet,
    hash: &str,
    nodes: &[&Node],
    pods: &[&Pod],
    manage: bool,
    now: Timestamp,
) -> DaemonSetPlan {
    let mut plan = DaemonSetPlan { hash: hash.to_string(), ..Default::default() };
    let selector = ownership::selector(ds.spec.as_ref().map(|s| &s.selector)).ok().flatten();
    let reference = ownership::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let claimed = ownership::claim_children(&ds.metadata, &reference, selector.as_ref(), pods.iter().copied());
    (plan.adopt, plan.release) = (claimed.adopt, claimed.release);
    let owned = claimed.owned;
    plan.live_hashes =
        owned.iter().filter_map(|p| ownership::labels(&p.metadata).get(CONTROLLER_REVISION_HASH)).cloned().collect();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in &owned {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let mut views: Vec<NodeView> = nodes
        .iter()
        .map(|node| {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            let (should_run, may_continue) = node_should_run(node, ds);
            let mut pods = by_node.remove(name).unwrap_or_default();
            pods.sort_by(by_age);
            NodeView { name, should_run, may_continue, pods }
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(b.name));
    let desired = views.iter().filter(|v| v.should_run).count() as i32;
    let (max_surge, max_unavailable) =
        if is_rolling(ds) { surge_and_unavailable(ds, desired) } else { (0, desired.max(1)) };
    let min_ready = min_ready_seconds(ds);
    let available = |p: &Pod| ownership::pod_is_available(p, min_ready, now);

    if manage && !ownership::is_deleting(&ds.metadata) {
        for view in &views {
            manage_node(&mut plan, view, max_surge);
        }
        // Pods for nodes that no longer exist and were never bound: nobody else will
        // delete them (bound ones are the pod garbage collector's).
        for pods in by_node.values() {
            for pod in pods.iter().filter(|p| !ownership::is_deleting(&p.metadata)) {
                if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty) {
                    plan.delete.push(pod_ref(pod));
                }
            }
        }
        // The rollout only moves once the node-level actions are done (Kubernetes runs it
        // only when the expectations of `manage` are satisfied).
        if plan.create_on.is_empty() && plan.delete.is_empty() && is_rolling(ds) {
            rolling_update(&mut plan, &views, max_surge, max_unavailable, &available);
        }
    }
    plan.status = status(ds, &views, &plan.hash, now);
    if min_ready > 0 {
        plan.requeue_after = owned
            .iter()
            .filter(|p| !available(p))
            .filter_map(|p| ownership::pod_available_at(p, min_ready))
            .min()
            .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(100));
    }
    plan
}

/// `podsShouldBeOnNode`: create the missing pod, replace failed ones, remove duplicates
/// and pods from nodes they may no longer run on. A node whose pod is still terminating
/// gets its new pod only once the old one is gone (or has finished), as in Kubernetes:
/// two daemons never overlap on a node because of a slow shutdown.
fn manage_node(plan: &mut DaemonSetPlan, view: &NodeView<'_>, max_surge: i32) {
    let finished = |p: &Pod| matches!(phase(p), Some("Failed" | "Succeeded"));
    let exists = view.pods.iter().any(|p| !(ownership::is_deleting(&p.metadata) && finished(p)));
    let live: Vec<&Pod> = view.pods.iter().copied().filter(|p| !ownership::is_deleting(&p.metadata)).collect();
    if view.should_run && !exists {
        plan.create_on.push(view.name.to_string());
    } else if view.may_continue {
        let mut running = Vec::new();
        for pod in live {
            match phase(pod) {
                Some("Failed") => {
                    // Replaced on a later sync, once this one is gone.
                    plan.failed.push(FailedPod { pod: pod_ref(pod).name, node: view.name.to_string() });
                    plan.delete.push(pod_ref(pod));
                }
                Some("Succeeded") => plan.delete.push(pod_ref(pod)),
                _ => running.push(pod),
            }
        }
        if running.len() <= 1 {
            return;
        }
        if max_surge == 0 {
            // Keep the oldest.
            plan.delete.extend(running[1..].iter().map(|p| pod_ref(p)));
            return;
        }
        // Surging: one old and one new pod may share the node while the new one is not
        // ready yet and the old one still is; everything else goes.
        let (mut oldest_new, mut oldest_old) = (None, None);
        for pod in running {
            let slot = if is_updated(pod, &plan.hash) { &mut oldest_new } else { &mut oldest_old };
            match slot {
                None => *slot = Some(pod),
                Some(_) => plan.delete.push(pod_ref(pod)),
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
            if !ownership::pod_is_ready(old) || ownership::pod_is_ready(new) {
                plan.delete.push(pod_ref(old));
            }
        }
    } else {
        plan.delete.extend(live.iter().map(|p| pod_ref(p)));
    }
}

/// `findUpdatedPodsOnNode`: the node's one new and one old pod (deleting ones ignored);
/// `None` when there are more of either (the manage step cleans that up first).
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().copied().filter(|p| !ownership::is_deleting(&p.metadata)) {
        let slot = if is_updated(pod, hash) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// Kubernetes' `rollingUpdate`: without surge, delete old pods (unavailable ones always,
/// available ones while fewer than maxUnavailable nodes are unavailable); with surge,
/// start new pods next to old ones (up to maxSurge at a time) and delete each old pod once
/// its replacement is available.
fn rolling_update(
    plan: &mut DaemonSetPlan,
    views: &[NodeView<'_>],
    max_surge: i32,
    max_unavailable: i32,
    available: &dyn Fn(&Pod) -> bool,
) {
    let with_pods = views.iter().filter(|v| !v.pods.is_empty());
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for view in with_pods {
            match updated_and_old(&view.pods, &plan.hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(old) {
                        replace.push(pod_ref(old));
                    } else if unavailable < max_unavailable {
                        candidates.push(pod_ref(old));
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        plan.delete.extend(replace);
        plan.delete.extend(candidates.into_iter().take(room));
        return;
    }
    let mut surging = 0;
    let mut replacements = Vec::new();
    let mut candidates = Vec::new();
    for view in with_pods {
        match updated_and_old(&view.pods, &plan.hash) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !view.should_run {
                    // Nothing new goes there; the manage step decides about the old pod.
                } else if !available(old) {
                    replacements.push(view.name.to_string());
                } else if surging < max_surge {
                    candidates.push(view.name.to_string());
                }
            }
            Some((Some(new), Some(old))) => {
                if available(new) {
                    plan.delete.push(pod_ref(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    plan.create_on.extend(replacements);
    plan.create_on.extend(candidates.into_iter().take(room));
}

/// Kubernetes' `updateDaemonSetStatus`, judged on each node's oldest live pod.
fn status(ds: &DaemonSet, views: &[NodeView<'_>], hash: &str, now: Timestamp) -> DaemonSetStatus {
    let current = ds.status.clone().unwrap_or_default();
    let min_ready = min_ready_seconds(ds);
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: current.collision_count,
        conditions: current.conditions,
        ..Default::default()
    };
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for view in views {
        let live: Vec<&Pod> = view.pods.iter().copied().filter(|p| !ownership::is_deleting(&p.metadata)).collect();
        if !view.should_run {
            if !live.is_empty() {
                s.number_misscheduled += 1;
            }
            continue;
        }
        s.desired_number_scheduled += 1;
        let Some(pod) = live.first() else { continue };
        s.current_number_scheduled += 1;
        if ownership::pod_is_ready(pod) {
            ready += 1;
            if ownership::pod_is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_updated(pod, hash) {
            updated += 1;
        }
    }
    s.number_ready = ready;
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(updated);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
