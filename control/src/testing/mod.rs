//! Test support (the `testing` feature): in-process Berth servers, each a store member with
//! its Kubernetes API on a port-0 listener — one alone ([`Server::start`], for the agent's
//! tests) or a cluster on [`berth_store::testing::Cluster`] ([`Cluster`]) — and a stand-in
//! kubelet ([`kubelet`]). Everything stops when dropped, also on test failure.

pub mod kubelet;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_store::{NetworkFaults, Store, StoreConfig, StoreNode};
use berth_testkit::eventually;
use k8s_openapi::api::core::v1::Namespace;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{tasks, ControlPlane, HttpSettings};

/// How long a server gets to elect a leader and create the system namespaces.
const READY: Duration = Duration::from_secs(20);

/// One Berth server: a store member and the API server (with its leader tasks) over it.
pub struct Server {
    pub name: String,
    pub store: Store,
    pub control: Option<ControlPlane>,
    pub shutdown: CancellationToken,
    pub api_url: String,
    /// The data directory of a server started alone on a fresh one.
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A single-member server on a fresh data directory and port-0 listeners, ready to
    /// serve (the system namespaces exist).
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store = start_single_store(dir.path(), peer).await.expect("store starts");
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = Server::serve("s0", store, api, tasks::Settings::default(), HttpSettings::default());
        server._dir = Some(dir);
        wait_system_namespaces(&server.client()).await;
        server
    }

    /// A single-member server on fixed ports over `dir`: stopping it and starting it again
    /// with the same arguments brings the same cluster back on the same address.
    pub async fn start_at(dir: &Path, peer_port: u16, api_port: u16) -> Server {
        // The previous incarnation may still hold a port, or its database, for a moment.
        let deadline = Instant::now() + READY;
        let store = loop {
            match start_single_store(dir, bind_retrying(peer_port).await).await {
                Ok(s) => break s,
                Err(e) => assert!(Instant::now() < deadline, "store restarts: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let api = bind_retrying(api_port).await;
        let server = Server::serve("s0", store, api, tasks::Settings::default(), HttpSettings::default());
        wait_system_namespaces(&server.client()).await;
        server
    }

    /// Starts the API server named `name` over `store` on `api`.
    fn serve(name: &str, store: Store, api: TcpListener, settings: tasks::Settings, http: HttpSettings) -> Server {
        let api_url = format!("http://{}", api.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let control = ControlPlane::start_configured(store.clone(), api, name, settings, http, shutdown.clone());
        Server { name: name.to_string(), store, control: Some(control), shutdown, api_url, _dir: None }
    }

    /// A client of this server's Kubernetes API.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.api_url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Stops the API server, then the store member.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.control.take() {
            c.stopped().await;
        }
        self.store.shutdown().await;
    }

    fn leading(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.supervisor.leading.load(Ordering::SeqCst))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Servers over the members of one in-process store cluster (server i on member i, with
/// its name), sharing its fault injector.
pub struct Cluster {
    pub servers: Vec<Server>,
    pub stores: berth_store::testing::Cluster,
}

impl Cluster {
    /// `n` servers with the default task and HTTP settings, ready to serve.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, tasks::Settings::default()).await
    }

    /// A cluster whose leader tasks use `settings` (short timeouts for tests).
    pub async fn start_with(n: usize, settings: tasks::Settings) -> Cluster {
        Self::start_configured(n, settings, HttpSettings::default()).await
    }

    /// A cluster whose API ports use `http` (short connection timeouts for tests).
    pub async fn start_configured(n: usize, settings: tasks::Settings, http: HttpSettings) -> Cluster {
        let stores = berth_store::testing::Cluster::start(n, |config| {
            config.request_timeout = Duration::from_secs(3);
        })
        .await;
        let mut servers = Vec::new();
        for member in &stores.members {
            let store = member.node.clone().expect("member running");
            let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
            servers.push(Server::serve(&member.name, store, api, settings.clone(), http));
        }
        let cluster = Cluster { servers, stores };
        cluster.leader().await;
        // The leader creates the system namespaces; tests write into "default" at once.
        wait_system_namespaces(&cluster.client()).await;
        cluster
    }

    /// The shared fault injector (cuts links between store members).
    pub fn faults(&self) -> &NetworkFaults {
        &self.stores.faults
    }

    /// The index of the server whose leader tasks run.
    pub async fn leader(&self) -> usize {
        eventually(READY, "a leader running its tasks", async || self.servers.iter().position(Server::leading)).await
    }

    /// A client of server 0.
    pub fn client(&self) -> kube::Client {
        self.servers[0].client()
    }
}

/// A store alone in its Raft group on `peer`, with test timeouts.
async fn start_single_store(dir: &Path, peer: TcpListener) -> berth_store::Result<Store> {
    let peer_url = format!("http://{}", peer.local_addr().unwrap());
    let mut config = StoreConfig::single("s0", dir.to_path_buf(), "http://127.0.0.1:1", &peer_url);
    berth_store::testing::tune(&mut config);
    StoreNode::start(config, peer, Arc::new(NetworkFaults::default())).await
}

/// Binds `port` on loopback, retrying while a previous incarnation still holds it.
async fn bind_retrying(port: u16) -> TcpListener {
    let deadline = Instant::now() + READY;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return l,
            Err(e) => assert!(Instant::now() < deadline, "binding port {port}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the leader has created the system namespaces.
async fn wait_system_namespaces(client: &kube::Client) {
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    eventually(READY, "the system namespaces", async || {
        let mut all = true;
        for ns in ["default", "kube-system", "kube-node-lease"] {
            all &= matches!(namespaces.get_opt(ns).await, Ok(Some(_)));
        }
        all.then_some(())
    })
    .await;
}
