//! Leader tasks on a live 3-server in-process cluster: cascading deletes (Background,
//! Foreground, Orphan), namespace deletion, Endpoints and EndpointSlices following pod
//! readiness, and node
//! lifecycle (an agent that stops renewing its Lease: Unknown conditions, taints, pods not
//! ready, evictions, and recovery).

use std::time::Duration;

use berth_control::testing::Cluster;
use berth_testkit::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Owners are ConfigMaps: no controller manages their dependents, so only the garbage
/// collector acts on them (a ReplicaSet's controller would delete or release the pods).
fn owner_cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn dependent(name: &str, owner: &ConfigMap, node: Option<&str>) -> Pod {
    let mut v = json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
            "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(v).unwrap()
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread")]
async fn cascading_deletes_background_foreground_and_orphan() {
    let cluster = Cluster::start(3).await;
    let client = cluster.servers[1].client(); // a follower: writes go through the store's leader
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");

    // Background: the owner goes at once, its dependents after it.
    let bg = owners.create(&PostParams::default(), &owner_cm("bg")).await.unwrap();
    for i in 0..3 {
        pods.create(&PostParams::default(), &dependent(&format!("bg-{i}"), &bg, None)).await.unwrap();
    }
    owners.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(gone(&owners, "bg").await);
    eventually(WAIT, "background dependents collected", || async {
        for i in 0..3 {
            if !gone(&pods, &format!("bg-{i}")).await {
                return None;
            }
        }
        Some(())
    })
    .await;

    // Foreground: the owner waits (finalizer) until its blocking dependents are gone. A
    // bound pod's graceful deletion waits for its agent, so the owner must wait too.
    let fg = owners.create(&PostParams::default(), &owner_cm("fg")).await.unwrap();
    pods.create(&PostParams::default(), &dependent("fg-bound", &fg, Some("n1"))).await.unwrap();
    pods.create(&PostParams::default(), &dependent("fg-free", &fg, None)).await.unwrap();
    owners.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let held = owners.get("fg").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(held.metadata.finalizers.unwrap().contains(&"foregroundDeletion".to_string()));
    eventually(WAIT, "foreground dependents deleted", || async {
        let bound = pods.get("fg-bound").await.unwrap();
        (bound.metadata.deletion_timestamp.is_some() && gone(&pods, "fg-free").await).then_some(())
    })
    .await;
    assert!(!gone(&owners, "fg").await, "the owner waits for the terminating pod");
    // The agent confirms the pod's deletion: now the owner goes too.
    pods.delete("fg-bound", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    eventually(WAIT, "foreground owner deleted", || async { gone(&owners, "fg").await.then_some(()) }).await;

    // Orphan: the owner goes, dependents stay without the reference.
    let or = owners.create(&PostParams::default(), &owner_cm("or")).await.unwrap();
    pods.create(&PostParams::default(), &dependent("or-0", &or, None)).await.unwrap();
    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
    owners.delete("or", &orphan).await.unwrap();
    eventually(WAIT, "orphaned owner deleted", || async { gone(&owners, "or").await.then_some(()) }).await;
    let left = pods.get("or-0").await.unwrap();
    assert!(left.metadata.owner_references.unwrap_or_default().is_empty(), "the reference is removed");
    assert!(left.metadata.deletion_timestamp.is_none());
}

fn web_pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]}}))
    .unwrap()
}

async fn set_ready(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch =
        json!({"status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": status}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_namespace_refuses_new_content_empties_and_then_goes() {
    let cluster = Cluster::start(3).await;
    let client = cluster.servers[2].client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let pods: Api<Pod> = Api::namespaced(client, "doomed");
    // A finalizer nobody removes holds one object, and with it the namespace, in deletion.
    let held: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).unwrap();
    configmaps.create(&PostParams::default(), &held).await.unwrap();
    configmaps.create(&PostParams::default(), &owner_cm("plain")).await.unwrap();
    let orphan = dependent("p", &owner_cm("x"), None);
    let orphan = Pod { metadata: kube::api::ObjectMeta { owner_references: None, ..orphan.metadata }, ..orphan };
    pods.create(&PostParams::default(), &orphan).await.unwrap();

    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    let terminating = namespaces.get("doomed").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));

    // New content is refused with kube-apiserver's 403.
    match configmaps.create(&PostParams::default(), &owner_cm("late")).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert_eq!(
                e.message,
                "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
            );
        }
        other => panic!("a create into a terminating namespace: {other:?}"),
    }

    // Its contents are deleted; the namespace waits for the held object.
    eventually(WAIT, "the namespace's contents deleted", || async {
        let held = configmaps.get_opt("held").await.unwrap()?;
        (held.metadata.deletion_timestamp.is_some() && gone(&configmaps, "plain").await && gone(&pods, "p").await)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // two sweeps of the namespace task
    assert!(!gone(&namespaces, "doomed").await, "the namespace outlives its last object");

    let release = json!({"metadata": {"finalizers": null}});
    configmaps.patch("held", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    eventually(WAIT, "the empty namespace removed", || async { gone(&namespaces, "doomed").await.then_some(()) }).await;
}

fn addresses(e: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in e.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    (ready, not_ready)
}

/// The endpoints of the `web` Service's EndpointSlices: (address, ready, serving,
/// terminating), sorted.
async fn slice_endpoints(slices: &Api<EndpointSlice>) -> Vec<(String, bool, bool, bool)> {
    let params = ListParams::default().labels("kubernetes.io/service-name=web");
    let mut out: Vec<(String, bool, bool, bool)> = slices
        .list(&params)
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            let flag = |b: Option<bool>| b.unwrap_or(false);
            (e.addresses[0].clone(), flag(c.ready), flag(c.serving), flag(c.terminating))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_follow_pod_readiness_and_the_service() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    for name in ["a", "b"] {
        pods.create(&PostParams::default(), &web_pod(name)).await.unwrap();
    }
    set_ready(&pods, "a", "10.0.0.1", true).await;
    set_ready(&pods, "b", "10.0.0.2", false).await;
    let svc = json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    services.create(&PostParams::default(), &serde_json::from_value(svc).unwrap()).await.unwrap();
    let ep = eventually(WAIT, "endpoints with a ready and a not-ready address", || async {
        let e = endpoints.get_opt("web").await.unwrap()?;
        (addresses(&e) == (vec!["10.0.0.1".into()], vec!["10.0.0.2".into()])).then_some(e)
    })
    .await;
    let port = &ep.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080), "named targetPort resolved");
    eventually(WAIT, "an EndpointSlice with the same endpoints", || async {
        let wanted = vec![("10.0.0.1".to_string(), true, true, false), ("10.0.0.2".to_string(), false, false, false)];
        (slice_endpoints(&slices).await == wanted).then_some(())
    })
    .await;
    let slice = &slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap().get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    set_ready(&pods, "b", "10.0.0.2", true).await;
    set_ready(&pods, "a", "10.0.0.1", false).await;
    eventually(WAIT, "readiness flips move the addresses", || async {
        let e = endpoints.get_opt("web").await.unwrap()?;
        (addresses(&e) == (vec!["10.0.0.2".into()], vec!["10.0.0.1".into()])).then_some(())
    })
    .await;
    pods.delete("b", &DeleteParams::default()).await.unwrap(); // terminating: leaves at once
    eventually(WAIT, "a terminating pod leaves", || async {
        let e = endpoints.get_opt("web").await.unwrap()?;
        (addresses(&e) == (vec![], vec!["10.0.0.1".into()])).then_some(())
    })
    .await;
    // ... but stays in the slice, marked terminating (still serving: proxies drain it).
    eventually(WAIT, "the terminating endpoint marked", || async {
        let wanted = vec![("10.0.0.1".to_string(), false, false, false), ("10.0.0.2".to_string(), false, true, true)];
        (slice_endpoints(&slices).await == wanted).then_some(())
    })
    .await;
    services.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "endpoints removed with the service", || async {
        endpoints.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually(WAIT, "slices removed with the service", || async {
        let params = ListParams::default().labels("kubernetes.io/service-name=web");
        slices.list(&params).await.unwrap().items.is_empty().then_some(())
    })
    .await;
}

async fn renew(leases: &Api<Lease>, node: &str) {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now}});
    leases.patch(node, &PatchParams::apply("test-agent").force(), &Patch::Apply(&lease)).await.unwrap();
}

fn taint_keys(node: &Node) -> Vec<String> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().into_iter().map(|t| t.key).collect()
}

fn ready_status(node: &Node) -> Option<String> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_node_is_tainted_its_pods_evicted_and_it_recovers() {
    let settings = berth_control::tasks::Settings {
        node_monitor_grace_period: Duration::from_secs(2),
        pod_eviction_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let cluster = Cluster::start_with(3, settings).await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap())
        .await
        .unwrap();
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    renew(&leases, "n1").await;
    pods.create(&PostParams::default(), &web_pod("plain")).await.unwrap();
    let mut tolerant = web_pod("tolerant");
    tolerant.spec.as_mut().unwrap().tolerations = Some(vec![serde_json::from_value(
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
    )
    .unwrap()]);
    pods.create(&PostParams::default(), &tolerant).await.unwrap();
    for p in ["plain", "tolerant"] {
        set_ready(&pods, p, "127.0.0.1", true).await;
    }

    // While the lease is renewed the node stays healthy (longer than the grace period).
    let healthy_until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < healthy_until {
        renew(&leases, "n1").await;
        let n = nodes.get("n1").await.unwrap();
        assert_eq!(ready_status(&n).as_deref(), Some("True"));
        assert!(taint_keys(&n).is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The agent goes silent.
    eventually(WAIT, "node marked unreachable and tainted", || async {
        let n = nodes.get("n1").await.unwrap();
        let keys = taint_keys(&n);
        (ready_status(&n).as_deref() == Some("Unknown")
            && keys.iter().filter(|k| *k == "node.kubernetes.io/unreachable").count() == 2)
            .then_some(())
    })
    .await;
    eventually(WAIT, "the intolerant pod evicted (graceful: still terminating)", || async {
        pods.get("plain").await.unwrap().metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(cluster.client(), "default");
    eventually(WAIT, "eviction and NodeNotReady events", || async {
        let all = events.list(&Default::default()).await.unwrap().items;
        let has = |reason: &str, name: &str| {
            all.iter().any(|e| e.reason.as_deref() == Some(reason) && e.involved_object.name.as_deref() == Some(name))
        };
        (has("TaintManagerEviction", "plain") && has("NodeNotReady", "n1")).then_some(())
    })
    .await;
    let t = pods.get("tolerant").await.unwrap();
    assert!(t.metadata.deletion_timestamp.is_none(), "a pod tolerating the taint stays");
    let t_ready = t.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(t_ready.status, "False", "pods on an unreachable node are not ready");

    // The agent comes back: renews and reports Ready; the taints go.
    renew(&leases, "n1").await;
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    eventually(WAIT, "taints removed after recovery", || async {
        renew(&leases, "n1").await;
        let n = nodes.get("n1").await.unwrap();
        taint_keys(&n).is_empty().then_some(())
    })
    .await;
    assert!(pods.get("plain").await.unwrap().metadata.deletion_timestamp.is_some(), "nothing moves back");

    // The Node object is deleted: its terminating pod is removed without the agent.
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "terminating pod of a deleted node removed", || async {
        gone(&pods, "plain").await.then_some(())
    })
    .await;
}
