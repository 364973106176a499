//! The scheduler on a 3-server in-process cluster: pods are bound to feasible nodes
//! (selector, taints, resources, cordon, readiness), unschedulable pods carry
//! kube-scheduler's condition, message and Event and are placed once a node makes room.
//! `bind_throughput` (ignored) measures binds/s with 1,000 nodes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_control::tasks::scheduler::{self, SchedulerConfig, SchedulerStats};
use berth_control::testing::Cluster;
use berth_testkit::eventually;
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// Creates a Node and gives it status (capacity, allocatable, a Ready condition).
async fn add_node(c: &kube::Client, name: &str, cpu: &str, memory: &str, pods: u32, extra: Value) {
    let api: Api<Node> = Api::all(c.clone());
    let mut obj = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}});
    if let Some(labels) = extra["labels"].as_object() {
        for (k, v) in labels {
            obj["metadata"]["labels"][k] = v.clone();
        }
    }
    if let Some(spec) = extra["spec"].as_object() {
        for (k, v) in spec {
            obj["spec"][k] = v.clone();
        }
    }
    api.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.unwrap();
    let ready = extra.get("ready").and_then(Value::as_str).unwrap_or("True");
    let resources = json!({"cpu": cpu, "memory": memory, "pods": pods.to_string()});
    let status = json!({"status": {"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

fn pod_obj(name: &str, cpu: &str, memory: &str, extra: Value) -> Pod {
    let mut obj = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
        "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}});
    if let Some(spec) = extra.as_object() {
        for (k, v) in spec {
            obj["spec"][k] = v.clone();
        }
    }
    serde_json::from_value(obj).unwrap()
}

async fn add_pod(c: &kube::Client, name: &str, cpu: &str, memory: &str, extra: Value) {
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &pod_obj(name, cpu, memory, extra)).await.unwrap();
}

async fn node_of(c: &kube::Client, pod: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    api.get(pod).await.ok()?.spec?.node_name.filter(|n| !n.is_empty())
}

async fn wait_bound(c: &kube::Client, pod: &str) -> String {
    eventually(WAIT, &format!("{pod} bound"), || node_of(c, pod)).await
}

/// The pod's PodScheduled=False message once it is there.
async fn wait_unschedulable(c: &kube::Client, pod: &str) -> String {
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    eventually(WAIT, &format!("{pod} marked unschedulable"), || async {
        let p = api.get(pod).await.ok()?;
        let conditions = p.status?.conditions?;
        let c = conditions.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
        c.message
    })
    .await
}

async fn wait_event(c: &kube::Client, pod: &str, reason: &str) -> String {
    let api: Api<Event> = Api::namespaced(c.clone(), "default");
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    eventually(WAIT, &format!("{reason} event for {pod}"), || async {
        let events = api.list(&lp).await.ok()?;
        let e = events.items.into_iter().find(|e| e.reason.as_deref() == Some(reason))?;
        assert_eq!(e.source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));
        e.message
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_go_to_feasible_nodes_and_unschedulable_ones_are_explained_then_placed() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client();
    add_node(&c, "small", "1", "2Gi", 10, json!({})).await;
    add_node(&c, "ssd", "4", "8Gi", 10, json!({"labels": {"disk": "ssd"}})).await;
    add_node(
        &c,
        "infra",
        "4",
        "8Gi",
        10,
        json!({"spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]}}),
    )
    .await;

    add_pod(&c, "sel", "500m", "1Gi", json!({"nodeSelector": {"disk": "ssd"}})).await;
    add_pod(
        &c,
        "tol",
        "100m",
        "128Mi",
        json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
               "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
                   [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["infra"]}]}]}}}}),
    )
    .await;
    add_pod(&c, "big", "3", "1Gi", json!({})).await;
    add_pod(&c, "huge", "16", "1Gi", json!({})).await;

    assert_eq!(wait_bound(&c, "sel").await, "ssd");
    assert_eq!(wait_bound(&c, "tol").await, "infra");
    assert_eq!(wait_bound(&c, "big").await, "ssd", "the only untainted node with 3 free cpus");
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 Insufficient cpu. \
                    preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
                    2 No preemption victims found for incoming pod.";
    assert_eq!(wait_unschedulable(&c, "huge").await, expected);
    assert_eq!(wait_event(&c, "huge", "FailedScheduling").await, expected);
    assert_eq!(wait_event(&c, "sel", "Scheduled").await, "Successfully assigned default/sel to ssd");
    assert_eq!(node_of(&c, "huge").await, None);

    // A node with room appears: the pod is retried and placed there.
    add_node(&c, "big-node", "32", "64Gi", 10, json!({})).await;
    assert_eq!(wait_bound(&c, "huge").await, "big-node");
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let huge = api.get("huge").await.unwrap();
    let scheduled = huge.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "PodScheduled").unwrap();
    assert_eq!(scheduled.status, "True");
}

#[tokio::test(flavor = "multi_thread")]
async fn cordoned_and_not_ready_nodes_get_pods_once_uncordoned_and_ready() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client();
    add_node(&c, "cordoned", "4", "8Gi", 10, json!({"spec": {"unschedulable": true}})).await;
    add_node(&c, "booting", "4", "8Gi", 10, json!({"ready": "False"})).await;
    add_pod(&c, "p", "1", "1Gi", json!({})).await;
    assert_eq!(
        wait_unschedulable(&c, "p").await,
        "0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // A DaemonSet-style pod tolerating the cordon goes there right away.
    add_pod(
        &c,
        "ds",
        "1",
        "1Gi",
        json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
    )
    .await;
    assert_eq!(wait_bound(&c, "ds").await, "cordoned");

    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .patch("cordoned", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"unschedulable": false}})))
        .await
        .unwrap();
    assert_eq!(wait_bound(&c, "p").await, "cordoned");

    add_pod(&c, "q", "1", "1Gi", json!({"nodeSelector": {"kubernetes.io/hostname": "booting"}})).await;
    wait_unschedulable(&c, "q").await;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    nodes.patch_status("booting", &PatchParams::default(), &Patch::Strategic(&ready)).await.unwrap();
    assert_eq!(wait_bound(&c, "q").await, "booting");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_spread_ports_are_exclusive_and_no_node_is_over_committed() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client();
    for i in 0..5 {
        add_node(&c, &format!("n{i}"), "2", "8Gi", 110, json!({})).await;
    }
    for i in 0..12 {
        add_pod(&c, &format!("r{i}"), "500m", "256Mi", json!({})).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..12 {
        *per_node.entry(wait_bound(&c, &format!("r{i}")).await).or_default() += 1;
    }
    assert_eq!(per_node.len(), 5, "every node used: {per_node:?}");
    assert!(per_node.values().all(|n| (2..=3).contains(n)), "least-allocated spreads evenly: {per_node:?}");

    // 20 half-cpu slots in all: 8 more fit, the 9th does not.
    for i in 12..21 {
        add_pod(&c, &format!("r{i}"), "500m", "256Mi", json!({})).await;
    }
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let unbound = eventually(WAIT, "20 bound, 1 unschedulable", || async {
        let pods = api.list(&ListParams::default()).await.ok()?;
        let unbound: Vec<String> = pods
            .items
            .iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.is_none())
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        (unbound.len() == 1).then_some(unbound)
    })
    .await;
    assert!(wait_unschedulable(&c, &unbound[0]).await.starts_with("0/5 nodes are available: 5 Insufficient cpu."));
    let pods = api.list(&ListParams::default()).await.unwrap();
    let mut cpu: HashMap<String, i64> = HashMap::new();
    for p in &pods.items {
        if let Some(n) = p.spec.as_ref().unwrap().node_name.clone() {
            *cpu.entry(n).or_default() += 500;
        }
    }
    assert!(cpu.values().all(|m| *m <= 2000), "over-committed: {cpu:?}");

    // Host ports: two pods wanting the same port land on different nodes.
    for name in ["port-a", "port-b"] {
        let ports =
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
        add_pod(&c, name, "0", "0", ports).await;
    }
    assert_ne!(wait_bound(&c, "port-a").await, wait_bound(&c, "port-b").await);
}

/// Binds/s with 1,000 nodes and a few thousand pending pods, on 3 servers. A second
/// scheduler (its own `schedulerName`, so the built-in one leaves these pods alone) runs
/// in-process against the leader and is started once every pod exists.
/// `cargo test -p berth-control --test scheduler -- --ignored --nocapture bind_throughput`
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bind_throughput() {
    const NODES: usize = 1000;
    let pods: usize = std::env::var("BENCH_PODS").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let events = std::env::var("BENCH_EVENTS").is_ok_and(|v| v == "1");
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let state = cluster.servers[leader].control.as_ref().unwrap().api.clone();
    let c = kube::Client::new(berth_control::api::router(state), "default");

    let t = Instant::now();
    stream::iter(0..NODES)
        .for_each_concurrent(64, |i| {
            let c = c.clone();
            async move { add_node(&c, &format!("node-{i:04}"), "8", "32Gi", 110, json!({})).await }
        })
        .await;
    println!("created {NODES} nodes in {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    stream::iter(0..pods)
        .for_each_concurrent(64, |i| {
            let c = c.clone();
            async move {
                add_pod(&c, &format!("bench-{i:05}"), "100m", "128Mi", json!({"schedulerName": "bench-scheduler"}))
                    .await
            }
        })
        .await;
    println!("created {pods} pods in {:.1}s", t.elapsed().as_secs_f64());

    let stats = Arc::new(SchedulerStats::default());
    let cancel = CancellationToken::new();
    let mut config = SchedulerConfig { name: "bench-scheduler".into(), scheduled_events: events, ..Default::default() };
    if let Some(n) = std::env::var("BENCH_IN_FLIGHT").ok().and_then(|s| s.parse().ok()) {
        config.max_binds_in_flight = n;
    }
    let t = Instant::now();
    let task = tokio::spawn(scheduler::run_with(c.clone(), config, stats.clone(), None, cancel.clone()));
    let mut first_bind = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while (stats.bound.load(Ordering::Relaxed) as usize) < pods {
        assert!(Instant::now() < deadline, "timed out binding");
        if first_bind.is_none() && stats.bound.load(Ordering::Relaxed) > 0 {
            first_bind = Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let first = first_bind.unwrap_or_default().as_secs_f64();
    let bind_secs = stats.bind_micros.load(Ordering::Relaxed) as f64 / 1e6;
    println!(
        "first bind after {first:.2}s (initial lists); steady state {:.0} binds/s; mean bind latency {:.1} ms, \
         {:.0} binds in flight on average",
        pods as f64 / (elapsed - first).max(1e-3),
        bind_secs * 1000.0 / pods as f64,
        bind_secs / (elapsed - first).max(1e-3),
    );
    cancel.cancel();
    let _ = task.await;
    println!(
        "bound {pods} pods on {NODES} nodes in {elapsed:.2}s (including the scheduler's initial list): {:.0} binds/s \
         (conflicts {}, errors {}, Scheduled events {})",
        pods as f64 / elapsed,
        stats.bind_conflicts.load(Ordering::Relaxed),
        stats.bind_errors.load(Ordering::Relaxed),
        if events { "on" } else { "off" },
    );

    // Everything bound, nothing over-committed.
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let mut per_node: HashMap<String, (usize, i64)> = HashMap::new();
    for p in &list.items {
        let node = p.spec.as_ref().unwrap().node_name.clone().expect("bound");
        let e = per_node.entry(node).or_default();
        e.0 += 1;
        e.1 += berth_proto::Quantity::parse("100m").unwrap().milli_value();
    }
    assert!(per_node.values().all(|(n, cpu)| *n <= 110 && *cpu <= 8000));
    let max = per_node.values().map(|(n, _)| *n).max().unwrap();
    println!("nodes used: {}, most pods on one node: {max}", per_node.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_leaders_scheduler_takes_over() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let survivor = (leader + 1) % 3;
    let c = cluster.servers[survivor].client();
    add_node(&c, "n", "4", "8Gi", 10, json!({})).await;
    add_pod(&c, "before", "1", "1Gi", json!({})).await;
    assert_eq!(wait_bound(&c, "before").await, "n");

    cluster.servers[leader].stop().await;
    let next = cluster.leader().await;
    assert_ne!(next, leader);
    add_pod(&c, "after", "1", "1Gi", json!({})).await;
    assert_eq!(wait_bound(&c, "after").await, "n");
    // The new scheduler counted the pod bound before the change: 3 more cpus fit, not 4.
    for i in 0..3 {
        add_pod(&c, &format!("fill-{i}"), "1", "1Gi", json!({})).await;
    }
    for i in 0..2 {
        wait_bound(&c, &format!("fill-{i}")).await;
    }
    assert!(wait_unschedulable(&c, "fill-2").await.starts_with("0/1 nodes are available: 1 Insufficient cpu."));
}
