//! Tests of priority ordering and preemption, pure: the PostFilter's victims and node
//! against hand-made snapshots (reprieve, PodDisruptionBudgets, the node-choice order,
//! eligibility, messages), and the queue around it (priority order, nominations holding
//! room, a preemptor binding once its victims are gone).

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::algorithm::{find_fit, schedule};
use super::facts::PodFacts;
use super::preemption::{num_candidates, post_filter, Budgets, PostFilter, Preemption};
use super::queue::{Decision, QueueTimings, SchedulingQueue};
use super::snapshot::NodesSnapshot;

fn node(name: &str, cpu: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap()
}

/// A pod of `priority` requesting `cpu`; `started` (seconds) sets `status.startTime`.
fn pod_json(name: &str, cpu: &str, priority: i32, started: Option<u32>) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"priority": priority, "containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu, "memory": "1Mi"}}}]}});
    if let Some(s) = started {
        p["status"] = json!({"phase": "Running", "startTime": format!("2025-01-01T00:{:02}:{:02}Z", s / 60, s % 60)});
    }
    p
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn bound(mut v: Value, node: &str) -> Pod {
    v["spec"]["nodeName"] = json!(node);
    pod(v)
}

fn pdb(app: &str, allowed: i32) -> PodDisruptionBudget {
    serde_json::from_value(json!({"metadata": {"name": app, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": 1},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
    .unwrap()
}

fn budgets(pdbs: &[PodDisruptionBudget]) -> Budgets {
    let mut b = Budgets::default();
    for p in pdbs {
        b.applied(p);
    }
    b
}

/// Nodes with the given bound pods.
fn cluster(nodes: &[(&str, &str)], pods: Vec<(Value, &str)>) -> NodesSnapshot {
    let mut s = NodesSnapshot::new();
    for (name, cpu) in nodes {
        s.upsert_node(&node(name, cpu));
    }
    for (p, on) in pods {
        s.place(&PodFacts::of(&pod(p)), on);
    }
    s
}

/// The PostFilter for `preemptor` on `s` (which must not fit it).
fn preempt(preemptor: &Value, s: &NodesSnapshot, b: &Budgets) -> PostFilter {
    let p = pod(preemptor.clone());
    let facts = PodFacts::of(&p);
    let fit = find_fit(&p, &facts, s).expect_err("the preemptor must not fit");
    post_filter(&p, &facts, s, b, &fit)
}

fn nominated(outcome: PostFilter) -> Preemption {
    match outcome {
        PostFilter::Nominate(p) => p,
        other => panic!("no preemption: {other:?}"),
    }
}

fn victims(p: &Preemption) -> Vec<&str> {
    p.victims.iter().map(|v| v.name.as_str()).collect()
}

fn with_app(mut v: Value, app: &str) -> Value {
    v["metadata"]["labels"] = json!({"app": app});
    v
}

#[test]
fn as_few_victims_as_needed_the_least_important_ones() {
    // Four 500m pods of priority 0 on 2 cpus; 1 cpu is needed: the two started last go.
    let pods = (0..4).map(|i| (pod_json(&format!("low-{i}"), "500m", 0, Some(10 + i)), "n")).collect();
    let s = cluster(&[("n", "2")], pods);
    let p = nominated(preempt(&pod_json("high", "1", 1000, None), &s, &Budgets::default()));
    assert_eq!((p.node.as_str(), victims(&p), p.pdb_violations), ("n", vec!["low-2", "low-3"], 0));
    assert_eq!(p.message, "0/1 nodes are available: 1 Insufficient cpu.", "a preemption adds no verdict");
    assert_eq!(p.victims[0].uid.as_deref(), Some("uid-low-2"));

    // Higher priorities are reprieved first: the 1-cpu pod of priority 5 stays, the two
    // priority-1 pods go (although one of them alone would free as much).
    let s = cluster(
        &[("n", "2")],
        vec![
            (pod_json("mid", "1", 5, Some(30)), "n"),
            (pod_json("low-a", "500m", 1, Some(1)), "n"),
            (pod_json("low-b", "500m", 1, Some(2)), "n"),
        ],
    );
    let p = nominated(preempt(&pod_json("high", "1", 1000, None), &s, &Budgets::default()));
    assert_eq!(victims(&p), ["low-a", "low-b"]);
    // Pods of equal or higher priority are never victims.
    let p = nominated(preempt(&pod_json("p5", "1", 5, None), &s, &Budgets::default()));
    assert_eq!(victims(&p), ["low-a", "low-b"]);
    let outcome = preempt(&pod_json("p1", "1", 1, None), &s, &Budgets::default());
    assert!(
        matches!(&outcome, PostFilter::Unschedulable { message, clear_nomination: true }
        if message.ends_with("preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")),
        "{outcome:?}"
    );
}

#[test]
fn pods_a_budget_protects_are_reprieved_first() {
    // `web` started later than `batch`, so without budgets it is the victim...
    let pods = vec![
        (with_app(pod_json("batch", "1", 0, Some(1)), "batch"), "n"),
        (with_app(pod_json("web", "1", 0, Some(2)), "web"), "n"),
    ];
    let s = cluster(&[("n", "2")], pods);
    let high = pod_json("high", "1", 1000, None);
    assert_eq!(victims(&nominated(preempt(&high, &s, &Budgets::default()))), ["web"]);
    // ...but with a budget that allows no disruption it gets the first reprieve.
    let p = nominated(preempt(&high, &s, &budgets(&[pdb("web", 0)])));
    assert_eq!((victims(&p), p.pdb_violations), (vec!["batch"], 0));
    // A budget with room left is no protection.
    assert_eq!(victims(&nominated(preempt(&high, &s, &budgets(&[pdb("web", 1)])))), ["web"]);
    // When every choice breaks a budget, it is counted.
    let p = nominated(preempt(&high, &s, &budgets(&[pdb("web", 0), pdb("batch", 0)])));
    assert_eq!((victims(&p), p.pdb_violations), (vec!["web"], 1));
}

#[test]
fn the_node_is_chosen_by_violations_then_highest_victim_then_sum_then_start() {
    let high = pod_json("high", "1", 1000, None);
    // Fewest budget violations beats a lower victim priority.
    let s = cluster(
        &[("a", "1"), ("b", "1")],
        vec![(with_app(pod_json("pa", "1", 1, Some(1)), "web"), "a"), (pod_json("pb", "1", 500, Some(1)), "b")],
    );
    assert_eq!(nominated(preempt(&high, &s, &budgets(&[pdb("web", 0)]))).node, "b");
    assert_eq!(nominated(preempt(&high, &s, &Budgets::default())).node, "a", "without the budget: lowest priority");
    // The lowest highest-priority victim, even if it means more victims.
    let s = cluster(
        &[("a", "1"), ("b", "1")],
        vec![
            (pod_json("a1", "500m", 3, Some(1)), "a"),
            (pod_json("a2", "500m", 3, Some(1)), "a"),
            (pod_json("b1", "1", 4, Some(1)), "b"),
        ],
    );
    assert_eq!(victims(&nominated(preempt(&high, &s, &Budgets::default()))), ["a1", "a2"]);
    // Equal highest priority: the smaller sum (here: fewer victims).
    let s = cluster(
        &[("a", "1"), ("b", "1")],
        vec![
            (pod_json("a1", "500m", 3, Some(1)), "a"),
            (pod_json("a2", "500m", 3, Some(1)), "a"),
            (pod_json("b1", "1", 3, Some(1)), "b"),
        ],
    );
    assert_eq!(victims(&nominated(preempt(&high, &s, &Budgets::default()))), ["b1"]);
    // All equal: the node whose top victim started last (it has run the shortest).
    let s = cluster(
        &[("a", "1"), ("b", "1")],
        vec![(pod_json("old", "1", 3, Some(1)), "a"), (pod_json("young", "1", 3, Some(50)), "b")],
    );
    assert_eq!(victims(&nominated(preempt(&high, &s, &Budgets::default()))), ["young"]);
}

#[test]
fn no_preemption_for_never_policies_equal_priorities_or_hopeless_nodes() {
    let s = cluster(&[("n", "1")], vec![(pod_json("low", "1", 0, Some(1)), "n")]);
    let mut never = pod_json("never", "1", 1000, None);
    never["spec"]["preemptionPolicy"] = json!("Never");
    assert_eq!(
        schedule(&pod(never), &s).unwrap_err().message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    // Even an empty node is too small: the filter's reason, not "no victims".
    assert_eq!(
        schedule(&pod(pod_json("huge", "2", 1000, None)), &s).unwrap_err().message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu."
    );
    // A node that fails on a taint is not helped by evictions.
    let mut tainted = node("t", "1");
    tainted.spec.as_mut().unwrap().taints =
        Some(vec![serde_json::from_value(json!({"key": "k", "effect": "NoSchedule"})).unwrap()]);
    let mut s = cluster(&[("n", "1")], vec![(pod_json("low", "1", 0, Some(1)), "n")]);
    s.upsert_node(&tainted);
    s.place(&PodFacts::of(&pod(pod_json("low-t", "1", 0, Some(1)))), "t");
    let p = nominated(preempt(&pod_json("high", "1", 1000, None), &s, &Budgets::default()));
    assert_eq!((p.node.as_str(), victims(&p)), ("n", vec!["low"]));
    assert_eq!(
        p.message, "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: }.",
        "the filters' histogram"
    );
}

#[test]
fn candidates_are_capped_like_kube_scheduler() {
    assert_eq!(num_candidates(0), 0);
    assert_eq!(num_candidates(40), 40);
    assert_eq!(num_candidates(1000), 100);
    assert_eq!(num_candidates(5000), 500);
}

// ---- the queue ------------------------------------------------------------------------

fn synced_queue(nodes: &[(&str, &str)]) -> SchedulingQueue {
    let mut q = SchedulingQueue::new(super::DEFAULT_SCHEDULER, QueueTimings::default());
    q.nodes_relist_started();
    for (name, cpu) in nodes {
        q.node_applied(&node(name, cpu));
    }
    q.nodes_relist_done();
    q.pods_relist_started();
    q.pods_relist_done();
    q
}

fn names(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .map(|d| match d {
            Decision::Bind { pod, node } => format!("bind {} {node}", pod.metadata.name.as_deref().unwrap_or("")),
            Decision::Unschedulable { pod, .. } => {
                format!("unschedulable {}", pod.metadata.name.as_deref().unwrap_or(""))
            }
            Decision::Preempt { pod, preemption } => format!(
                "preempt {} {} [{}]",
                pod.metadata.name.as_deref().unwrap_or(""),
                preemption.node,
                victims(preemption).join(",")
            ),
        })
        .collect()
}

#[test]
fn the_queue_pops_higher_priority_first_then_in_arrival_order() {
    let mut q = synced_queue(&[("n", "64")]);
    for (name, priority) in [("a", 0), ("b", 10), ("c", 10), ("d", 5), ("e", -3)] {
        q.pod_applied(pod(pod_json(name, "1", priority, None)));
    }
    let now = Instant::now();
    let order: Vec<String> = (0..5).flat_map(|_| names(&q.next_batch(1, now))).collect();
    assert_eq!(order, ["bind b n", "bind c n", "bind d n", "bind a n", "bind e n"]);
}

#[test]
fn a_preemptor_holds_the_room_it_made_and_binds_once_its_victims_are_gone() {
    let timings = QueueTimings::default();
    let mut q = synced_queue(&[("n", "1")]);
    q.pod_applied(bound(pod_json("low-1", "500m", 0, Some(1)), "n"));
    q.pod_applied(bound(pod_json("low-2", "500m", 0, Some(2)), "n"));
    q.pod_applied(pod(pod_json("high", "500m", 1000, None)));
    let t0 = Instant::now();
    let d = q.next_batch(10, t0);
    assert_eq!(names(&d), ["preempt high n [low-2]"]);
    assert_eq!(q.snapshot.nomination("default/high"), Some("n"));

    // The victim is being deleted: the preemptor waits for it instead of preempting more.
    let mut deleting = pod_json("low-2", "500m", 0, Some(2));
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T01:00:00Z");
    q.pod_applied(bound(deleting.clone(), "n"));
    q.tick(t0 + timings.initial_backoff);
    let d = q.next_batch(10, t0 + timings.initial_backoff);
    let Decision::Unschedulable { message, update_status: true, clear_nomination: false, .. } = &d[0] else {
        panic!("{d:?}")
    };
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: not eligible due to a terminating pod on the nominated node."
    );

    // Gone: the room is the preemptor's; a lower-priority pod arriving first cannot take it
    // (nor preempt for it: it has nothing of lower priority to evict).
    q.pod_deleted(&bound(deleting, "n"));
    q.pod_applied(pod(pod_json("sneaky", "500m", 0, None)));
    let t1 = t0 + timings.initial_backoff;
    let d = q.next_batch(10, t1);
    assert_eq!(names(&d), ["unschedulable sneaky"]);
    q.tick(t1 + timings.initial_backoff * 2);
    let d = q.next_batch(10, t1 + timings.initial_backoff * 2);
    assert_eq!(names(&d), ["bind high n", "unschedulable sneaky"]);
    assert_eq!(q.snapshot.nomination("default/high"), None, "bound: no longer held twice");
    assert_eq!(q.snapshot.node("n").unwrap().usage.requested.milli_cpu, 1000);
}

#[test]
fn the_nominated_node_is_tried_first() {
    let mut q = synced_queue(&[("busy", "4"), ("idle", "4")]);
    q.pod_applied(bound(pod_json("x", "2", 0, Some(1)), "busy"));
    let mut p = pod_json("p", "1", 100, None);
    // Nominated by the previous leader's scheduler: adopted from the status.
    p["status"] = json!({"nominatedNodeName": "busy"});
    q.pod_applied(pod(p));
    assert_eq!(q.snapshot.nomination("default/p"), Some("busy"));
    // Least-allocated would pick "idle"; the nomination wins while it fits.
    assert_eq!(names(&q.next_batch(10, Instant::now())), ["bind p busy"]);
}

#[test]
fn a_higher_priority_preemption_clears_lower_nominations_on_its_node() {
    let mut q = synced_queue(&[("n", "1")]);
    q.pod_applied(bound(pod_json("low", "1", 0, Some(1)), "n"));
    q.pod_applied(pod(pod_json("mid", "1", 100, None)));
    let t0 = Instant::now();
    assert_eq!(names(&q.next_batch(10, t0)), ["preempt mid n [low]"]);
    q.pod_applied(pod(pod_json("top", "1", 1000, None)));
    let d = q.next_batch(10, t0);
    // `low` is still there (not yet deleted): `top` evicts it too, and `mid` loses its claim.
    let Decision::Preempt { preemption, .. } = &d[0] else { panic!("{d:?}") };
    assert_eq!((victims(preemption), preemption.demoted[0].name.as_str()), (vec!["low"], "mid"));
    assert_eq!(q.snapshot.nomination("default/mid"), None);
    assert_eq!(q.snapshot.nomination("default/top"), Some("n"));
    // `mid` is tried again at once (in the same batch): evicting `low` would not help it
    // any more, the room is `top`'s.
    let Decision::Unschedulable { pod, message, .. } = &d[1] else { panic!("{d:?}") };
    assert_eq!(pod.metadata.name.as_deref(), Some("mid"));
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu."
    );
}

#[test]
fn a_nomination_no_node_can_honour_is_cleared() {
    let mut q = synced_queue(&[("n", "1")]);
    q.pod_applied(bound(pod_json("peer", "1", 100, Some(1)), "n"));
    let mut p = pod_json("p", "1", 100, None);
    p["status"] = json!({"nominatedNodeName": "n"});
    q.pod_applied(pod(p));
    let d = q.next_batch(10, Instant::now());
    assert!(matches!(&d[0], Decision::Unschedulable { clear_nomination: true, update_status: true, .. }), "{d:?}");
    assert_eq!(q.snapshot.nomination("default/p"), None);
}
