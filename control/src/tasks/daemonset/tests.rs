//! Unit and property tests of the DaemonSet decision.

use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn ds_with(spec_extra: serde_json::Value, strategy: serde_json::Value) -> DaemonSet {
    let mut pod_spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    for (k, v) in spec_extra.as_object().unwrap() {
        pod_spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 3},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec},
                 "updateStrategy": strategy}
    }))
    .unwrap()
}

fn ds() -> DaemonSet {
    ds_with(json!({}), json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}))
}

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap()
}

fn plain(name: &str) -> Node {
    node(name, json!({}), json!([]))
}

/// A pod of `ds` on `node` at revision `hash`, created at `created`, ready or not.
fn daemon_pod(ds: &DaemonSet, name: &str, node: &str, hash: &str, created: i64, ready: bool) -> Pod {
    let mut p = new_pod(ds, node, hash);
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.owner_references.as_mut().unwrap()[0].uid = "ds-uid".into();
    p.metadata.creation_timestamp = Some(Time(t(created)));
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(t(created))),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

fn names(refs: &[PodRef]) -> Vec<&str> {
    refs.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn eligibility_follows_selector_affinity_and_taints() {
    let d = ds_with(json!({"nodeSelector": {"disk": "ssd"}}), json!({"type": "OnDelete"}));
    assert_eq!(node_should_run(&node("a", json!({"disk": "ssd"}), json!([])), &d), (true, true));
    assert_eq!(node_should_run(&plain("b"), &d), (false, false), "selector mismatch");
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}]}}}});
    let d = ds_with(affinity, json!({"type": "OnDelete"}));
    assert_eq!(node_should_run(&plain("a"), &d), (true, true));
    assert_eq!(node_should_run(&node("a", json!({"skip": "yes"}), json!([])), &d), (false, false));

    let d = ds();
    let tainted = |t: serde_json::Value| node("n", json!({}), json!([t]));
    // Untolerated NoSchedule: no new pod, but a running one stays.
    assert_eq!(node_should_run(&tainted(json!({"key": "gpu", "effect": "NoSchedule"})), &d), (false, true));
    // Untolerated NoExecute: the pod must go.
    assert_eq!(node_should_run(&tainted(json!({"key": "gpu", "effect": "NoExecute"})), &d), (false, false));
    // The automatic tolerations: cordoned, under pressure, unreachable (NoExecute) nodes.
    for key in ["node.kubernetes.io/unschedulable", "node.kubernetes.io/disk-pressure"] {
        assert_eq!(node_should_run(&tainted(json!({"key": key, "effect": "NoSchedule"})), &d), (true, true), "{key}");
    }
    let unreachable = node(
        "n",
        json!({}),
        json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
               {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]),
    );
    assert_eq!(node_should_run(&unreachable, &d), (false, true), "kept, but no new pod there");
    let d = ds_with(json!({"tolerations": [{"operator": "Exists"}]}), json!({"type": "OnDelete"}));
    assert_eq!(node_should_run(&tainted(json!({"key": "gpu", "effect": "NoExecute"})), &d), (true, true));
}

#[test]
fn new_pods_are_pinned_by_affinity_and_tolerate_node_conditions() {
    let d = ds_with(
        json!({"hostNetwork": true, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}}}),
        json!({"type": "OnDelete"}),
    );
    let p = new_pod(&d, "node-7", "h1");
    assert_eq!(target_node(&p).as_deref(), Some("node-7"));
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}]})
    );
    let tolerations = p.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
    assert_eq!(tolerations.len(), 7, "six automatic ones plus network-unavailable for hostNetwork");
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
        && t.effect.as_deref() == Some("NoExecute")
        && t.toleration_seconds.is_none()));
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[CONTROLLER_REVISION_HASH], "h1");
    assert_eq!(labels[POD_TEMPLATE_GENERATION], "3");
    assert_eq!(labels["app"], "agent");
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
    // The scheduler honours the pin.
    let facts = |n: &str| NodeFacts::of(&plain(n));
    assert!(matches_node_selection(&p, &facts("node-7")));
    assert!(!matches_node_selection(&p, &facts("node-8")));
}

#[test]
fn one_pod_per_eligible_node_and_status() {
    let d = ds();
    let hash = revision_hash(&d);
    let (a, b, c) = (plain("a"), plain("b"), node("c", json!({}), json!([{"key": "gpu", "effect": "NoSchedule"}])));
    let pa = daemon_pod(&d, "agent-a", "a", &hash, 1, true);
    let pc = daemon_pod(&d, "agent-c", "c", &hash, 1, true);
    let plan = plan_daemonset(&d, &revision_hash(&d), &[&a, &b, &c], &[&pa, &pc], true, t(100));
    assert_eq!(plan.create_on, vec!["b".to_string()]);
    assert!(plan.delete.is_empty(), "the pod on the NoSchedule-tainted node may stay");
    let s = &plan.status;
    assert_eq!(
        (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready, s.number_misscheduled),
        (2, 1, 1, 1)
    );
    assert_eq!((s.number_available, s.number_unavailable, s.updated_number_scheduled), (Some(1), Some(1), Some(1)));
    assert_eq!(s.observed_generation, Some(3));
    // Not managing (own writes not seen yet): status only.
    let plan = plan_daemonset(&d, &revision_hash(&d), &[&a, &b, &c], &[&pa, &pc], false, t(100));
    assert!(plan.create_on.is_empty() && plan.delete.is_empty());
}

#[test]
fn pods_leave_nodes_that_stop_matching_and_duplicates_and_failures_go() {
    let d = ds_with(json!({"nodeSelector": {"role": "edge"}}), json!({"type": "OnDelete"}));
    let hash = revision_hash(&d);
    let a = node("a", json!({"role": "edge"}), json!([]));
    let b = plain("b"); // label removed
    let pa_old = daemon_pod(&d, "agent-old", "a", &hash, 1, true);
    let pa_new = daemon_pod(&d, "agent-dup", "a", &hash, 5, true);
    let pb = daemon_pod(&d, "agent-b", "b", &hash, 1, true);
    let plan = plan_daemonset(&d, &revision_hash(&d), &[&a, &b], &[&pa_old, &pa_new, &pb], true, t(100));
    let mut deleted = names(&plan.delete);
    deleted.sort();
    assert_eq!(deleted, vec!["agent-b", "agent-dup"], "keeps the oldest pod on a node");
    assert!(plan.create_on.is_empty());

    let mut failed = daemon_pod(&d, "agent-failed", "a", &hash, 1, false);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let plan = plan_daemonset(&d, &revision_hash(&d), &[&a], &[&failed], true, t(100));
    assert_eq!(names(&plan.delete), vec!["agent-failed"]);
    assert!(plan.create_on.is_empty(), "replaced once it is gone");
    assert_eq!(plan.failed, vec![FailedPod { pod: "agent-failed".into(), node: "a".into() }]);
    // Being deleted and finished: it no longer holds the node.
    failed.metadata.deletion_timestamp = Some(Time(t(90)));
    assert_eq!(
        plan_daemonset(&d, &revision_hash(&d), &[&a], &[&failed], true, t(100)).create_on,
        vec!["a".to_string()]
    );
    // Still shutting down: the new pod waits.
    let mut stopping = daemon_pod(&d, "agent-stopping", "a", &hash, 1, true);
    stopping.metadata.deletion_timestamp = Some(Time(t(90)));
    let plan = plan_daemonset(&d, &revision_hash(&d), &[&a], &[&stopping], true, t(100));
    assert!(plan.create_on.is_empty() && plan.delete.is_empty());

    // A deleted Node: an unbound pod for it is deleted here, a bound one is left to pod GC.
    let mut unbound = daemon_pod(&d, "agent-ghost", "gone", &hash, 1, false);
    unbound.spec.as_mut().unwrap().node_name = None;
    let bound = daemon_pod(&d, "agent-bound", "gone2", &hash, 1, true);
    let plan = plan_daemonset(&d, &revision_hash(&d), &[&a], &[&unbound, &bound], true, t(100));
    assert_eq!(names(&plan.delete), vec!["agent-ghost"]);
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let d = ds(); // maxUnavailable 1
    let hash = revision_hash(&d);
    let nodes = [plain("a"), plain("b"), plain("c")];
    let nodes: Vec<&Node> = nodes.iter().collect();
    let old = |n: &str, ready| daemon_pod(&d, &format!("old-{n}"), n, "old", 1, ready);
    let (oa, ob, oc) = (old("a", true), old("b", true), old("c", true));
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&oa, &ob, &oc], true, t(100));
    assert_eq!(names(&plan.delete), vec!["old-a"], "one node at a time");
    assert_eq!(plan.status.updated_number_scheduled, Some(0));
    // a's new pod is not ready yet: nothing more goes.
    let na = daemon_pod(&d, "new-a", "a", &hash, 50, false);
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&na, &ob, &oc], true, t(100));
    assert!(plan.delete.is_empty() && plan.create_on.is_empty());
    // ... but an unavailable old pod is always replaced.
    let ob_sick = old("b", false);
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&na, &ob_sick, &oc], true, t(100));
    assert_eq!(names(&plan.delete), vec!["old-b"]);
    // Ready: the next node.
    let na = daemon_pod(&d, "new-a", "a", &hash, 50, true);
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&na, &ob, &oc], true, t(100));
    assert_eq!(names(&plan.delete), vec!["old-b"]);
    assert_eq!(plan.status.updated_number_scheduled, Some(1));
    // OnDelete never deletes for an update.
    let d = ds_with(json!({}), json!({"type": "OnDelete"}));
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&oa, &ob, &oc], true, t(100));
    assert!(plan.delete.is_empty() && plan.create_on.is_empty());
    // maxUnavailable 100%: all at once.
    let d = ds_with(json!({}), json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}));
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&oa, &ob, &oc], true, t(100));
    assert_eq!(plan.delete.len(), 3);
}

#[test]
fn rolling_update_with_surge_starts_the_new_pod_first() {
    let d = ds_with(json!({}), json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}));
    let hash = revision_hash(&d);
    let nodes = [plain("a"), plain("b")];
    let nodes: Vec<&Node> = nodes.iter().collect();
    let (oa, ob) = (daemon_pod(&d, "old-a", "a", "old", 1, true), daemon_pod(&d, "old-b", "b", "old", 1, true));
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&oa, &ob], true, t(100));
    assert_eq!(plan.create_on, vec!["a".to_string()], "one surge pod at a time");
    assert!(plan.delete.is_empty());
    let na = daemon_pod(&d, "new-a", "a", &hash, 50, false);
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&oa, &na, &ob], true, t(100));
    assert!(plan.create_on.is_empty() && plan.delete.is_empty(), "waits for the new pod");
    let na = daemon_pod(&d, "new-a", "a", &hash, 50, true);
    let plan = plan_daemonset(&d, &revision_hash(&d), &nodes, &[&oa, &na, &ob], true, t(100));
    assert_eq!(names(&plan.delete), vec!["old-a"], "old pod goes once the new one is ready");
}

#[test]
fn pods_carry_the_hash_of_the_current_revision() {
    // The history may name the current template's revision by another hash (one adopted,
    // or kept from before a collision-count change): pods carry and are judged by it.
    let d = ds();
    let nodes = [plain("a"), plain("b")];
    let nodes: Vec<&Node> = nodes.iter().collect();
    let pa = daemon_pod(&d, "agent-a", "a", "adopted", 1, true);
    let pb_old = daemon_pod(&d, "agent-b", "b", "old", 1, true);
    let plan = plan_daemonset(&d, "adopted", &nodes, &[&pa, &pb_old], true, t(100));
    assert_eq!(plan.hash, "adopted");
    assert_eq!(names(&plan.delete), vec!["agent-b"], "only the other hash is out of date");
    assert_eq!(plan.status.updated_number_scheduled, Some(1));
    assert_eq!(plan.live_hashes, BTreeSet::from(["adopted".to_string(), "old".to_string()]));
    let plan = plan_daemonset(&d, "adopted", &nodes, &[&pa], true, t(100));
    assert_eq!(plan.create_on, vec!["b".to_string()]);
    assert_eq!(new_pod(&d, "b", &plan.hash).metadata.labels.unwrap()[CONTROLLER_REVISION_HASH], "adopted");
    // A terminating pod still runs its revision.
    let mut stopping = pb_old.clone();
    stopping.metadata.deletion_timestamp = Some(Time(t(90)));
    let plan = plan_daemonset(&d, "adopted", &nodes, &[&pa, &stopping], true, t(100));
    assert!(plan.live_hashes.contains("old"));
}

proptest! {
    /// Whatever the nodes' labels and taints: a fresh DaemonSet creates exactly one pod per
    /// node that should run it; once those pods exist, nothing more is created or deleted,
    /// and the status counts them all.
    #[test]
    fn converges_to_one_pod_per_eligible_node(
        nodes in proptest::collection::vec((any::<bool>(), 0u8..4), 0..12)
    ) {
        let d = ds_with(json!({"nodeSelector": {"pool": "a"}}), json!({"type": "OnDelete"}));
        let hash = revision_hash(&d);
        let taint = |k: u8| match k {
            0 => json!([]),
            1 => json!([{"key": "gpu", "effect": "NoSchedule"}]),
            2 => json!([{"key": "gpu", "effect": "NoExecute"}]),
            _ => json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        };
        let nodes: Vec<Node> = nodes.iter().enumerate()
            .map(|(i, (labelled, k))| node(&format!("n{i}"),
                if *labelled { json!({"pool": "a"}) } else { json!({}) }, taint(*k)))
            .collect();
        let refs: Vec<&Node> = nodes.iter().collect();
        let mut eligible: Vec<String> = nodes.iter().filter(|n| node_should_run(n, &d).0)
            .map(|n| n.metadata.name.clone().unwrap()).collect();
        eligible.sort();
        let plan = plan_daemonset(&d, &revision_hash(&d), &refs, &[], true, t(100));
        prop_assert_eq!(&plan.create_on, &eligible);
        let pods: Vec<Pod> = plan.create_on.iter().enumerate()
            .map(|(i, n)| daemon_pod(&d, &format!("p{i}"), n, &hash, i as i64, true)).collect();
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let again = plan_daemonset(&d, &revision_hash(&d), &refs, &pod_refs, true, t(100));
        prop_assert!(again.create_on.is_empty());
        prop_assert!(again.delete.is_empty());
        prop_assert_eq!(again.status.desired_number_scheduled, eligible.len() as i32);
        prop_assert_eq!(again.status.number_available, Some(eligible.len() as i32));
        prop_assert_eq!(again.status.number_misscheduled, 0);
    }
}
