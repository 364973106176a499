//! The pod network across nodes, node side (what flannel's `host-gw` backend does): every
//! other node's `spec.podCIDR` is routed via that node's InternalIP, so pods reach pods on
//! other nodes by their own addresses, without NAT; traffic from this node's pods to
//! anything outside the cluster CIDR is masqueraded (nftables table `ip berth-podnet`).
//!
//! The routes carry routing protocol [`ROUTE_PROTO`], which marks them as the agent's: it
//! lists, replaces and deletes only those, and never touches another route. They follow a
//! Node watch; on (re)start the kernel's routes are read back, so a restarted agent
//! converges on the same set. [`cleanup`] removes the routes and the table (`berth-agent
//! --cleanup`). Which routes and rules to have is decided purely ([`desired_routes`],
//! [`route_changes`], [`masquerade_ruleset`]); `ip` and `nft` run at the edges, each call
//! bounded in time.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use berth_proto::model::cidr::Ipv4Cidr;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio_util::sync::CancellationToken;

use crate::command::run;

/// The routing protocol number of the agent's routes (`ip route … proto 66`).
pub const ROUTE_PROTO: &str = "66";
/// The nftables table of the pod network's masquerade.
pub const NFT_TABLE: &str = "berth-podnet";
/// How often the routes are checked against the kernel even without a Node change (a route
/// deleted by hand comes back).
const RESYNC: Duration = Duration::from_secs(60);

/// What the pod network of this node needs to know.
#[derive(Debug, Clone)]
pub struct PodNetSettings {
    /// This node's name (its own podCIDR is local: the bridge serves it).
    pub node: String,
    /// The cluster's pod CIDR (`--cluster-cidr`): traffic to it is never masqueraded.
    pub cluster_cidr: Ipv4Cidr,
}

/// The address other nodes reach a node at: its first InternalIP, if IPv4 and routable
/// (not loopback or unspecified — nodes sharing one host's loopback cannot route).
pub fn routable_address(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    let ip: Ipv4Addr = addresses.iter().find(|a| a.type_ == "InternalIP")?.address.parse().ok()?;
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn pod_cidr(node: &Node) -> Option<Ipv4Cidr> {
    node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

/// The routes this node should have (pure): each other node's podCIDR via its address.
/// Nodes without a podCIDR or a routable address get none. A podCIDR that overlaps this
/// node's own, or one already routed to another node (a Node created with a taken
/// podCIDR), gets no route — the first node by name keeps it — and is returned in the
/// second list as `node podCIDR`, for a warning.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own: &str,
) -> (BTreeMap<Ipv4Cidr, Ipv4Addr>, Vec<String>) {
    let mut nodes: Vec<&Node> = nodes.into_iter().collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let own_cidr = nodes.iter().find(|n| n.metadata.name.as_deref() == Some(own)).and_then(|n| pod_cidr(n));
    let overlap = |a: &Ipv4Cidr, b: &Ipv4Cidr| a.contains(b) || b.contains(a);
    let (mut routes, mut conflicts) = (BTreeMap::new(), Vec::new());
    for n in nodes.iter().filter(|n| n.metadata.name.as_deref() != Some(own)) {
        let (Some(cidr), Some(gateway)) = (pod_cidr(n), routable_address(n)) else { continue };
        let taken = own_cidr.iter().chain(routes.keys()).any(|c| overlap(c, &cidr));
        if taken {
            conflicts.push(format!("{} {cidr}", n.metadata.name.as_deref().unwrap_or_default()));
        } else {
            routes.insert(cidr, gateway);
        }
    }
    (routes, conflicts)
}

/// How to get from the routes the kernel has to the desired ones (pure): the routes to add
/// or replace, then the destinations to delete.
pub fn route_changes(
    current: &BTreeMap<Ipv4Cidr, Ipv4Addr>,
    desired: &BTreeMap<Ipv4Cidr, Ipv4Addr>,
) -> (Vec<(Ipv4Cidr, Ipv4Addr)>, Vec<Ipv4Cidr>) {
    let replace = desired.iter().filter(|(c, gw)| current.get(c) != Some(gw)).map(|(c, gw)| (*c, *gw)).collect();
    let delete = current.keys().filter(|c| !desired.contains_key(c)).copied().collect();
    (replace, delete)
}

/// The masquerade table (pure, an `nft -f` script that replaces the table whole): traffic
/// from this node's pods to anything outside the cluster's pod CIDR leaves with the node's
/// address; pod-to-pod traffic, on this node or another, keeps its source.
pub fn masquerade_ruleset(pod_cidr: &Ipv4Cidr, cluster_cidr: &Ipv4Cidr) -> String {
    format!(
        "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {cluster_cidr} masquerade\n\
         \t}}\n}}\n"
    )
}

/// Parses `ip -4 -j route show proto 66` (pure): destination → gateway.
pub fn parse_routes(json: &str) -> BTreeMap<Ipv4Cidr, Ipv4Addr> {
    let routes: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    routes
        .iter()
        .filter_map(|r| {
            let dst: Ipv4Cidr = r["dst"].as_str()?.parse().ok()?;
            Some((dst, r["gateway"].as_str()?.parse().ok()?))
        })
        .collect()
}

/// The agent's routes as the kernel has them.
async fn current_routes() -> Result<BTreeMap<Ipv4Cidr, Ipv4Addr>, String> {
    run("ip", &["-4", "-j", "route", "show", "proto", ROUTE_PROTO], None).await.map(|json| parse_routes(&json))
}

/// Brings the kernel's routes to `desired`; failures (a gateway not on any link) are
/// logged per route and retried at the next sync.
async fn apply_routes(desired: &BTreeMap<Ipv4Cidr, Ipv4Addr>) {
    let current = match current_routes().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "reading the pod network's routes");
            return;
        }
    };
    let (replace, delete) = route_changes(&current, desired);
    for (cidr, gateway) in replace {
        let (dst, via) = (cidr.to_string(), gateway.to_string());
        match run("ip", &["route", "replace", &dst, "via", &via, "proto", ROUTE_PROTO], None).await {
            Ok(_) => tracing::info!(pod_cidr = %dst, via = %via, "route to another node's pods"),
            Err(e) => tracing::warn!(pod_cidr = %dst, via = %via, error = %e, "could not route to a node's pods"),
        }
    }
    for cidr in delete {
        let dst = cidr.to_string();
        match run("ip", &["route", "del", &dst, "proto", ROUTE_PROTO], None).await {
            Ok(_) => tracing::info!(pod_cidr = %dst, "route to a node's pods removed"),
            Err(e) => tracing::warn!(pod_cidr = %dst, error = %e, "could not remove a route"),
        }
    }
}

/// Installs the masquerade for this node's `pod_cidr`.
async fn apply_masquerade(pod_cidr: &Ipv4Cidr, cluster_cidr: &Ipv4Cidr) {
    if !cluster_cidr.contains(pod_cidr) {
        tracing::warn!(%pod_cidr, %cluster_cidr, "the node's podCIDR is outside --cluster-cidr");
    }
    match run("nft", &["-f", "-"], Some(&masquerade_ruleset(pod_cidr, cluster_cidr))).await {
        Ok(_) => tracing::info!(%pod_cidr, %cluster_cidr, "pod traffic leaving the cluster is masqueraded"),
        Err(e) => {
            tracing::error!(error = %e, "could not install the pods' masquerade; their traffic cannot leave the node")
        }
    }
}

/// Keeps this node's routes and masquerade in line with the Nodes, until `cancel`.
pub async fn run_sync(client: kube::Client, settings: PodNetSettings, cancel: CancellationToken) {
    let api: kube::Api<Node> = kube::Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Node>> = None;
    let mut listed = false;
    let mut masqueraded: Option<Ipv4Cidr> = None;
    let mut applied: Option<BTreeMap<Ipv4Cidr, Ipv4Addr>> = None;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let mut force = false;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = resync.tick() => force = true,
            event = stream.next() => match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "node watch failed; re-listing after back-off"),
                Some(Ok(Event::Init)) => listing = Some(BTreeMap::new()),
                Some(Ok(Event::InitApply(n))) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    nodes = listing.take().unwrap_or_default();
                    listed = true;
                }
                Some(Ok(Event::Apply(n))) => {
                    nodes.insert(n.metadata.name.clone().unwrap_or_default(), n);
                }
                Some(Ok(Event::Delete(n))) => {
                    nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                }
            },
        }
        if !listed {
            continue;
        }
        let own_cidr: Option<Ipv4Cidr> =
            nodes.get(&settings.node).and_then(|n| n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok());
        if let Some(cidr) = own_cidr.filter(|c| force || masqueraded != Some(*c)) {
            apply_masquerade(&cidr, &settings.cluster_cidr).await;
            masqueraded = Some(cidr);
        }
        let (desired, conflicts) = desired_routes(nodes.values(), &settings.node);
        if force || applied.as_ref() != Some(&desired) {
            if !conflicts.is_empty() {
                tracing::warn!(?conflicts, "nodes whose podCIDR another node (or this one) has: no route to them");
            }
            apply_routes(&desired).await;
            applied = Some(desired);
        }
    }
}

/// Removes every route the agent made and its nftables table (`berth-agent --cleanup`).
/// Returns how many routes went.
pub async fn cleanup() -> Result<usize, String> {
    let routes = current_routes().await?;
    for cidr in routes.keys() {
        run("ip", &["route", "del", &cidr.to_string(), "proto", ROUTE_PROTO], None).await?;
    }
    crate::command::delete_nft_table(NFT_TABLE).await?;
    Ok(routes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
        }))
        .unwrap()
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn every_other_routable_node_with_a_pod_cidr_gets_a_route() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), "172.31.1.11"),
            node("b", Some("10.244.1.0/24"), "172.31.1.12"),
            node("c", None, "172.31.1.13"),
            node("d", Some("10.244.3.0/24"), "127.0.0.1"),
            node("e", Some("10.244.4.0/24"), "not-an-ip"),
        ];
        let (routes, conflicts) = desired_routes(&nodes, "a");
        assert_eq!(routes, BTreeMap::from([(cidr("10.244.1.0/24"), Ipv4Addr::new(172, 31, 1, 12))]));
        assert!(conflicts.is_empty());
    }

    #[test]
    fn a_taken_pod_cidr_gets_no_route() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), "172.31.1.11"),
            node("c", Some("10.244.1.0/24"), "172.31.1.13"),
            node("b", Some("10.244.1.0/24"), "172.31.1.12"),
            node("d", Some("10.244.0.0/16"), "172.31.1.14"),
        ];
        let (routes, conflicts) = desired_routes(&nodes, "a");
        assert_eq!(routes, BTreeMap::from([(cidr("10.244.1.0/24"), Ipv4Addr::new(172, 31, 1, 12))]));
        assert_eq!(conflicts, vec!["c 10.244.1.0/24", "d 10.244.0.0/16"]);
    }

    #[test]
    fn changes_replace_what_differs_and_delete_what_is_gone() {
        let gw = |d: u8| Ipv4Addr::new(172, 31, 1, d);
        let current = BTreeMap::from([(cidr("10.244.1.0/24"), gw(12)), (cidr("10.244.2.0/24"), gw(13))]);
        let desired = BTreeMap::from([(cidr("10.244.1.0/24"), gw(14)), (cidr("10.244.3.0/24"), gw(15))]);
        let (replace, delete) = route_changes(&current, &desired);
        assert_eq!(replace, vec![(cidr("10.244.1.0/24"), gw(14)), (cidr("10.244.3.0/24"), gw(15))]);
        assert_eq!(delete, vec![cidr("10.244.2.0/24")]);
        assert_eq!(route_changes(&desired, &desired), (vec![], vec![]));
    }

    #[test]
    fn routes_are_read_back_from_ip_json() {
        let json = r#"[{"dst":"10.244.1.0/24","gateway":"172.31.1.12","dev":"eth0","protocol":"66","flags":[]},
                       {"dst":"default","gateway":"172.31.1.1","dev":"eth0","flags":[]}]"#;
        assert_eq!(parse_routes(json), BTreeMap::from([(cidr("10.244.1.0/24"), Ipv4Addr::new(172, 31, 1, 12))]));
        assert!(parse_routes("").is_empty());
    }

    #[test]
    fn the_masquerade_spares_pod_to_pod_traffic() {
        let rules = masquerade_ruleset(&cidr("10.244.1.0/24"), &cidr("10.244.0.0/16"));
        assert!(rules.contains("ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 masquerade"), "{rules}");
        assert!(rules.starts_with("table ip berth-podnet\ndelete table ip berth-podnet\n"), "replaced whole: {rules}");
    }
}
