//! Running nodes: [`Agent`] (one real node) and the shared machinery [`spawn_nodes`] that
//! [`crate::hollow`] also uses — one kubelet endpoint, one pod watch, one worker and one
//! heartbeat per node, all stopped by one cancellation token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, NodeTemplate, RuntimeKind};
use crate::error::{AgentError, Result};
use crate::host::{HostInfo, Pressure};
use crate::node::{ApiAccess, NodeIdentity};
use crate::runtime::{fake::FakeRuntime, process::ProcessRuntime, Runtime, Wake};
use crate::worker::{Worker, WorkerMsg};

/// The tasks of a running set of nodes.
pub(crate) struct Running {
    pub kubelet_addr: SocketAddr,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Binds the kubelet endpoint on `template.node_ip:port`.
pub(crate) async fn bind(template: &NodeTemplate, port: u16) -> Result<TcpListener> {
    TcpListener::bind((template.node_ip, port)).await.map_err(|source| AgentError::Bind { port, source })
}

/// Channels for `names`, and the runtime wake callback that routes to them.
pub(crate) fn channels(
    names: &[String],
) -> (HashMap<String, mpsc::UnboundedSender<WorkerMsg>>, Vec<mpsc::UnboundedReceiver<WorkerMsg>>, Wake) {
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for n in names {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.insert(n.clone(), tx);
        receivers.push(rx);
    }
    let routes = Arc::new(senders.clone());
    let wake: Wake = Arc::new(move |node: &str, uid: &str| {
        if let Some(tx) = routes.get(node) {
            let _ = tx.send(WorkerMsg::Wake(uid.to_string()));
        }
    });
    (senders, receivers, wake)
}

/// Starts the endpoint, the pod watch, and a worker and heartbeat per node.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_nodes(
    api: ApiAccess,
    identities: Vec<NodeIdentity>,
    senders: HashMap<String, mpsc::UnboundedSender<WorkerMsg>>,
    receivers: Vec<mpsc::UnboundedReceiver<WorkerMsg>>,
    runtime: Arc<dyn Runtime>,
    listener: TcpListener,
    pressure: Arc<dyn Fn() -> Pressure + Send + Sync>,
    cancel: CancellationToken,
) -> Result<Running> {
    let kubelet_addr = listener.local_addr().map_err(|source| AgentError::Bind { port: 0, source })?;
    let node_name = identities.first().map(|i| i.name.clone()).unwrap_or_default();
    let security = match &api.client_ca_pem {
        Some(ca) => {
            let mut sans = vec![kubelet_addr.ip().to_string(), "localhost".to_string(), node_name.clone()];
            sans.extend(identities.iter().map(|i| i.template.node_ip.to_string()));
            sans.dedup();
            let tls = crate::endpoint_auth::Tls::new(ca, &node_name, &sans).map_err(|message| AgentError::Config {
                flag: "--kubeconfig",
                message: format!("the port's TLS: {message}"),
            })?;
            let authorizer = Arc::new(crate::endpoint_auth::Authorizer::new(api.client.clone(), node_name.clone()));
            Some(crate::server::Security { tls, authorizer })
        }
        None => None,
    };
    let mut tasks =
        vec![tokio::spawn(crate::server::serve(listener, runtime.clone(), node_name, security, cancel.clone()))];
    let names: Vec<String> = identities.iter().map(|i| i.name.clone()).collect();
    let n = identities.len().max(1) as u32;
    for (i, (id, rx)) in identities.into_iter().zip(receivers).enumerate() {
        let tx = senders[&id.name].clone();
        let node_ip = id.template.node_ip.to_string();
        let events = crate::events::PodEvents::new(api.client.clone(), &id.name);
        let worker = Worker::new(id.name.clone(), node_ip, api.clone(), runtime.clone(), tx, rx, events);
        tasks.push(tokio::spawn(worker.run(cancel.clone())));
        // Spread lease renewals evenly over one period.
        let offset = id.template.heartbeat.lease_renew * i as u32 / n;
        tasks.push(tokio::spawn(crate::node::heartbeat(api.clone(), id, offset, pressure.clone(), cancel.clone())));
    }
    tasks.push(tokio::spawn({
        let (runtime, cancel) = (runtime.clone(), cancel.clone());
        async move {
            cancel.cancelled().await;
            runtime.shutdown();
            let deadline = tokio::time::Instant::now() + runtime.stop_grace();
            while runtime.active() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }));
    let selector = crate::watch::selector_for(&names);
    tasks.push(tokio::spawn(crate::watch::run(api.client.clone(), selector, Arc::new(senders), cancel)));
    Ok(Running { kubelet_addr, tasks })
}

/// One real node.
pub struct Agent {
    pub node_name: String,
    /// Where the kubelet endpoint listens.
    pub kubelet_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    /// The agent's own containerd (restarted by a supervisor task when it exits), stopped
    /// when the agent stops (after its tasks).
    containerd: Option<Arc<crate::runtime::cri::Containerd>>,
}

impl Agent {
    /// Binds the endpoint, then registers and runs the node in the background until
    /// `cancel`. Fails only for configuration or bind errors; API trouble is retried.
    pub async fn start(client: kube::Client, config: AgentConfig, cancel: CancellationToken) -> Result<Agent> {
        crate::config::check_node_name("--node-name", &config.node_name)?;
        let listener = bind(&config.template, config.listen_port).await?;
        let port =
            listener.local_addr().map_err(|source| AgentError::Bind { port: config.listen_port, source })?.port();
        let names = vec![config.node_name.clone()];
        let (senders, receivers, wake) = channels(&names);
        let mut containerd = None;
        // Services and EndpointSlices, watched once for the node's proxy, DNS and containers'
        // Service variables; the watches end when the agent stops.
        let mut watches = tokio::task::JoinSet::new();
        let view = crate::service_view::ServiceView::start(&client, &mut watches);
        let runtime: Arc<dyn Runtime> = match &config.runtime {
            RuntimeKind::Fake => Arc::new(FakeRuntime::new(config.fake_start_delay, wake)),
            RuntimeKind::Process => {
                Arc::new(ProcessRuntime::new(config.data_dir.clone(), wake, config.stop_containers_on_exit)?)
            }
            RuntimeKind::Containerd(options) => {
                let (cri, own) = crate::runtime::cri::connect_or_start(options, &config.data_dir).await?;
                let host_resolv = read_resolv_conf(options.dns.resolv_conf.as_deref());
                if let Some(own) = &own {
                    let network = crate::runtime::cri::cni::PodNetwork {
                        pod_cidr: String::new(),
                        bridge: options.pod_bridge.clone(),
                        ipam_dir: config.data_dir.join("cni").join("ipam"),
                        masquerade: options.cluster_cidr.is_none(),
                    };
                    if let Some(cluster_cidr) = options.cluster_cidr {
                        let node = config.node_name.clone();
                        let settings = crate::podnet::PodNetSettings { node: node.clone(), cluster_cidr };
                        tokio::spawn(crate::podnet::run_sync(client.clone(), settings, cancel.clone()));
                        let settings = crate::proxy::ProxySettings { node, cluster_cidr };
                        tokio::spawn(crate::proxy::run_proxy(view.clone(), settings, cancel.clone()));
                        if options.dns.serve_port != 0 {
                            let settings = dns_settings(&options.dns, config.template.node_ip, &host_resolv);
                            tokio::spawn(crate::dns::run_dns(view.clone(), settings, cancel.clone()));
                        }
                        if options.ingress_port != 0 {
                            let settings = crate::ingress::IngressSettings {
                                listen: SocketAddr::new(config.template.node_ip, options.ingress_port),
                                node: config.node_name.clone(),
                            };
                            tokio::spawn(crate::ingress::run_ingress(view.clone(), settings, cancel.clone()));
                        }
                    }
                    crate::runtime::cri::cni::check_bridge_name(&network.bridge)?;
                    tokio::spawn(crate::runtime::cri::cni::configure_when_assigned(
                        client.clone(),
                        config.node_name.clone(),
                        own.layout.cni_conf_dir.clone(),
                        network,
                        cancel.clone(),
                    ));
                }
                containerd = own.map(Arc::new);
                let events = crate::events::PodEvents::new(client.clone(), &config.node_name);
                let settings = crate::runtime::cri::runtime::CriRuntimeSettings {
                    data_dir: config.data_dir.clone(),
                    wake,
                    events,
                    stop_on_exit: config.stop_containers_on_exit,
                    api: client.clone(),
                    image_gc: options.image_gc,
                    sandbox_image: options.sandbox_image.clone(),
                    pod_dns: crate::dns::resolv::PodDnsSettings {
                        cluster_dns: options.dns.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                        cluster_domain: options.dns.cluster_domain.clone(),
                        host: host_resolv,
                    },
                };
                Arc::new(crate::runtime::cri::CriRuntime::new(cri, settings).await?)
            }
        };
        let host = HostInfo::read();
        let identity = NodeIdentity {
            name: config.node_name.clone(),
            template: Arc::new(config.template.clone()),
            host: Arc::new(host),
            kubelet_port: port,
            runtime_version: runtime.version(),
        };
        let data_dir = config.data_dir.clone();
        let pressure: Arc<dyn Fn() -> Pressure + Send + Sync> = Arc::new(move || crate::host::pressure(&data_dir));
        let mut api = ApiAccess::new(client, 16);
        api.services = Some(view.services.clone());
        api.client_ca_pem = config.client_ca_pem.clone();
        let cancel_watches = cancel.clone();
        let supervisor = containerd.clone().map(|c| tokio::spawn(c.supervise(cancel.clone())));
        let mut running = spawn_nodes(api, vec![identity], senders, receivers, runtime, listener, pressure, cancel)?;
        running.tasks.extend(supervisor);
        running.tasks.push(tokio::spawn(async move {
            cancel_watches.cancelled().await;
            watches.shutdown().await;
        }));
        tracing::info!(node = %config.node_name, kubelet = %running.kubelet_addr, "agent running");
        Ok(Agent { node_name: config.node_name, kubelet_addr: running.kubelet_addr, tasks: running.tasks, containerd })
    }

    /// [`Agent::start`], then waits until `cancel` stops everything.
    pub async fn run(client: kube::Client, config: AgentConfig, cancel: CancellationToken) -> Result<()> {
        Agent::start(client, config, cancel).await?.stopped().await;
        Ok(())
    }

    /// The PID of the agent's own containerd, if it started one.
    pub fn containerd_pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(|c| c.pid())
    }

    /// Waits for every task to end (after the cancellation token passed to `start`).
    pub async fn stopped(mut self) {
        join_all(std::mem::take(&mut self.tasks)).await;
        if let Some(containerd) = self.containerd.take() {
            // Dropping it waits for containerd to exit: not on a runtime thread.
            let _ = tokio::task::spawn_blocking(move || drop(containerd)).await;
        }
    }
}

/// The host's resolv.conf at `path` (none, or unreadable: empty, with a warning).
fn read_resolv_conf(path: Option<&std::path::Path>) -> crate::dns::resolv::ResolvConf {
    let Some(path) = path else { return Default::default() };
    match std::fs::read_to_string(path) {
        Ok(text) => crate::dns::resolv::ResolvConf::parse(&text),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the host resolv.conf; pods with dnsPolicy Default get no resolvers");
            Default::default()
        }
    }
}

/// The node's DNS server: on `node_ip:serve_port`, forwarding to the host's nameservers.
fn dns_settings(
    options: &crate::config::DnsOptions,
    node_ip: std::net::IpAddr,
    host: &crate::dns::resolv::ResolvConf,
) -> crate::dns::DnsSettings {
    let upstream = host
        .nameservers
        .iter()
        .filter_map(|ns| ns.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    crate::dns::DnsSettings {
        domain: options.cluster_domain.clone(),
        listen: SocketAddr::new(node_ip, options.serve_port),
        upstream,
    }
}

pub(crate) async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
