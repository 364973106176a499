//! A node dies: with hollow nodes (`berth-agent`'s fake runtime, in process) on a live
//! 3-server cluster, a Deployment's pods on a node whose agent stops are replaced on the
//! other nodes within seconds (lease expiry → unreachable taints → eviction → ReplicaSet →
//! scheduler); when the node comes back its old pods are removed and nothing moves back.

use std::time::Duration;

use berth_agent::hollow::Hollow;
use berth_agent::{Heartbeat, HollowConfig};
use berth_control::testing::Cluster;
use berth_testkit::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

async fn hollow(client: kube::Client, prefix: &str, nodes: usize) -> (Hollow, CancellationToken) {
    let mut cfg = HollowConfig::new(prefix, nodes);
    cfg.client_ca_pem = berth_control::testing::agent_client_ca();
    cfg.template.heartbeat = Heartbeat::with_renew(Duration::from_millis(500));
    cfg.start_delay = Some(Duration::from_millis(10));
    let cancel = CancellationToken::new();
    let h = Hollow::start(client.clone(), cfg, cancel.clone()).await.expect("hollow nodes start");
    berth_agent::hollow::wait_ready(&client, &h.node_names, WAIT).await.expect("hollow nodes Ready");
    (h, cancel)
}

fn running_on(pods: &[Pod]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| Some((p.metadata.name.clone()?, p.spec.as_ref()?.node_name.clone()?)))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_of_a_dead_node_are_replaced_elsewhere_and_stay_there() {
    let settings = berth_control::tasks::Settings {
        node_monitor_grace_period: Duration::from_secs(3),
        pod_eviction_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let cluster = Cluster::start_with(3, settings).await;
    let client = cluster.client();
    let (doomed, doomed_cancel) = hollow(client.clone(), "doomed", 1).await;
    let (_healthy, _healthy_cancel) = hollow(client.clone(), "healthy", 2).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx", "command": ["sleep", "1d"]}]}}}});
    deployments.create(&PostParams::default(), &serde_json::from_value(d).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = ListParams::default().labels("app=web");
    let before = eventually(WAIT, "6 pods running, some on the doomed node", || async {
        let running = running_on(&pods.list(&list).await.unwrap().items);
        (running.len() == 6 && running.iter().any(|(_, n)| n == "doomed-0")).then_some(running)
    })
    .await;
    let on_doomed: Vec<String> = before.iter().filter(|(_, n)| n == "doomed-0").map(|(p, _)| p.clone()).collect();

    // The node's agent dies: no more lease renewals, no status.
    doomed_cancel.cancel();
    doomed.stopped().await;
    let started = std::time::Instant::now();
    let after = eventually(WAIT, "6 pods running on the healthy nodes", || async {
        let running = running_on(&pods.list(&list).await.unwrap().items);
        (running.len() == 6 && running.iter().all(|(_, n)| n.starts_with("healthy-"))).then_some(running)
    })
    .await;
    println!("replaced {} pods of the dead node in {:?}", on_doomed.len(), started.elapsed());
    for p in &on_doomed {
        assert!(!after.iter().any(|(name, _)| name == p), "{p} was replaced, not kept");
    }

    // The node comes back: its old pods are deleted by its agent; nothing moves back.
    let (_back, _back_cancel) = hollow(client.clone(), "doomed", 1).await;
    eventually(WAIT, "the old pods are gone", || async {
        let all = pods.list(&list).await.unwrap().items;
        let names: Vec<String> = all.iter().filter_map(|p| p.metadata.name.clone()).collect();
        on_doomed.iter().all(|p| !names.contains(p)).then_some(())
    })
    .await;
    let settled = running_on(&pods.list(&list).await.unwrap().items);
    assert_eq!(settled, after, "nothing moved back");
}
