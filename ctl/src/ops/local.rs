//! `berthctl up` / `berthctl down`: a local cluster — 1, 3 or 5 `berth-server` processes
//! and N `berth-agent` processes — running in the background. Process agents share the
//! host's loopback; containerd agents each run in a network namespace of their own on a
//! node network ([`node_net`]) whose host address the servers listen on (and on loopback).
//!
//! Everything lives under one directory D (default `~/.berth/local`): the servers' and
//! agents' data dirs, their logs (`D/logs/*.log`), the admin kubeconfig listing every server
//! (`D/admin.kubeconfig`, which `berthctl` falls back to when no other kubeconfig exists) and
//! the state file `D/cluster.json` with the layout (names, ports) and the PIDs started.
//!
//! Processes run in their own session (`setsid`), so a Ctrl-C or a closed terminal does not
//! reach them. `up` starts whatever of the recorded layout is not running (so it restarts a
//! stopped cluster on its data, and says so when everything already runs); `down` stops the
//! agents, then the servers, by recorded PID (checked against `/proc/PID/cmdline` so a
//! recycled PID is never signalled), and keeps the data unless `--purge`.
//!
//! The layout, the command lines and the messages are pure functions; the rest is I/O.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use berth_proto::kubeconfig::{AdminCredentials, Credentials};
use berth_proto::pki::CaRole;

use super::node_net::{self, NodeNetwork};
use crate::config::{local_cluster_dir, ADMIN_KUBECONFIG};
use crate::error::{CtlError, Result};
use crate::session::{parse_duration, Session};
use crate::{emit, Out};

/// The state file in D.
pub const STATE_FILE: &str = "cluster.json";
/// Serialises `up` and `down` on one D.
const LOCK_FILE: &str = ".berthctl.lock";
/// The well-known ports of server 1 (kubectl's, etcd's and the kubelet's defaults).
const API_PORT: u16 = 6443;
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
const KUBELET_PORT: u16 = 10250;
/// Server i (0-based) of the default layout uses the well-known ports + i × this.
const SERVER_PORT_STRIDE: u16 = 10_000;
/// How long a stopping agent gets (it stops its containers first; a containerd agent
/// removes its sandboxes, up to 60 s), then a server.
const AGENT_STOP_GRACE: Duration = Duration::from_secs(70);
const SERVER_STOP_GRACE: Duration = Duration::from_secs(15);
/// `berth-agent --remove-leftover-pods` takes at most 90 s itself.
const LEFTOVER_REMOVAL_TIMEOUT: Duration = Duration::from_secs(100);

/// Flags of `up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of servers (1, 3 or 5) [default: 1, or the recorded cluster's].
    #[arg(long, value_parser = parse_server_count)]
    pub servers: Option<usize>,
    /// Number of agents (worker nodes running pods as local processes) [default: 1].
    #[arg(long)]
    pub agents: Option<usize>,
    /// Where the cluster lives: data, logs, kubeconfig [default: ~/.berth/local].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use a block of consecutive ports from this one instead of the well-known ports
    /// (server i: API, etcd client, peer at PORT+3i..; then one kubelet port per agent).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// How long to wait for the servers and nodes to be ready.
    #[arg(long, default_value = "2m")]
    pub timeout: String,
    /// Start a new cluster from this backup (`berthctl snapshot save`): every server
    /// restores it before it starts.
    #[arg(long, value_name = "FILE")]
    pub restore_snapshot: Option<PathBuf>,
    /// How the agents run pods: `containerd` (containers from images, each agent with its
    /// own containerd) or `process` (host processes) [default: containerd when it is
    /// installed and berthctl runs as root, else process; a recorded cluster keeps its own].
    #[arg(long, value_parser = ["containerd", "process"])]
    pub runtime: Option<String>,
    /// containerd agents: image archives (*.tar) every agent imports at start, for machines
    /// without a registry (`scripts/build-images --archives DIR` makes the demo images').
    #[arg(long, value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// containerd agents: the pod sandbox image [default: the agent's].
    #[arg(long, value_name = "IMAGE")]
    pub pod_infra_container_image: Option<String>,
}

/// Flags of `down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The cluster's directory [default: ~/.berth/local].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also delete the cluster's data, logs and kubeconfig.
    #[arg(long)]
    pub purge: bool,
}

fn parse_server_count(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err(format!("{s:?}: a cluster has 1, 3 or 5 servers")),
    }
}

/// One server of the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerProc {
    pub name: String,
    pub api_url: String,
    pub client_url: String,
    pub peer_url: String,
    /// The PID last started (None: not started, or stopped by `down`).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// One agent of the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentProc {
    pub node_name: String,
    /// The API server it talks to.
    pub server_url: String,
    /// Its kubelet endpoint port.
    pub port: u16,
    #[serde(default)]
    pub pid: Option<u32>,
}

/// The state file: the layout and the processes started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalCluster {
    pub servers: Vec<ServerProc>,
    pub agents: Vec<AgentProc>,
    #[serde(default)]
    pub base_port: Option<u16>,
    /// The agents' runtime: `process` (clusters recorded before it existed) or `containerd`.
    #[serde(default = "process_runtime")]
    pub runtime: String,
    /// containerd agents: the image archives they import, the sandbox image.
    #[serde(default)]
    pub images_dir: Option<PathBuf>,
    #[serde(default)]
    pub sandbox_image: Option<String>,
    /// containerd agents: each in a network namespace of its own on this network, the
    /// servers on its host address (clusters recorded before it existed have none: all on
    /// loopback).
    #[serde(default)]
    pub network: Option<NodeNetwork>,
}

fn process_runtime() -> String {
    "process".into()
}

/// The ports of a layout: the well-known ones (server i adds i × 10000; agent j's kubelet
/// port is 10250 + j), or a consecutive block from `base_port`.
pub fn plan(servers: usize, agents: usize, base_port: Option<u16>) -> Result<LocalCluster> {
    // Every port is TLS: the Kubernetes API's and both etcd ports.
    let url = |port: u32| format!("https://127.0.0.1:{port}");
    let api_url = url;
    let last = match base_port {
        Some(base) => base as u32 + 3 * servers as u32 + agents as u32,
        None => {
            (PEER_PORT as u32 + SERVER_PORT_STRIDE as u32 * servers as u32).max(KUBELET_PORT as u32 + agents as u32)
        }
    };
    if last > u16::MAX as u32 {
        return Err(CtlError::usage(format!(
            "the ports of {servers} servers and {agents} agents do not fit below 65536"
        )));
    }
    let server_ports = |i: usize| -> (u32, u32, u32) {
        match base_port {
            Some(base) => {
                let p = base as u32 + 3 * i as u32;
                (p, p + 1, p + 2)
            }
            None => {
                let off = SERVER_PORT_STRIDE as u32 * i as u32;
                (API_PORT as u32 + off, CLIENT_PORT as u32 + off, PEER_PORT as u32 + off)
            }
        }
    };
    let servers_v: Vec<ServerProc> = (0..servers)
        .map(|i| {
            let (api, client, peer) = server_ports(i);
            ServerProc {
                name: format!("server-{}", i + 1),
                api_url: api_url(api),
                client_url: url(client),
                peer_url: url(peer),
                pid: None,
            }
        })
        .collect();
    let agents_v = (0..agents)
        .map(|j| AgentProc {
            node_name: format!("node-{}", j + 1),
            // Spread the agents over the servers.
            server_url: servers_v[j % servers].api_url.clone(),
            port: match base_port {
                Some(base) => (base as u32 + 3 * servers as u32 + j as u32) as u16,
                None => KUBELET_PORT + j as u16,
            },
            pid: None,
        })
        .collect();
    Ok(LocalCluster {
        servers: servers_v,
        agents: agents_v,
        base_port,
        runtime: process_runtime(),
        images_dir: None,
        sandbox_image: None,
        network: None,
    })
}

/// `cluster` on the node network `net`: the servers listen on its host address (so the
/// nodes reach them), the agents talk to them there (pure).
pub fn on_node_network(mut cluster: LocalCluster, net: NodeNetwork) -> LocalCluster {
    let host = net.host_ip().to_string();
    let rehost = |url: &str| url.replacen("127.0.0.1", &host, 1);
    for s in cluster.servers.iter_mut() {
        s.api_url = rehost(&s.api_url);
        s.client_url = rehost(&s.client_url);
        s.peer_url = rehost(&s.peer_url);
    }
    for a in cluster.agents.iter_mut() {
        a.server_url = rehost(&a.server_url);
    }
    cluster.network = Some(net);
    cluster
}

/// The node names of `cluster`, in layout order (node `i` has the network's `i`-th address).
fn node_names(cluster: &LocalCluster) -> Vec<String> {
    cluster.agents.iter().map(|a| a.node_name.clone()).collect()
}

/// `berth-server`'s command line for server `s` of `cluster` under `dir` (restoring
/// `restore` first when given).
/// On a node network, the servers also listen on loopback (the same port), so the host's
/// clients keep `127.0.0.1:6443` and `127.0.0.1:2379`; they advertise the network's address.
pub fn server_args(cluster: &LocalCluster, s: &ServerProc, dir: &Path, restore: Option<&Path>) -> Vec<String> {
    let initial: Vec<String> = cluster.servers.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    let also_on_loopback = |url: &str| match cluster.network {
        Some(_) => format!("{url},{}", on_loopback(url)),
        None => url.to_string(),
    };
    let mut args: Vec<String> = vec![
        "--name".into(),
        s.name.clone(),
        "--data-dir".into(),
        dir.join(&s.name).display().to_string(),
        "--listen-api-url".into(),
        also_on_loopback(&s.api_url),
        "--listen-client-urls".into(),
        also_on_loopback(&s.client_url),
        "--advertise-client-urls".into(),
        s.client_url.clone(),
        "--listen-peer-urls".into(),
        s.peer_url.clone(),
        "--initial-advertise-peer-urls".into(),
        s.peer_url.clone(),
        "--initial-cluster".into(),
        initial.join(","),
        "--initial-cluster-state".into(),
        "new".into(),
        "--initial-cluster-token".into(),
        "berth-local".into(),
    ];
    if let Some(net) = &cluster.network {
        args.extend(["--cluster-cidr".into(), net.cluster_cidr()]);
    }
    if let Some(backup) = restore {
        args.extend(["--restore-snapshot".into(), backup.display().to_string()]);
    }
    args
}

/// The pods' bridge of containerd agent `a` (`berth-node-1`: at most 15 bytes for nodes
/// up to node-999).
pub fn pod_bridge(a: &AgentProc) -> String {
    format!("berth-{}", a.node_name)
}

/// `berth-agent`'s command line for agent `a` of `cluster` under `dir`. containerd agents
/// each get their own pod bridge (`berth-{node}`), so several can share the host.
pub fn agent_args(cluster: &LocalCluster, a: &AgentProc, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--server".into(),
        a.server_url.clone(),
        "--kubeconfig".into(),
        node_kubeconfig_path(dir, a).display().to_string(),
        "--node-name".into(),
        a.node_name.clone(),
        "--data-dir".into(),
        agent_dir(dir, a).display().to_string(),
        "--runtime".into(),
        cluster.runtime.clone(),
        "--listen-port".into(),
        a.port.to_string(),
        // `down` stops the pods too, not only the agent.
        "--stop-containers-on-exit".into(),
    ];
    if let Some(net) = &cluster.network {
        let index = cluster.agents.iter().position(|x| x.node_name == a.node_name).unwrap_or(0);
        args.extend(["--node-ip".into(), net.node_ip(index).to_string(), "--cluster-cidr".into(), net.cluster_cidr()]);
    } else {
        // Agents sharing the host's network answer on loopback.
        args.extend(["--node-ip".into(), "127.0.0.1".into()]);
    }
    if cluster.runtime == "containerd" {
        args.extend(["--pod-bridge".into(), pod_bridge(a)]);
        if cluster.network.is_some() {
            // The servers' kube-dns Service, answered by each node's own DNS server.
            let dns = berth_proto::model::well_known::KUBE_DNS_CLUSTER_IP;
            args.extend(["--cluster-dns".into(), dns.into()]);
        }
        if let Some(images) = &cluster.images_dir {
            args.extend(["--images-dir".into(), images.display().to_string()]);
        }
        if let Some(image) = &cluster.sandbox_image {
            args.extend(["--pod-infra-container-image".into(), image.clone()]);
        }
    }
    args
}

/// Agent `a`'s data dir under `dir`.
fn agent_dir(dir: &Path, a: &AgentProc) -> PathBuf {
    dir.join(format!("agent-{}", a.node_name))
}

/// The kubeconfig agent `a` authenticates with: its node certificate (kubeadm's
/// `kubelet.conf`).
fn node_kubeconfig_path(dir: &Path, a: &AgentProc) -> PathBuf {
    agent_dir(dir, a).join("kubelet.kubeconfig")
}

/// The CA of `role` of a local cluster: made for a new one (or the one already in
/// `<dir>/pki`) and given to every server's data dir before it starts (so that the
/// statically bootstrapped members share it), read back for an existing one.
fn cluster_ca(dir: &Path, cluster: &LocalCluster, new_cluster: bool, role: CaRole) -> Result<berth_proto::pki::Ca> {
    use berth_proto::pki;
    if !new_cluster {
        let pki_error = |e: pki::PkiError| CtlError::usage(format!("{}: {e}", role.describe()));
        return pki::read_ca(dir, role).map_err(pki_error)?.ok_or_else(|| {
            CtlError::usage(format!(
                "{} holds a cluster made before Berth's ports used TLS (no {}): run `berthctl down --purge` and `up` again",
                dir.display(),
                role.dir(dir).join(pki::CA_CERT).display()
            ))
        });
    }
    // An operator's own CA, put in `<dir>/pki` before the first `up`, is used (kubeadm's
    // external CA); otherwise the cluster gets a new one.
    let server_dirs: Vec<PathBuf> = cluster.servers.iter().map(|s| dir.join(&s.name)).collect();
    let mut dirs: Vec<&Path> = vec![dir];
    dirs.extend(server_dirs.iter().map(PathBuf::as_path));
    super::certs::share_ca(&dirs, role)
}

/// Credentials issued by the cluster CA.
fn credentials(ca: &berth_proto::pki::Ca, user: &str, groups: &[&str]) -> Result<Credentials> {
    let client = ca.issue_client(user, groups).map_err(|e| CtlError::usage(format!("issuing a certificate: {e}")))?;
    Ok(Credentials { ca_pem: ca.issued.cert_pem.clone(), client })
}

/// Writes agent `a`'s kubeconfig: a `system:node:<name>` certificate in `system:nodes`.
fn write_node_kubeconfig(dir: &Path, cluster: &LocalCluster, a: &AgentProc, ca: &berth_proto::pki::Ca) -> Result<()> {
    let user = format!("system:node:{}", a.node_name);
    let creds = credentials(ca, &user, &["system:nodes"])?;
    let servers = berth_proto::kubeconfig::ServersExtension {
        api_servers: cluster.servers.iter().map(|s| s.api_url.clone()).collect(),
        etcd_endpoints: vec![],
    };
    let path = node_kubeconfig_path(dir, a);
    std::fs::create_dir_all(agent_dir(dir, a)).map_err(|e| CtlError::io(format!("creating {}", path.display()), e))?;
    write_atomic(&path, berth_proto::kubeconfig::admin_kubeconfig_yaml("berth", &servers, Some(&creds)).as_bytes())
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// What `up` prints once the cluster is ready (also when it already was).
pub fn next_steps(cluster: &LocalCluster, dir: &Path, already: bool) -> String {
    let kubeconfig = dir.join(ADMIN_KUBECONFIG);
    let what = format!("{} and {}", plural(cluster.servers.len(), "server"), plural(cluster.agents.len(), "agent"));
    let head = if already {
        format!("The local cluster in {} is already running ({what}).\n", dir.display())
    } else {
        format!("The local cluster is ready: {what} (data and logs in {}).\n", dir.display())
    };
    format!(
        "{head}\nTo use it:\n\n  export KUBECONFIG={k}\n  berthctl get nodes\n  berthctl cluster status\n  kubectl --kubeconfig {k} get nodes\n\nStop it with: berthctl down{d}\n",
        k = kubeconfig.display(),
        d = if dir == local_cluster_dir() { String::new() } else { format!(" --data-dir {}", dir.display()) },
    )
}

/// The layout to run: the recorded one (flags must agree with it), else a new plan.
/// The runtime of a new cluster: the one asked for, else containerd where it can run
/// (`containerd_usable`: installed, and berthctl is root).
pub fn new_cluster_runtime(asked: Option<&str>, containerd_usable: bool) -> Result<String> {
    match asked {
        Some("containerd") if !containerd_usable => Err(CtlError::usage(
            "--runtime containerd needs containerd, runc and the CNI plugins (scripts/prereqs installs them) and root",
        )),
        Some(r) => Ok(r.to_string()),
        None if containerd_usable => Ok("containerd".into()),
        None => Ok(process_runtime()),
    }
}

pub fn choose_layout(recorded: Option<LocalCluster>, args: &UpArgs) -> Result<LocalCluster> {
    match recorded {
        Some(existing) => {
            let mismatch = args.servers.is_some_and(|n| n != existing.servers.len())
                || args.agents.is_some_and(|n| n != existing.agents.len())
                || args.base_port.is_some_and(|p| Some(p) != existing.base_port)
                || args.runtime.as_ref().is_some_and(|r| *r != existing.runtime);
            if mismatch {
                return Err(CtlError::usage(format!(
                    "this directory holds a cluster of {} and {}{}: run `berthctl down --purge` first, or use another --data-dir",
                    plural(existing.servers.len(), "server"),
                    plural(existing.agents.len(), "agent"),
                    existing.base_port.map(|p| format!(" on ports from {p}")).unwrap_or_default(),
                )));
            }
            Ok(existing)
        }
        None => {
            let mut cluster = plan(args.servers.unwrap_or(1), args.agents.unwrap_or(1), args.base_port)?;
            cluster.runtime = new_cluster_runtime(args.runtime.as_deref(), containerd_usable())?;
            if cluster.runtime == "containerd" {
                cluster.images_dir = args.images_dir.as_ref().map(|d| std::path::absolute(d).unwrap_or(d.clone()));
                cluster.sandbox_image = args.pod_infra_container_image.clone();
                if cluster.agents.len() > node_net::MAX_NODES {
                    return Err(CtlError::usage(format!(
                        "a local cluster of containerd agents has at most {} agents",
                        node_net::MAX_NODES
                    )));
                }
            }
            Ok(cluster)
        }
    }
}

/// Whether this machine can run containerd agents: containerd on PATH and root.
fn containerd_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("containerd").is_file()))
}

// ---- I/O -------------------------------------------------------------------------------

fn read_state(dir: &Path) -> Result<Option<LocalCluster>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CtlError::Parse { context: path.display().to_string(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CtlError::io(format!("reading {}", path.display()), e)),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| CtlError::io(format!("writing {}", path.display()), e))
}

fn write_state(dir: &Path, cluster: &LocalCluster) -> Result<()> {
    let text = serde_json::to_string_pretty(cluster).expect("serializable") + "\n";
    write_atomic(&dir.join(STATE_FILE), text.as_bytes())
}

/// An exclusive lock on D for the life of the value.
struct DirLock {
    _file: std::fs::File,
}

fn lock_dir(dir: &Path) -> Result<DirLock> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|e| CtlError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CtlError::io(format!("opening {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(CtlError::usage(format!("another berthctl up or down is working on {}", dir.display())));
    }
    Ok(DirLock { _file: file })
}

/// True when `pid` is a live process running `program` with `marker` among its arguments
/// (its data dir): a recycled PID, or a zombie (empty cmdline), is not ours.
fn is_ours(pid: u32, program: &str, marker: &str) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let runs_program = args.first().is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == program));
    runs_program && args.iter().any(|a| a == marker)
}

fn server_marker(dir: &Path, s: &ServerProc) -> String {
    dir.join(&s.name).display().to_string()
}

fn agent_marker(dir: &Path, a: &AgentProc) -> String {
    dir.join(format!("agent-{}", a.node_name)).display().to_string()
}

fn server_running(dir: &Path, s: &ServerProc) -> bool {
    s.pid.is_some_and(|pid| is_ours(pid, "berth-server", &server_marker(dir, s)))
}

fn agent_running(dir: &Path, a: &AgentProc) -> bool {
    a.pid.is_some_and(|pid| is_ours(pid, "berth-agent", &agent_marker(dir, a)))
}

/// `name` next to the running berthctl, else on PATH.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CtlError::usage(format!(
        "{name} not found next to berthctl or on PATH (build it: cargo build --release -p {})",
        if name == "berth-server" { "berth-control" } else { "berth-agent" }
    )))
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// `url` (`SCHEME://HOST:PORT`) on 127.0.0.1.
fn on_loopback(url: &str) -> String {
    let scheme = url.split_once("://").map_or("http", |(scheme, _)| scheme);
    format!("{scheme}://127.0.0.1:{}", port_of(url))
}

/// The URLs the host's clients use (the kubeconfig's): loopback (pure).
pub fn host_client_urls(cluster: &LocalCluster) -> (Vec<String>, Vec<String>) {
    cluster
        .servers
        .iter()
        .map(|s| match cluster.network {
            Some(_) => (on_loopback(&s.api_url), on_loopback(&s.client_url)),
            None => (s.api_url.clone(), s.client_url.clone()),
        })
        .unzip()
}

/// The host address in `url` (`http://HOST:PORT`).
fn host_of(url: &str) -> &str {
    url.split("://").nth(1).and_then(|rest| rest.rsplit_once(':')).map_or("127.0.0.1", |(host, _)| host)
}

/// Fails when a port the layout needs on `host` is taken by another program.
fn check_port_free(host: &str, port: u16, what: &str) -> Result<()> {
    std::net::TcpListener::bind((host, port)).map(drop).map_err(|e| {
        CtlError::usage(format!(
            "port {port} ({what}) is not free: {e}; stop what uses it, or choose other ports with --base-port"
        ))
    })
}

/// Fails when a port of a process of `cluster` still to start is taken.
fn check_ports(cluster: &LocalCluster, servers_up: &[bool], agents_up: &[bool]) -> Result<()> {
    for (s, up) in cluster.servers.iter().zip(servers_up) {
        if !up {
            check_port_free(host_of(&s.api_url), port_of(&s.api_url), &format!("{} Kubernetes API", s.name))?;
            check_port_free(host_of(&s.client_url), port_of(&s.client_url), &format!("{} etcd API", s.name))?;
            check_port_free(host_of(&s.peer_url), port_of(&s.peer_url), &format!("{} peers", s.name))?;
            if cluster.network.is_some() {
                check_port_free("127.0.0.1", port_of(&s.api_url), &format!("{} Kubernetes API", s.name))?;
                check_port_free("127.0.0.1", port_of(&s.client_url), &format!("{} etcd API", s.name))?;
            }
        }
    }
    for (a, up) in cluster.agents.iter().zip(agents_up) {
        // An agent in a namespace of its own has its ports to itself.
        if !up && cluster.network.is_none() {
            check_port_free("127.0.0.1", a.port, &format!("{} kubelet endpoint", a.node_name))?;
        }
    }
    Ok(())
}

/// Starts `program args` in its own session (and in the network namespace at `netns`
/// when given) with stdout and stderr appended to `log`.
fn spawn(program: &Path, args: &[String], log: &Path, netns: Option<&Path>) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| CtlError::io(format!("opening {}", log.display()), e))?;
    let err = file.try_clone().map_err(|e| CtlError::io("duplicating the log file", e))?;
    let mut cmd = Command::new(program);
    // Plain log files: no ANSI colour codes (tracing-subscriber honours NO_COLOR).
    cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null()).stdout(file).stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal and
    // process group, so a Ctrl-C aimed at berthctl's terminal never reaches the cluster.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let _ns = netns.map(|path| node_net::enter(&mut cmd, path)).transpose()?;
    cmd.spawn().map_err(|e| CtlError::io(format!("starting {}", program.display()), e))
}

/// The end of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Sends SIGTERM to each (pid, program, marker) that is ours, waits up to `grace` for them
/// to go, then SIGKILLs what is left. Returns how many were running.
async fn stop_all(procs: &[(u32, &str, String)], grace: Duration) -> usize {
    let running: Vec<&(u32, &str, String)> = procs.iter().filter(|(pid, p, m)| is_ours(*pid, p, m)).collect();
    for (pid, _, _) in &running {
        // SAFETY: kill(2) on a PID verified just above to be our process.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && running.iter().any(|(pid, p, m)| is_ours(*pid, p, m)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (pid, p, m) in &running {
        if is_ours(*pid, p, m) {
            tracing::warn!(pid, program = p, "did not stop in time; killing it");
            // SAFETY: as above.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
    running.len()
}

/// Stops every recorded process of `cluster` (agents first) and clears their PIDs.
async fn stop_cluster(dir: &Path, cluster: &mut LocalCluster) -> usize {
    let agents: Vec<(u32, &str, String)> =
        cluster.agents.iter().filter_map(|a| Some((a.pid?, "berth-agent", agent_marker(dir, a)))).collect();
    let mut stopped = stop_all(&agents, AGENT_STOP_GRACE).await;
    match &cluster.network {
        Some(net) => {
            for a in &cluster.agents {
                if !agent_running(dir, a) {
                    remove_leftover_pods(dir, cluster, net, a).await;
                }
            }
        }
        None if cluster.runtime == "containerd" => {
            // The pods' bridges the agents' CNI made (their sandboxes are gone with the agents).
            for a in &cluster.agents {
                let _ = Command::new("ip").args(["link", "del", "dev", &pod_bridge(a)]).stderr(Stdio::null()).status();
            }
        }
        None => {}
    }
    let servers: Vec<(u32, &str, String)> =
        cluster.servers.iter().filter_map(|s| Some((s.pid?, "berth-server", server_marker(dir, s)))).collect();
    stopped += stop_all(&servers, SERVER_STOP_GRACE).await;
    cluster.agents.iter_mut().for_each(|a| a.pid = None);
    cluster.servers.iter_mut().for_each(|s| s.pid = None);
    stopped
}

/// What a stopped containerd agent `a` may have left — all of it when the agent was
/// killed: its containerd, whose shims keep the containers running, and the sandboxes'
/// mounts and network namespaces. The orphaned containerd (if any) is killed and
/// `berth-agent --remove-leftover-pods` removes every sandbox containerd still records,
/// through a containerd started again on the agent's directories, inside the node's
/// namespace, bounded in time (about a second when there is nothing to remove).
async fn remove_leftover_pods(dir: &Path, cluster: &LocalCluster, net: &NodeNetwork, a: &AgentProc) {
    let netns = net.node_ns_path(&a.node_name);
    let containerd_root = dir.join(format!("agent-{}", a.node_name)).join("containerd").join("root");
    if !netns.exists() || !containerd_root.is_dir() {
        return;
    }
    // A clean stop leaves nothing running here; give the last shims a moment to go. Even
    // then containerd's records may hold sandboxes whose teardown did not finish (their
    // network namespaces would stay), so the removal below runs whenever containerd ran.
    node_net::wait_empty(std::slice::from_ref(&netns), Duration::from_secs(5)).await;
    let config = dir.join(format!("agent-{}", a.node_name)).join("containerd").join("config.toml");
    let marker = config.display().to_string();
    for pid in node_net::processes_in(&netns) {
        if is_ours(pid, "containerd", &marker) {
            tracing::warn!(pid, node = %a.node_name, "stopping the containerd a killed agent left");
            // SAFETY: kill(2) on a containerd of this cluster's agent, checked just above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    let Ok(agent_bin) = find_binary("berth-agent") else { return };
    let mut args = agent_args(cluster, a, dir);
    args.push("--remove-leftover-pods".into());
    let log = dir.join("logs").join(format!("agent-{}.log", a.node_name));
    let Ok(mut child) = spawn(&agent_bin, &args, &log, Some(&netns)) else { return };
    let deadline = Instant::now() + LEFTOVER_REMOVAL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                tracing::warn!(node = %a.node_name, %status, "removing the leftover pods failed; see the agent's log");
                return;
            }
            Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// Polls until `check` passes, a child exits (its log tail is the error), or the deadline.
async fn wait_until<F, Fut>(
    what: &str,
    deadline: Instant,
    children: &mut [(String, Child, PathBuf)],
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), String>>,
{
    loop {
        for (name, child, log) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(CtlError::usage(format!(
                    "{name} exited ({status}) while waiting for {what}; end of {}:\n{}",
                    log.display(),
                    log_tail(log)
                )));
            }
        }
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(CtlError::usage(format!("timed out waiting for {what}: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A kube-rs client for one API server with short timeouts (polling while `up` waits).
fn poll_client(api_url: &str, admin: &Credentials) -> std::result::Result<kube::Client, String> {
    let uri: http::Uri = api_url.parse().map_err(|e| format!("{e}"))?;
    let mut config = admin.kube_config(uri);
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Ok once every server in `names` has published its identity Lease (so `cluster status`
/// shows every API URL right after `up`).
async fn identities_published(api_url: &str, admin: &Credentials, names: &[String]) -> std::result::Result<(), String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let client = poll_client(api_url, admin)?;
    let leases = kube::Api::<Lease>::namespaced(client, "kube-system")
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let view = super::lease_view(&leases.items, k8s_openapi::jiff::Timestamp::now());
    let missing: Vec<&str> =
        names.iter().filter(|n| !view.identities.contains_key(n.as_str())).map(String::as_str).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no identity Lease yet from {}", missing.join(", ")))
    }
}

/// Ok when the `kubernetes` Service in `default` exists.
async fn kubernetes_service_exists(api_url: &str, admin: &Credentials) -> std::result::Result<(), String> {
    use k8s_openapi::api::core::v1::Service;
    let client = poll_client(api_url, admin)?;
    match kube::Api::<Service>::namespaced(client, "default").get_opt("kubernetes").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("not made yet".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Ok when every node in `wanted` is Ready — for a node whose agent was just started, with
/// a heartbeat from that time on (so the Ready status a restarted cluster still holds from
/// its last run does not count); else says which are not.
async fn nodes_ready(
    api_url: &str,
    admin: &Credentials,
    wanted: &[(String, Option<k8s_openapi::jiff::Timestamp>)],
) -> std::result::Result<(), String> {
    use k8s_openapi::api::core::v1::Node;
    let client = poll_client(api_url, admin)?;
    let nodes = kube::Api::<Node>::all(client).list(&Default::default()).await.map_err(|e| e.to_string())?;
    let ready = |n: &Node, since: Option<k8s_openapi::jiff::Timestamp>| {
        n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && since.is_none_or(|since| c.last_heartbeat_time.as_ref().is_some_and(|t| t.0 >= since))
            })
        })
    };
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(name, since)| {
            !nodes.items.iter().any(|n| n.metadata.name.as_deref() == Some(name.as_str()) && ready(n, *since))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not Ready yet: {}", missing.join(", ")))
    }
}

/// `(podCIDR, node index)` of every node in `names` (the index in `names`), once each has
/// been given its podCIDR; else says which have none yet.
async fn pod_cidr_routes(
    api_url: &str,
    admin: &Credentials,
    names: &[String],
) -> std::result::Result<Vec<(String, usize)>, String> {
    use k8s_openapi::api::core::v1::Node;
    let client = poll_client(api_url, admin)?;
    let nodes = kube::Api::<Node>::all(client).list(&Default::default()).await.map_err(|e| e.to_string())?;
    let cidr_of = |name: &str| {
        nodes
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
    };
    let mut routes = Vec::new();
    let mut missing = Vec::new();
    for (index, name) in names.iter().enumerate() {
        match cidr_of(name) {
            Some(cidr) => routes.push((cidr, index)),
            None => missing.push(name.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(routes)
    } else {
        Err(format!("no podCIDR yet: {}", missing.join(", ")))
    }
}

/// Runs `up`.
pub async fn run_up(_session: &mut Session, args: UpArgs, out: &mut Out) -> Result<()> {
    let dir = args.data_dir.clone().unwrap_or_else(local_cluster_dir);
    let dir = std::path::absolute(&dir).map_err(|e| CtlError::io(format!("resolving {}", dir.display()), e))?;
    let timeout = parse_duration(&args.timeout)
        .ok_or_else(|| CtlError::usage(format!("invalid --timeout {:?}", args.timeout)))?;
    let restore = match &args.restore_snapshot {
        Some(file) if file.is_file() => {
            Some(std::path::absolute(file).map_err(|e| CtlError::io(format!("resolving {}", file.display()), e))?)
        }
        Some(file) => return Err(CtlError::usage(format!("--restore-snapshot: {} is not a file", file.display()))),
        None => None,
    };
    let _lock = lock_dir(&dir)?;
    let recorded = read_state(&dir)?;
    if restore.is_some() && recorded.is_some() {
        return Err(CtlError::usage(format!(
            "--restore-snapshot starts a new cluster, but {} already holds one: run `berthctl down --purge` first, or use another --data-dir",
            dir.display()
        )));
    }
    let new_cluster = recorded.is_none();
    let mut cluster = choose_layout(recorded, &args)?;
    let servers_up: Vec<bool> = cluster.servers.iter().map(|s| server_running(&dir, s)).collect();
    let agents_up: Vec<bool> = cluster.agents.iter().map(|a| agent_running(&dir, a)).collect();
    if servers_up.iter().chain(agents_up.iter()).all(|up| *up) {
        return emit(out, &next_steps(&cluster, &dir, true));
    }
    let server_bin = find_binary("berth-server")?;
    let agent_bin = if cluster.agents.is_empty() { None } else { Some(find_binary("berth-agent")?) };
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| CtlError::io(format!("creating {}", logs.display()), e))?;
    if new_cluster && cluster.runtime == "containerd" {
        cluster = on_node_network(cluster, node_net::claim()?);
    }
    // The network before the ports are checked: the servers' address is the network's.
    let ready = match &cluster.network {
        Some(net) => net.create(&node_names(&cluster)),
        None => Ok(()),
    };
    if let Err(e) = ready.and_then(|()| check_ports(&cluster, &servers_up, &agents_up)) {
        if let Some(net) = cluster.network.filter(|_| !servers_up.iter().chain(&agents_up).any(|up| *up)) {
            net.destroy(&node_names(&cluster));
        }
        return Err(e);
    }
    let deadline = Instant::now() + timeout;
    let mut children: Vec<(String, Child, PathBuf)> = Vec::new();
    let result = async {
        let ca = cluster_ca(&dir, &cluster, new_cluster, CaRole::Cluster)?;
        let etcd_ca = cluster_ca(&dir, &cluster, new_cluster, CaRole::Etcd)?;
        let server_dirs: Vec<PathBuf> = cluster.servers.iter().map(|s| dir.join(&s.name)).collect();
        if new_cluster {
            // As with the CAs, an operator's own configuration in `<dir>/pki` is used (the
            // one a backup's Secrets were encrypted with, for `--restore-snapshot`).
            let mut dirs: Vec<&Path> = vec![&dir];
            dirs.extend(server_dirs.iter().map(PathBuf::as_path));
            super::certs::share_encryption_config(&dirs)?;
            super::certs::share_service_account_key(&dirs)?;
        } else if server_dirs.iter().any(|d| !d.join(berth_proto::pki::SERVICE_ACCOUNT_KEY).exists()) {
            // A cluster made before service accounts: its servers get one key to share.
            let dirs: Vec<&Path> = server_dirs.iter().map(PathBuf::as_path).collect();
            super::certs::share_service_account_key(&dirs)?;
        }
        let admin = credentials(&ca, "kubernetes-admin", &["system:masters"])?;
        let etcd_admin = credentials(&etcd_ca, "berth-etcd-admin", &[])?;
        let layout = cluster.clone();
        for (s, up) in cluster.servers.iter_mut().zip(&servers_up) {
            if *up {
                continue;
            }
            let log = logs.join(format!("{}.log", s.name));
            let child = spawn(&server_bin, &server_args(&layout, s, &dir, restore.as_deref()), &log, None)?;
            s.pid = Some(child.id());
            emit(
                out,
                &format!("Started {} (API {}, etcd {}; log {})\n", s.name, s.api_url, s.client_url, log.display()),
            )?;
            children.push((s.name.clone(), child, log));
        }
        write_state(&dir, &cluster)?;
        let servers = cluster.servers.clone();
        for s in &servers {
            let url = s.api_url.clone();
            let what = format!("{} to be ready", s.name);
            wait_until(&what, deadline, &mut children, || {
                let url = url.clone();
                let ca = ca.issued.cert_pem.clone();
                async move { super::cluster::api_ready(&url, Some(&ca), Duration::from_secs(2)).await }
            })
            .await?;
        }
        let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
        let first_api = servers[0].api_url.clone();
        wait_until("the servers' identity Leases", deadline, &mut children, || {
            let (api, names, admin) = (first_api.clone(), names.clone(), admin.clone());
            async move { identities_published(&api, &admin, &names).await }
        })
        .await?;
        // Pods read `KUBERNETES_SERVICE_HOST` from the Service when their containers start,
        // so nodes join only once the leader has made it (kube-apiserver makes it at start).
        wait_until("the `kubernetes` Service", deadline, &mut children, || {
            let (api, admin) = (first_api.clone(), admin.clone());
            async move { kubernetes_service_exists(&api, &admin).await }
        })
        .await?;
        let (api_servers, etcd_endpoints) = host_client_urls(&cluster);
        let servers_ext = berth_proto::kubeconfig::ServersExtension { api_servers, etcd_endpoints };
        write_atomic(
            &dir.join(ADMIN_KUBECONFIG),
            berth_proto::kubeconfig::admin_kubeconfig_with_etcd_yaml(
                "berth",
                &servers_ext,
                Some(&AdminCredentials { api: admin.clone(), etcd: Some(etcd_admin) }),
            )
            .as_bytes(),
        )?;
        if let Some(agent_bin) = &agent_bin {
            let agents_started = k8s_openapi::jiff::Timestamp::now();
            for (a, up) in cluster.agents.iter_mut().zip(&agents_up) {
                if *up {
                    continue;
                }
                let log = logs.join(format!("agent-{}.log", a.node_name));
                write_node_kubeconfig(&dir, &layout, a, &ca)?;
                let netns = layout.network.map(|net| net.node_ns_path(&a.node_name));
                let child = spawn(agent_bin, &agent_args(&layout, a, &dir), &log, netns.as_deref())?;
                a.pid = Some(child.id());
                emit(
                    out,
                    &format!("Started agent {} (server {}; log {})\n", a.node_name, a.server_url, log.display()),
                )?;
                children.push((format!("agent {}", a.node_name), child, log));
            }
            write_state(&dir, &cluster)?;
            // Heartbeat times have whole seconds.
            let since = k8s_openapi::jiff::Timestamp::from_second(agents_started.as_second()).unwrap_or(agents_started);
            let wanted: Vec<(String, Option<k8s_openapi::jiff::Timestamp>)> = cluster
                .agents
                .iter()
                .zip(&agents_up)
                .map(|(a, was_up)| (a.node_name.clone(), (!was_up).then_some(since)))
                .collect();
            let api = cluster.servers[0].api_url.clone();
            wait_until("the nodes to be Ready", deadline, &mut children, || {
                let (api, wanted, admin) = (api.clone(), wanted.clone(), admin.clone());
                async move { nodes_ready(&api, &admin, &wanted).await }
            })
            .await?;
            if let Some(net) = layout.network {
                let names = node_names(&layout);
                wait_until("the nodes' pod CIDRs", deadline, &mut children, || {
                    let (api, names, admin) = (api.clone(), names.clone(), admin.clone());
                    async move { pod_cidr_routes(&api, &admin, &names).await.map(drop) }
                })
                .await?;
                let routes = pod_cidr_routes(&api, &admin, &names).await.map_err(CtlError::usage)?;
                net.route_pod_cidrs(&routes)?;
            }
        }
        Ok::<(), CtlError>(())
    }
    .await;
    match result {
        Ok(()) => emit(out, &format!("\n{}", next_steps(&cluster, &dir, false))),
        Err(e) => {
            // Leave nothing half-started behind: stop what this run started.
            let started: Vec<u32> = children.iter().map(|(_, c, _)| c.id()).collect();
            let mut mine = cluster.clone();
            mine.servers.iter_mut().for_each(|s| s.pid = s.pid.filter(|p| started.contains(p)));
            mine.agents.iter_mut().for_each(|a| a.pid = a.pid.filter(|p| started.contains(p)));
            stop_cluster(&dir, &mut mine).await;
            for (_, child, _) in children.iter_mut() {
                let _ = child.wait(); // stopped above: reaps at once
            }
            let cluster = cluster_without_dead(&dir, cluster);
            if cluster.servers.iter().all(|s| s.pid.is_none()) && cluster.agents.iter().all(|a| a.pid.is_none()) {
                if let Some(net) = &cluster.network {
                    net.destroy(&node_names(&cluster));
                }
            }
            let _ = write_state(&dir, &cluster);
            Err(e)
        }
    }
}

/// The cluster with the PIDs of processes no longer running cleared.
fn cluster_without_dead(dir: &Path, mut cluster: LocalCluster) -> LocalCluster {
    for s in cluster.servers.iter_mut() {
        if !server_running(dir, s) {
            s.pid = None;
        }
    }
    for a in cluster.agents.iter_mut() {
        if !agent_running(dir, a) {
            a.pid = None;
        }
    }
    cluster
}

/// Runs `down`.
pub async fn run_down(_session: &mut Session, args: DownArgs, out: &mut Out) -> Result<()> {
    let dir = args.data_dir.clone().unwrap_or_else(local_cluster_dir);
    let dir = std::path::absolute(&dir).map_err(|e| CtlError::io(format!("resolving {}", dir.display()), e))?;
    let Some(mut cluster) = read_state(&dir)? else {
        return emit(out, &format!("No local cluster in {}.\n", dir.display()));
    };
    let lock = lock_dir(&dir)?;
    let stopped = stop_cluster(&dir, &mut cluster).await;
    if let Some(net) = &cluster.network {
        // Made again by the next `up`, with the same names and addresses.
        net.destroy(&node_names(&cluster));
    }
    if args.purge {
        // Remove only what `up` created: D may be a directory the user gave.
        let mut paths: Vec<PathBuf> = cluster.servers.iter().map(|s| dir.join(&s.name)).collect();
        paths.extend(cluster.agents.iter().map(|a| dir.join(format!("agent-{}", a.node_name))));
        paths.extend([dir.join("logs"), dir.join(ADMIN_KUBECONFIG), dir.join(STATE_FILE)]);
        paths.push(dir.join(berth_proto::pki::PKI_DIR));
        for p in paths {
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            if let Err(e) = removed {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(CtlError::io(format!("removing {}", p.display()), e));
                }
            }
        }
        drop(lock);
        let _ = std::fs::remove_file(dir.join(LOCK_FILE));
        let _ = std::fs::remove_dir(&dir); // only if nothing else is in it
        let head = match stopped {
            0 => "Deleted".to_string(),
            1 => "Stopped 1 process and deleted".to_string(),
            n => format!("Stopped {n} processes and deleted"),
        };
        return emit(out, &format!("{head} the local cluster in {}.\n", dir.display()));
    }
    write_state(&dir, &cluster)?;
    let flag = if dir == local_cluster_dir() { String::new() } else { format!(" --data-dir {}", dir.display()) };
    let head = if stopped == 0 {
        format!("The local cluster in {} is not running.", dir.display())
    } else {
        let noun = if stopped == 1 { "process" } else { "processes" };
        format!("Stopped the local cluster ({stopped} {noun}).")
    };
    emit(
        out,
        &format!(
            "{head} Its data stays in {}: `berthctl up{flag}` starts it again, `berthctl down{flag} --purge` deletes it.\n",
            dir.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_default_layout_uses_the_well_known_ports() {
        let c = plan(3, 2, None).unwrap();
        let urls: Vec<(&str, &str, &str, &str)> = c
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.api_url.as_str(), s.client_url.as_str(), s.peer_url.as_str()))
            .collect();
        assert_eq!(
            urls,
            vec![
                ("server-1", "https://127.0.0.1:6443", "https://127.0.0.1:2379", "https://127.0.0.1:2380"),
                ("server-2", "https://127.0.0.1:16443", "https://127.0.0.1:12379", "https://127.0.0.1:12380"),
                ("server-3", "https://127.0.0.1:26443", "https://127.0.0.1:22379", "https://127.0.0.1:22380"),
            ]
        );
        let agents: Vec<(&str, &str, u16)> =
            c.agents.iter().map(|a| (a.node_name.as_str(), a.server_url.as_str(), a.port)).collect();
        assert_eq!(
            agents,
            vec![("node-1", "https://127.0.0.1:6443", 10250), ("node-2", "https://127.0.0.1:16443", 10251)]
        );
        assert!(plan(5, 1, None).is_ok());
    }

    #[test]
    fn a_base_port_packs_the_ports() {
        let c = plan(3, 1, Some(20000)).unwrap();
        let ports: Vec<u16> = c
            .servers
            .iter()
            .flat_map(|s| [port_of(&s.api_url), port_of(&s.client_url), port_of(&s.peer_url)])
            .chain(c.agents.iter().map(|a| a.port))
            .collect();
        assert_eq!(ports, (20000..20010).collect::<Vec<u16>>());
        assert_eq!(
            plan(5, 10, Some(65530)).unwrap_err().to_string(),
            "error: the ports of 5 servers and 10 agents do not fit below 65536"
        );
    }

    #[test]
    fn command_lines_form_one_cluster() {
        let c = plan(3, 1, Some(30000)).unwrap();
        let dir = Path::new("/d");
        assert_eq!(
            server_args(&c, &c.servers[1], dir, None).join(" "),
            "--name server-2 --data-dir /d/server-2 --listen-api-url https://127.0.0.1:30003 \
             --listen-client-urls https://127.0.0.1:30004 --advertise-client-urls https://127.0.0.1:30004 \
             --listen-peer-urls https://127.0.0.1:30005 --initial-advertise-peer-urls https://127.0.0.1:30005 \
             --initial-cluster server-1=https://127.0.0.1:30002,server-2=https://127.0.0.1:30005,server-3=https://127.0.0.1:30008 \
             --initial-cluster-state new --initial-cluster-token berth-local"
        );
        let restoring = server_args(&c, &c.servers[0], dir, Some(Path::new("/b/backup.db")));
        assert_eq!(restoring[restoring.len() - 2..], ["--restore-snapshot", "/b/backup.db"]);
        assert_eq!(
            agent_args(&c, &c.agents[0], dir).join(" "),
            "--server https://127.0.0.1:30000 --kubeconfig /d/agent-node-1/kubelet.kubeconfig --node-name node-1 \
             --data-dir /d/agent-node-1 --runtime process \
             --listen-port 30009 --stop-containers-on-exit --node-ip 127.0.0.1"
        );
        let mut ctr = c.clone();
        ctr.runtime = "containerd".into();
        ctr.images_dir = Some(PathBuf::from("/imgs"));
        let args = agent_args(&ctr, &ctr.agents[0], dir).join(" ");
        assert!(args.contains("--runtime containerd"), "{args}");
        assert!(args.ends_with("--pod-bridge berth-node-1 --images-dir /imgs"), "{args}");
        assert_eq!(new_cluster_runtime(None, true).unwrap(), "containerd");
        assert_eq!(new_cluster_runtime(None, false).unwrap(), "process");
        assert_eq!(new_cluster_runtime(Some("process"), true).unwrap(), "process");
        assert!(new_cluster_runtime(Some("containerd"), false).unwrap_err().to_string().contains("scripts/prereqs"));
    }

    #[test]
    fn on_a_node_network_the_servers_listen_on_its_host_address_and_each_node_has_its_own() {
        let c = on_node_network(plan(3, 2, None).unwrap(), NodeNetwork { subnet: 7 });
        assert_eq!(
            (c.servers[1].api_url.as_str(), c.servers[1].client_url.as_str(), c.servers[1].peer_url.as_str()),
            ("https://172.31.7.1:16443", "https://172.31.7.1:12379", "https://172.31.7.1:12380")
        );
        assert_eq!(host_of(&c.servers[0].api_url), "172.31.7.1");
        let node_ip = |j: usize| {
            let args = agent_args(&c, &c.agents[j], Path::new("/d"));
            let at = args.iter().position(|a| a == "--node-ip").expect("--node-ip");
            (args[1].clone(), args[at + 1].clone())
        };
        assert_eq!(node_ip(0), ("https://172.31.7.1:6443".to_string(), "172.31.7.11".to_string()));
        assert_eq!(node_ip(1), ("https://172.31.7.1:16443".to_string(), "172.31.7.12".to_string()));
        assert_eq!(node_names(&c), ["node-1", "node-2"]);
        let server = server_args(&c, &c.servers[0], Path::new("/d"), None).join(" ");
        assert!(
            server.contains(
                "--listen-api-url https://172.31.7.1:6443,https://127.0.0.1:6443 \
                 --listen-client-urls https://172.31.7.1:2379,https://127.0.0.1:2379 \
                 --advertise-client-urls https://172.31.7.1:2379 --listen-peer-urls https://172.31.7.1:2380"
            ),
            "{server}"
        );
        let (api, etcd) = host_client_urls(&c);
        assert_eq!((api[2].as_str(), etcd[2].as_str()), ("https://127.0.0.1:26443", "https://127.0.0.1:22379"));
        assert_eq!(host_of("http://127.0.0.1:6443"), "127.0.0.1");
    }

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        up: UpArgs,
    }

    fn up(args: &[&str]) -> std::result::Result<UpArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("up").chain(args.iter().copied())).map(|w| w.up)
    }

    #[test]
    fn flags_parse_and_must_match_a_recorded_cluster() {
        let a = up(&["--servers", "3", "--agents", "2", "--base-port", "21000"]).unwrap();
        assert_eq!((a.servers, a.agents, a.base_port), (Some(3), Some(2), Some(21000)));
        let err = up(&["--servers", "2"]).unwrap_err().to_string();
        assert!(err.contains("a cluster has 1, 3 or 5 servers"), "{err}");
        let defaults = choose_layout(None, &up(&[]).unwrap()).unwrap();
        assert_eq!((defaults.servers.len(), defaults.agents.len()), (1, 1));
        let recorded = plan(3, 1, Some(21000)).unwrap();
        assert_eq!(choose_layout(Some(recorded.clone()), &up(&[]).unwrap()).unwrap(), recorded);
        assert_eq!(choose_layout(Some(recorded.clone()), &up(&["--servers", "3"]).unwrap()).unwrap(), recorded);
        assert_eq!(
            choose_layout(Some(recorded), &up(&["--servers", "1"]).unwrap()).unwrap_err().to_string(),
            "error: this directory holds a cluster of 3 servers and 1 agent on ports from 21000: run `berthctl down --purge` first, or use another --data-dir"
        );
    }

    #[test]
    fn next_steps_say_what_to_run() {
        let c = plan(1, 1, None).unwrap();
        assert_eq!(
            next_steps(&c, Path::new("/tmp/b"), false),
            "\
The local cluster is ready: 1 server and 1 agent (data and logs in /tmp/b).

To use it:

  export KUBECONFIG=/tmp/b/admin.kubeconfig
  berthctl get nodes
  berthctl cluster status
  kubectl --kubeconfig /tmp/b/admin.kubeconfig get nodes

Stop it with: berthctl down --data-dir /tmp/b
"
        );
        assert!(next_steps(&c, Path::new("/tmp/b"), true)
            .starts_with("The local cluster in /tmp/b is already running (1 server and 1 agent).\n"));
    }

    #[test]
    fn only_our_own_processes_count_as_running() {
        let me = std::process::id();
        assert!(!is_ours(me, "berth-server", "/nowhere"), "another program");
        assert!(!is_ours(u32::MAX - 1, "berth-server", "/nowhere"), "no such process");
    }

    #[test]
    fn the_state_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), None);
        let mut c = plan(3, 1, Some(22000)).unwrap();
        c.servers[0].pid = Some(42);
        write_state(dir.path(), &c).unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), Some(c));
    }
}
