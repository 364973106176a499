//! The bind checker: scheduling safety, decided from what the pod recorder saw (every pod
//! list and watch event, in order) and the final read of pods and nodes.
//!
//! **Invariant.** No pod is ever bound twice or to two nodes, and no node is ever
//! over-committed: a pod (by uid), once seen with a `nodeName`, is never seen later with
//! another `nodeName` (`rebind`) nor without one (`unbound` — the binding was undone, so
//! the pod could be bound again); and in every state the recorder observed, and in the final
//! read, each node's pods that are neither gone nor terminal (Succeeded/Failed, which the
//! scheduler does not count) request in sum at most the node's allocatable CPU and memory,
//! and are at most its allocatable pod count (`over-commit`). Terminating pods still count:
//! they hold their resources until they are gone. Allocatable comes from the final read (the
//! agents' capacity is fixed by the harness); without it the verdict is `unknown`.
//!
//! No acknowledged pod create is lost: a pod whose create was acknowledged (with its uid)
//! is in the final read unless a delete of its name (acknowledged or indeterminate) was
//! invoked after the create was (`lost-pod`); nothing else deletes the workload's bare pods
//! in a run this short. And a definite failure had no effect: a failed create's pod never
//! appears, a failed delete's pod is not deleted (`failed-but-applied`).
//!
//! The pod recorder's events come in strictly increasing resourceVersion order, across
//! watch resumptions and server failovers (a watch resumed at X delivers only changes after
//! X), and after a re-list only changes after the list's resourceVersion (`event-order`).
//! Such an event is reported once and otherwise ignored, so a repeated event is not also
//! mistaken for a change of binding.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{completed_ops, Anomaly, CheckResult};
use crate::history::{Call, History, NodeView, OpType, PodView};

const CHECKER: &str = "bind";

/// Decides a history; see the module doc for the invariant.
pub fn check(history: &History) -> CheckResult {
    let nodes: Option<&Vec<NodeView>> = history.ops.iter().rev().find_map(|op| match &op.call {
        Call::FinalState { nodes: Some(nodes), .. } if op.kind == OpType::Ok => Some(nodes),
        _ => None,
    });
    let allocatable: BTreeMap<&str, &NodeView> =
        nodes.map(|ns| ns.iter().map(|n| (n.name.as_str(), n)).collect()).unwrap_or_default();
    let mut replay = Replay { allocatable, ..Replay::default() };
    let mut final_read = false;
    for op in history.ops.iter().filter(|o| o.kind == OpType::Ok) {
        match &op.call {
            Call::PodList { pods, resource_version } => {
                replay.last_event = *resource_version;
                replay.live.clear();
                replay.relists += 1;
                for pod in pods {
                    if replay.observe(pod, op.index) && !pod_gone(pod) {
                        replay.live.insert(pod.uid.clone(), pod.clone());
                    }
                }
                let all: BTreeSet<String> = replay.allocatable.keys().map(|n| n.to_string()).collect();
                replay.check_nodes(&all, op.index, "the recorder's list");
            }
            Call::PodSeen { pod, deleted } => {
                replay.events += 1;
                if pod.resource_version <= replay.last_event {
                    replay.anomalies.push(Anomaly::new(
                        "event-order",
                        format!(
                            "pod {}/{} event at resourceVersion {} (#{}) after resourceVersion {} was seen: \
                             out of order or repeated",
                            pod.namespace, pod.name, pod.resource_version, op.index, replay.last_event
                        ),
                        vec![op.index],
                    ));
                    continue;
                }
                replay.last_event = pod.resource_version;
                if !replay.observe(pod, op.index) {
                    continue;
                }
                let before = replay.live.get(&pod.uid).and_then(|p| p.node.clone());
                if *deleted {
                    replay.live.remove(&pod.uid);
                } else {
                    replay.live.insert(pod.uid.clone(), pod.clone());
                }
                let touched: BTreeSet<String> = before.into_iter().chain(pod.node.clone()).collect();
                replay.check_nodes(&touched, op.index, "a watched state");
            }
            Call::FinalState { pods: Some(pods), .. } => {
                final_read = true;
                let mut final_live = BTreeMap::new();
                for pod in pods {
                    replay.observe(pod, op.index);
                    final_live.insert(pod.uid.clone(), pod.clone());
                }
                let all: BTreeSet<String> = replay.allocatable.keys().map(|n| n.to_string()).collect();
                replay.live = final_live;
                replay.check_nodes(&all, op.index, "the final read");
            }
            _ => {}
        }
    }
    let mut anomalies = std::mem::take(&mut replay.anomalies);
    let final_pods = history.ops.iter().rev().find_map(|op| match &op.call {
        Call::FinalState { pods: Some(pods), .. } if op.kind == OpType::Ok => Some((pods, op.index)),
        _ => None,
    });
    if let Some((pods, at)) = final_pods {
        anomalies.extend(client_ops(history, pods, at));
    }
    for ((node, resource), (first, count, detail)) in &replay.over {
        anomalies.push(Anomaly::new(
            "over-commit",
            format!(
                "node {node} over-committed on {resource} in {count} observed state(s), first at #{first}: {detail}"
            ),
            vec![*first],
        ));
    }
    if nodes.is_none() || !final_read {
        anomalies.push(Anomaly::new(
            "no-final-state",
            "no ok final read of pods and nodes: allocatable unknown, the final state unchecked",
            vec![],
        ));
    }
    let stats = BTreeMap::from([
        ("pods".to_string(), replay.bound_to.len() as u64 + replay.never_bound() as u64),
        ("bound".to_string(), replay.bound_to.len() as u64),
        ("events".to_string(), replay.events),
        ("relists".to_string(), replay.relists),
        ("nodes".to_string(), replay.allocatable.len() as u64),
    ]);
    CheckResult::from_anomalies(CHECKER, anomalies, &["no-final-state"], stats)
}

/// The client operations against what the recorder saw. Each pod name is created by one
/// worker, once, and deleted by it at most once, so a name is a pod's identity here.
///
/// * `failed-but-applied`: a create that completed `fail` whose pod exists, or a delete
///   that completed `fail` (say `404 NotFound`) while its pod — created, never deleted by
///   any other operation — was deleted: a definite failure must mean no effect.
/// * `lost-pod`: an acknowledged create whose pod is missing from the final read with no
///   delete that could explain it.
fn client_ops(history: &History, final_pods: &[PodView], at: u64) -> Vec<Anomaly> {
    let present: BTreeSet<&str> = final_pods.iter().map(|p| p.uid.as_str()).collect();
    // Every name the recorder or the final read saw, and where a pod of it was seen deleted.
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut deleted: HashMap<&str, u64> = HashMap::new();
    for op in history.ops.iter().filter(|o| o.kind == OpType::Ok) {
        let pods: Vec<(&PodView, bool)> = match &op.call {
            Call::PodSeen { pod, deleted } => vec![(pod, *deleted)],
            Call::PodList { pods, .. } => pods.iter().map(|p| (p, false)).collect(),
            Call::FinalState { pods: Some(pods), .. } => pods.iter().map(|p| (p, false)).collect(),
            _ => vec![],
        };
        for (pod, gone) in pods {
            seen.entry(pod.name.as_str()).or_insert(op.index);
            if gone {
                deleted.entry(pod.name.as_str()).or_insert(op.index);
            }
        }
    }
    let ops = completed_ops(history);
    let mut deletes: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut anomalies = vec![];
    for op in &ops {
        if let Call::DeletePod { name } = op.call() {
            if op.outcome() != OpType::Fail {
                deletes.entry(name.as_str()).or_default().push(op.invoke.index);
            }
        }
    }
    let created: BTreeSet<&str> = ops
        .iter()
        .filter(|op| op.outcome() == OpType::Ok)
        .filter_map(|op| match op.call() {
            Call::CreatePod { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let error = |op: &super::Completed<'_>| op.completion.and_then(|c| c.error.clone()).unwrap_or_default();
    for op in ops.iter().filter(|op| op.outcome() == OpType::Fail) {
        match op.call() {
            Call::CreatePod { name, .. } => {
                if let Some(&where_) = seen.get(name.as_str()) {
                    anomalies.push(Anomaly::new(
                        "failed-but-applied",
                        format!("create of pod {name} failed ({}), but the pod exists (#{where_})", error(op)),
                        [op.indices(), vec![where_]].concat(),
                    ));
                }
            }
            Call::DeletePod { name } => {
                let explained = deletes.contains_key(name.as_str());
                if let (Some(&where_), true, false) =
                    (deleted.get(name.as_str()), created.contains(name.as_str()), explained)
                {
                    anomalies.push(Anomaly::new(
                        "failed-but-applied",
                        format!(
                            "delete of pod {name} failed ({}), but the pod was deleted (#{where_}) and no other \
                             delete of it was made",
                            error(op)
                        ),
                        [op.indices(), vec![where_]].concat(),
                    ));
                    deletes.entry(name.as_str()).or_default().push(op.invoke.index);
                }
            }
            _ => {}
        }
    }
    for op in &ops {
        let Call::CreatePod { name, uid: Some(uid), .. } = op.call() else { continue };
        if op.outcome() != OpType::Ok || present.contains(uid.as_str()) {
            continue;
        }
        let deleted = deletes.get(name.as_str()).is_some_and(|d| d.iter().any(|&i| i > op.invoke.index));
        if !deleted {
            anomalies.push(Anomaly::new(
                "lost-pod",
                format!(
                    "pod {name} (uid {uid}) was created (#{}) and never deleted, but the final read (#{at}) lacks it",
                    op.invoke.index
                ),
                [op.indices(), vec![at]].concat(),
            ));
        }
    }
    anomalies
}

/// A pod that no longer holds resources.
fn pod_gone(pod: &PodView) -> bool {
    pod.is_terminal()
}

#[derive(Default)]
struct Replay<'a> {
    allocatable: BTreeMap<&'a str, &'a NodeView>,
    /// Pods (by uid) that exist in the state being replayed.
    live: BTreeMap<String, PodView>,
    /// The node each pod was first seen bound to, and where.
    bound_to: HashMap<String, (String, u64)>,
    /// The newest resourceVersion seen per pod.
    newest: HashMap<String, u64>,
    /// Pods reported unbound already (one anomaly per pod).
    unbound: BTreeSet<String>,
    /// (node, resource) → (first index, states over, first description).
    over: BTreeMap<(String, &'static str), (u64, u64, String)>,
    anomalies: Vec<Anomaly>,
    events: u64,
    relists: u64,
    /// The resourceVersion of the recorder's last event (or list).
    last_event: u64,
}

impl Replay<'_> {
    /// Checks one sighting of a pod against its earlier ones; false when it is older than
    /// what was already seen (and so ignored).
    fn observe(&mut self, pod: &PodView, index: u64) -> bool {
        let newest = self.newest.entry(pod.uid.clone()).or_insert(0);
        if pod.resource_version < *newest {
            return false;
        }
        *newest = pod.resource_version;
        match (self.bound_to.get(&pod.uid), &pod.node) {
            (None, Some(node)) => {
                self.bound_to.insert(pod.uid.clone(), (node.clone(), index));
            }
            (Some((first, at)), Some(node)) if first != node => {
                self.anomalies.push(Anomaly::new(
                    "rebind",
                    format!(
                        "pod {}/{} (uid {}) bound to {first} (#{at}), then seen on {node} at resourceVersion {} (#{index})",
                        pod.namespace, pod.name, pod.uid, pod.resource_version
                    ),
                    vec![*at, index],
                ));
                // Report the next move against the new node.
                self.bound_to.insert(pod.uid.clone(), (node.clone(), index));
            }
            (Some((first, at)), None) if self.unbound.insert(pod.uid.clone()) => {
                self.anomalies.push(Anomaly::new(
                    "unbound",
                    format!(
                        "pod {}/{} (uid {}) bound to {first} (#{at}), then seen with no node at resourceVersion {} (#{index})",
                        pod.namespace, pod.name, pod.uid, pod.resource_version
                    ),
                    vec![*at, index],
                ));
            }
            _ => {}
        }
        true
    }

    fn never_bound(&self) -> usize {
        self.newest.keys().filter(|uid| !self.bound_to.contains_key(*uid)).count()
    }

    /// Compares the usage of `nodes` in the current state with their allocatable.
    fn check_nodes(&mut self, nodes: &BTreeSet<String>, index: u64, what: &str) {
        for node in nodes {
            let Some(alloc) = self.allocatable.get(node.as_str()).copied() else { continue };
            let on_node: Vec<&PodView> =
                self.live.values().filter(|p| p.node.as_deref() == Some(node.as_str()) && !pod_gone(p)).collect();
            let cpu: u64 = on_node.iter().map(|p| p.cpu_milli).sum();
            let memory: u64 = on_node.iter().map(|p| p.memory_bytes).sum();
            let count = on_node.len() as u64;
            let names = || on_node.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(" ");
            let checks: [(&'static str, u64, u64, &str); 3] = [
                ("cpu", cpu, alloc.cpu_milli, "m"),
                ("memory", memory, alloc.memory_bytes, " bytes"),
                ("pods", count, alloc.pods, " pods"),
            ];
            for (resource, used, limit, unit) in checks {
                if used > limit {
                    let detail = format!("{what}: {used}{unit} requested > {limit}{unit} allocatable by {}", names());
                    let entry = self.over.entry((node.clone(), resource)).or_insert((index, 0, detail));
                    entry.1 += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;
    use crate::checker::Verdict;

    const R: i64 = 9500;

    fn pod(uid: &str, node: Option<&str>, rv: u64, cpu: u64) -> PodView {
        PodView {
            namespace: "jepsen".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            node: node.map(String::from),
            resource_version: rv,
            cpu_milli: cpu,
            memory_bytes: 64 << 20,
            phase: None,
            terminating: false,
        }
    }

    fn seen(pod: PodView) -> Call {
        Call::PodSeen { pod, deleted: false }
    }

    fn gone(pod: PodView) -> Call {
        Call::PodSeen { pod, deleted: true }
    }

    fn nodes() -> Vec<NodeView> {
        ["a1", "a2"]
            .into_iter()
            .map(|n| NodeView { name: n.into(), cpu_milli: 1000, memory_bytes: 1 << 30, pods: 3 })
            .collect()
    }

    fn final_state(pods: Vec<PodView>) -> Call {
        Call::FinalState { pods: Some(pods), nodes: Some(nodes()) }
    }

    #[test]
    fn pods_bound_once_within_capacity_pass() {
        let h = history(vec![
            ok(R, 0, Call::PodList { pods: vec![], resource_version: 1 }),
            ok(R, 1, seen(pod("u1", None, 2, 600))),
            ok(R, 2, seen(pod("u1", Some("a1"), 3, 600))),
            ok(R, 3, seen(pod("u2", Some("a1"), 4, 400))),
            nemesis(4),
            ok(R, 5, gone(pod("u1", Some("a1"), 5, 600))),
            ok(R, 6, seen(pod("u3", Some("a1"), 6, 600))),
            ok(R + 1, 7, final_state(vec![pod("u2", Some("a1"), 4, 400), pod("u3", Some("a1"), 6, 600)])),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["bound"], 3);
        assert_eq!(r.stats["events"], 5);
    }

    #[test]
    fn a_pod_moved_to_another_node_is_a_rebind() {
        let h = history(vec![
            ok(R, 1, seen(pod("u1", Some("a1"), 3, 100))),
            ok(R, 2, seen(pod("u1", Some("a2"), 5, 100))),
            ok(R + 1, 3, final_state(vec![pod("u1", Some("a2"), 5, 100)])),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["rebind"]);
        assert_eq!(r.anomalies[0].ops, vec![0, 1]);
    }

    #[test]
    fn final_read_on_another_node_is_a_rebind() {
        let h = history(vec![
            ok(R, 1, seen(pod("u1", Some("a1"), 3, 100))),
            ok(R + 1, 3, final_state(vec![pod("u1", Some("a2"), 9, 100)])),
        ]);
        assert_eq!(kinds(&check(&h)), ["rebind"]);
    }

    #[test]
    fn a_binding_undone_is_reported() {
        let h = history(vec![
            ok(R, 1, seen(pod("u1", Some("a1"), 3, 100))),
            ok(R, 2, seen(pod("u1", None, 4, 100))),
            ok(R, 3, seen(pod("u1", Some("a1"), 5, 100))),
            ok(R + 1, 4, final_state(vec![pod("u1", Some("a1"), 5, 100)])),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["unbound"]);
    }

    #[test]
    fn stale_or_repeated_events_are_out_of_order_but_not_a_rebind() {
        let h = history(vec![
            ok(R, 1, seen(pod("u1", Some("a1"), 5, 100))),
            ok(R, 2, seen(pod("u1", None, 3, 100))),
            ok(R, 3, seen(pod("u1", Some("a1"), 5, 100))),
            ok(R + 1, 4, final_state(vec![pod("u1", Some("a1"), 5, 100)])),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["event-order", "event-order"]);
        assert_eq!(r.anomalies[0].ops, vec![1]);
        let relisted = history(vec![
            ok(R, 1, seen(pod("u1", Some("a1"), 5, 100))),
            ok(R, 2, Call::PodList { pods: vec![pod("u1", Some("a1"), 5, 100)], resource_version: 9 }),
            ok(R, 3, seen(pod("u1", Some("a1"), 9, 100))),
            ok(R + 1, 4, final_state(vec![pod("u1", Some("a1"), 9, 100)])),
        ]);
        assert_eq!(kinds(&check(&relisted)), ["event-order"], "an event at the list's own resourceVersion");
    }

    #[test]
    fn cpu_over_commit_is_found_in_the_watched_states() {
        let h = history(vec![
            ok(R, 1, seen(pod("u1", Some("a1"), 3, 600))),
            ok(R, 2, seen(pod("u2", Some("a1"), 4, 600))),
            ok(R, 3, gone(pod("u2", Some("a1"), 5, 600))),
            ok(R + 1, 4, final_state(vec![pod("u1", Some("a1"), 3, 600)])),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["over-commit"]);
        assert!(r.anomalies[0].message.contains("node a1 over-committed on cpu"), "{}", r.anomalies[0].message);
        assert!(r.anomalies[0].message.contains("1200m requested > 1000m"), "{}", r.anomalies[0].message);
        assert_eq!(r.anomalies[0].ops, vec![1]);
    }

    #[test]
    fn memory_over_commit_is_found_in_the_final_read() {
        let mut big = pod("u1", Some("a2"), 3, 100);
        big.memory_bytes = 700 << 20;
        let mut big2 = pod("u2", Some("a2"), 4, 100);
        big2.memory_bytes = 700 << 20;
        let h = history(vec![ok(R + 1, 4, final_state(vec![big, big2]))]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["over-commit"]);
        assert!(r.anomalies[0].message.contains("on memory"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn pod_count_over_commit_is_found_and_terminal_pods_do_not_count() {
        let mut done = pod("u0", Some("a1"), 2, 10);
        done.phase = Some("Succeeded".into());
        let four: Vec<PodView> = (1..=4).map(|i| pod(&format!("u{i}"), Some("a1"), 2 + i, 10)).collect();
        let h = history(vec![
            ok(R, 0, Call::PodList { pods: vec![done.clone()], resource_version: 2 }),
            ok(R, 1, seen(four[0].clone())),
            ok(R, 2, seen(four[1].clone())),
            ok(R, 3, seen(four[2].clone())),
            ok(R + 1, 4, final_state(vec![done, four[0].clone(), four[1].clone(), four[2].clone()])),
        ]);
        assert_eq!(check(&h).verdict, Verdict::Valid, "three live pods fit, the Succeeded one is free");
        let h = history(vec![
            ok(R, 1, seen(four[0].clone())),
            ok(R, 2, seen(four[1].clone())),
            ok(R, 3, seen(four[2].clone())),
            ok(R, 4, seen(four[3].clone())),
            ok(R + 1, 5, final_state(four.clone())),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["over-commit"]);
        assert!(r.anomalies[0].message.contains("on pods in 2 observed state(s)"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn an_acknowledged_create_missing_at_the_end_is_a_lost_pod_unless_deleted() {
        let create = |uid: Option<&str>| Call::CreatePod {
            name: "pod-u1".into(),
            cpu_milli: 100,
            memory_bytes: 64 << 20,
            uid: uid.map(String::from),
        };
        let delete = Call::DeletePod { name: "pod-u1".into() };
        let created = vec![invoke(0, 1, create(None)), ok(0, 2, create(Some("u1")))];
        let lost = history([created.clone(), vec![ok(R + 1, 3, final_state(vec![]))]].concat());
        let r = check(&lost);
        assert_eq!(kinds(&r), ["lost-pod"]);
        assert!(r.anomalies[0].message.contains("pod pod-u1 (uid u1)"), "{}", r.anomalies[0].message);
        let deleted = history(
            [
                created.clone(),
                vec![invoke(0, 3, delete.clone()), info(0, 4, delete), ok(R + 1, 5, final_state(vec![]))],
            ]
            .concat(),
        );
        assert_eq!(check(&deleted).verdict, Verdict::Valid);
        let kept = history([created, vec![ok(R + 1, 3, final_state(vec![pod("u1", Some("a1"), 4, 100)]))]].concat());
        assert_eq!(check(&kept).verdict, Verdict::Valid);
    }

    #[test]
    fn a_failed_delete_or_create_that_took_effect_is_reported() {
        let create = |name: &str, uid: Option<&str>| Call::CreatePod {
            name: name.into(),
            cpu_milli: 100,
            memory_bytes: 64 << 20,
            uid: uid.map(String::from),
        };
        let delete = Call::DeletePod { name: "pod-u1".into() };
        let h = history(vec![
            invoke(0, 1, create("pod-u1", None)),
            ok(0, 2, create("pod-u1", Some("u1"))),
            ok(R, 3, seen(pod("u1", Some("a1"), 4, 100))),
            invoke(0, 4, delete.clone()),
            ok(R, 5, gone(pod("u1", Some("a1"), 6, 100))),
            fail(0, 6, delete),
            invoke(1, 7, create("pod-u2", None)),
            fail(1, 8, create("pod-u2", None)),
            ok(R, 9, seen(pod("u2", None, 7, 100))),
            ok(R + 1, 10, final_state(vec![pod("u2", None, 7, 100)])),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["failed-but-applied", "failed-but-applied"], "{r:?}");
        assert!(r.anomalies[0].message.starts_with("delete of pod pod-u1 failed"), "{}", r.anomalies[0].message);
        assert!(r.anomalies[1].message.starts_with("create of pod pod-u2 failed"), "{}", r.anomalies[1].message);
    }

    #[test]
    fn without_a_final_read_the_verdict_is_unknown() {
        let h = history(vec![ok(R, 1, seen(pod("u1", Some("a1"), 3, 100)))]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Unknown);
        assert_eq!(kinds(&r), ["no-final-state"]);
    }
}
