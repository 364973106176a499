//! In-process Berth servers for API tests: store members on loopback with a shared fault
//! injector, each with its Kubernetes API on a port-0 listener. Everything stops when the
//! cluster is dropped (also on test failure).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod kubelet;

use berth_control::ControlPlane;
use berth_store::{NetworkFaults, Store, StoreConfig, StoreNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub name: String,
    pub store: Store,
    pub control: Option<ControlPlane>,
    pub shutdown: CancellationToken,
    pub api_url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.api_url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.control.take() {
            c.stopped().await;
        }
        self.store.shutdown().await;
    }
}

pub struct Cluster {
    pub servers: Vec<Server>,
    pub faults: Arc<NetworkFaults>,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, berth_control::tasks::Settings::default()).await
    }

    /// A cluster whose leader tasks use `settings` (short timeouts for tests).
    pub async fn start_with(n: usize, settings: berth_control::tasks::Settings) -> Cluster {
        Self::start_configured(n, settings, berth_control::HttpSettings::default()).await
    }

    /// A cluster whose API ports use `http` (short connection timeouts for tests).
    pub async fn start_configured(
        n: usize,
        settings: berth_control::tasks::Settings,
        http: berth_control::HttpSettings,
    ) -> Cluster {
        let faults = Arc::new(NetworkFaults::default());
        let mut peers = Vec::new();
        for i in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            peers.push((format!("s{i}"), l, url));
        }
        let initial: Vec<(String, Vec<String>)> = peers.iter().map(|(n, _, u)| (n.clone(), vec![u.clone()])).collect();
        let mut starts = Vec::new();
        for (name, listener, url) in peers {
            let dir = tempfile::tempdir().unwrap();
            let mut config = StoreConfig::single(&name, dir.path().to_path_buf(), "http://127.0.0.1:1", &url);
            config.initial_cluster = initial.clone();
            config.heartbeat_interval = Duration::from_millis(50);
            config.election_timeout = Duration::from_millis(500);
            config.request_timeout = Duration::from_secs(3);
            let faults = faults.clone();
            starts.push((name, dir, tokio::spawn(async move { StoreNode::start(config, listener, faults).await })));
        }
        let mut servers = Vec::new();
        for (name, dir, start) in starts {
            let store = start.await.unwrap().expect("store member starts");
            let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let api_url = format!("http://{}", api.local_addr().unwrap());
            let shutdown = CancellationToken::new();
            let control =
                ControlPlane::start_configured(store.clone(), api, &name, settings.clone(), http, shutdown.clone());
            servers.push(Server { name, store, control: Some(control), shutdown, api_url, _dir: dir });
        }
        let c = Cluster { servers, faults };
        c.leader().await;
        // The leader creates the system namespaces; tests write into "default" at once.
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(c.client());
        eventually(Duration::from_secs(20), "the system namespaces", || async {
            let mut all = true;
            for ns in ["default", "kube-system", "kube-node-lease"] {
                all &= matches!(namespaces.get_opt(ns).await, Ok(Some(_)));
            }
            all.then_some(())
        })
        .await;
        c
    }

    /// The index of the server whose leader tasks run.
    pub async fn leader(&self) -> usize {
        eventually(Duration::from_secs(20), "a leader running its tasks", || async {
            self.servers.iter().position(|s| {
                s.control.as_ref().is_some_and(|c| c.supervisor.leading.load(std::sync::atomic::Ordering::SeqCst))
            })
        })
        .await
    }

    /// A client of server 0.
    pub fn client(&self) -> kube::Client {
        self.servers[0].client()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &self.servers {
            s.shutdown.cancel();
        }
    }
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
