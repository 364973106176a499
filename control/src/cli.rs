//! `berth-server` flags, named as etcd's so operators feel at home.

use std::path::PathBuf;
use std::time::Duration;

use berth_store::config::{check_scheme, parse_initial_cluster, parse_urls};
use berth_store::{ClusterState, StoreConfig};
use clap::{Parser, ValueEnum};

use crate::{ServerConfig, ServerError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitialClusterState {
    New,
    Existing,
}

/// Berth server: a member of the replicated control-plane store.
#[derive(Debug, Parser)]
#[command(name = "berth-server", version, about)]
pub struct ServerArgs {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: NAME.berth].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client (etcd API) traffic, comma-separated.
    #[arg(long, default_value = "https://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs advertised to the cluster [default: the listen client URLs].
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// URLs the Kubernetes API listens on (kubectl's server), comma-separated; the first is
    /// the one the server advertises (in its identity Lease), so it must be reachable by
    /// every client and agent.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub listen_api_url: String,
    /// Serve the Kubernetes API and the etcd ports over plain HTTP with no authentication:
    /// every caller is an administrator. For throwaway experiments only; `http://` URLs need it.
    #[arg(long)]
    pub insecure: bool,
    /// More names or addresses for the API's serving certificate, comma-separated (a load
    /// balancer's, a DNS name); the listen addresses, `kubernetes.default.svc…` and the
    /// `kubernetes` Service IP are always in it.
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// kube-apiserver's EncryptionConfiguration file: what is encrypted at rest and with
    /// which keys; reloaded when it changes [default: DATA_DIR/pki/encryption-config.yaml,
    /// made with an AES-GCM key for Secrets by the first server of a new cluster].
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// kube-apiserver's audit Policy file (`audit.k8s.io/v1`): which requests are recorded,
    /// at which level; needs --audit-log-path.
    #[arg(long, value_name = "FILE", requires = "audit_log_path")]
    pub audit_policy_file: Option<PathBuf>,
    /// Where audit Event lines go (`-`: standard output).
    #[arg(long, value_name = "PATH", requires = "audit_policy_file")]
    pub audit_log_path: Option<PathBuf>,
    /// URL to listen on for peer (Raft) traffic.
    #[arg(long, default_value = "https://127.0.0.1:2380")]
    pub listen_peer_urls: String,
    /// Peer URLs advertised to the cluster [default: the listen peer URLs].
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration, NAME=PEER_URL,... [default: NAME=advertised peer URLs].
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Whether this member bootstraps a new cluster or joins an existing one.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: InitialClusterState,
    /// Token distinguishing clusters bootstrapped from the same configuration.
    #[arg(long, default_value = "berth-cluster")]
    pub initial_cluster_token: String,
    /// Client URL of a running member: add this server as a learner, catch up, get promoted.
    #[arg(long)]
    pub join: Option<String>,
    /// With --join: a control-plane bootstrap token (`berthctl token create --control-plane`):
    /// the cluster's CAs, service-account key and encryption configuration are fetched over
    /// TLS pinned by --discovery-token-ca-cert-hash, from --discovery-server's API.
    #[arg(long, requires_all = ["join", "discovery_server"])]
    pub token: Option<berth_proto::bootstrap_token::Token>,
    /// With --token: the API URL of a running server (where `cluster-info` is read).
    #[arg(long, requires = "token")]
    pub discovery_server: Option<String>,
    /// With --token: the cluster CA's pin (`sha256:<hex>`), comma-separated or repeated.
    #[arg(long, value_delimiter = ',', requires = "token")]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// With --token: how long to keep trying discovery (Go duration).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub discovery_timeout: Duration,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed entries that trigger a snapshot (and log purge).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Interpretation of --auto-compaction-retention: "periodic" (a duration, or hours) or
    /// "revision" (a count of revisions to keep).
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// History to keep when compacting automatically; "0" disables. Berth's default is
    /// kube-apiserver's 5-minute compaction interval (etcd alone defaults to 0).
    #[arg(long, default_value = "5m")]
    pub auto_compaction_retention: String,
    /// Interval of progress notifications for watches that ask for them (e.g. 10m, 500ms).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub watch_progress_notify_interval: Duration,
    /// How long a node may go without renewing its Lease before it is marked unreachable.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long pods stay on an unreachable or not-ready node before they are deleted
    /// (unless they tolerate the taint for a different time).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub pod_eviction_timeout: Duration,
    /// How often every server scrapes the agents' usage for metrics.k8s.io (`kubectl top`, HPA).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub metric_resolution: Duration,
    /// How often the HorizontalPodAutoscaler controller syncs each HPA.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// Minimum change (from 1.0) in the usage/target ratio for the HPA to rescale.
    #[arg(long, default_value_t = 0.1)]
    pub horizontal_pod_autoscaler_tolerance: f64,
    /// How far back the HPA looks for higher recommendations before scaling down (HPAs
    /// without `behavior.scaleDown.stabilizationWindowSeconds`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// The longest life of a certificate the servers sign for an approved
    /// CertificateSigningRequest (kube-controller-manager's flag); a request's
    /// `spec.expirationSeconds` may only shorten it. Nodes rotate theirs at 80% of its life.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    pub cluster_signing_duration: Duration,
    /// Seed a fresh data dir from this backup (`berthctl snapshot save`) and start a new
    /// cluster from it; every member of the new cluster restores the same file with the same
    /// --initial-cluster. Ignored when the data dir already holds data.
    #[arg(long, value_name = "FILE")]
    pub restore_snapshot: Option<PathBuf>,
    /// Give every Node a `spec.podCIDR` from --cluster-cidr (the agents build their pod
    /// networks on it). `--allocate-node-cidrs=false` leaves podCIDRs to someone else.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub allocate_node_cidrs: bool,
    /// The range node pod CIDRs come from.
    #[arg(long, default_value = crate::tasks::node_ipam::DEFAULT_CLUSTER_CIDR, value_name = "CIDR")]
    pub cluster_cidr: String,
    /// The prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = crate::tasks::node_ipam::DEFAULT_NODE_PREFIX, value_name = "BITS")]
    pub node_cidr_mask_size: u8,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "info,openraft=warn")]
    pub log_level: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 10m, 30s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
}

impl ServerArgs {
    /// Resolves defaults and checks the flags together; errors name the flag.
    pub fn into_config(self) -> Result<ServerConfig, ServerError> {
        let cfg = |e: berth_store::StoreError| ServerError::Config(e.to_string());
        let listen_client_urls = parse_urls("--listen-client-urls", &self.listen_client_urls).map_err(cfg)?;
        let listen_peer_urls = parse_urls("--listen-peer-urls", &self.listen_peer_urls).map_err(cfg)?;
        if listen_peer_urls.len() > 1 {
            return Err(ServerError::Config("--listen-peer-urls: Berth listens on one peer URL".into()));
        }
        let listen_api_url = parse_urls("--listen-api-url", &self.listen_api_url).map_err(cfg)?;
        if listen_api_url.is_empty() {
            return Err(ServerError::Config("--listen-api-url: give at least one URL".into()));
        }
        let listening = listen_api_url
            .iter()
            .map(|u| ("--listen-api-url", u))
            .chain(listen_client_urls.iter().map(|u| ("--listen-client-urls", u)))
            .chain(listen_peer_urls.iter().map(|u| ("--listen-peer-urls", u)));
        for (flag, url) in listening {
            check_scheme(flag, url, !self.insecure).map_err(cfg)?;
        }
        let advertise_client_urls = match &self.advertise_client_urls {
            Some(list) => parse_urls("--advertise-client-urls", list).map_err(cfg)?,
            None => listen_client_urls.clone(),
        };
        let advertise_peer_urls = match &self.initial_advertise_peer_urls {
            Some(list) => parse_urls("--initial-advertise-peer-urls", list).map_err(cfg)?,
            None => listen_peer_urls.clone(),
        };
        let initial_cluster = match &self.initial_cluster {
            Some(spec) => parse_initial_cluster(spec).map_err(cfg)?,
            None => vec![(self.name.clone(), advertise_peer_urls.clone())],
        };
        if let Some(join) = &self.join {
            parse_urls("--join", join).map_err(cfg)?;
        }
        if self.token.is_some() && self.discovery_token_ca_cert_hash.is_empty() {
            return Err(ServerError::Config(
                "--token: joining with a token needs the CA's pin (--discovery-token-ca-cert-hash sha256:…)".into(),
            ));
        }
        let join_token = match (&self.token, &self.discovery_server) {
            (Some(token), Some(server)) => Some(crate::JoinToken {
                token: token.clone(),
                server: server.trim_end_matches('/').to_string(),
                pins: self.discovery_token_ca_cert_hash.iter().map(|p| p.to_ascii_lowercase()).collect(),
                timeout: self.discovery_timeout,
            }),
            _ => None,
        };
        if let Some(backup) = &self.restore_snapshot {
            if self.join.is_some() || matches!(self.initial_cluster_state, InitialClusterState::Existing) {
                return Err(ServerError::Config(
                    "--restore-snapshot starts a new cluster: it cannot be combined with --join or \
                     --initial-cluster-state existing"
                        .into(),
                ));
            }
            if !backup.is_file() {
                return Err(ServerError::Config(format!("--restore-snapshot: {} is not a file", backup.display())));
            }
        }
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.berth", self.name)));
        let store = StoreConfig {
            name: self.name.clone(),
            data_dir,
            advertise_client_urls,
            advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: match self.initial_cluster_state {
                InitialClusterState::New => ClusterState::New,
                InitialClusterState::Existing => ClusterState::Existing,
            },
            initial_cluster_token: self.initial_cluster_token.clone(),
            join: self.join.clone(),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count,
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            auto_compaction: berth_store::config::AutoCompaction::parse(
                &self.auto_compaction_mode,
                &self.auto_compaction_retention,
            )
            .map_err(|e| cfg(berth_store::StoreError::Config(e)))?,
            ..StoreConfig::single(&self.name, PathBuf::new(), "https://unused:1", "https://unused:1")
        };
        store.validate().map_err(cfg)?;
        store.check_schemes(!self.insecure).map_err(cfg)?;
        let tasks = crate::tasks::Settings {
            node_monitor_grace_period: self.node_monitor_grace_period,
            pod_eviction_timeout: self.pod_eviction_timeout,
            metric_resolution: self.metric_resolution,
            hpa_sync_period: self.horizontal_pod_autoscaler_sync_period,
            hpa_tolerance: self.horizontal_pod_autoscaler_tolerance,
            hpa_downscale_stabilization: self.horizontal_pod_autoscaler_downscale_stabilization,
            cluster_signing_duration: self.cluster_signing_duration,
            node_cidrs: match self.allocate_node_cidrs {
                true => Some(
                    crate::tasks::node_ipam::NodeCidrs::parse(&self.cluster_cidr, self.node_cidr_mask_size)
                        .map_err(ServerError::Config)?,
                ),
                false => None,
            },
            ..Default::default()
        };
        if self.cluster_signing_duration < Duration::from_secs(10) {
            return Err(ServerError::Config(
                "--cluster-signing-duration must be at least 10s (certificates are renewed at 80% of their life)"
                    .into(),
            ));
        }
        if self.metric_resolution.is_zero() || self.horizontal_pod_autoscaler_sync_period.is_zero() {
            return Err(ServerError::Config(
                "--metric-resolution and --horizontal-pod-autoscaler-sync-period must be greater than 0".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.horizontal_pod_autoscaler_tolerance) {
            return Err(ServerError::Config("--horizontal-pod-autoscaler-tolerance must be in [0, 1)".into()));
        }
        Ok(ServerConfig {
            store,
            listen_client_urls,
            listen_peer_urls,
            listen_api_urls: listen_api_url,
            tasks,
            restore_snapshot: self.restore_snapshot.clone(),
            insecure: self.insecure,
            tls_sans: self.tls_san.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            encryption_config: self.encryption_provider_config.clone(),
            audit: self.audit_policy_file.clone().zip(self.audit_log_path.clone()),
            join_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServerConfig, ServerError> {
        let mut all = vec!["berth-server"];
        all.extend_from_slice(args);
        ServerArgs::try_parse_from(all).map_err(|e| ServerError::Config(e.to_string()))?.into_config()
    }

    #[test]
    fn defaults_make_a_single_member_cluster() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.store.initial_cluster, vec![("default".into(), vec!["https://127.0.0.1:2380".into()])]);
        assert_eq!(c.listen_client_urls, ["https://127.0.0.1:2379"]);
        assert_eq!(c.store.data_dir, PathBuf::from("default.berth"));
        assert_eq!(c.store.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.listen_api_urls, ["https://127.0.0.1:6443"]);
        assert!(!c.insecure);
        let two = parse(&["--listen-api-url", "https://10.1.1.1:6443,https://127.0.0.1:6443"]).unwrap();
        assert_eq!(two.listen_api_urls, ["https://10.1.1.1:6443", "https://127.0.0.1:6443"], "the first is advertised");
        let sans = parse(&["--tls-san", "api.example.com, 10.0.0.1"]).unwrap();
        assert_eq!(sans.tls_sans, ["api.example.com", "10.0.0.1"]);
    }

    #[test]
    fn plain_http_only_with_insecure() {
        let err = parse(&["--listen-api-url", "http://127.0.0.1:6443"]).unwrap_err().to_string();
        assert!(err.contains("plain HTTP needs --insecure"), "{err}");
        let err = parse(&["--insecure"]).unwrap_err().to_string();
        assert!(err.contains("use http:// URLs"), "{err}");
        // Every port: the etcd client and peer ports too.
        let err = parse(&["--insecure", "--listen-api-url", "http://127.0.0.1:6443"]).unwrap_err().to_string();
        assert!(err.contains("--listen-client-urls https://127.0.0.1:2379: --insecure serves plain HTTP"), "{err}");
        let err = parse(&["--listen-peer-urls", "http://127.0.0.1:2380"]).unwrap_err().to_string();
        assert!(err.contains("--listen-peer-urls http://127.0.0.1:2380: plain HTTP needs --insecure"), "{err}");
        let err = parse(&["--join", "http://10.0.0.1:2379"]).unwrap_err().to_string();
        assert!(err.contains("--join http://10.0.0.1:2379: plain HTTP needs --insecure"), "{err}");
        let plain = [
            "--insecure",
            "--listen-api-url",
            "http://127.0.0.1:6443",
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
        ];
        assert!(parse(&plain).unwrap().insecure);
    }

    #[test]
    fn bad_flags_are_named() {
        let err = parse(&["--initial-cluster", "a=http://x:1", "--name", "b"]).unwrap_err().to_string();
        assert!(err.contains("couldn't find local name"), "{err}");
        let err = parse(&["--initial-cluster", "nonsense"]).unwrap_err().to_string();
        assert!(err.contains("--initial-cluster"), "{err}");
        let err = parse(&["--listen-client-urls", "ftp://x:1"]).unwrap_err().to_string();
        assert!(err.contains("--listen-client-urls"), "{err}");
        let err = parse(&["--election-timeout", "150"]).unwrap_err().to_string();
        assert!(err.contains("--election-timeout"), "{err}");
        assert!(parse(&["--watch-progress-notify-interval", "5x"]).is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        let err = parse(&["--restore-snapshot", "/nonexistent/backup.db"]).unwrap_err().to_string();
        assert!(err.contains("--restore-snapshot: /nonexistent/backup.db is not a file"), "{err}");
        let backup = tempfile::NamedTempFile::new().unwrap();
        let path = backup.path().to_str().unwrap();
        let err = parse(&["--restore-snapshot", path, "--join", "http://127.0.0.1:2379"]).unwrap_err();
        assert!(err.to_string().contains("cannot be combined"), "{err}");
    }
}
