//! The node network of a local containerd cluster: one Linux network namespace per agent,
//! so every node has an address of its own (as kind gives each node container one), all
//! plugged into a bridge, with the host on the same subnet.
//!
//! ```text
//!   host                          berth-X-switch (namespace)          berth-X-node-J
//!   berth-net-X 172.31.X.1/24 ──veth── uplink ┐
//!                                             br0 (bridge) ── vJ ──veth── eth0 172.31.X.(10+J)
//! ```
//!
//! `X` (1–254) is the cluster's subnet octet, chosen free on this host when the cluster is
//! planned and recorded in its state file, so the names and addresses stay the same across
//! `down`/`up` and two clusters never share them. The servers listen on the host's address,
//! which every node reaches through its default route. The bridge has a namespace of its own
//! because the host's firewall may filter bridged traffic (Docker loads `br_netfilter` and
//! sets FORWARD to DROP); nothing here touches the host's firewall.
//!
//! Naming and addressing are pure; the rest runs `ip`, each call bounded in time.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{CtlError, Result};

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// `ip` answers in milliseconds; the bound only matters if something hangs.
const IP_TIMEOUT_SECS: &str = "10";
/// The first node's host part: `.1` is the host, `.2`–`.10` are spare.
const FIRST_NODE_HOST: usize = 11;
/// The most agents a node network holds (up to `.254`).
pub const MAX_NODES: usize = 254 - FIRST_NODE_HOST + 1;
/// The most local clusters with node networks on one host (each has its own pod CIDR).
pub const MAX_CLUSTERS: u8 = 132;
/// The bridge, and the node's interface, inside their namespaces.
const BRIDGE: &str = "br0";
const NODE_IF: &str = "eth0";

/// One cluster's node network: `172.31.{subnet}.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetwork {
    pub subnet: u8,
}

impl NodeNetwork {
    /// The host's address: the servers listen on it.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 31, self.subnet, 1)
    }

    /// The address of the `index`-th (0-based) node.
    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(172, 31, self.subnet, (FIRST_NODE_HOST + index).min(254) as u8)
    }

    /// The cluster's pod CIDR: 10.244.0.0/16 for the first local cluster, 10.243.0.0/16
    /// for the second… (down to 10.113.0.0/16, above the service range 10.96.0.0/12), so
    /// that two local clusters' pods never share addresses or the host's routes to them.
    pub fn cluster_cidr(&self) -> String {
        format!("10.{}.0.0/16", 245 - u32::from(self.subnet).min(MAX_CLUSTERS as u32))
    }

    /// The host's end of the uplink veth (at most 15 bytes: `berth-net-254`).
    pub fn host_link(&self) -> String {
        format!("berth-net-{}", self.subnet)
    }

    pub fn switch_ns(&self) -> String {
        format!("berth-{}-switch", self.subnet)
    }

    /// The namespace of node `node` (a node name of the local layout).
    pub fn node_ns(&self, node: &str) -> String {
        format!("berth-{}-{node}", self.subnet)
    }

    pub fn node_ns_path(&self, node: &str) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(self.node_ns(node))
    }

    /// Whether the network is there (its switch namespace is).
    pub fn exists(&self) -> bool {
        PathBuf::from(NETNS_DIR).join(self.switch_ns()).exists()
    }

    /// Builds the network for `nodes` (in layout order), or the nodes' namespaces it lacks
    /// when it is there already. On failure, what this call built is removed again.
    pub fn create(&self, nodes: &[String]) -> Result<()> {
        if !self.exists() {
            // Leftovers of a network half-removed by a crash go first.
            self.destroy(nodes);
            let built = ip(&["netns", "add", &self.switch_ns()]).and_then(|_| self.build_switch());
            if let Err(e) = built {
                self.destroy(nodes);
                return Err(e);
            }
        }
        for (index, node) in nodes.iter().enumerate() {
            if self.node_ns_path(node).exists() {
                continue;
            }
            if let Err(e) = self.build_node(index, node) {
                let _ = ip(&["netns", "del", &self.node_ns(node)]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Fills the switch namespace, just created.
    fn build_switch(&self) -> Result<()> {
        let (sw, host) = (self.switch_ns(), self.host_link());
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        ip(&["-n", &sw, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", BRIDGE, "up"])?;
        ip(&["link", "add", &host, "type", "veth", "peer", "name", "uplink", "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", "uplink", "master", BRIDGE, "up"])?;
        ip(&["addr", "add", &format!("{}/24", self.host_ip()), "dev", &host])?;
        ip(&["link", "set", &host, "up"]).map(drop)
    }

    fn build_node(&self, index: usize, node: &str) -> Result<()> {
        let (sw, ns, port) = (self.switch_ns(), self.node_ns(node), format!("v{index}"));
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // A port left by a node namespace deleted under us goes first.
        let _ = ip(&["-n", &sw, "link", "del", &port]);
        ip(&["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", NODE_IF, "netns", &ns])?;
        ip(&["-n", &sw, "link", "set", &port, "master", BRIDGE, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.node_ip(index)), "dev", NODE_IF])?;
        ip(&["-n", &ns, "link", "set", NODE_IF, "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &self.host_ip().to_string()]).map(drop)
    }

    /// Routes the host's traffic for each `(pod CIDR, node index)` to that node, so pod
    /// addresses answer from the host (the nodes route to each other's pods in the next
    /// issue's pod network).
    pub fn route_pod_cidrs(&self, routes: &[(String, usize)]) -> Result<()> {
        for (cidr, index) in routes {
            ip(&["route", "replace", cidr, "via", &self.node_ip(*index).to_string(), "dev", &self.host_link()])?;
        }
        Ok(())
    }

    /// Removes the network: every process still in a node's namespace is killed, then the
    /// namespaces go, taking the bridge, the veths and the host's routes with them.
    /// Idempotent; reports nothing (it runs on the way out of failures too).
    pub fn destroy(&self, nodes: &[String]) {
        for node in nodes {
            let path = self.node_ns_path(node);
            if !path.exists() {
                continue;
            }
            for pid in processes_in(&path) {
                tracing::warn!(pid, node = %node, "killing a process left in the node's namespace");
                // SAFETY: kill(2) on a process inside a namespace this cluster created.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = ip(&["netns", "del", &self.node_ns(node)]);
        }
        let _ = ip(&["link", "del", &self.host_link()]);
        if self.exists() {
            let _ = ip(&["netns", "del", &self.switch_ns()]);
        }
    }
}

/// The first subnet octet (1–254) whose `172.31.X.0/24` neither `routes` (`ip -4 route`
/// output: every address the host uses has one) nor `taken` (subnets recorded by clusters
/// whose namespaces exist) uses (pure).
pub fn free_subnet(routes: &str, taken: &[u8]) -> Option<u8> {
    (1..=MAX_CLUSTERS).find(|x| {
        let prefix = format!("172.31.{x}.");
        !taken.contains(x)
            && !routes.split_whitespace().any(|word| word.starts_with(&prefix) || word.starts_with("172.31.0.0/16"))
    })
}

/// Chooses a free node network on this host and claims it by building its switch (the
/// namespace's creation fails for a name taken meanwhile, so two `up`s at once never get
/// the same subnet).
pub fn claim() -> Result<NodeNetwork> {
    let routes = ip(&["-4", "route", "show", "table", "all"])?;
    let mut taken: Vec<u8> = std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|name| name.strip_prefix("berth-")?.strip_suffix("-switch")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    while let Some(subnet) = free_subnet(&routes, &taken) {
        let net = NodeNetwork { subnet };
        if ip(&["netns", "add", &net.switch_ns()]).is_ok() {
            if let Err(e) = net.build_switch() {
                net.destroy(&[]);
                return Err(e);
            }
            return Ok(net);
        }
        taken.push(subnet);
    }
    Err(CtlError::usage(format!(
        "no free node network for another local cluster (172.31.1.0/24 to 172.31.{MAX_CLUSTERS}.0/24 are taken)"
    )))
}

/// Makes `cmd` start inside the network namespace at `path` (and only that namespace:
/// unlike `ip netns exec`, the mount namespace, with the host's /sys/fs/cgroup, stays).
/// The returned file must live until the command is spawned.
pub fn enter(cmd: &mut Command, path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = std::fs::File::open(path).map_err(|e| CtlError::io(format!("opening {}", path.display()), e))?;
    let fd = ns.as_raw_fd();
    // SAFETY: setns(2) is async-signal-safe, and `fd` stays open until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(ns)
}

/// The processes whose network namespace is the one at `path`.
pub fn processes_in(path: &std::path::Path) -> Vec<u32> {
    let Ok(inode) = std::fs::metadata(path).map(|m| m.ino()) else { return vec![] };
    let wanted = format!("net:[{inode}]");
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|link| link.to_string_lossy() == wanted)
        })
        .collect()
}

/// Runs `ip args…` (bounded by `timeout`) and returns its stdout; a failure names the
/// command and carries its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("timeout")
        .args([IP_TIMEOUT_SECS, "ip"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CtlError::io("running ip (iproute2)", e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CtlError::usage(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Waits up to `grace` for the processes in each namespace to exit by themselves.
pub async fn wait_empty(paths: &[PathBuf], grace: Duration) -> bool {
    let deadline = std::time::Instant::now() + grace;
    loop {
        if paths.iter().all(|p| processes_in(p).is_empty()) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_follow_the_subnet() {
        let net = NodeNetwork { subnet: 254 };
        assert_eq!(net.host_ip(), Ipv4Addr::new(172, 31, 254, 1));
        assert_eq!(net.node_ip(0), Ipv4Addr::new(172, 31, 254, 11));
        assert_eq!(net.node_ip(MAX_NODES - 1), Ipv4Addr::new(172, 31, 254, 254));
        assert_eq!(net.host_link(), "berth-net-254");
        assert!(net.host_link().len() <= 15, "an interface name has at most 15 bytes");
        assert_eq!(net.node_ns("node-2"), "berth-254-node-2");
        assert_eq!(net.node_ns_path("node-2"), PathBuf::from("/var/run/netns/berth-254-node-2"));
        assert_eq!(NodeNetwork { subnet: 1 }.cluster_cidr(), "10.244.0.0/16");
        assert_eq!(NodeNetwork { subnet: 2 }.cluster_cidr(), "10.243.0.0/16");
        assert_eq!(NodeNetwork { subnet: MAX_CLUSTERS }.cluster_cidr(), "10.113.0.0/16", "above 10.96.0.0/12");
    }

    #[test]
    fn a_subnet_the_host_uses_is_never_chosen() {
        let routes =
            "default via 192.168.1.1 dev eth0\n172.31.1.0/24 dev berth-net-1 proto kernel scope link src 172.31.1.1\n\
                      local 172.31.2.7 dev lo table local proto kernel scope host src 172.31.2.7\n";
        assert_eq!(free_subnet(routes, &[]), Some(3));
        assert_eq!(free_subnet(routes, &[3, 4]), Some(5));
        assert_eq!(free_subnet("172.31.0.0/16 dev docker1\n", &[]), None, "the whole range is taken");
        assert_eq!(free_subnet("", &(1..=MAX_CLUSTERS).collect::<Vec<u8>>()), None);
    }
}
