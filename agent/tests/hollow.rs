//! Hollow nodes against an in-process control plane: registration, leases, pod status,
//! readiness steering, graceful deletion, logs through the API's proxy.

use std::time::Duration;

use berth_agent::hollow::Hollow;
use berth_agent::{Heartbeat, HollowConfig};
use berth_control::testing::Server;
use berth_testkit::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn condition(p: &Pod, t: &str) -> Option<String> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t).map(|c| c.status.clone())
}

async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, ok: impl Fn(&Pod) -> bool) -> Pod {
    eventually(WAIT, what, || async { pods.get_opt(name).await.ok().flatten().filter(|p| ok(p)) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_run_pods_and_confirm_deletions() {
    let mut cp = Server::start().await;
    let client = cp.client();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let mut cfg = HollowConfig::new("hollow", 5);
    cfg.client_ca_pem = berth_control::testing::agent_client_ca();
    cfg.start_delay = Some(Duration::from_millis(20));
    cfg.template.heartbeat = Heartbeat::with_renew(Duration::from_secs(1));
    cfg.template.labels.insert("berth.dev/pool".into(), "hollow".into());
    let hollow = Hollow::start(client.clone(), cfg, cancel.clone()).await.unwrap();
    assert_eq!(hollow.node_names.len(), 5);
    berth_agent::hollow::wait_ready(&client, &hollow.node_names, WAIT).await.unwrap();

    // Nodes: registered, Ready, with the endpoint port and labels.
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = eventually(WAIT, "5 ready hollow nodes", || async {
        let l = nodes.list(&ListParams::default().labels("berth.dev/pool=hollow")).await.ok()?;
        let ready = l.items.iter().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        (ready.count() == 5).then_some(l.items)
    })
    .await;
    let n0 = listed.iter().find(|n| n.metadata.name.as_deref() == Some("hollow-0")).unwrap();
    let status = n0.status.as_ref().unwrap();
    assert_eq!(
        status.daemon_endpoints.as_ref().unwrap().kubelet_endpoint.as_ref().unwrap().port,
        hollow.kubelet_addr.port() as i32
    );
    assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
    assert_eq!(n0.metadata.labels.as_ref().unwrap()["kubernetes.io/hostname"], "hollow-0");
    assert!(status.node_info.as_ref().unwrap().kubelet_version.starts_with("v1.33"));

    // Leases: one per node, renewed.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = eventually(WAIT, "5 node leases", || async {
        let l = leases.list(&ListParams::default()).await.ok()?;
        let ours: Vec<Lease> = l
            .items
            .into_iter()
            .filter(|l| l.metadata.name.as_deref().is_some_and(|n| n.starts_with("hollow-")))
            .collect();
        (ours.len() == 5).then_some(ours)
    })
    .await;
    let renewed_at = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone()).unwrap().0;
    let before = renewed_at(first.iter().find(|l| l.metadata.name.as_deref() == Some("hollow-3")).unwrap());
    eventually(WAIT, "hollow-3's lease renewed again", || async {
        let l = leases.get("hollow-3").await.ok()?;
        (renewed_at(&l) > before).then_some(())
    })
    .await;

    // A pod bound at creation runs and becomes Ready with a full status.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", Some("hollow-2"), &[])).await.unwrap();
    let p = wait_pod(&pods, "web", "web Running and Ready", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    let s = p.status.as_ref().unwrap();
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.pod_ip.as_deref(), Some("127.0.0.1"));
    assert!(s.start_time.is_some());
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("{t}"));
        assert_eq!(c.status, "True", "{t}");
        assert!(c.last_transition_time.is_some(), "{t}");
    }
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        (cs.name.as_str(), cs.image.as_str(), cs.ready, cs.started, cs.restart_count),
        ("c", "busybox", true, Some(true), 0)
    );
    assert!(cs.container_id.as_deref().unwrap().starts_with("fake://"));
    assert!(cs.state.as_ref().unwrap().running.is_some());

    // Its logs, through the API server's proxy to the shared kubelet endpoint.
    let logs = pods.logs("web", &Default::default()).await.unwrap();
    assert!(logs.contains("fake container c started"), "{logs}");

    // A pod bound later through pods/binding runs too.
    // It names a scheduler nobody runs, so the leader's scheduler leaves it to this test.
    let mut late = pod("late", None, &[]);
    late.spec.as_mut().unwrap().scheduler_name = Some("none".into());
    pods.create(&PostParams::default(), &late).await.unwrap();
    let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "late"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "hollow-4"}});
    let req = http_post("/api/v1/namespaces/default/pods/late/binding", &binding);
    client.request_text(req).await.unwrap();
    wait_pod(&pods, "late", "late Running", |p| condition(p, "Ready").as_deref() == Some("True")).await;

    // fake.berth.dev/ready=false: Running, never Ready.
    pods.create(&PostParams::default(), &pod("broken", Some("hollow-0"), &[("fake.berth.dev/ready", "false")]))
        .await
        .unwrap();
    let p = wait_pod(&pods, "broken", "broken Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("False"));
    assert!(!p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].ready);

    // fake.berth.dev/exit-code with restartPolicy Never: Failed with the exit code.
    let mut job = pod("job", Some("hollow-1"), &[("fake.berth.dev/exit-code", "3"), ("fake.berth.dev/run-ms", "10")]);
    job.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    pods.create(&PostParams::default(), &job).await.unwrap();
    let p =
        wait_pod(&pods, "job", "job Failed", |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .await;
    let term = p.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!(term.exit_code, 3);

    // Graceful deletion (default 30 s grace): the agent stops the containers and confirms.
    let uid = pods.get("web").await.unwrap().metadata.uid;
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "web gone", || async {
        match pods.get_opt("web").await.unwrap() {
            None => Some(()),
            Some(p) if p.metadata.uid != uid => Some(()),
            Some(_) => None,
        }
    })
    .await;
    pods.delete("broken", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "broken gone", || async { pods.get_opt("broken").await.unwrap().is_none().then_some(()) }).await;

    cancel.cancel();
    tokio::time::timeout(WAIT, hollow.stopped()).await.expect("hollow nodes stop");
    cp.stop().await;
}

fn http_post(path: &str, body: &serde_json::Value) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .unwrap()
}

/// A pod bound to `node` with one container `c` (image `busybox`) and `annotations`.
pub fn pod(name: &str, node: Option<&str>, annotations: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": annotations.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
        }
    }))
    .unwrap()
}
