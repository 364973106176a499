//! What an agent or a set of hollow nodes is told to be: node identity, labels, taints,
//! capacity, addresses and timings, and the parsers for their flag syntax (each error
//! names the flag it came from).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use crate::error::{AgentError, Result};

/// Which runtime runs containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Containers are child processes.
    Process,
    /// Nothing runs; containers report Running after a short delay.
    Fake,
    /// Containers from images through CRI, against containerd.
    Containerd(Box<CriOptions>),
}

/// How the agent reaches (or runs) its CRI runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriOptions {
    /// An existing runtime's socket (`unix:///run/containerd/containerd.sock`); None: the
    /// agent starts its own containerd under its data dir.
    pub endpoint: Option<String>,
    /// The pod sandbox image (kubelet's `--pod-infra-container-image`).
    pub sandbox_image: String,
    /// The CNI plugin binaries (own containerd only).
    pub cni_bin_dir: PathBuf,
    /// The pods' bridge on this node (own containerd only; at most 15 bytes).
    pub pod_bridge: String,
    /// Image archives imported at start (own containerd only); None: `DATA_DIR/images`.
    pub images_dir: Option<PathBuf>,
    /// When unused images are removed.
    pub image_gc: crate::runtime::cri::image_gc::ImageGcPolicy,
    /// Own containerd: the cluster's pod CIDR when the agent runs the pod network across
    /// nodes ([`crate::podnet`]: routes to the other nodes' pods, masquerade of traffic
    /// leaving this CIDR); None: pods reach only this node's pods and, masqueraded by the
    /// bridge plugin, everything else.
    pub cluster_cidr: Option<berth_proto::model::cidr::Ipv4Cidr>,
    /// Pods' DNS and the node's cluster DNS server.
    pub dns: DnsOptions,
    /// The port the node serves Ingresses on, at its InternalIP, when it runs the pod
    /// network and service proxy (0: it does not).
    pub ingress_port: u16,
}

/// DNS on a containerd node: what pods' resolv.conf says (kubelet's `--cluster-dns`,
/// `--cluster-domain`, `--resolv-conf`) and where the node serves the cluster domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    /// The cluster DNS addresses ClusterFirst pods use (empty: the host's resolvers).
    pub cluster_dns: Vec<std::net::IpAddr>,
    pub cluster_domain: String,
    /// The host resolv.conf: `Default`-policy pods' configuration and the cluster DNS
    /// server's upstream (None: none).
    pub resolv_conf: Option<PathBuf>,
    /// The port the node serves cluster DNS on, at its InternalIP, when it runs the pod
    /// network and service proxy (0: it does not).
    pub serve_port: u16,
}

impl Default for DnsOptions {
    fn default() -> DnsOptions {
        DnsOptions {
            cluster_dns: Vec::new(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            serve_port: 53,
        }
    }
}

/// kubelet's default `--cluster-domain`.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

impl Default for CriOptions {
    fn default() -> CriOptions {
        CriOptions {
            endpoint: None,
            sandbox_image: DEFAULT_SANDBOX_IMAGE.into(),
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            pod_bridge: DEFAULT_POD_BRIDGE.into(),
            images_dir: None,
            image_gc: Default::default(),
            cluster_cidr: None,
            dns: DnsOptions::default(),
            ingress_port: 80,
        }
    }
}

/// kubelet's default sandbox image.
pub const DEFAULT_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// Where Debian's containernetworking-plugins are.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
pub const DEFAULT_POD_BRIDGE: &str = "berth0";

/// Resources a node offers (`status.capacity`; allocatable is the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// CPU as a Kubernetes quantity (`4`, `3500m`).
    pub cpu: String,
    /// Memory as a Kubernetes quantity (`16Gi`, `8123456Ki`).
    pub memory: String,
    pub pods: u32,
    /// Ephemeral storage, when known.
    pub ephemeral_storage: Option<String>,
}

impl Default for Capacity {
    /// A fixed shape for hollow nodes: 4 CPUs, 16 GiB, 110 pods.
    fn default() -> Self {
        Capacity { cpu: "4".into(), memory: "16Gi".into(), pods: 110, ephemeral_storage: None }
    }
}

/// Timing of the node heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often the node Lease is renewed.
    pub lease_renew: Duration,
    /// The Lease's `leaseDurationSeconds` (Kubernetes: 40 s for a 10 s renew).
    pub lease_duration: Duration,
    /// Node conditions are written when they change and at least this often.
    pub status_report: Duration,
}

impl Heartbeat {
    pub fn with_renew(renew: Duration) -> Heartbeat {
        Heartbeat {
            lease_renew: renew,
            lease_duration: (renew * 4).max(Duration::from_secs(10)),
            status_report: Duration::from_secs(60),
        }
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::with_renew(Duration::from_secs(5))
    }
}

/// Identity and shape shared by the nodes one process runs.
#[derive(Debug, Clone)]
pub struct NodeTemplate {
    /// Extra labels (the well-known hostname/os/arch labels are added).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// InternalIP, also reported as every pod's hostIP and podIP.
    pub node_ip: IpAddr,
    pub capacity: Capacity,
    pub heartbeat: Heartbeat,
}

impl Default for NodeTemplate {
    fn default() -> Self {
        NodeTemplate {
            labels: BTreeMap::new(),
            taints: Vec::new(),
            node_ip: IpAddr::from([127, 0, 0, 1]),
            capacity: Capacity::default(),
            heartbeat: Heartbeat::default(),
        }
    }
}

/// One real agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub template: NodeTemplate,
    pub runtime: RuntimeKind,
    /// Where container logs and runtime state live.
    pub data_dir: PathBuf,
    /// Kubelet endpoint port; 0 picks a free one.
    pub listen_port: u16,
    /// Fake runtime only: how long a container takes to start (None: random 0–100 ms).
    pub fake_start_delay: Option<Duration>,
    /// Process runtime: kill every container when the agent stops. Off by default — like
    /// a kubelet restart, an agent restart leaves pods running and re-adopts them.
    pub stop_containers_on_exit: bool,
    /// The CA whose certificates callers of the agent's port must present (the cluster's,
    /// from the kubeconfig); None serves plain HTTP (an `--insecure` cluster).
    pub client_ca_pem: Option<String>,
}

/// Many hollow (fake-runtime) nodes in one process.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// Nodes are named `{name_prefix}-{i}`, i in 0..nodes.
    pub name_prefix: String,
    pub nodes: usize,
    pub template: NodeTemplate,
    /// Kubelet endpoint port shared by all hollow nodes; 0 picks a free one.
    pub listen_port: u16,
    /// How long a fake container takes to start (None: random 0–100 ms).
    pub start_delay: Option<Duration>,
    /// At most this many API writes (registrations, status, deletions) in flight at once,
    /// so a burst on 1,000 nodes does not open 1,000 connections.
    pub max_concurrent_writes: usize,
    /// As [`AgentConfig::client_ca_pem`].
    pub client_ca_pem: Option<String>,
}

impl HollowConfig {
    /// `nodes` hollow nodes named `{name_prefix}-{i}` with the default shape (4 CPUs, 16 GiB,
    /// 110 pods), loopback address, 5 s lease renewals.
    pub fn new(name_prefix: impl Into<String>, nodes: usize) -> HollowConfig {
        HollowConfig {
            name_prefix: name_prefix.into(),
            nodes,
            template: NodeTemplate::default(),
            listen_port: 0,
            start_delay: None,
            max_concurrent_writes: 64,
            client_ca_pem: None,
        }
    }

    pub fn node_names(&self) -> Vec<String> {
        (0..self.nodes).map(|i| format!("{}-{i}", self.name_prefix)).collect()
    }
}

/// `k=v,k2=v2` (as `--labels`).
pub fn parse_labels(flag: &'static str, s: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| AgentError::Config { flag, message: format!("{part:?} is not key=value") })?;
        check_label_key(flag, k)?;
        check_label_value(flag, v)?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn check_label_key(flag: &'static str, key: &str) -> Result<()> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let bad = |why: &str| Err(AgentError::Config { flag, message: format!("key {key:?}: {why}") });
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || !p.split('.').all(is_dns_label) {
            return bad("prefix must be a DNS subdomain");
        }
    }
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        return bad("name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric");
    }
    Ok(())
}

fn check_label_value(flag: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || (value.len() <= 63 && is_label_token(value)) {
        Ok(())
    } else {
        Err(AgentError::Config {
            flag,
            message: format!("value {value:?}: must be empty or 1-63 alphanumerics, '-', '_' or '.'"),
        })
    }
}

fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `key=value:Effect,key:Effect` (as `--register-with-taints`).
pub fn parse_taints(flag: &'static str, s: &str) -> Result<Vec<Taint>> {
    let mut taints = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kv, effect) = part
            .rsplit_once(':')
            .ok_or_else(|| AgentError::Config { flag, message: format!("{part:?} is not key[=value]:Effect") })?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(AgentError::Config {
                flag,
                message: format!("{part:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"),
            });
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kv, None),
        };
        check_label_key(flag, key)?;
        if let Some(v) = value {
            check_label_value(flag, v)?;
        }
        taints.push(Taint {
            key: key.to_string(),
            value: value.filter(|v| !v.is_empty()).map(String::from),
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(taints)
}

/// `cpu=4,memory=16Gi,pods=110` (as `--capacity`), over `base`.
pub fn parse_capacity(flag: &'static str, s: &str, base: Capacity) -> Result<Capacity> {
    let mut c = base;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |m: String| AgentError::Config { flag, message: m };
        let (k, v) = part.split_once('=').ok_or_else(|| bad(format!("{part:?} is not resource=quantity")))?;
        let quantity_ok = !v.is_empty()
            && v.trim_end_matches(|ch: char| ch.is_ascii_alphabetic()).parse::<f64>().is_ok_and(|n| n >= 0.0);
        if !quantity_ok {
            return Err(bad(format!("{k}: {v:?} is not a quantity")));
        }
        match k {
            "cpu" => c.cpu = v.to_string(),
            "memory" => c.memory = v.to_string(),
            "ephemeral-storage" => c.ephemeral_storage = Some(v.to_string()),
            "pods" => c.pods = v.parse().map_err(|_| bad(format!("pods: {v:?} is not a count")))?,
            _ => return Err(bad(format!("unknown resource {k:?} (cpu, memory, pods, ephemeral-storage)"))),
        }
    }
    Ok(c)
}

/// Node names must be DNS subdomains.
pub fn check_node_name(flag: &'static str, name: &str) -> Result<()> {
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(AgentError::Config {
            flag,
            message: format!("{name:?} is not a valid node name (lowercase DNS subdomain)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_reject() {
        let l = parse_labels("--labels", "zone=a, berth.dev/pool=gpu,empty=").unwrap();
        assert_eq!(l["zone"], "a");
        assert_eq!(l["berth.dev/pool"], "gpu");
        assert_eq!(l["empty"], "");
        let e = parse_labels("--labels", "novalue").unwrap_err().to_string();
        assert!(e.starts_with("--labels: "), "{e}");
        assert!(parse_labels("--labels", "-bad=x").is_err());
        assert!(parse_labels("--labels", "k=bad value").is_err());
    }

    #[test]
    fn taints_parse_and_reject() {
        let t = parse_taints("--register-with-taints", "dedicated=gpu:NoSchedule,spot:PreferNoSchedule").unwrap();
        assert_eq!(t[0].key, "dedicated");
        assert_eq!(t[0].value.as_deref(), Some("gpu"));
        assert_eq!(t[0].effect, "NoSchedule");
        assert_eq!(t[1].value, None);
        assert!(parse_taints("--register-with-taints", "a=b:Sometimes").unwrap_err().to_string().contains("effect"));
        assert!(parse_taints("--register-with-taints", "a=b").is_err());
    }

    #[test]
    fn capacity_overrides() {
        let c = parse_capacity("--capacity", "cpu=8,memory=32Gi,pods=50", Capacity::default()).unwrap();
        assert_eq!((c.cpu.as_str(), c.memory.as_str(), c.pods), ("8", "32Gi", 50));
        assert!(parse_capacity("--capacity", "gpu=1", Capacity::default()).is_err());
        assert!(parse_capacity("--capacity", "cpu=lots", Capacity::default()).is_err());
    }

    #[test]
    fn node_names() {
        assert!(check_node_name("--node-name", "worker-1.example").is_ok());
        assert!(check_node_name("--node-name", "Worker").is_err());
        assert!(check_node_name("--node-name", "").is_err());
    }
}
