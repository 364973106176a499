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
//! Heartbeats are compared by *change*, timed on this server's clock (as kube-controller-
//! manager does): a server that just became leader gives every node a full grace period
//! before judging it, and clock skew between agent and server does not matter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::resources::{self, ResourceInfo};
use crate::cache::Filter;
use crate::registry::{object, DeleteOptions, Part};
use crate::tasks::context::TaskContext;
use crate::tasks::events::{reference_of, EventType, Recorder};
use crate::tasks::periodic::Every;

pub use berth_proto::model::well_known::TAINT_NODE_NOT_READY as NOT_READY_TAINT;
pub use berth_proto::model::well_known::TAINT_NODE_UNREACHABLE as UNREACHABLE_TAINT;
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Pods bound to a Node that does not exist are deleted after this (Kubernetes' pod GC
/// quarantine), in case the Node is only late to appear.
const MISSING_NODE_QUARANTINE: Duration = Duration::from_secs(40);
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

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

fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// The node's heartbeat as a comparable token: its Lease's renewTime and the Ready
/// condition's lastHeartbeatTime.
pub fn heartbeat(node: &Value, lease: Option<&Value>) -> String {
    let renew = lease.and_then(|l| l["spec"]["renewTime"].as_str()).unwrap_or_default();
    let posted = condition(node, "Ready").and_then(|c| c["lastHeartbeatTime"].as_str()).unwrap_or_default();
    format!("{renew}|{posted}")
}

/// The node's conditions once marked unreachable (pure); `None` if already so.
pub fn unknown_conditions(node: &Value, now: &str) -> Option<Vec<Value>> {
    let mut conditions: Vec<Value> = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut changed = false;
    for kind in CONDITIONS {
        match conditions.iter_mut().find(|c| c["type"] == kind) {
            Some(c) if c["status"] == "Unknown" => {}
            Some(c) => {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(now);
                changed = true;
            }
            None => {
                conditions.push(json!({"type": kind, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.", "lastHeartbeatTime": now, "lastTransitionTime": now}));
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The node's taints as its Ready condition implies (pure); `None` if unchanged.
pub fn desired_taints(node: &Value, now: &str) -> Option<Vec<Value>> {
    let current: Vec<Value> = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    let wanted_key = match condition(node, "Ready").and_then(|c| c["status"].as_str()) {
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        Some("False") => Some(NOT_READY_TAINT),
        _ => None,
    };
    let mut next: Vec<Value> = current
        .iter()
        .filter(|t| {
            let key = t["key"].as_str().unwrap_or_default();
            (key != UNREACHABLE_TAINT && key != NOT_READY_TAINT) || Some(key) == wanted_key
        })
        .cloned()
        .collect();
    if let Some(key) = wanted_key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t["key"] == key && t["effect"] == effect) {
                let mut taint = json!({"key": key, "effect": effect});
                if effect == "NoExecute" {
                    taint["timeAdded"] = json!(now);
                }
                next.push(taint);
            }
        }
    }
    (next != current).then_some(next)
}

fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect_ok = toleration["effect"].as_str().is_none_or(|e| e.is_empty() || taint["effect"] == e);
    let key = toleration["key"].as_str().unwrap_or_default();
    let key_ok = key.is_empty() || taint["key"] == key;
    let value_ok = match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        _ => toleration["value"].as_str().unwrap_or_default() == taint["value"].as_str().unwrap_or_default(),
    };
    effect_ok && key_ok && value_ok
}

/// When the node's NoExecute taints evict `pod` (pure): `None` if they never do.
pub fn eviction_time(pod: &Value, taints: &[Value], eviction_timeout: Duration) -> Option<DateTime<Utc>> {
    let tolerations: Vec<&Value> = pod["spec"]["tolerations"].as_array().into_iter().flatten().collect();
    let mut due: Option<DateTime<Utc>> = None;
    for taint in taints.iter().filter(|t| t["effect"] == "NoExecute") {
        let added = taint["timeAdded"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).unwrap_or_else(Utc::now);
        let key = taint["key"].as_str().unwrap_or_default();
        let tolerated: Vec<&&Value> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let at = if tolerated.is_empty() {
            if key == UNREACHABLE_TAINT || key == NOT_READY_TAINT {
                added + chrono::Duration::from_std(eviction_timeout).unwrap_or_default()
            } else {
                added
            }
        } else {
            // Tolerated: forever, unless every matching toleration is time-limited.
            let seconds: Option<Vec<i64>> = tolerated.iter().map(|t| t["tolerationSeconds"].as_i64()).collect();
            match seconds.and_then(|s| s.into_iter().min()) {
                Some(s) => added + chrono::Duration::seconds(s.max(0)),
                None => continue,
            }
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

fn info(group: &str, plural: &str) -> &'static ResourceInfo {
    resources::find(group, "v1", plural).expect("served")
}

async fn list(ctx: &TaskContext, info: &'static ResourceInfo, ns: Option<&str>) -> Result<Vec<Arc<Value>>, ApiError> {
    let filter = Filter { resource: info.plural, namespace: ns.map(String::from), ..Default::default() };
    Ok(ctx.cache.get(info).list(&filter, 0).await?.0)
}

/// A write pinned to the resourceVersion the decision saw.
async fn pinned(
    ctx: &TaskContext,
    info: &'static ResourceInfo,
    obj: &Value,
    part: Part,
    change: impl Fn(&mut Value),
) -> Result<(), ApiError> {
    let rv: i64 = object::resource_version(obj).and_then(|r| r.parse().ok()).unwrap_or(0);
    ctx.modify_pinned(info, object::namespace(obj), object::name(obj).unwrap_or_default(), rv, part, change).await
}

fn record(ctx: &TaskContext, what: &str, result: Result<(), ApiError>) {
    match result {
        Ok(()) => ctx.status.record(true),
        Err(ApiError::Conflict { .. } | ApiError::NotFound(_)) => {}
        Err(e) => {
            ctx.status.record(false);
            tracing::debug!(error = %e, what, "node lifecycle write failed");
        }
    }
}

struct Lifecycle {
    events: Recorder,
    heartbeats: Heartbeats,
    missing_since: HashMap<String, Instant>,
}

impl Lifecycle {
    async fn sweep(&mut self, ctx: &TaskContext) -> Result<(), ApiError> {
        let (nodes_info, pods_info) = (info("", "nodes"), info("", "pods"));
        let leases_info = info("coordination.k8s.io", "leases");
        let nodes = list(ctx, nodes_info, None).await?;
        let leases: BTreeMap<String, Arc<Value>> = list(ctx, leases_info, Some("kube-node-lease"))
            .await?
            .into_iter()
            .filter_map(|l| Some((object::name(&l)?.to_string(), l.clone())))
            .collect();
        let pods = list(ctx, pods_info, None).await?;
        let mut by_node: HashMap<&str, Vec<&Value>> = HashMap::new();
        for pod in &pods {
            if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                by_node.entry(n).or_default().push(pod);
            }
        }
        let now = Instant::now();
        let wall = object::timestamp(Utc::now());
        let names: Vec<&str> = nodes.iter().filter_map(|n| object::name(n)).collect();
        self.heartbeats.forget_others(&names);
        let grace = ctx.settings.node_monitor_grace_period;
        for node in &nodes {
            let name = object::name(node).unwrap_or_default();
            let beat = heartbeat(node, leases.get(name).map(|l| l.as_ref()));
            let stale = self.heartbeats.is_stale(name, beat, now, grace);
            if stale {
                if let Some(conditions) = unknown_conditions(node, &wall) {
                    tracing::info!(node = name, "node stopped posting status: marking it unreachable");
                    let message = format!("Node {name} status is now: NodeNotReady");
                    self.events
                        .publish(&reference_of(nodes_info, node), EventType::Normal, "NodeNotReady", &message)
                        .await;
                    let result =
                        pinned(ctx, nodes_info, node, Part::Status, |n| n["status"]["conditions"] = json!(conditions))
                            .await;
                    record(ctx, "node conditions", result);
                    continue; // taints follow on the next sweep, from the stored conditions
                }
                for pod in by_node.get(name).into_iter().flatten() {
                    let ready = pod["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    if ready && !object::is_deleting(pod) {
                        let result = pinned(ctx, pods_info, pod, Part::Status, |p| {
                            for c in p["status"]["conditions"].as_array_mut().into_iter().flatten() {
                                if c["type"] == "Ready" {
                                    c["status"] = json!("False");
                                    c["reason"] = json!("NodeNotReady");
                                    c["lastTransitionTime"] = json!(wall);
                                }
                            }
                        })
                        .await;
                        record(ctx, "pod not ready", result);
                    }
                }
            }
            // The taints as they are about to be (no copy of the node when unchanged).
            let taints: Vec<Value> = match desired_taints(node, &wall) {
                Some(taints) => {
                    let result =
                        pinned(ctx, nodes_info, node, Part::Main, |n| n["spec"]["taints"] = json!(taints)).await;
                    record(ctx, "node taints", result);
                    taints
                }
                None => node["spec"]["taints"].as_array().cloned().unwrap_or_default(),
            };
            // Only NoExecute taints evict; most nodes have none, so their pods are skipped.
            let evicting = taints.iter().any(|t| t["effect"] == "NoExecute");
            let pods_here = by_node.get(name).filter(|_| evicting).into_iter().flatten();
            for pod in pods_here.filter(|p| !object::is_deleting(p)) {
                let due = eviction_time(pod, &taints, ctx.settings.pod_eviction_timeout);
                if due.is_some_and(|d| d <= Utc::now()) {
                    tracing::info!(node = name, pod = object::name(pod), "evicting a pod from a tainted node");
                    let message = format!(
                        "Marking for deletion Pod {}/{}",
                        object::namespace(pod).unwrap_or_default(),
                        object::name(pod).unwrap_or_default()
                    );
                    let pod_ref = reference_of(pods_info, pod);
                    self.events.publish(&pod_ref, EventType::Normal, "TaintManagerEviction", &message).await;
                    let opts = DeleteOptions {
                        precondition_uid: object::meta_str(pod, "uid").map(String::from),
                        ..Default::default()
                    };
                    let pod_name = object::name(pod).unwrap_or_default();
                    let result = ctx.registry.delete(pods_info, object::namespace(pod), pod_name, &opts).await;
                    record(ctx, "evict pod", result.map(|_| ()));
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
            let due: Vec<&&Value> = pods.iter().filter(|p| !quarantined || object::is_deleting(p)).collect();
            if due.is_empty() {
                continue;
            }
            // Confirm with a linearizable read that the Node is really gone.
            if !matches!(ctx.registry.get(nodes_info, None, node, true).await, Err(ApiError::NotFound(_))) {
                continue;
            }
            for pod in due {
                let opts = DeleteOptions {
                    grace_period_seconds: Some(0),
                    precondition_uid: object::meta_str(pod, "uid").map(String::from),
                    ..Default::default()
                };
                let pod_name = object::name(pod).unwrap_or_default();
                let result = ctx.registry.delete(pods_info, object::namespace(pod), pod_name, &opts).await;
                record(ctx, "delete pod of a deleted node", result.map(|_| ()));
            }
        }
        Ok(())
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let events = Recorder::new(ctx.client.clone(), "node-controller");
    let mut lifecycle = Lifecycle { events, heartbeats: Heartbeats::default(), missing_since: HashMap::new() };
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let Some(result) = every.pass(lifecycle.sweep(&ctx)).await else { return };
        if let Err(e) = result {
            tracing::debug!(error = %e, "node lifecycle sweep");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut node = json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(desired_taints(&node, "t").is_none());
        node["status"]["conditions"] = json!(unknown_conditions(&node, "t").unwrap());
        assert_eq!(condition(&node, "Ready").unwrap()["reason"], "NodeStatusUnknown");
        assert_eq!(node["status"]["conditions"].as_array().unwrap().len(), 4);
        assert!(unknown_conditions(&node, "t").is_none(), "already unknown");
        let taints = desired_taints(&node, "t").unwrap();
        assert_eq!(taints.len(), 3);
        assert!(taints
            .iter()
            .any(|t| t["key"] == UNREACHABLE_TAINT && t["effect"] == "NoExecute" && t["timeAdded"] == "t"));
        node["spec"]["taints"] = json!(taints);
        node["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        let taints = desired_taints(&node, "t").unwrap();
        assert!(taints.iter().all(|t| t["key"] != UNREACHABLE_TAINT));
        assert!(taints.iter().any(|t| t["key"] == NOT_READY_TAINT));
        node["spec"]["taints"] = json!(taints);
        node["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(
            desired_taints(&node, "t").unwrap(),
            [json!({"key": "dedicated", "value": "x", "effect": "NoSchedule"})]
        );
    }

    #[test]
    fn eviction_waits_for_the_timeout_or_the_pods_toleration() {
        let added = "2026-01-01T00:00:00Z";
        let t0: DateTime<Utc> = added.parse().unwrap();
        let taints = [
            json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": added}),
            json!({"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}),
        ];
        let plain = json!({"spec": {}});
        assert_eq!(eviction_time(&plain, &taints, Duration::from_secs(10)), Some(t0 + chrono::Duration::seconds(10)));
        let patient = json!({"spec": {"tolerations": [{"key": UNREACHABLE_TAINT, "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300}]}});
        assert_eq!(
            eviction_time(&patient, &taints, Duration::from_secs(10)),
            Some(t0 + chrono::Duration::seconds(300))
        );
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(eviction_time(&forever, &taints, Duration::from_secs(10)), None);
        let custom = [json!({"key": "maintenance", "value": "now", "effect": "NoExecute", "timeAdded": added})];
        assert_eq!(
            eviction_time(&plain, &custom, Duration::from_secs(10)),
            Some(t0),
            "other NoExecute taints evict at once"
        );
        let wrong_value =
            json!({"spec": {"tolerations": [{"key": "maintenance", "value": "later", "effect": "NoExecute"}]}});
        assert_eq!(eviction_time(&wrong_value, &custom, Duration::from_secs(10)), Some(t0));
    }
}
