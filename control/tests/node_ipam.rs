//! Node IPAM on a live cluster: every Node gets its own podCIDR from --cluster-cidr, an
//! exhausted range says so with a `CIDRNotAvailable` Event, and a deleted Node's CIDR goes
//! to the next Node that needs one.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_control::tasks::node_ipam::NodeCidrs;
use berth_control::testing::Cluster;
use berth_testkit::eventually;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

const WAIT: Duration = Duration::from_secs(30);

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec.as_ref()?.pod_cidr.clone()
}

async fn cidrs(nodes: &Api<Node>) -> Vec<(String, Option<String>)> {
    let mut list: Vec<(String, Option<String>)> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), pod_cidr(n)))
        .collect();
    list.sort();
    list
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_get_distinct_pod_cidrs_and_a_deleted_nodes_cidr_is_reused() {
    // 10.9.0.0/22 holds four /24s.
    let settings = berth_control::tasks::Settings {
        node_cidrs: Some(NodeCidrs::parse("10.9.0.0/22", 24).unwrap()),
        ..Default::default()
    };
    let cluster = Cluster::start_with(1, settings).await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 1..=5 {
        let node = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("n{i}")}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let assigned = eventually(WAIT, "four nodes with a pod CIDR", || async {
        let all = cidrs(&nodes).await;
        (all.iter().filter(|(_, c)| c.is_some()).count() == 4).then_some(all)
    })
    .await;
    let given: BTreeSet<String> = assigned.iter().filter_map(|(_, c)| c.clone()).collect();
    let expected: BTreeSet<String> = (0..4).map(|i| format!("10.9.{i}.0/24")).collect();
    assert_eq!(given, expected, "{assigned:?}");
    assert_eq!(assigned[4], ("n5".to_string(), None), "name order: n5 is the one left out");
    let node = nodes.get("n1").await.unwrap();
    assert_eq!(node.spec.unwrap().pod_cidrs, Some(vec!["10.9.0.0/24".to_string()]));

    let events: Api<Event> = Api::all(client.clone());
    eventually(WAIT, "a CIDRNotAvailable event for n5", || async {
        let list = events.list(&ListParams::default()).await.unwrap().items;
        list.iter()
            .find(|e| {
                e.reason.as_deref() == Some("CIDRNotAvailable") && e.involved_object.name.as_deref() == Some("n5")
            })
            .cloned()
    })
    .await;

    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "n5 to get n1's freed CIDR", || async {
        let n5 = nodes.get("n5").await.unwrap();
        (pod_cidr(&n5).as_deref() == Some("10.9.0.0/24")).then_some(())
    })
    .await;
}
