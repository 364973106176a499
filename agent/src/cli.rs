//! `berth-agent` flags and their translation into [`AgentConfig`] / [`HollowConfig`].
//! Malformed values are rejected by clap's value parsers, so every error names its flag and
//! exits with status 2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::Taint;

use berth_proto::kubeconfig::{ServersExtension, SERVERS_EXTENSION};
use tokio_util::sync::CancellationToken;

use crate::balancer::{keep_servers_current, Balancer};
use crate::config::{self, AgentConfig, Capacity, CriOptions, Heartbeat, HollowConfig, NodeTemplate, RuntimeKind};
use crate::error::{AgentError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    Process,
    Fake,
    /// Containers from images through CRI (an existing containerd, or the agent's own).
    Containerd,
}

/// The Berth node agent.
#[derive(Debug, Parser)]
#[command(name = "berth-agent", version, about)]
pub struct AgentArgs {
    /// Kubernetes API URLs of the servers, comma-separated (http://127.0.0.1:6443,...);
    /// override the kubeconfig's. The agent fails over between them and learns the rest
    /// from the servers' identity Leases.
    #[arg(long, env = "BERTH_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,
    /// A kubeconfig file (its current context) for the API.
    #[arg(long, conflicts_with = "token")]
    pub kubeconfig: Option<PathBuf>,
    /// Join with this bootstrap token (`berthctl token create --print-join-command`): the
    /// agent discovers the cluster at --server, asks for its node certificate and keeps it
    /// in DATA_DIR/kubelet.kubeconfig for later starts.
    #[arg(long, requires = "server")]
    pub token: Option<berth_proto::bootstrap_token::Token>,
    /// With --token: the cluster CA's pin (`sha256:<hex>` of its public key); repeatable.
    #[arg(long, value_delimiter = ',', value_parser = parse_ca_hash)]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// With --token: trust whatever CA the servers' cluster-info names (no pin).
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// With --token: how long to keep trying discovery while cluster-info is missing or
    /// not yet signed with the token (Go duration).
    #[arg(long, default_value = "5m", value_parser = parse_min_age)]
    pub discovery_timeout: Duration,
    /// This node's name (with --fake-nodes N: the prefix of `{name}-{i}`); required except
    /// with `--cleanup`.
    #[arg(long, value_parser = parse_node_name, required_unless_present = "cleanup")]
    pub node_name: Option<String>,
    /// Where container logs and runtime state live.
    #[arg(long, default_value = "/var/lib/berth-agent")]
    pub data_dir: PathBuf,
    /// Container runtime.
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: RuntimeArg,
    /// `--runtime containerd`: the CRI socket of an existing runtime
    /// (unix:///run/containerd/containerd.sock); without it the agent starts its own
    /// containerd under --data-dir.
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,
    /// `--runtime containerd`: the pod sandbox image.
    #[arg(long, default_value = config::DEFAULT_SANDBOX_IMAGE, value_name = "IMAGE")]
    pub pod_infra_container_image: String,
    /// `--runtime containerd`, own containerd: where the CNI plugin binaries are.
    #[arg(long, default_value = config::DEFAULT_CNI_BIN_DIR, value_name = "DIR")]
    pub cni_bin_dir: PathBuf,
    /// `--runtime containerd`, own containerd: the Linux bridge of this node's pods.
    #[arg(long, default_value = config::DEFAULT_POD_BRIDGE, value_name = "NAME")]
    pub pod_bridge: String,
    /// `--runtime containerd`, own containerd: the pod network across nodes — `host-gw`
    /// (routes to every other node's podCIDR via its InternalIP, as flannel's host-gw
    /// backend; pod traffic leaving `--cluster-cidr` masqueraded) or `none` (this node's
    /// pods only).
    #[arg(long, default_value = "host-gw", value_parser = ["host-gw", "none"])]
    pub pod_network: String,
    /// The cluster's pod CIDR (the servers' `--cluster-cidr`): never masqueraded.
    #[arg(long, default_value = "10.244.0.0/16", value_parser = parse_cidr)]
    pub cluster_cidr: berth_proto::model::cidr::Ipv4Cidr,
    /// `--runtime containerd`: comma-separated DNS server addresses for ClusterFirst pods
    /// (kubelet's flag; a local cluster passes the kube-dns Service's ClusterIP). Empty:
    /// pods use the host's resolvers.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub cluster_dns: Vec<IpAddr>,
    /// `--runtime containerd`: the cluster's DNS domain (pods' search path; the domain the
    /// node's DNS server answers for).
    #[arg(long, default_value = config::DEFAULT_CLUSTER_DOMAIN, value_parser = parse_domain)]
    pub cluster_domain: String,
    /// `--runtime containerd`: the host resolv.conf — `dnsPolicy: Default` pods' resolvers and
    /// the cluster DNS server's upstream ("" for none).
    #[arg(long, default_value = "/etc/resolv.conf", value_name = "FILE")]
    pub resolv_conf: PathBuf,
    /// `--runtime containerd` with `--pod-network host-gw`: the port this node serves cluster
    /// DNS on, at `--node-ip` (the kube-dns Service's endpoint); 0 turns the server off.
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// `--runtime containerd` with `--pod-network host-gw`: the port this node serves the
    /// `berth` class's Ingresses on, at `--node-ip`; 0 turns the ingress proxy off.
    #[arg(long, default_value_t = 80)]
    pub ingress_port: u16,
    /// Remove the pod network's routes and the nftables tables (pod masquerade, service
    /// proxy) this agent made on this host (as `kube-proxy --cleanup` does), then exit.
    /// Needs no API server.
    #[arg(long)]
    pub cleanup: bool,
    /// `--runtime containerd`, own containerd: image archives (*.tar) to import at start
    /// (air-gapped nodes) [default: DATA_DIR/images].
    #[arg(long, value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// `--runtime containerd`: image filesystem usage (percent) at which unused images are
    /// removed (100 turns collection off).
    #[arg(long, default_value_t = 85)]
    pub image_gc_high_threshold: u8,
    /// `--runtime containerd`: usage (percent) image collection brings the filesystem to.
    #[arg(long, default_value_t = 80)]
    pub image_gc_low_threshold: u8,
    /// `--runtime containerd`: how long an image is kept at least (Go duration: 2m, 1h).
    #[arg(long, default_value = "2m", value_parser = parse_min_age)]
    pub minimum_image_ttl_duration: Duration,
    /// Extra node labels: k=v,k2=v2.
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Taints to register with: key=value:Effect,key:Effect.
    #[arg(long, value_parser = parse_taints, default_value = "")]
    pub register_with_taints: TaintList,
    /// Override the capacity read from the host: cpu=4,memory=16Gi,pods=110.
    #[arg(long, value_parser = parse_capacity)]
    pub capacity: Option<CapacityOverride>,
    /// The node's InternalIP (pods' hostIP; the kubelet endpoint, the node's DNS server and
    /// NodePorts answer on it) [default: the address the default route leaves from, else
    /// 127.0.0.1].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Kubelet endpoint port (logs, healthz); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub listen_port: u16,
    /// Seconds between node Lease renewals.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_seconds: u64,
    /// Kill every container when the agent stops (by default they keep running and the
    /// next agent on this data dir re-adopts them).
    #[arg(long)]
    pub stop_containers_on_exit: bool,
    /// `--runtime containerd` with its own containerd: remove every pod sandbox that
    /// containerd still has (an agent that was killed leaves its containers running), then
    /// exit. Needs no API server; run it only while no agent uses the data dir.
    #[arg(long)]
    pub remove_leftover_pods: bool,
    /// Run this many hollow nodes (`--runtime fake` only).
    #[arg(long)]
    pub fake_nodes: Option<usize>,
    /// Fake container start delay in ms (default: random 0-100).
    #[arg(long)]
    pub fake_start_delay: Option<u64>,
    /// At most this many API writes in flight (hollow nodes).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_concurrent_writes: u64,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, default_value = "info", env = "BERTH_LOG")]
    pub log_level: String,
}

/// Taints as parsed from one flag value (a newtype so clap treats it as one value).
#[derive(Debug, Clone, Default)]
pub struct TaintList(pub Vec<Taint>);

/// `--capacity` as given (applied over the host's capacity).
#[derive(Debug, Clone)]
pub struct CapacityOverride(pub String);

fn parse_cidr(s: &str) -> Result<berth_proto::model::cidr::Ipv4Cidr, String> {
    s.parse()
}

fn parse_domain(s: &str) -> Result<String, String> {
    let domain = s.trim_end_matches('.');
    match berth_proto::model::names::is_dns1123_subdomain(domain).as_slice() {
        [] => Ok(domain.to_string()),
        problems => Err(format!("{s:?}: {}", problems.join("; "))),
    }
}

fn parse_node_name(s: &str) -> std::result::Result<String, String> {
    config::check_node_name("--node-name", s).map(|_| s.to_string()).map_err(strip)
}

fn parse_ca_hash(s: &str) -> std::result::Result<String, String> {
    let hex = s.strip_prefix("sha256:").ok_or("a CA pin is sha256:<hex>")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a CA pin is sha256: and 64 hex digits".into());
    }
    Ok(s.to_ascii_lowercase())
}

fn parse_min_age(s: &str) -> Result<Duration, String> {
    berth_proto::model::duration::parse_go_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 2m or 1h"))
}

fn parse_labels(s: &str) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    config::parse_labels("--labels", s).map_err(strip)
}

fn parse_taints(s: &str) -> std::result::Result<TaintList, String> {
    config::parse_taints("--register-with-taints", s).map(TaintList).map_err(strip)
}

fn parse_capacity(s: &str) -> std::result::Result<CapacityOverride, String> {
    config::parse_capacity("--capacity", s, Capacity::default()).map(|_| CapacityOverride(s.to_string())).map_err(strip)
}

/// clap already names the flag; keep only the message.
fn strip(e: AgentError) -> String {
    match e {
        AgentError::Config { message, .. } => message,
        other => other.to_string(),
    }
}

/// What the binary runs.
#[derive(Debug)]
pub enum Mode {
    Agent(AgentConfig),
    Hollow(HollowConfig),
}

impl AgentArgs {
    /// The configuration these flags describe, or an error naming the flag.
    pub fn into_mode(self) -> Result<Mode> {
        if self.server.is_empty() && self.kubeconfig.is_none() {
            return Err(AgentError::Config {
                flag: "--server",
                message: "one of --server or --kubeconfig is required".into(),
            });
        }
        for s in &self.server {
            if !(s.starts_with("http://") || s.starts_with("https://")) || s.parse::<axum::http::Uri>().is_err() {
                return Err(AgentError::Config { flag: "--server", message: format!("{s:?} is not an http(s) URL") });
            }
        }
        let hollow = self.fake_nodes.is_some();
        if hollow && self.runtime != RuntimeArg::Fake {
            return Err(AgentError::Config { flag: "--fake-nodes", message: "needs --runtime fake".into() });
        }
        if self.fake_nodes == Some(0) {
            return Err(AgentError::Config { flag: "--fake-nodes", message: "must be at least 1".into() });
        }
        if self.fake_start_delay.is_some() && self.runtime != RuntimeArg::Fake {
            return Err(AgentError::Config { flag: "--fake-start-delay", message: "needs --runtime fake".into() });
        }
        if self.container_runtime_endpoint.is_some() && self.runtime != RuntimeArg::Containerd {
            return Err(AgentError::Config {
                flag: "--container-runtime-endpoint",
                message: "needs --runtime containerd".into(),
            });
        }
        if let Some(endpoint) = &self.container_runtime_endpoint {
            crate::runtime::cri::socket_path(endpoint)?;
        }
        let image_gc = crate::runtime::cri::image_gc::ImageGcPolicy {
            high_percent: self.image_gc_high_threshold,
            low_percent: self.image_gc_low_threshold,
            min_age: self.minimum_image_ttl_duration,
            ..Default::default()
        };
        if self.runtime == RuntimeArg::Containerd {
            crate::runtime::cri::cni::check_bridge_name(&self.pod_bridge)?;
            image_gc.check().map_err(|message| AgentError::Config { flag: "--image-gc-low-threshold", message })?;
        }
        let base = if hollow { Capacity::default() } else { crate::host::capacity(Some(&self.data_dir)) };
        let capacity = match &self.capacity {
            Some(c) => config::parse_capacity("--capacity", &c.0, base)?,
            None => base,
        };
        let template = NodeTemplate {
            labels: self.labels,
            taints: self.register_with_taints.0,
            node_ip: self.node_ip.unwrap_or_else(crate::host::default_route_ip),
            capacity,
            heartbeat: Heartbeat::with_renew(Duration::from_secs(self.lease_seconds)),
        };
        let start_delay = self.fake_start_delay.map(Duration::from_millis);
        Ok(match self.fake_nodes {
            Some(n) => Mode::Hollow(HollowConfig {
                name_prefix: self.node_name.unwrap_or_default(),
                nodes: n,
                template,
                listen_port: self.listen_port,
                start_delay,
                max_concurrent_writes: self.max_concurrent_writes as usize,
                client_ca_pem: None,
            }),
            None => Mode::Agent(AgentConfig {
                node_name: self.node_name.unwrap_or_default(),
                template,
                runtime: match self.runtime {
                    RuntimeArg::Process => RuntimeKind::Process,
                    RuntimeArg::Fake => RuntimeKind::Fake,
                    RuntimeArg::Containerd => RuntimeKind::Containerd(Box::new(CriOptions {
                        endpoint: self.container_runtime_endpoint,
                        sandbox_image: self.pod_infra_container_image,
                        cni_bin_dir: self.cni_bin_dir,
                        pod_bridge: self.pod_bridge,
                        images_dir: self.images_dir,
                        image_gc,
                        cluster_cidr: (self.pod_network == "host-gw").then_some(self.cluster_cidr),
                        dns: config::DnsOptions {
                            cluster_dns: self.cluster_dns,
                            cluster_domain: self.cluster_domain,
                            resolv_conf: Some(self.resolv_conf).filter(|p| !p.as_os_str().is_empty()),
                            serve_port: self.dns_port,
                        },
                        ingress_port: self.ingress_port,
                    })),
                },
                data_dir: self.data_dir,
                listen_port: self.listen_port,
                fake_start_delay: start_delay,
                stop_containers_on_exit: self.stop_containers_on_exit,
                client_ca_pem: None,
            }),
        })
    }

    /// Joins with `--token` (see [`crate::bootstrap`]): the agent's own kubeconfig.
    async fn join(&self, token: &berth_proto::bootstrap_token::Token) -> Result<PathBuf> {
        let bad =
            |message: &str| AgentError::Config { flag: "--discovery-token-ca-cert-hash", message: message.into() };
        if self.discovery_token_ca_cert_hash.is_empty() && !self.discovery_token_unsafe_skip_ca_verification {
            return Err(bad(
                "joining with --token needs the CA's pin (or --discovery-token-unsafe-skip-ca-verification)",
            ));
        }
        if self.fake_nodes.is_some() {
            return Err(AgentError::Config {
                flag: "--token",
                message: "hollow nodes (--fake-nodes) cannot join with a token".into(),
            });
        }
        let node = self.node_name.clone().unwrap_or_default();
        std::fs::create_dir_all(&self.data_dir).map_err(|e| AgentError::Config {
            flag: "--data-dir",
            message: format!("{}: {e}", self.data_dir.display()),
        })?;
        let servers: Vec<String> = self.server.iter().map(|s| s.trim_end_matches('/').to_string()).collect();
        let pins = &self.discovery_token_ca_cert_hash;
        crate::bootstrap::join(&self.data_dir, &node, &servers, token, pins, self.discovery_timeout).await
    }

    /// The API servers to use: `--server`'s list, else the kubeconfig's `server` followed
    /// by the other servers its `berth.dev/servers` extension lists.
    fn api_servers(&self, kubeconfig: Option<&kube::config::Kubeconfig>) -> Vec<String> {
        if !self.server.is_empty() {
            return self.server.iter().map(|s| s.trim_end_matches('/').to_string()).collect();
        }
        kubeconfig_servers(kubeconfig)
    }
}

/// A kubeconfig's `server` followed by the other servers its `berth.dev/servers` extension
/// lists.
fn kubeconfig_servers(kubeconfig: Option<&kube::config::Kubeconfig>) -> Vec<String> {
    {
        let Some(kc) = kubeconfig else { return vec![] };
        let context = kc.current_context.as_ref().and_then(|name| kc.contexts.iter().find(|c| &c.name == name));
        let cluster_name = context.and_then(|c| c.context.as_ref()).map(|c| c.cluster.clone());
        let Some(cluster) =
            kc.clusters.iter().find(|c| Some(&c.name) == cluster_name.as_ref()).and_then(|c| c.cluster.as_ref())
        else {
            return vec![];
        };
        let mut servers: Vec<String> = cluster.server.iter().cloned().collect();
        let extension = cluster
            .extensions
            .iter()
            .flatten()
            .find(|e| e.name == SERVERS_EXTENSION)
            .and_then(|e| serde_json::from_value::<ServersExtension>(e.extension.clone()).ok());
        for url in extension.into_iter().flat_map(|e| e.api_servers) {
            if !servers.contains(&url) {
                servers.push(url);
            }
        }
        servers
    }
}

impl AgentArgs {
    /// Connects to the API through a [`Balancer`] over every server `--server` /
    /// `--kubeconfig` name, which fails over between them. The balancer lives as long as the
    /// returned [`ApiConnection`] (and `cancel`).
    pub async fn connect(&self, cancel: &CancellationToken) -> Result<ApiConnection> {
        let bad = |flag: &'static str, message: String| AgentError::Config { flag, message };
        let joined = match &self.token {
            Some(token) => Some(self.join(token).await?),
            None => None,
        };
        let kubeconfig_path = joined.as_ref().or(self.kubeconfig.as_ref());
        let kubeconfig = match kubeconfig_path {
            Some(path) => Some(
                kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| bad("--kubeconfig", format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        // A joined agent uses the servers discovery found (its kubeconfig's), not --server.
        let servers = if joined.is_some() {
            kubeconfig_servers(kubeconfig.as_ref())
        } else {
            self.api_servers(kubeconfig.as_ref())
        };
        if servers.is_empty() {
            return Err(match kubeconfig {
                Some(_) => bad("--kubeconfig", "names no API server".into()),
                None => bad("--server", "one of --server or --kubeconfig is required".into()),
            });
        }
        let mut config = match kubeconfig {
            Some(kc) => kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| bad("--kubeconfig", e.to_string()))?,
            None => kube::Config::new("http://127.0.0.1".parse().expect("a URL")),
        };
        let balancer = Arc::new(Balancer::start(&servers, probe_tls(&config), cancel).await?);
        let local: axum::http::Uri =
            balancer.local_url().parse().map_err(|e| bad("--server", format!("balancer URL: {e}")))?;
        // TLS verifies the server by a name every Berth server's certificate carries (the
        // `kubernetes` Service's), not the loopback address of the balancer, whichever
        // server the balancer is on.
        let first: axum::http::Uri =
            servers[0].parse().map_err(|e| bad("--server", format!("{:?}: {e}", servers[0])))?;
        if first.scheme_str() == Some("https") && config.tls_server_name.is_none() {
            config.tls_server_name = Some(berth_proto::bootstrap_token::API_SERVER_NAME.to_string());
        }
        config.cluster_url = local;
        let ca_pem =
            config.root_cert.as_ref().map(|ders| ders.iter().map(|d| berth_proto::tls::pem_of_der(d)).collect());
        // A joined agent's certificate is its own to rotate; a given kubeconfig's is not.
        let identity = match joined {
            Some(_) => Some(crate::bootstrap::identity(&self.data_dir)?),
            None => None,
        };
        let client = crate::api_client::build(&config, identity.clone())?;
        tokio::spawn(keep_servers_current(balancer.clone(), servers, client.clone(), cancel.child_token()));
        if let Some(identity) = identity {
            tokio::spawn(crate::bootstrap::keep_certificate_fresh(
                client.clone(),
                self.data_dir.clone(),
                self.node_name.clone().unwrap_or_default(),
                identity,
                balancer.clone(),
                cancel.child_token(),
            ));
        }
        Ok(ApiConnection { client, balancer, ca_pem })
    }
}

/// The TLS configuration the balancer probes `https://` servers with: the kubeconfig's CA,
/// no client certificate (`/readyz` answers anonymous callers).
fn probe_tls(config: &kube::Config) -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in config.root_cert.iter().flatten() {
        roots.add(rustls::pki_types::CertificateDer::from(der.clone())).ok()?;
    }
    if roots.is_empty() {
        return None;
    }
    let tls = rustls::ClientConfig::builder_with_provider(berth_proto::tls::provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Arc::new(tls))
}

/// The agent's way to the API: a kube-rs client whose connections go through the
/// [`Balancer`] (kept alive here).
pub struct ApiConnection {
    pub client: kube::Client,
    pub balancer: Arc<Balancer>,
    /// The cluster CA the kubeconfig trusts (PEM), if it names one.
    pub ca_pem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<AgentArgs, clap::Error> {
        AgentArgs::try_parse_from(std::iter::once("berth-agent").chain(args.iter().copied()))
    }

    #[test]
    fn hollow_flags() {
        let a = parse(&[
            "--server",
            "http://127.0.0.1:6443",
            "--node-name",
            "h",
            "--runtime",
            "fake",
            "--fake-nodes",
            "3",
            "--labels",
            "zone=a",
            "--register-with-taints",
            "k=v:NoSchedule",
            "--listen-port",
            "0",
            "--lease-seconds",
            "7",
            "--fake-start-delay",
            "5",
        ])
        .unwrap();
        let Mode::Hollow(h) = a.into_mode().unwrap() else { panic!("hollow") };
        assert_eq!(h.node_names(), vec!["h-0", "h-1", "h-2"]);
        assert_eq!(h.template.labels["zone"], "a");
        assert_eq!(h.template.taints[0].effect, "NoSchedule");
        assert_eq!(h.template.heartbeat.lease_renew, Duration::from_secs(7));
        assert_eq!(h.start_delay, Some(Duration::from_millis(5)));
        assert_eq!(h.template.capacity, Capacity::default());
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = parse(&["--server", "http://x", "--node-name", "n", "--labels", "oops"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--labels"), "{e}");
        let e = parse(&["--server", "http://x", "--node-name", "n", "--register-with-taints", "a=b:Bad"]).unwrap_err();
        assert!(e.to_string().contains("--register-with-taints"), "{e}");
        let e = parse(&["--server", "http://x", "--node-name", "Bad_Name"]).unwrap_err();
        assert!(e.to_string().contains("--node-name"), "{e}");
        let e = parse(&["--server", "http://x", "--node-name", "n", "--node-ip", "nope"]).unwrap_err();
        assert!(e.to_string().contains("--node-ip"), "{e}");
        let e =
            parse(&["--server", "http://x", "--node-name", "n", "--fake-nodes", "3"]).unwrap().into_mode().unwrap_err();
        assert!(e.to_string().starts_with("--fake-nodes"), "{e}");
        let e = parse(&["--node-name", "n"]).unwrap().into_mode().unwrap_err();
        assert!(e.to_string().starts_with("--server"), "{e}");
        let e = parse(&["--server", "ftp://x", "--node-name", "n"]).unwrap().into_mode().unwrap_err();
        assert!(e.to_string().starts_with("--server"), "{e}");
    }
}
