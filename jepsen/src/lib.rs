//! Black-box tooling for Berth: starting real server processes (Berth or etcd) on this
//! machine, and measuring them side by side. The fault-injection harness builds on the
//! same process management.

pub mod agent_failover;
pub mod agents;
pub mod api_bench;
pub mod bench;
pub mod campaign;
pub mod checker;
pub mod churn;
pub mod client;
pub mod clock;
pub mod control_bench;
pub mod crd_bench;
pub mod data_path;
pub mod db;
pub mod disk;
pub mod dns_bench;
pub mod failpoint;
pub mod history;
pub mod kube_api;
pub mod nemesis;
pub mod net;
pub mod partition;
pub mod pki;
pub mod pod_startup;
pub mod procs;
pub mod protobuf_bench;
pub mod proxy_sync;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod workload;

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what} not found: {hint}")]
    MissingBinary { what: String, hint: String },
    #[error("starting {name}: {message}")]
    Start { name: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cluster did not become ready in {seconds}s: {detail}")]
    NotReady { seconds: u64, detail: String },
    #[error("{0}")]
    Config(String),
    #[error("rpc: {0}")]
    Rpc(String),
    #[error("berth-jepsen needs root (network namespaces, iptables, tc); run as root")]
    NotRoot,
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("network: {0}")]
    Net(String),
}
