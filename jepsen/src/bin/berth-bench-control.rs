//! `berth-bench-control`: control-plane benchmarks on real processes (3 `berth-server`s,
//! one `berth-agent` with hollow nodes). `failover` times the controllers' takeover after
//! kill -9 of the leader; `agent-failover` times an agent's move to another server after
//! kill -9 of its own; `scheduling` times binding and starting many pods; `pod-startup`
//! times pods reaching Running on a real containerd node; `proxy-sync` times the agent's
//! service proxy programming nftables; `data-path` times requests through Services against
//! pod IPs on a local cluster; `dns` measures the agent's cluster DNS with dnsperf;
//! `churn` follows one server's memory and disk under steady churn for a long time;
//! `api-security` compares the API with TLS, authentication and RBAC against `--insecure`;
//! `protobuf` compares Kubernetes protobuf with JSON for big LISTs and for creates.
//! `crd` compares custom objects with ConfigMaps, and times a CRD's deletion with its objects.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_jepsen::agent_failover::{self, AgentFailoverConfig};
use berth_jepsen::api_bench::{self, ApiSecurityConfig};
use berth_jepsen::churn::{self, ChurnConfig};
use berth_jepsen::control_bench::{self, FailoverConfig, SchedulingConfig};
use berth_jepsen::crd_bench::{self, CrdBenchConfig};
use berth_jepsen::data_path::{self, DataPathConfig};
use berth_jepsen::dns_bench::{self, DnsBenchConfig};
use berth_jepsen::pod_startup::{self, PodStartupConfig};
use berth_jepsen::protobuf_bench::{self, ProtobufBenchConfig};
use berth_jepsen::proxy_sync::{self, ProxySyncConfig};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "berth-bench-control", about = "Berth control-plane benchmarks (failover, scheduling throughput)")]
struct Args {
    /// Where data directories and logs go (default: a temporary directory, removed after).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// TLS + authentication + RBAC vs --insecure on the same build: GET/LIST/CREATE latency
    /// and throughput with keep-alive, and a new connection's cost.
    ApiSecurity {
        #[arg(long, default_value_t = 4000)]
        requests: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Fresh connections timed one after another.
        #[arg(long, default_value_t = 300)]
        connections: usize,
    },
    /// Kubernetes protobuf vs JSON on one server: LIST of many pods (fetch and a typed
    /// client's decode) and ConfigMap create throughput.
    Protobuf {
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 5)]
        list_trials: usize,
        #[arg(long, default_value_t = 4000)]
        creates: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Custom objects (a CRD) vs ConfigMaps: CRUD throughput and latency, LIST; then the
    /// deletion of a CRD with many objects.
    Crd {
        #[arg(long, default_value_t = 4000)]
        objects: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        cleanup_objects: usize,
    },
    /// kill -9 the leader, delete a pod, time until it is replaced and bound.
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 10)]
        replicas: i32,
        /// Hollow nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// 3 or 5 servers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
        servers: u64,
    },
    /// kill -9 the server a real agent talks to, time its first response from another.
    AgentFailover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// 3 or 5 servers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
        servers: u64,
    },
    /// Hollow nodes and Deployments totalling many pods: bind rate, time to Running.
    Scheduling {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 10)]
        deployments: usize,
        /// Create bare pods instead of Deployments: the scheduler alone.
        #[arg(long)]
        bare_pods: bool,
        /// Pod creates in flight with --bare-pods.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
        create_concurrency: u64,
    },
    /// Pod startup on one real containerd node (image present): creation to Running and
    /// Ready, one by one and all at once; then the node's CPU and memory at that density.
    /// Needs root, containerd, runc, the CNI plugins and what scripts/build-images needs.
    PodStartup {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=105))]
        pods: u64,
        /// Image archives to import (default: built with scripts/build-images).
        #[arg(long)]
        images_dir: Option<PathBuf>,
        /// How long to sample the agent's CPU with every pod running.
        #[arg(long, default_value = "30s", value_parser = humantime_duration)]
        sample: std::time::Duration,
    },
    /// The agent's service proxy programming nftables for many Services (in a private
    /// network namespace; needs root and nft), against kube-proxy's iptables-mode ruleset
    /// loaded with iptables-restore.
    ProxySync {
        #[arg(long, default_value_t = 1000)]
        services: usize,
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Endpoint changes timed one after another.
        #[arg(long, default_value_t = 50)]
        changes: usize,
    },
    /// Request latency and throughput pod → ClusterIP → pod against pod → pod IP, on one
    /// node and across nodes, on a local two-node containerd cluster (needs root, what
    /// `berthctl up --runtime containerd` needs, and kubectl).
    DataPath {
        /// Length of each latency and each throughput run.
        #[arg(long, default_value = "5s", value_parser = humantime_duration)]
        duration: std::time::Duration,
        /// Requests in flight in the throughput runs.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Image archives to import (default: built with scripts/build-images).
        #[arg(long)]
        images_dir: Option<PathBuf>,
    },
    /// The agent's cluster DNS answering cached Service names, measured with dnsperf,
    /// against dnsmasq serving the same names (needs dnsperf and dnsmasq-base).
    Dns {
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Length of each dnsperf run.
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        duration: std::time::Duration,
    },
    /// One server under steady churn: RSS, DB size and compaction over time.
    Churn {
        /// How long to run (e.g. 60m, 90s).
        #[arg(long, default_value = "60m", value_parser = humantime_duration)]
        duration: std::time::Duration,
        /// How often to sample.
        #[arg(long, default_value = "60s", value_parser = humantime_duration)]
        sample: std::time::Duration,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        writes_per_second: u32,
        #[arg(long, default_value_t = 20)]
        replicas: i32,
        /// How often the Deployment's pods are rolled over.
        #[arg(long, default_value = "30s", value_parser = humantime_duration)]
        roll_every: std::time::Duration,
        /// Extra berth-server flag (repeatable), e.g. --server-arg=--auto-compaction-retention=0.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
}

/// `90s`, `5m`, `1h`, `500ms`.
fn humantime_duration(s: &str) -> Result<std::time::Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        "h" => Ok(std::time::Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?} is not a duration like 90s, 5m or 1h")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    match args.bench {
        Bench::Failover { trials, replicas, nodes, servers } => {
            anyhow::ensure!(
                trials > 0 && replicas > 0 && nodes > 0,
                "--trials, --replicas and --nodes must be positive"
            );
            let cfg = FailoverConfig { trials, replicas, nodes, servers: servers as usize };
            let (created, bound) = control_bench::failover(&dir, &cfg).await.context("failover benchmark")?;
            control_bench::print_failover(&created, &bound);
        }
        Bench::ApiSecurity { requests, concurrency, connections } => {
            anyhow::ensure!(requests > 0 && concurrency > 0 && connections > 0, "counts must be positive");
            let cfg = ApiSecurityConfig { requests, concurrency, connections };
            let (secure, insecure) = api_bench::api_security(&dir, &cfg).await.context("API security benchmark")?;
            api_bench::print(&cfg, &secure, &insecure);
        }
        Bench::Protobuf { pods, list_trials, creates, concurrency } => {
            anyhow::ensure!(pods > 0 && list_trials > 0 && creates > 0 && concurrency > 0, "counts must be positive");
            let cfg = ProtobufBenchConfig { pods, list_trials, creates, concurrency };
            let (json, protobuf) = protobuf_bench::protobuf_bench(&dir, &cfg).await.context("protobuf benchmark")?;
            protobuf_bench::print(&cfg, &json, &protobuf);
        }
        Bench::Crd { objects, concurrency, cleanup_objects } => {
            anyhow::ensure!(objects > 0 && concurrency > 0 && cleanup_objects > 0, "counts must be positive");
            let cfg = CrdBenchConfig { objects, concurrency, cleanup_objects };
            let figures = crd_bench::crd_bench(&dir, &cfg).await.context("CRD benchmark")?;
            crd_bench::print(&cfg, &figures);
        }
        Bench::PodStartup { pods, images_dir, sample } => {
            let cfg = PodStartupConfig { pods: pods as usize, images_dir, sample };
            pod_startup::pod_startup(&dir, &cfg).await.context("pod startup benchmark")?.print();
        }
        Bench::ProxySync { services, endpoints, changes } => {
            proxy_sync::proxy_sync(&ProxySyncConfig { services, endpoints, changes })
                .context("proxy sync benchmark")?;
        }
        Bench::DataPath { duration, concurrency, images_dir } => {
            let cfg = DataPathConfig { duration, concurrency, images_dir };
            let run = {
                let (dir, cfg) = (dir.clone(), cfg.clone());
                tokio::task::spawn_blocking(move || data_path::data_path(&dir, &cfg))
            };
            let figures = run.await?.context("data path benchmark")?;
            data_path::print(&cfg, &figures);
        }
        Bench::Dns { services, duration } => {
            let cfg = DnsBenchConfig { services, duration };
            let figures = dns_bench::dns_bench(&dir, &cfg).await.context("DNS benchmark")?;
            dns_bench::print(&cfg, &figures);
        }
        Bench::AgentFailover { trials, servers } => {
            anyhow::ensure!(trials > 0, "--trials must be positive");
            let cfg = AgentFailoverConfig { servers: servers as usize, trials };
            agent_failover::agent_failover(&dir, &cfg).await.context("agent failover benchmark")?.print();
        }
        Bench::Scheduling { nodes, pods, deployments, bare_pods, create_concurrency } => {
            anyhow::ensure!(
                nodes > 0 && deployments > 0 && pods >= deployments,
                "need nodes > 0 and pods >= deployments > 0"
            );
            let cfg = SchedulingConfig {
                nodes,
                pods,
                deployments,
                bare_pods,
                create_concurrency: create_concurrency as usize,
            };
            let report = control_bench::scheduling(&dir, &cfg).await.context("scheduling benchmark")?;
            report.print();
        }
        Bench::Churn { duration, sample, writes_per_second, replicas, roll_every, server_args } => {
            anyhow::ensure!(replicas > 0 && !sample.is_zero(), "--replicas and --sample must be positive");
            let cfg = ChurnConfig { duration, sample, writes_per_second, replicas, roll_every, server_args };
            let samples = churn::churn(&dir, &cfg).await.context("churn soak")?;
            churn::print_summary(&samples);
        }
    }
    Ok(())
}
