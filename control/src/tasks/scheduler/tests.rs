//! Tests of the pure parts: filters and scores against hand-made cases, properties of
//! `schedule` + `assume` against a from-scratch reference, and the queue's bookkeeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::algorithm::{num_feasible_nodes_to_find, schedule, tolerates};
use super::facts::{pod_requests, HostPort, NodeFacts, PodFacts};
use super::queue::{Decision, QueueTimings, SchedulingQueue};
use super::snapshot::NodesSnapshot;

fn node_json(name: &str, cpu: &str, memory: &str, pods: u32) -> Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods.to_string()},
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn node(v: Value) -> Node {
    serde_json::from_value(v).unwrap()
}

fn pod_json(name: &str, cpu: &str, memory: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn snapshot(nodes: impl IntoIterator<Item = Value>) -> NodesSnapshot {
    let mut s = NodesSnapshot::new();
    for n in nodes {
        s.upsert_node(&node(n));
    }
    s
}

#[test]
fn message_is_kube_schedulers_fit_error() {
    let mut tainted = node_json("cp", "8", "8Gi", 110);
    tainted["spec"]["taints"] = json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    let s = snapshot([node_json("a", "1", "8Gi", 110), node_json("b", "1", "8Gi", 110), tainted]);
    let err = schedule(&pod(pod_json("p", "2", "1Gi")), &s).unwrap_err();
    // Reasons sorted as strings, as kube-scheduler's sortReasonsHistogram does.
    assert_eq!(
        err.message,
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
         2 No preemption victims found for incoming pod."
    );
}

#[test]
fn every_failure_reason_has_kubernetes_wording() {
    let mut cordoned = node_json("cordoned", "8", "8Gi", 110);
    cordoned["spec"]["unschedulable"] = json!(true);
    let mut not_ready = node_json("not-ready", "8", "8Gi", 110);
    not_ready["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    let mut other = node_json("other", "8", "8Gi", 110);
    other["metadata"]["labels"]["disk"] = json!("hdd");
    let full = node_json("full", "8", "1Mi", 0);
    let mut s = snapshot([cordoned, not_ready, other, full, node_json("ports", "8", "8Gi", 110)]);
    let mut holder = pod_json("holder", "0", "0");
    holder["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    s.assume(&pod(holder), "ports");
    let mut p = pod_json("p", "0", "1Gi");
    p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    // The first failing filter is a node's reason: NodeAffinity runs before NodePorts and
    // NodeResourcesFit, so the selector hides the other failures of "full" and "ports".
    let err = schedule(&pod(p.clone()), &s).unwrap_err();
    assert_eq!(
        err.message,
        "0/5 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) were unschedulable, 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
    );
    p["spec"]["nodeSelector"] = json!({});
    p["spec"]["preemptionPolicy"] = json!("Never");
    s.assume(&pod(pod_json("hog", "0", "8Gi")), "other");
    let err = schedule(&pod(p), &s).unwrap_err();
    assert_eq!(
        err.message,
        "0/5 nodes are available: 1 Too many pods, \
         1 node(s) didn't have free ports for the requested pod ports, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable, \
         2 Insufficient memory. \
         preemption: not eligible due to preemptionPolicy=Never."
    );
    assert_eq!(
        schedule(&pod(pod_json("p", "1", "1")), &NodesSnapshot::new()).unwrap_err().message,
        "no nodes available to schedule pods"
    );
}

#[test]
fn filters_pick_the_only_feasible_node() {
    let mut labelled = node_json("ssd", "4", "4Gi", 10);
    labelled["metadata"]["labels"]["disk"] = json!("ssd");
    labelled["metadata"]["labels"]["cores"] = json!("16");
    let mut tainted = node_json("gpu", "4", "4Gi", 10);
    tainted["spec"]["taints"] = json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
    let s = snapshot([node_json("plain", "4", "4Gi", 10), labelled, tainted]);

    let mut p = pod_json("sel", "1", "1Gi");
    p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    assert_eq!(schedule(&pod(p), &s).unwrap(), "ssd");

    for (op, values, expect) in
        [("Gt", json!(["8"]), "ssd"), ("In", json!(["16", "32"]), "ssd"), ("Exists", json!([]), "ssd")]
    {
        let mut p = pod_json("aff", "1", "1Gi");
        p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": op, "values": values}]}]}}});
        assert_eq!(schedule(&pod(p), &s).unwrap(), expect, "{op}");
    }
    // NotIn / DoesNotExist / Lt exclude "ssd"; the taint excludes "gpu".
    for (op, values) in [("NotIn", json!(["16"])), ("DoesNotExist", json!([])), ("Lt", json!(["4"]))] {
        let mut p = pod_json("aff", "1", "1Gi");
        p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": op, "values": values}]}]}}});
        let got = schedule(&pod(p), &s);
        if op == "Lt" {
            // A missing label never satisfies Gt/Lt: no node matches.
            assert!(got.is_err(), "{op}: {got:?}");
        } else {
            assert_eq!(got.unwrap(), "plain", "{op}");
        }
    }
    let mut p = pod_json("field", "1", "1Gi");
    p["spec"]["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
    p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu"]}]}]}}});
    assert_eq!(schedule(&pod(p), &s).unwrap(), "gpu");
    let mut p = pod_json("empty-term", "1", "1Gi");
    p["spec"]["affinity"] =
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}});
    assert!(schedule(&pod(p), &s).is_err(), "an empty term matches nothing");
}

#[test]
fn toleration_semantics() {
    let taint = |k: &str, v: &str, e: &str| k8s_openapi::api::core::v1::Taint {
        key: k.into(),
        value: Some(v.into()),
        effect: e.into(),
        ..Default::default()
    };
    let tol = |v: Value| -> Vec<k8s_openapi::api::core::v1::Toleration> { serde_json::from_value(v).unwrap() };
    assert!(tolerates(&tol(json!([{"operator": "Exists"}])), &taint("any", "x", "NoExecute")));
    assert!(tolerates(&tol(json!([{"key": "k", "value": "v"}])), &taint("k", "v", "NoSchedule")));
    assert!(!tolerates(&tol(json!([{"key": "k", "value": "w"}])), &taint("k", "v", "NoSchedule")));
    assert!(tolerates(
        &tol(json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}])),
        &taint("k", "v", "NoSchedule")
    ));
    assert!(!tolerates(
        &tol(json!([{"key": "k", "operator": "Exists", "effect": "NoExecute"}])),
        &taint("k", "v", "NoSchedule")
    ));
    assert!(!tolerates(&tol(json!([{"value": "v"}])), &taint("k", "v", "NoSchedule")), "empty key needs Exists");
}

#[test]
fn cordon_and_not_ready_are_tolerable() {
    let mut cordoned = node_json("c", "4", "4Gi", 10);
    cordoned["spec"]["unschedulable"] = json!(true);
    let mut p = pod_json("ds", "1", "1Gi");
    assert!(schedule(&pod(p.clone()), &snapshot([cordoned.clone()])).is_err());
    p["spec"]["tolerations"] =
        json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]);
    assert_eq!(schedule(&pod(p.clone()), &snapshot([cordoned])).unwrap(), "c");
    let mut unknown = node_json("u", "4", "4Gi", 10);
    unknown["status"]["conditions"] = json!([]);
    assert!(schedule(&pod(p.clone()), &snapshot([unknown.clone()])).is_err(), "no Ready condition: not ready");
    p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    assert_eq!(schedule(&pod(p), &snapshot([unknown])).unwrap(), "u");
}

#[test]
fn scores_prefer_empty_nodes_preferred_affinity_and_avoid_prefer_no_schedule() {
    let mut s = snapshot([node_json("a", "4", "4Gi", 10), node_json("b", "4", "4Gi", 10)]);
    s.assume(&pod(pod_json("x", "2", "2Gi")), "a");
    assert_eq!(schedule(&pod(pod_json("p", "1", "1Gi")), &s).unwrap(), "b", "least allocated");

    let mut p = pod_json("pref", "1", "1Gi");
    p["spec"]["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}}]}});
    assert_eq!(schedule(&pod(p), &s).unwrap(), "a", "preferred affinity outweighs the load difference");

    let mut soft = node_json("soft", "4", "4Gi", 10);
    soft["spec"]["taints"] = json!([{"key": "k", "effect": "PreferNoSchedule"}]);
    let s = snapshot([soft.clone(), node_json("plain", "4", "4Gi", 10)]);
    assert_eq!(schedule(&pod(pod_json("p", "1", "1Gi")), &s).unwrap(), "plain");
    assert_eq!(schedule(&pod(pod_json("p", "1", "1Gi")), &snapshot([soft])).unwrap(), "soft", "only a score");
}

#[test]
fn identical_pods_fan_out_and_replicas_spread() {
    let mut s = snapshot((0..5).map(|i| node_json(&format!("n{i}"), "8", "8Gi", 110)));
    for i in 0..10 {
        // No requests at all: scoring counts them at kube's non-zero defaults.
        let mut p = pod_json(&format!("p{i}"), "0", "0");
        p["spec"]["containers"][0]["resources"] = json!({});
        let p = pod(p);
        let n = schedule(&p, &s).unwrap();
        s.assume(&p, &n);
    }
    for i in 0..5 {
        assert_eq!(s.node(&format!("n{i}")).unwrap().usage.pod_count, 2, "best-effort pods spread evenly");
    }
    // Replicas of one owner avoid nodes already holding their siblings even when those
    // nodes are otherwise emptier.
    let mut s = snapshot([node_json("a", "8", "8Gi", 110), node_json("b", "8", "8Gi", 110)]);
    s.assume(&pod(pod_json("big", "1", "1Gi")), "b");
    let replica = |i: usize| {
        let mut p = pod_json(&format!("r{i}"), "10m", "10Mi");
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]);
        pod(p)
    };
    let first = schedule(&replica(0), &s).unwrap();
    assert_eq!(first, "a");
    s.assume(&replica(0), &first);
    assert_eq!(schedule(&replica(1), &s).unwrap(), "b", "spread wins over the small load difference");
}

#[test]
fn sampling_follows_kube_schedulers_adaptive_percentage() {
    assert_eq!(num_feasible_nodes_to_find(50), 50);
    assert_eq!(num_feasible_nodes_to_find(100), 100);
    assert_eq!(num_feasible_nodes_to_find(1000), 420);
    assert_eq!(num_feasible_nodes_to_find(5000), 500);
    assert_eq!(num_feasible_nodes_to_find(200), 100, "49% of 200 is below the minimum of 100");
}

// ---- properties ----------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GenNode {
    milli_cpu: i64,
    memory_mi: i64,
    pods: u32,
    zone: Option<u8>,
    /// t0 / t1 are NoSchedule, t2 PreferNoSchedule (never filters).
    taint: Option<u8>,
    unschedulable: bool,
    ready: bool,
}

#[derive(Debug, Clone)]
struct GenPod {
    milli_cpu: i64,
    init_milli_cpu: Option<i64>,
    memory_mi: i64,
    zone: Option<u8>,
    tolerate: Option<u8>,
    tolerate_all: bool,
    port: Option<u16>,
    owner: Option<u8>,
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        0i64..5,
        0i64..5,
        0u32..6,
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..3),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.9),
    )
        .prop_map(|(cpu, mem, pods, zone, taint, unschedulable, ready)| GenNode {
            milli_cpu: cpu * 1000,
            memory_mi: mem * 1024,
            pods,
            zone,
            taint,
            unschedulable,
            ready,
        })
}

fn gen_pod() -> impl Strategy<Value = GenPod> {
    (
        prop_oneof![Just(0i64), 1i64..2500],
        proptest::option::of(0i64..3000),
        prop_oneof![Just(0i64), 1i64..3000],
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..3),
        proptest::bool::weighted(0.1),
        proptest::option::of(prop_oneof![Just(80u16), Just(443u16)]),
        proptest::option::of(0u8..3),
    )
        .prop_map(|(milli_cpu, init_milli_cpu, memory_mi, zone, tolerate, tolerate_all, port, owner)| GenPod {
            milli_cpu,
            init_milli_cpu,
            memory_mi,
            zone,
            tolerate,
            tolerate_all,
            port,
            owner,
        })
}

fn gen_node_json(i: usize, n: &GenNode) -> Value {
    let mut v = node_json(&format!("n{i}"), &format!("{}m", n.milli_cpu), &format!("{}Mi", n.memory_mi), n.pods);
    if let Some(z) = n.zone {
        v["metadata"]["labels"]["zone"] = json!(format!("z{z}"));
    }
    if let Some(t) = n.taint {
        let effect = if t == 2 { "PreferNoSchedule" } else { "NoSchedule" };
        v["spec"]["taints"] = json!([{"key": format!("t{t}"), "value": "x", "effect": effect}]);
    }
    v["spec"]["unschedulable"] = json!(n.unschedulable);
    if !n.ready {
        v["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    }
    v
}

fn gen_pod_json(i: usize, p: &GenPod) -> Value {
    let mut v = pod_json(&format!("p{i}"), &format!("{}m", p.milli_cpu), &format!("{}Mi", p.memory_mi));
    if let Some(init) = p.init_milli_cpu {
        v["spec"]["initContainers"] =
            json!([{"name": "init", "image": "i", "resources": {"requests": {"cpu": format!("{init}m")}}}]);
    }
    if let Some(z) = p.zone {
        v["spec"]["nodeSelector"] = json!({"zone": format!("z{z}")});
    }
    let mut tolerations = Vec::new();
    if let Some(t) = p.tolerate {
        tolerations.push(json!({"key": format!("t{t}"), "operator": "Equal", "value": "x"}));
    }
    if p.tolerate_all {
        tolerations.push(json!({"operator": "Exists"}));
    }
    v["spec"]["tolerations"] = json!(tolerations);
    if let Some(port) = p.port {
        v["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8000, "hostPort": port}]);
    }
    if let Some(o) = p.owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": format!("o{o}"), "controller": true}]);
    }
    v
}

fn gen_requests(p: &GenPod) -> (i64, i64) {
    (p.milli_cpu.max(p.init_milli_cpu.unwrap_or(0)), p.memory_mi * 1024 * 1024)
}

/// An independent statement of the filters, recomputing the node's usage from scratch.
fn reference_fits(p: &GenPod, n: &GenNode, placed: &[GenPod]) -> bool {
    let tolerated = |t: u8| p.tolerate_all || p.tolerate == Some(t);
    if !n.ready && !p.tolerate_all {
        return false;
    }
    if n.unschedulable && !p.tolerate_all {
        return false;
    }
    if n.taint.is_some_and(|t| t < 2 && !tolerated(t)) {
        return false;
    }
    if p.zone.is_some() && p.zone != n.zone {
        return false;
    }
    if p.port.is_some() && placed.iter().any(|q| q.port == p.port) {
        return false;
    }
    if placed.len() as u32 + 1 > n.pods {
        return false;
    }
    let (cpu, mem) = gen_requests(p);
    let used_cpu: i64 = placed.iter().map(|q| gen_requests(q).0).sum();
    let used_mem: i64 = placed.iter().map(|q| gen_requests(q).1).sum();
    let short_of_cpu = cpu > 0 && cpu > n.milli_cpu - used_cpu;
    let short_of_memory = mem > 0 && mem > n.memory_mi * 1024 * 1024 - used_mem;
    !short_of_cpu && !short_of_memory
}

/// Schedules `pods` one after another (each assumed), checking every decision against
/// the reference: a chosen node is feasible, an unschedulable pod has no feasible node.
fn check_sequence(nodes: &[GenNode], pods: &[GenPod]) -> Result<(), TestCaseError> {
    let mut snap = snapshot(nodes.iter().enumerate().map(|(i, n)| gen_node_json(i, n)));
    let mut placed: Vec<Vec<GenPod>> = vec![Vec::new(); nodes.len()];
    for (i, gp) in pods.iter().enumerate() {
        let p = pod(gen_pod_json(i, gp));
        let feasible: Vec<usize> = (0..nodes.len()).filter(|n| reference_fits(gp, &nodes[*n], &placed[*n])).collect();
        match schedule(&p, &snap) {
            Ok(name) => {
                let n: usize = name[1..].parse().unwrap();
                prop_assert!(feasible.contains(&n), "pod {i} {gp:?} put on infeasible {name}: {:?}", nodes[n]);
                snap.assume(&p, &name);
                placed[n].push(gp.clone());
            }
            Err(u) => {
                prop_assert!(feasible.is_empty(), "pod {i} {gp:?} unschedulable but {feasible:?} fit: {}", u.message);
                if !nodes.is_empty() {
                    prop_assert!(
                        u.message.starts_with(&format!("0/{} nodes are available: ", nodes.len())),
                        "{}",
                        u.message
                    );
                }
            }
        }
    }
    for (n, gn) in nodes.iter().enumerate() {
        let cpu: i64 = placed[n].iter().map(|q| gen_requests(q).0).sum();
        let mem: i64 = placed[n].iter().map(|q| gen_requests(q).1).sum();
        prop_assert!(cpu <= gn.milli_cpu && mem <= gn.memory_mi * 1024 * 1024, "node {n} over-committed");
        prop_assert!(placed[n].len() as u32 <= gn.pods, "node {n} has too many pods");
        let info = snap.node(&format!("n{n}")).unwrap();
        prop_assert_eq!(
            (info.usage.requested.milli_cpu, info.usage.requested.memory, info.usage.pod_count),
            (cpu, mem, placed[n].len() as i64)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn schedule_never_over_commits_never_picks_an_infeasible_node_and_finds_feasible_ones(
        nodes in proptest::collection::vec(gen_node(), 0..10),
        pods in proptest::collection::vec(gen_pod(), 0..40),
    ) {
        check_sequence(&nodes, &pods)?;
    }

    #[test]
    fn requests_parse_back_from_any_millicore_quantity(milli in 0i64..10_000_000) {
        let p = pod(pod_json("p", &format!("{milli}m"), "0"));
        prop_assert_eq!(pod_requests(&p, false).milli_cpu, milli);
        let cores = pod(pod_json("p", &format!("{}.{:03}", milli / 1000, milli % 1000), "0"));
        prop_assert_eq!(pod_requests(&cores, false).milli_cpu, milli);
    }
}

proptest! {
    // Large enough to sample (≥ 100 nodes): completeness must survive sampling.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn sampling_still_finds_a_feasible_node(
        nodes in proptest::collection::vec(gen_node(), 100..140),
        pods in proptest::collection::vec(gen_pod(), 0..80),
    ) {
        check_sequence(&nodes, &pods)?;
    }
}

// ---- the queue ------------------------------------------------------------------------

fn synced_queue(nodes: impl IntoIterator<Item = Value>) -> SchedulingQueue {
    let mut q = SchedulingQueue::new(super::DEFAULT_SCHEDULER, QueueTimings::default());
    q.nodes_relist_started();
    for n in nodes {
        q.node_applied(&node(n));
    }
    q.nodes_relist_done();
    q.pods_relist_started();
    q.pods_relist_done();
    q
}

fn binds(decisions: &[Decision]) -> Vec<(String, String)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Bind { pod, node } => Some((pod.metadata.name.clone().unwrap(), node.clone())),
            _ => None,
        })
        .collect()
}

fn bound(mut v: Value, node: &str) -> Pod {
    v["spec"]["nodeName"] = json!(node);
    pod(v)
}

#[test]
fn nothing_is_decided_before_both_lists_arrive() {
    let mut q = SchedulingQueue::new(super::DEFAULT_SCHEDULER, QueueTimings::default());
    q.nodes_relist_started();
    q.node_applied(&node(node_json("a", "4", "4Gi", 10)));
    q.nodes_relist_done();
    q.pods_relist_started();
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    assert!(q.next_batch(10, Instant::now()).is_empty());
    q.pods_relist_done();
    assert_eq!(binds(&q.next_batch(10, Instant::now())), vec![("p".into(), "a".into())]);
}

#[test]
fn a_batch_assumes_each_decision_and_a_conflict_frees_it() {
    let mut q = synced_queue([node_json("a", "2", "4Gi", 10), node_json("b", "2", "4Gi", 10)]);
    for i in 0..5 {
        q.pod_applied(pod(pod_json(&format!("p{i}"), "1", "1Gi")));
    }
    let now = Instant::now();
    let decisions = q.next_batch(100, now);
    let placed = binds(&decisions);
    assert_eq!(placed.len(), 4, "two per node, no more");
    assert_eq!(placed.iter().filter(|(_, n)| n == "a").count(), 2);
    let failed: Vec<_> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Unschedulable { message, update_status, .. } => Some((message.clone(), *update_status)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.".to_string(),
        true,
    )]);
    assert_eq!(q.num_assumed(), 4);

    // One bind is refused: its node has room again and the pod is tried again at once.
    let (name, node_name) = placed[0].clone();
    let refused = pod(pod_json(&name, "1", "1Gi"));
    q.bind_refused(&refused, now);
    assert_eq!(q.snapshot.node(&node_name).unwrap().usage.requested.milli_cpu, 1000);
    assert_eq!(binds(&q.next_batch(100, now)), vec![(name.clone(), node_name.clone())]);
    // Refused again (the watch has not caught up): now it waits a back-off step.
    q.bind_refused(&refused, now);
    assert!(q.next_batch(100, now).iter().all(|d| !matches!(d, Decision::Bind { .. })));
    q.tick(now + QueueTimings::default().initial_backoff);
    // Room for one pod again: it goes to whichever of the two waiting pods comes first.
    let retried = binds(&q.next_batch(100, now));
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0].1, node_name);
}

#[test]
fn an_unanswered_bind_keeps_its_capacity_and_is_sent_again_to_the_same_node() {
    let mut q = synced_queue([node_json("a", "1", "4Gi", 10), node_json("b", "1", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    let now = Instant::now();
    let first = binds(&q.next_batch(10, now));
    let node_name = first[0].1.clone();
    // The bind timed out: it may have been committed, so its node stays reserved...
    q.bind_unanswered(&pod(pod_json("p", "1", "1Gi")), now);
    assert_eq!(q.snapshot.node(&node_name).unwrap().usage.requested.milli_cpu, 1000);
    q.pod_applied(pod(pod_json("other", "1", "1Gi")));
    let other = binds(&q.next_batch(10, now));
    assert_eq!(other.len(), 1);
    assert_ne!(other[0].1, node_name, "the reserved node is not handed out again");
    // ...and after a back-off step the same bind is sent again.
    q.tick(now + QueueTimings::default().initial_backoff);
    assert_eq!(binds(&q.next_batch(10, now)), first);
    assert!(q.next_batch(10, now).is_empty(), "sent once");
    // It had landed after all: the retry is refused, and the pod stays counted until the
    // watch shows it bound.
    q.bind_refused(&pod(pod_json("p", "1", "1Gi")), now);
    assert_eq!(q.snapshot.node(&node_name).unwrap().usage.pod_count, 1);
    assert!(!q.has_work(), "not re-examined: it is most likely bound");
    q.pod_applied(bound(pod_json("p", "1", "1Gi"), &node_name));
    assert_eq!(q.snapshot.node(&node_name).unwrap().usage.pod_count, 1);
    assert_eq!(q.num_assumed(), 1, "only `other` is still assumed");
}

#[test]
fn a_bind_whose_outcome_never_comes_is_sent_again_after_the_ttl() {
    let ttl = QueueTimings::default().assume_ttl;
    let mut q = synced_queue([node_json("a", "2", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    let t0 = Instant::now();
    let first = binds(&q.next_batch(10, t0));
    q.tick(t0 + ttl / 2);
    assert!(q.next_batch(10, t0 + ttl / 2).is_empty());
    q.tick(t0 + ttl);
    assert_eq!(binds(&q.next_batch(10, t0 + ttl)), first);
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 1, "still counted once");
}

#[test]
fn a_pod_deleted_while_its_bind_is_in_flight_is_not_bound_again() {
    let mut q = synced_queue([node_json("a", "2", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    let now = Instant::now();
    assert_eq!(binds(&q.next_batch(10, now)).len(), 1);
    let mut deleting = pod_json("p", "1", "1Gi");
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    q.pod_applied(pod(deleting.clone()));
    q.bind_refused(&pod(deleting), now);
    assert!(!q.has_work());
    assert_eq!((q.num_pending(), q.num_assumed()), (0, 0));
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 0);
}

#[test]
fn gated_pods_wait_for_their_gates_to_be_removed() {
    let mut q = synced_queue([node_json("a", "2", "4Gi", 10)]);
    let mut gated = pod_json("g", "1", "1Gi");
    gated["spec"]["schedulingGates"] = json!([{"name": "example.com/quota"}]);
    q.pod_applied(pod(gated.clone()));
    assert!(q.next_batch(10, Instant::now()).is_empty());
    gated["spec"]["schedulingGates"] = json!([]);
    q.pod_applied(pod(gated));
    assert_eq!(binds(&q.next_batch(10, Instant::now())), vec![("g".into(), "a".into())]);
}

#[test]
fn the_watch_confirms_assumptions_and_stale_versions_do_not_undo_them() {
    let mut q = synced_queue([node_json("a", "2", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    let now = Instant::now();
    assert_eq!(binds(&q.next_batch(10, now)).len(), 1);
    // An older unbound version (e.g. a status write racing the bind) changes nothing.
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    assert!(!q.has_work());
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 1);
    q.bind_succeeded(&pod(pod_json("p", "1", "1Gi")), now);
    q.pod_applied(bound(pod_json("p", "1", "1Gi"), "a"));
    assert_eq!((q.num_assumed(), q.num_pending()), (0, 0));
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 1, "counted once");
    q.pod_deleted(&bound(pod_json("p", "1", "1Gi"), "a"));
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 0);
}

#[test]
fn an_assumption_the_watch_never_confirms_expires() {
    let timings = QueueTimings::default();
    let mut q = synced_queue([node_json("a", "2", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "1", "1Gi")));
    let now = Instant::now();
    q.next_batch(10, now);
    q.bind_succeeded(&pod(pod_json("p", "1", "1Gi")), now);
    q.tick(now + timings.assume_ttl / 2);
    assert_eq!(q.num_assumed(), 1);
    q.tick(now + timings.assume_ttl + Duration::from_millis(1));
    assert_eq!(q.num_assumed(), 0);
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 0);
    assert!(q.has_work(), "re-examined");
}

#[test]
fn unschedulable_pods_retry_on_cluster_changes_but_not_on_their_own_status_updates() {
    let mut q = synced_queue([node_json("small", "1", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "2", "1Gi")));
    let t0 = Instant::now();
    let d = q.next_batch(10, t0);
    let Decision::Unschedulable { message, .. } = &d[0] else { panic!("{d:?}") };
    // Our own condition coming back through the watch is not a reason to retry.
    let mut with_condition = pod_json("p", "2", "1Gi");
    with_condition["status"] = json!({"conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": message}]});
    q.pod_applied(pod(with_condition.clone()));
    assert!(!q.has_work());
    // A bigger node appears: retried after the first back-off step, not before.
    q.node_applied(&node(node_json("big", "4", "4Gi", 10)));
    q.tick(t0 + Duration::from_millis(500));
    assert!(!q.has_work());
    q.tick(t0 + QueueTimings::default().initial_backoff);
    let d = q.next_batch(10, t0 + Duration::from_secs(1));
    assert_eq!(binds(&d), vec![("p".into(), "big".into())]);

    // The condition is only written when it changes.
    let mut q = synced_queue([node_json("small", "1", "4Gi", 10)]);
    q.pod_applied(pod(with_condition));
    let d = q.next_batch(10, t0);
    assert!(matches!(&d[0], Decision::Unschedulable { update_status: false, .. }), "{d:?}");
}

#[test]
fn back_off_doubles_up_to_the_cap() {
    let timings = QueueTimings::default();
    let mut q = synced_queue([node_json("small", "1", "4Gi", 10)]);
    q.pod_applied(pod(pod_json("p", "2", "1Gi")));
    let mut now = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert_eq!(q.next_batch(10, now).len(), 1);
        let mut wait = Duration::ZERO;
        while !q.has_work() {
            wait += Duration::from_millis(250);
            q.tick(now + wait);
        }
        waits.push(wait.as_millis());
        now += wait;
    }
    assert_eq!(waits, vec![1000, 2000, 4000, 8000, 10000, 10000]);
    assert_eq!(timings.max_backoff, Duration::from_secs(10));
}

#[test]
fn a_relist_forgets_what_disappeared_and_other_schedulers_pods_are_ignored() {
    let mut q = synced_queue([node_json("a", "4", "4Gi", 10)]);
    q.pod_applied(bound(pod_json("gone", "1", "1Gi"), "a"));
    let mut other = pod_json("other", "1", "1Gi");
    other["spec"]["schedulerName"] = json!("someone-else");
    q.pod_applied(pod(other));
    assert_eq!(q.num_pending(), 0);
    q.pods_relist_started();
    q.pods_relist_done();
    assert_eq!(q.snapshot.node("a").unwrap().usage.pod_count, 0);
    let facts = PodFacts::of(&pod(pod_json("x", "1", "1Gi")));
    assert_eq!(facts.key, "default/x");
    assert!(facts.host_ports.is_empty() && facts.owner.is_none());
    let _ = (
        HostPort { protocol: "TCP".into(), ip: String::new(), port: 1 },
        NodeFacts::of(&node(node_json("z", "1", "1", 1))),
        BTreeMap::<String, String>::new(),
    );
}

/// Pure decision speed (no API): 10,000 pods onto 1,000 nodes, each assumed.
/// `cargo test -p berth-control --lib decision_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn decision_throughput() {
    let mut s = snapshot((0..1000).map(|i| node_json(&format!("node-{i:04}"), "8", "32Gi", 110)));
    let pods: Vec<Pod> = (0..10_000)
        .map(|i| {
            let mut p = pod_json(&format!("p{i:05}"), "100m", "128Mi");
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "rs", "uid": format!("rs-{}", i % 20), "controller": true}]);
            pod(p)
        })
        .collect();
    let facts: Vec<PodFacts> = pods.iter().map(PodFacts::of).collect();
    let t = Instant::now();
    for (p, f) in pods.iter().zip(&facts) {
        let node = super::algorithm::schedule_with(p, f, &s).unwrap();
        s.place(f, &node);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("decided 10000 pods on 1000 nodes in {secs:.3}s: {:.0} decisions/s", 10_000.0 / secs);
}

// ---- the queue against a simulated API -------------------------------------------------

#[derive(Debug, Clone)]
enum Outcome {
    Answered,
    /// Committed, but the answer is lost (a timeout after the write).
    CommittedUnanswered,
    /// Not committed and no answer (the request never arrived).
    LostUnanswered,
}

#[derive(Debug, Clone)]
enum Op {
    /// A pod of this many cpus and this priority.
    Create(i64, i32),
    Decide(usize),
    Answer(usize, Outcome),
    DeliverWatch(usize),
    Delete(usize),
    Tick(u64),
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1i64..4, 0i32..3).prop_map(|(cpu, priority)| Op::Create(cpu, priority)),
        3 => (1usize..6).prop_map(Op::Decide),
        4 => (0usize..64, prop_oneof![
            6 => Just(Outcome::Answered),
            1 => Just(Outcome::CommittedUnanswered),
            1 => Just(Outcome::LostUnanswered),
        ]).prop_map(|(i, o)| Op::Answer(i, o)),
        3 => (1usize..8).prop_map(Op::DeliverWatch),
        1 => (0usize..64).prop_map(Op::Delete),
        2 => (0u64..1500).prop_map(Op::Tick),
    ]
}

struct ApiPod {
    object: Value,
    node: Option<String>,
    deleted: bool,
}

enum Watched {
    Applied(Pod),
    Deleted(Pod),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the order of decisions, answers (including lost ones), watch delivery
    /// (lagging arbitrarily), deletions and preemptions, what the API ends up binding never
    /// exceeds a node's capacity, and a preemption only ever evicts lower-priority pods.
    #[test]
    fn the_api_never_over_commits_a_node(ops in proptest::collection::vec(gen_op(), 1..150)) {
        const CPU: i64 = 3000;
        const PODS: usize = 3;
        let timings = QueueTimings { assume_ttl: Duration::from_secs(3600), ..Default::default() };
        let mut q = SchedulingQueue::new(super::DEFAULT_SCHEDULER, timings);
        q.nodes_relist_started();
        for n in 0..3 {
            q.node_applied(&node(node_json(&format!("n{n}"), "3", "4Gi", PODS as u32)));
        }
        q.nodes_relist_done();
        q.pods_relist_started();
        q.pods_relist_done();
        let mut now = Instant::now();
        let mut api: Vec<ApiPod> = Vec::new();
        let mut watch: std::collections::VecDeque<Watched> = Default::default();
        let mut in_flight: Vec<(usize, String)> = Vec::new();
        for op in ops {
            match op {
                Op::Create(cpu, priority) => {
                    let mut object = pod_json(&format!("p{}", api.len()), &cpu.to_string(), "0");
                    object["spec"]["priority"] = json!(priority);
                    watch.push_back(Watched::Applied(pod(object.clone())));
                    api.push(ApiPod { object, node: None, deleted: false });
                }
                Op::Decide(max) => {
                    for d in q.next_batch(max, now) {
                        match d {
                            Decision::Bind { pod, node } => {
                                let i: usize = pod.metadata.name.as_ref().unwrap()[1..].parse().unwrap();
                                in_flight.push((i, node));
                            }
                            // Victims are deleted at once (grace 0); only ever pods of
                            // lower priority than the preemptor.
                            Decision::Preempt { pod: preemptor, preemption } => {
                                let priority = preemptor.spec.as_ref().unwrap().priority.unwrap();
                                for v in &preemption.victims {
                                    let victim = &mut api[v.name[1..].parse::<usize>().unwrap()];
                                    let victim_priority = victim.object["spec"]["priority"].as_i64().unwrap();
                                    prop_assert!(victim_priority < i64::from(priority), "{} evicted by a peer", v.name);
                                    if !victim.deleted {
                                        victim.deleted = true;
                                        watch.push_back(Watched::Deleted(pod(victim.object.clone())));
                                    }
                                }
                            }
                            Decision::Unschedulable { .. } => {}
                        }
                    }
                }
                Op::Answer(j, outcome) if !in_flight.is_empty() => {
                    let (i, node_name) = in_flight.remove(j % in_flight.len());
                    let p = &mut api[i];
                    let sent = pod(p.object.clone());
                    let accepted = !p.deleted && p.node.is_none();
                    let committed = accepted && !matches!(outcome, Outcome::LostUnanswered);
                    if committed {
                        p.node = Some(node_name.clone());
                        p.object["spec"]["nodeName"] = json!(node_name);
                        watch.push_back(Watched::Applied(pod(p.object.clone())));
                    }
                    match outcome {
                        Outcome::Answered if accepted => q.bind_succeeded(&sent, now),
                        Outcome::Answered => q.bind_refused(&sent, now),
                        _ => q.bind_unanswered(&sent, now),
                    }
                }
                Op::Answer(..) => {}
                Op::DeliverWatch(n) => {
                    for _ in 0..n {
                        match watch.pop_front() {
                            Some(Watched::Applied(p)) => q.pod_applied(p),
                            Some(Watched::Deleted(p)) => q.pod_deleted(&p),
                            None => break,
                        }
                    }
                }
                Op::Delete(i) if !api.is_empty() => {
                    let len = api.len();
                    let p = &mut api[i % len];
                    if !p.deleted {
                        p.deleted = true;
                        watch.push_back(Watched::Deleted(pod(p.object.clone())));
                    }
                }
                Op::Delete(_) => {}
                Op::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    q.tick(now);
                }
            }
            for n in 0..3 {
                let name = format!("n{n}");
                let on: Vec<&ApiPod> = api.iter().filter(|p| !p.deleted && p.node.as_deref() == Some(&name)).collect();
                let cpu: i64 = on.iter().map(|p| quantity_of(&p.object)).sum();
                prop_assert!(cpu <= CPU && on.len() <= PODS, "{name} over-committed: {cpu}m, {} pods", on.len());
            }
        }
    }
}

fn quantity_of(object: &Value) -> i64 {
    let cpu = object["spec"]["containers"][0]["resources"]["requests"]["cpu"].as_str().unwrap();
    berth_proto::Quantity::parse(cpu).unwrap().milli_value()
}
