//! Hollow nodes: many fake-runtime nodes in one process, for scheduler and controller
//! scale tests. They share one `kube::Client` (one connection pool, writes capped by
//! [`HollowConfig::max_concurrent_writes`]), one pod watch (`spec.nodeName!=`, dispatched
//! by node name), one fake runtime and one kubelet endpoint; each node has its own Node,
//! Lease (renewals spread evenly over the period) and pod worker.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{bind, channels, join_all, spawn_nodes};
use crate::config::HollowConfig;
use crate::error::Result;
use crate::host::{HostInfo, Pressure};
use crate::node::{ApiAccess, NodeIdentity};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::Runtime;

/// Running hollow nodes.
pub struct Hollow {
    /// `{prefix}-0` … `{prefix}-{n-1}`.
    pub node_names: Vec<String>,
    /// The kubelet endpoint all hollow nodes advertise.
    pub kubelet_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Hollow {
    /// Binds the shared endpoint and starts every node in the background (registration
    /// happens asynchronously; wait for the Nodes through the API). Runs until `cancel`.
    pub async fn start(client: kube::Client, cfg: HollowConfig, cancel: CancellationToken) -> Result<Hollow> {
        crate::config::check_node_name("--node-name", &format!("{}-0", cfg.name_prefix))?;
        let listener = bind(&cfg.template, cfg.listen_port).await?;
        let port =
            listener.local_addr().map_err(|source| crate::AgentError::Bind { port: cfg.listen_port, source })?.port();
        let names = cfg.node_names();
        let (senders, receivers, wake) = channels(&names);
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(cfg.start_delay, wake));
        let template = Arc::new(cfg.template.clone());
        let real = HostInfo::read();
        let identities = names
            .iter()
            .map(|name| NodeIdentity {
                name: name.clone(),
                template: template.clone(),
                host: Arc::new(HostInfo {
                    hostname: name.clone(),
                    machine_id: format!("hollow-{name}"),
                    boot_id: real.boot_id.clone(),
                    kernel_version: real.kernel_version.clone(),
                    os_image: "Berth hollow node".into(),
                }),
                kubelet_port: port,
                runtime_version: runtime.version(),
            })
            .collect();
        let pressure: Arc<dyn Fn() -> Pressure + Send + Sync> = Arc::new(Pressure::default);
        let mut api = ApiAccess::new(client, cfg.max_concurrent_writes);
        api.client_ca_pem = cfg.client_ca_pem.clone();
        let running = spawn_nodes(api, identities, senders, receivers, runtime, listener, pressure, cancel)?;
        tracing::info!(nodes = names.len(), kubelet = %running.kubelet_addr, "hollow nodes running");
        Ok(Hollow { node_names: names, kubelet_addr: running.kubelet_addr, tasks: running.tasks })
    }

    /// Waits for every task to end (after the cancellation token passed to `start`).
    pub async fn stopped(self) {
        join_all(self.tasks).await
    }
}

/// Runs `cfg.nodes` hollow nodes until `cancel`.
pub async fn run(client: kube::Client, cfg: HollowConfig, cancel: CancellationToken) -> Result<()> {
    Hollow::start(client, cfg, cancel).await?.stopped().await;
    Ok(())
}

/// Waits until every node in `names` is registered and Ready (polling the API every
/// 200 ms), or fails after `timeout`.
pub async fn wait_ready(client: &kube::Client, names: &[String], timeout: std::time::Duration) -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    loop {
        let ready = match nodes.list(&Default::default()).await {
            Ok(l) => l
                .items
                .iter()
                .filter(|n| n.metadata.name.as_deref().is_some_and(|name| wanted.contains(name)))
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count(),
            Err(e) => {
                tracing::debug!(error = %e, "listing nodes");
                0
            }
        };
        if ready == wanted.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::AgentError::Timeout {
                what: format!("waiting for {} nodes to be Ready ({ready} are)", wanted.len()),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
