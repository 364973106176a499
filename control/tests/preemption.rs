//! Pod priority and preemption on an in-process server (kube-scheduler's PrioritySort and
//! DefaultPreemption): a high-priority pod that fits nowhere evicts just enough
//! lower-priority pods, is nominated to their node and bound there once they are gone; a
//! pod whose class says `preemptionPolicy: Never` waits instead; of two pending pods the
//! higher-priority one is placed first.

use std::sync::Arc;
use std::time::Duration;

use berth_control::tasks::scheduler::{self, SchedulerConfig, SchedulerStats};
use berth_control::testing::Server;
use berth_testkit::eventually;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A Ready node with `cpu` allocatable.
async fn add_node(c: &kube::Client, name: &str, cpu: &str) {
    let api: Api<Node> = Api::all(c.clone());
    let node = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}});
    api.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    let resources = json!({"cpu": cpu, "memory": "4Gi", "pods": "10"});
    let status = json!({"status": {"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

async fn add_class(c: &kube::Client, name: &str, value: i32, policy: &str) {
    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
        "value": value, "preemptionPolicy": policy});
    let api: Api<PriorityClass> = Api::all(c.clone());
    api.create(&PostParams::default(), &serde_json::from_value(class).unwrap()).await.unwrap();
}

/// A pod requesting `cpu`; `spec` entries are added to its spec.
async fn add_pod(c: &kube::Client, name: &str, cpu: &str, spec: Value) -> Pod {
    let mut pod = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}});
    for (k, v) in spec.as_object().into_iter().flatten() {
        pod["spec"][k] = v.clone();
    }
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap()
}

async fn get(c: &kube::Client, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(c.clone(), "default").get_opt(name).await.ok().flatten()
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

async fn wait_bound(c: &kube::Client, name: &str) -> String {
    eventually(WAIT, &format!("{name} bound"), async || node_of(&get(c, name).await?)).await
}

async fn wait_running(c: &kube::Client, name: &str) {
    eventually(WAIT, &format!("{name} running"), async || {
        let status = get(c, name).await?.status?;
        (status.phase.as_deref() == Some("Running")).then_some(())
    })
    .await
}

/// The pod's PodScheduled=False message once it is `expected`.
async fn wait_unschedulable(c: &kube::Client, name: &str, expected: &str) {
    eventually(WAIT, &format!("{name} unschedulable: {expected}"), async || {
        let conditions = get(c, name).await?.status?.conditions?;
        let scheduled = conditions.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        (scheduled.message.as_deref() == Some(expected)).then_some(())
    })
    .await
}

/// A stand-in for the kubelets of this test: runs pods bound to a node (phase Running,
/// `startTime`) and finishes their graceful deletion at once (a DELETE with grace 0, as a
/// kubelet does once the containers stopped). Pending pods are left alone: their
/// PodScheduled condition is the scheduler's.
struct Kubelets {
    cancel: CancellationToken,
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Kubelets {
    fn start(client: kube::Client) -> Kubelets {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                let Ok(pods) = api.list(&ListParams::default()).await else { continue };
                for pod in pods.items {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if node_of(&pod).is_none() {
                        continue;
                    }
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = api.delete(&name, &DeleteParams::default().grace_period(0)).await;
                    } else if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
                        let now = k8s_openapi::jiff::Timestamp::now().to_string();
                        let status = json!({"status": {"phase": "Running", "startTime": now,
                            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                        let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                    }
                }
            }
        });
        Kubelets { cancel }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_high_priority_pod_preempts_just_enough_lower_priority_pods() {
    let server = Server::start().await;
    let c = server.client();
    let _kubelets = Kubelets::start(c.clone());
    add_node(&c, "n1", "1").await;
    add_class(&c, "high", 1000, "PreemptLowerPriority").await;
    add_class(&c, "high-never", 1000, "Never").await;
    for name in ["low-1", "low-2"] {
        add_pod(&c, name, "500m", json!({})).await;
        assert_eq!(wait_bound(&c, name).await, "n1");
        wait_running(&c, name).await;
    }

    // preemptionPolicy: Never: it waits, and says why.
    let polite = add_pod(&c, "polite", "500m", json!({"priorityClassName": "high-never"})).await;
    assert_eq!(polite.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()), Some("Never"));
    wait_unschedulable(
        &c,
        "polite",
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.",
    )
    .await;
    for name in ["low-1", "low-2"] {
        let pod = get(&c, name).await.expect("not preempted");
        assert!(pod.metadata.deletion_timestamp.is_none(), "{name} is being deleted");
    }

    // The same priority without the policy: one low pod (of two) goes, the pod is
    // nominated to the node and bound there.
    let high = add_pod(&c, "high", "500m", json!({"priorityClassName": "high"})).await;
    assert_eq!(high.spec.as_ref().and_then(|s| s.priority), Some(1000));
    let nominated = eventually(WAIT, "high nominated", async || {
        get(&c, "high").await?.status?.nominated_node_name.filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(nominated, "n1");
    assert_eq!(wait_bound(&c, "high").await, "n1");
    let mut left = Vec::new();
    for name in ["low-1", "low-2"] {
        if let Some(pod) = get(&c, name).await {
            assert!(pod.metadata.deletion_timestamp.is_none(), "{name} is being deleted too");
            left.push(name);
        }
    }
    assert_eq!(left.len(), 1, "exactly one victim: {left:?} left");
    let victim = if left == ["low-1"] { "low-2" } else { "low-1" };

    // The victim's Event, from the scheduler.
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    let lp = ListParams::default().fields(&format!("involvedObject.name={victim}"));
    let event = eventually(WAIT, "the Preempted event", async || {
        events.list(&lp).await.ok()?.items.into_iter().find(|e| e.reason.as_deref() == Some("Preempted"))
    })
    .await;
    let uid = high.metadata.uid.clone().unwrap();
    assert_eq!(event.message.as_deref(), Some(format!("Preempted by pod {uid} on node n1").as_str()));
    assert_eq!(event.source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));

    // The polite pod (equal priority) never took the room held for `high`, and still waits.
    assert_eq!(get(&c, "polite").await.as_ref().and_then(node_of), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_higher_priority_pod_is_placed_first() {
    let server = Server::start().await;
    let c = server.client();
    add_node(&c, "solo", "1").await;
    add_class(&c, "high", 1000, "PreemptLowerPriority").await;
    // Both pending before their scheduler starts, the low one created first: its initial
    // list queues both, and the queue pops by priority.
    let spec = json!({"schedulerName": "ordered-scheduler"});
    add_pod(&c, "first-low", "1", spec.clone()).await;
    let mut high = spec;
    high["priorityClassName"] = json!("high");
    add_pod(&c, "then-high", "1", high).await;

    let cancel = CancellationToken::new();
    let config = SchedulerConfig { name: "ordered-scheduler".into(), ..Default::default() };
    let stats = Arc::new(SchedulerStats::default());
    let task = tokio::spawn(scheduler::run_with(c.clone(), config, stats, None, cancel.clone()));
    assert_eq!(wait_bound(&c, "then-high").await, "solo");
    wait_unschedulable(
        &c,
        "first-low",
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
    )
    .await;
    assert_eq!(get(&c, "first-low").await.as_ref().and_then(node_of), None);
    cancel.cancel();
    tokio::time::timeout(WAIT, task).await.expect("the scheduler stops").unwrap();
}
