//! Node lifecycle: notices nodes whose agent went silent and moves their work elsewhere.
//!
//! * A node whose heartbeat (its Lease in `kube-node-lease`, or its Ready condition's
//!   `lastHeartbeatTime`) has not changed for `--node-monitor-grace-period` gets its
//!   conditions set to `Unknown` and the `node.kubernetes.io/unreachable` taints
//!   (NoSchedule + NoExecute); a node reporting `Ready=False` gets the `not-ready` ones.
//!   Taints go away when the node reports Ready again.
//! * Pods on an unreachable node are marked not Ready (so Endpoints drop them).
//! * NoExecute taints evict pods that do not tolerate them: the node-condition taints
//!   after `--pod-eviction-timeout` (or the pod's own `tolerationSeconds`), other
//!   NoExecute taints at once. Eviction is a graceful delete: the pod stays Terminating
//!   until its agent confirms — or, if the Node object is deleted, until this task force
//!   deletes it — while its controller already replaces it elsewhere. When the node comes
//!   back its agent finishes those deletions, so nothing moves back. Never a forced
//!   (grace 0) delete here: a StatefulSet pod's name may only be reused once the old pod
//!   is confirmed gone, and a forced delete would let a replacement run next to a pod
//!   that may still be running on a partitioned node. Deployment pods are replaced at
//!   once anyway (their ReplicaSet does not count terminating pods).
//! * Pods bound to a Node that was deleted are force-deleted (Kubernetes' pod GC): at
//!   once if already terminating, after a 40 s quarantine otherwise.
//!
//! Nodes, pods and the nodes' Leases are read from the shared informers, typed, with no
//! copy of an object that needs no change; every write is an API request pinned to the
//! resourceVersion (status and taint patches) or uid (deletes) the decision saw.
//!
//! Heartbeats are compared by *change*, timed on this server's clock (as kube-controller-
//! manager does): a server that just became leader gives every node a full grace period
//! before judging it, and clock skew between agent and server does not matter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::tasks::context::TaskContext;
use crate::tasks::events::{reference, EventType, Recorder};
use crate::tasks::sync_error::is_status;

pub use berth_proto::model::well_known::TAINT_NODE_NOT_READY as NOT_READY_TAINT;
pub use berth_proto::model::well_known::TAINT_NODE_UNREACHABLE as UNREACHABLE_TAINT;
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Pods bound to a Node that does not exist are deleted after this (Kubernetes' pod GC
/// quarantine), in case the Node is only late to appear.
const MISSING_NODE_QUARANTINE: Duration = Duration::from_secs(40);
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// The namespace of the nodes' heartbeat Leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// When each node's heartbeat last changed, on this server's clock.
#[derive(Debug, Default)]
pub struct Heartbeats {
    seen: HashMap<String, (String, Instant)>,
}

impl Heartbeats {
    /// Records the node's current heartbeat; true if it is older than `grace`.
    pub fn is_stale(&mut self, node: &str, heartbeat: String, now: Instant, grace: Duration) -> bool {
        let entry = self.seen.entry(node.to_string()).or_insert_with(|| (heartbeat.clone(), now));
        if entry.0 != heartbeat {
            *entry = (heartbeat, now);
        }
        now.duration_since(entry.1) > grace
    }

    pub fn forget_others(&mut self, nodes: &[&str]) {
        self.seen.retain(|n, _| nodes.contains(&n.as_str()));
    }
}

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default()
}

pub(crate) fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    conditions(node).iter().find(|c| c.type_ == kind)
}

/// Whether the node's Ready condition is True.
pub(crate) fn node_is_ready(node: &Node) -> bool {
    condition(node, "Ready").is_some_and(|c| c.status == "True")
}

/// The node's first InternalIP address.
pub(crate) fn internal_ip(node: &Node) -> Option<&str> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.as_str())
}

fn taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default()
}

/// The node's heartbeat as a comparable token: its Lease's renewTime and the Ready
/// condition's lastHeartbeatTime.
pub fn heartbeat(node: &Node, lease: Option<&Lease>) -> String {
    let renew = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0.to_string());
    let posted = condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.to_string());
    format!("{}|{}", renew.unwrap_or_default(), posted.unwrap_or_default())
}

/// The node's conditions once marked unreachable (pure); `None` if already so.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = conditions(node).to_vec();
    let mut changed = false;
    for kind in CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The node's taints as its Ready condition implies (pure); `None` if unchanged.
pub fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = taints(node);
    let wanted_key = match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        Some("False") => Some(NOT_READY_TAINT),
        _ => None,
    };
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| (t.key != UNREACHABLE_TAINT && t.key != NOT_READY_TAINT) || Some(t.key.as_str()) == wanted_key)
        .cloned()
        .collect();
    if let Some(key) = wanted_key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == key && t.effect == effect) {
                let time_added = (effect == "NoExecute").then_some(Time(now));
                next.push(Taint { key: key.into(), effect: effect.into(), time_added, value: None });
            }
        }
    }
    (next != current).then_some(next)
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || taint.effect == e);
    let key = toleration.key.as_deref().unwrap_or_default();
    let key_ok = key.is_empty() || taint.key == key;
    let value_ok = match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
    };
    effect_ok && key_ok && value_ok
}

/// When the node's NoExecute taints evict `pod` (pure): `None` if they never do.
pub fn eviction_time(pod: &Pod, taints: &[Taint], eviction_timeout: Duration) -> Option<Timestamp> {
    let tolerations: &[Toleration] = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let mut due: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map_or_else(Timestamp::now, |t| t.0);
        let tolerated: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let at = if tolerated.is_empty() {
            if taint.key == UNREACHABLE_TAINT || taint.key == NOT_READY_TAINT {
                added + SignedDuration::try_from(eviction_timeout).unwrap_or_default()
            } else {
                added
            }
        } else {
            // Tolerated: forever, unless every matching toleration is time-limited.
            let seconds: Option<Vec<i64>> = tolerated.iter().map(|t| t.toleration_seconds).collect();
            match seconds.and_then(|s| s.into_iter().min()) {
                Some(s) => added + SignedDuration::from_secs(s.max(0)),
                None => continue,
            }
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn is_deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// A merge patch of `changes` pinned to the resourceVersion the decision saw (in a patch,
/// a resourceVersion is a precondition).
fn pinned_patch<K: Resource>(obj: &K, mut changes: serde_json::Value) -> serde_json::Value {
    changes["metadata"] = json!({"resourceVersion": obj.meta().resource_version});
    changes
}

/// A delete of exactly the object the decision saw (a uid precondition).
fn delete_params<K: Resource>(obj: &K, grace_period_seconds: Option<u32>) -> DeleteParams {
    let preconditions = Preconditions { uid: obj.meta().uid.clone(), resource_version: None };
    DeleteParams { grace_period_seconds, preconditions: Some(preconditions), ..Default::default() }
}

fn record<T>(ctx: &TaskContext, what: &str, result: Result<T, kube::Error>) {
    match result {
        Ok(_) => ctx.status.record(true),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => {
            ctx.status.record(false);
            tracing::debug!(error = %e, what, "node lifecycle write failed");
        }
    }
}

/// What the sweeps read: the shared informers' caches of nodes, pods and leases.
struct Caches {
    nodes: Store<Node>,
    pods: Store<Pod>,
    leases: Store<Lease>,
}

struct Lifecycle {
    events: Recorder,
    heartbeats: Heartbeats,
    missing_since: HashMap<String, Instant>,
}

impl Lifecycle {
    async fn sweep(&mut self, ctx: &TaskContext, caches: &Caches) {
        let nodes_api: Api<Node> = Api::all(ctx.client.clone());
        let nodes = caches.nodes.state();
        let leases: BTreeMap<String, Arc<Lease>> = caches
            .leases
            .state()
            .into_iter()
            .filter(|l| l.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE))
            .map(|l| (l.name_any(), l))
            .collect();
        let pods = caches.pods.state();
        let mut by_node: HashMap<&str, Vec<&Arc<Pod>>> = HashMap::new();
        for pod in &pods {
            if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
                by_node.entry(n).or_default().push(pod);
            }
        }
        let now = Instant::now();
        let wall = Timestamp::now();
        let names: Vec<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        self.heartbeats.forget_others(&names);
        let grace = ctx.settings.node_monitor_grace_period;
        for node in &nodes {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            let beat = heartbeat(node, leases.get(name).map(|l| l.as_ref()));
            let stale = self.heartbeats.is_stale(name, beat, now, grace);
            if stale {
                if let Some(conditions) = unknown_conditions(node, wall) {
                    tracing::info!(node = name, "node stopped posting status: marking it unreachable");
                    let message = format!("Node {name} status is now: NodeNotReady");
                    self.events.publish(&reference(node.as_ref()), EventType::Normal, "NodeNotReady", &message).await;
                    let patch = pinned_patch(node.as_ref(), json!({"status": {"conditions": conditions}}));
                    let result = nodes_api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                    record(ctx, "node conditions", result);
                    continue; // taints follow on the next sweep, from the stored conditions
                }
                for pod in by_node.get(name).into_iter().flatten() {
                    if is_ready(pod) && !is_deleting(pod.as_ref()) {
                        let result = mark_not_ready(ctx, pod, wall).await;
                        record(ctx, "pod not ready", result);
                    }
                }
            }
            // The taints as they are about to be (no copy of the node when unchanged).
            let desired = desired_taints(node, wall);
            if let Some(taints) = &desired {
                let patch = pinned_patch(node.as_ref(), json!({"spec": {"taints": taints}}));
                let result = nodes_api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                record(ctx, "node taints", result);
            }
            let taints = desired.as_deref().unwrap_or_else(|| taints(node));
            // Only NoExecute taints evict; most nodes have none, so their pods are skipped.
            let evicting = taints.iter().any(|t| t.effect == "NoExecute");
            let pods_here = by_node.get(name).filter(|_| evicting).into_iter().flatten();
            for pod in pods_here.filter(|p| !is_deleting(p.as_ref())) {
                let due = eviction_time(pod, taints, ctx.settings.pod_eviction_timeout);
                if due.is_some_and(|d| d <= Timestamp::now()) {
                    let (ns, pod_name) = (pod.namespace().unwrap_or_default(), pod.name_any());
                    tracing::info!(node = name, pod = pod_name, "evicting a pod from a tainted node");
                    let message = format!("Marking for deletion Pod {ns}/{pod_name}");
                    let pod_ref = reference(pod.as_ref());
                    self.events.publish(&pod_ref, EventType::Normal, "TaintManagerEviction", &message).await;
                    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
                    let result = api.delete(&pod_name, &delete_params(pod.as_ref(), None)).await;
                    record(ctx, "evict pod", result);
                }
            }
        }
        // Pods bound to nodes that do not exist (the Node was deleted).
        self.missing_since.retain(|n, _| by_node.contains_key(n.as_str()) && !names.contains(&n.as_str()));
        for (node, pods) in by_node.iter().filter(|(n, _)| !names.contains(n)) {
            let since = *self.missing_since.entry(node.to_string()).or_insert(now);
            // Terminating pods only wait for an agent that no longer exists: at once.
            // Others wait out the quarantine.
            let quarantined = now.duration_since(since) < MISSING_NODE_QUARANTINE;
            let due: Vec<&&Arc<Pod>> = pods.iter().filter(|p| !quarantined || is_deleting(p.as_ref())).collect();
            if due.is_empty() {
                continue;
            }
            // Confirm with a (linearizable) read that the Node is really gone.
            if !matches!(nodes_api.get(node).await, Err(e) if is_status(&e, 404)) {
                continue;
            }
            for pod in due {
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
                let result = api.delete(&pod.name_any(), &delete_params(pod.as_ref(), Some(0))).await;
                record(ctx, "delete pod of a deleted node", result);
            }
        }
    }
}

/// Sets the pod's Ready condition to False (its node is unreachable), pinned to the
/// version read.
async fn mark_not_ready(ctx: &TaskContext, pod: &Pod, now: Timestamp) -> Result<Pod, kube::Error> {
    let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
        c.status = "False".into();
        c.reason = Some("NodeNotReady".into());
        c.last_transition_time = Some(Time(now));
    }
    let patch = pinned_patch(pod, json!({"status": {"conditions": conditions}}));
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let events = Recorder::new(ctx.client.clone(), "node-controller");
    let caches = Caches {
        nodes: ctx.informers.store::<Node>(),
        pods: ctx.informers.store::<Pod>(),
        leases: ctx.informers.store::<Lease>(),
    };
    // Never judge nodes on a partial picture (a node whose Lease is not cached yet).
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let mut lifecycle = Lifecycle { events, heartbeats: Heartbeats::default(), missing_since: HashMap::new() };
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        if every.pass(lifecycle.sweep(&ctx, &caches)).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn taint(v: serde_json::Value) -> Taint {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn heartbeats_are_judged_by_change_on_the_local_clock() {
        let mut h = Heartbeats::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(20);
        assert!(!h.is_stale("n", "a".into(), t0, grace), "first sight starts a full grace period");
        assert!(!h.is_stale("n", "a".into(), t0 + Duration::from_secs(19), grace));
        assert!(h.is_stale("n", "a".into(), t0 + Duration::from_secs(21), grace));
        assert!(!h.is_stale("n", "b".into(), t0 + Duration::from_secs(22), grace), "a renewal resets it");
    }

    #[test]
    fn unreachable_then_back_moves_the_taints() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut node = node(json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(desired_taints(&node, t).is_none());
        node.status.as_mut().unwrap().conditions = unknown_conditions(&node, t);
        assert_eq!(condition(&node, "Ready").unwrap().reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(conditions(&node).len(), 4);
        assert!(unknown_conditions(&node, t).is_none(), "already unknown");
        let taints = desired_taints(&node, t).unwrap();
        assert_eq!(taints.len(), 3);
        assert!(taints.iter().any(|x| x.key == UNREACHABLE_TAINT
            && x.effect == "NoExecute"
            && x.time_added.as_ref().map(|a| a.0) == Some(t)));
        node.spec.as_mut().unwrap().taints = Some(taints);
        node.status.as_mut().unwrap().conditions =
            Some(vec![NodeCondition { type_: "Ready".into(), status: "False".into(), ..Default::default() }]);
        let taints = desired_taints(&node, t).unwrap();
        assert!(taints.iter().all(|x| x.key != UNREACHABLE_TAINT));
        assert!(taints.iter().any(|x| x.key == NOT_READY_TAINT));
        node.spec.as_mut().unwrap().taints = Some(taints);
        node.status.as_mut().unwrap().conditions =
            Some(vec![NodeCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]);
        assert_eq!(
            desired_taints(&node, t).unwrap(),
            [taint(json!({"key": "dedicated", "value": "x", "effect": "NoSchedule"}))]
        );
    }

    #[test]
    fn eviction_waits_for_the_timeout_or_the_pods_toleration() {
        let added = "2026-01-01T00:00:00Z";
        let t0: Timestamp = added.parse().unwrap();
        let taints = [
            taint(json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": added})),
            taint(json!({"key": UNREACHABLE_TAINT, "effect": "NoSchedule"})),
        ];
        let plain = pod(json!({"spec": {"containers": []}}));
        assert_eq!(eviction_time(&plain, &taints, Duration::from_secs(10)), Some(t0 + SignedDuration::from_secs(10)));
        let patient = pod(json!({"spec": {"containers": [], "tolerations": [{"key": UNREACHABLE_TAINT,
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}}));
        assert_eq!(
            eviction_time(&patient, &taints, Duration::from_secs(10)),
            Some(t0 + SignedDuration::from_secs(300))
        );
        let forever = pod(json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}));
        assert_eq!(eviction_time(&forever, &taints, Duration::from_secs(10)), None);
        let custom = [taint(json!({"key": "maintenance", "value": "now", "effect": "NoExecute", "timeAdded": added}))];
        assert_eq!(
            eviction_time(&plain, &custom, Duration::from_secs(10)),
            Some(t0),
            "other NoExecute taints evict at once"
        );
        let wrong_value = pod(json!({"spec": {"containers": [],
            "tolerations": [{"key": "maintenance", "value": "later", "effect": "NoExecute"}]}}));
        assert_eq!(eviction_time(&wrong_value, &custom, Duration::from_secs(10)), Some(t0));
    }
}
