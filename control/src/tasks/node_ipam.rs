//! Node IPAM: gives every Node a `spec.podCIDR` (and `spec.podCIDRs`), a /`--node-cidr-mask-size`
//! (default /24) of `--cluster-cidr` (default 10.244.0.0/16), as kube-controller-manager's
//! range allocator does with `--allocate-node-cidrs`. The agent builds its pod network on
//! it. A Node keeps its CIDR for life (the API refuses changing it); a deleted Node's CIDR
//! is free again, since only the CIDRs of existing Nodes count as taken.
//!
//! [`plan`] is the pure decision: the lowest free subnets, in node-name order, for the nodes
//! that have none. The sweep reads the Node informer; a CIDR it has just assigned stays
//! taken in memory until the cache shows it on its Node, so a lagging cache cannot hand it
//! out twice. Each write is a merge patch pinned to the resourceVersion the decision saw.
//! When the range is exhausted the Node gets a `CIDRNotAvailable` Event, as in Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_proto::model::cidr::Ipv4Cidr;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::tasks::context::TaskContext;
use crate::tasks::events::{reference, EventType, Recorder};

const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// `--cluster-cidr`'s default (flannel's and kubeadm guides' 10.244.0.0/16).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// `--node-cidr-mask-size`'s default.
pub const DEFAULT_NODE_PREFIX: u8 = 24;

/// The range nodes' CIDRs come from and their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCidrs {
    pub cluster: Ipv4Cidr,
    /// The prefix length of each node's subnet.
    pub node_prefix: u8,
}

impl NodeCidrs {
    /// From the flags' text; errors name the flag.
    pub fn parse(cluster_cidr: &str, node_prefix: u8) -> Result<NodeCidrs, String> {
        let cluster: Ipv4Cidr = cluster_cidr.parse().map_err(|e| format!("--cluster-cidr: {e}"))?;
        if node_prefix < cluster.prefix || node_prefix > 30 {
            return Err(format!(
                "--node-cidr-mask-size {node_prefix}: must be between the cluster CIDR's /{} and /30",
                cluster.prefix
            ));
        }
        Ok(NodeCidrs { cluster, node_prefix })
    }
}

/// A node as the allocator sees it: its name and the podCIDR it has, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub pod_cidr: Option<String>,
}

/// What one sweep decides.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// (node, CIDR) to assign.
    pub assign: Vec<(String, Ipv4Cidr)>,
    /// Nodes left without a CIDR: the range is exhausted.
    pub exhausted: Vec<String>,
}

/// The lowest free subnets for the nodes without one, in name order (pure). `reserved`:
/// CIDRs assigned recently that the nodes may not show yet.
pub fn plan(cidrs: &NodeCidrs, nodes: &[NodeView], reserved: &BTreeSet<Ipv4Cidr>) -> Plan {
    let mut taken: BTreeSet<u64> = reserved.iter().filter_map(|c| cidrs.cluster.index_of(c)).collect();
    for node in nodes {
        let parsed = node.pod_cidr.as_deref().and_then(|c| c.parse::<Ipv4Cidr>().ok());
        if let Some(index) = parsed.filter(|c| c.prefix == cidrs.node_prefix).and_then(|c| cidrs.cluster.index_of(&c)) {
            taken.insert(index);
        }
    }
    let count = cidrs.cluster.subnet_count(cidrs.node_prefix).unwrap_or(0);
    let mut free = (0..count).filter(|i| !taken.contains(i));
    let mut out = Plan::default();
    let mut wanting: Vec<&NodeView> = nodes.iter().filter(|n| n.pod_cidr.is_none()).collect();
    wanting.sort_by(|a, b| a.name.cmp(&b.name));
    for node in wanting {
        match free.next().and_then(|i| cidrs.cluster.subnet(cidrs.node_prefix, i)) {
            Some(cidr) => out.assign.push((node.name.clone(), cidr)),
            None => out.exhausted.push(node.name.clone()),
        }
    }
    out
}

fn view(node: &Node) -> NodeView {
    let spec = node.spec.as_ref();
    let pod_cidr = spec
        .and_then(|s| s.pod_cidr.clone().or_else(|| s.pod_cidrs.as_ref().and_then(|l| l.first().cloned())))
        .filter(|c| !c.is_empty());
    NodeView { name: node.name_any(), pod_cidr }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let Some(cidrs) = ctx.settings.node_cidrs else { return };
    let nodes = ctx.informers.store::<Node>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let events = Recorder::new(ctx.client.clone(), "node-ipam-controller");
    let api: Api<Node> = Api::all(ctx.client.clone());
    // Assigned by this term but maybe not in the cache yet: CIDR → node.
    let mut reserved: BTreeMap<Ipv4Cidr, String> = BTreeMap::new();
    let mut exhausted_reported: BTreeSet<String> = BTreeSet::new();
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let current: Vec<std::sync::Arc<Node>> = nodes.state();
        let views: Vec<NodeView> = current.iter().map(|n| view(n)).collect();
        // A reservation ends once its node shows a CIDR (this one or any) or is gone.
        reserved.retain(|_, node| views.iter().any(|v| &v.name == node && v.pod_cidr.is_none()));
        let decision = plan(&cidrs, &views, &reserved.keys().copied().collect());
        let pass = async {
            for (name, cidr) in decision.assign {
                let Some(node) = current.iter().find(|n| n.name_any() == name) else { continue };
                let patch = json!({
                    "metadata": {"resourceVersion": node.resource_version()},
                    "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}
                });
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {
                        ctx.status.record(true);
                        tracing::info!(node = %name, %cidr, "assigned the node's pod CIDR");
                        reserved.insert(cidr, name);
                    }
                    Err(e) => {
                        ctx.status.record(false);
                        tracing::debug!(node = %name, error = %e, "assigning the node's pod CIDR failed; retrying");
                    }
                }
            }
            for name in decision.exhausted {
                if !exhausted_reported.insert(name.clone()) {
                    continue;
                }
                let Some(node) = current.iter().find(|n| n.name_any() == name) else { continue };
                let message = format!("Node {name} status is now: CIDRNotAvailable");
                tracing::warn!(node = %name, cluster_cidr = %cidrs.cluster, "no pod CIDR left for the node");
                events.publish(&reference(node.as_ref()), EventType::Normal, "CIDRNotAvailable", &message).await;
            }
        };
        if every.pass(pass).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>) -> NodeView {
        NodeView { name: name.into(), pod_cidr: cidr.map(String::from) }
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn nodes_without_a_cidr_get_the_lowest_free_ones_in_name_order() {
        let cidrs = NodeCidrs::parse("10.244.0.0/16", 24).unwrap();
        let nodes =
            [node("c", None), node("a", Some("10.244.0.0/24")), node("b", None), node("d", Some("10.244.2.0/24"))];
        let p = plan(&cidrs, &nodes, &BTreeSet::new());
        assert_eq!(p.assign, vec![("b".into(), cidr("10.244.1.0/24")), ("c".into(), cidr("10.244.3.0/24"))]);
        assert!(p.exhausted.is_empty());
    }

    #[test]
    fn reserved_cidrs_are_not_handed_out_again_and_deleted_nodes_free_theirs() {
        let cidrs = NodeCidrs::parse("10.244.0.0/16", 24).unwrap();
        let reserved = BTreeSet::from([cidr("10.244.0.0/24")]);
        let p = plan(&cidrs, &[node("b", None)], &reserved);
        assert_eq!(p.assign, vec![("b".into(), cidr("10.244.1.0/24"))]);
        // Node "a" (10.244.0.0/24) was deleted and nothing reserves it: it is free again.
        let p = plan(&cidrs, &[node("c", None)], &BTreeSet::new());
        assert_eq!(p.assign, vec![("c".into(), cidr("10.244.0.0/24"))]);
    }

    #[test]
    fn an_exhausted_range_leaves_the_rest_without_and_says_so() {
        let cidrs = NodeCidrs::parse("10.0.0.0/23", 24).unwrap();
        let p = plan(&cidrs, &[node("a", None), node("b", None), node("c", None)], &BTreeSet::new());
        assert_eq!(p.assign.len(), 2);
        assert_eq!(p.exhausted, vec!["c".to_string()]);
    }

    #[test]
    fn flags_are_checked_with_their_names() {
        assert!(NodeCidrs::parse("10.244.0.0", 24).unwrap_err().starts_with("--cluster-cidr: "));
        assert!(NodeCidrs::parse("10.244.0.0/16", 8).unwrap_err().starts_with("--node-cidr-mask-size 8: "));
        assert!(NodeCidrs::parse("10.244.0.0/16", 31).is_err());
    }
}
