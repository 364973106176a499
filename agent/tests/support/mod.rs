//! An in-process single-member Berth control plane for agent tests (the minimal part of
//! `control/tests/support`): the store on loopback, the Kubernetes API on a port-0
//! listener. Everything stops when the `ControlPlane` is dropped (also on test failure).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_control::ControlPlane as Api;
use berth_store::{NetworkFaults, Store, StoreConfig, StoreNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct ControlPlane {
    pub store: Store,
    pub api_url: String,
    pub shutdown: CancellationToken,
    control: Option<Api>,
    _dir: Option<tempfile::TempDir>,
}

fn store_config(dir: &std::path::Path, peer_url: &str) -> StoreConfig {
    let mut config = StoreConfig::single("s0", dir.to_path_buf(), "http://127.0.0.1:1", peer_url);
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout = Duration::from_millis(500);
    config
}

/// A port that was free a moment ago (for a control plane that must come back on the same
/// address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cp = ControlPlane::start_with(dir.path(), peer, api).await;
        cp._dir = Some(dir);
        cp
    }

    /// A control plane on fixed ports over `dir`: stopping it and starting it again with
    /// the same arguments brings the same cluster back on the same address.
    pub async fn start_at(dir: &std::path::Path, peer_port: u16, api_port: u16) -> ControlPlane {
        let bind = |port: u16| async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => return l,
                    Err(e) => assert!(Instant::now() < deadline, "binding port {port}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // The previous incarnation's store may still be closing its database: retry.
        let deadline = Instant::now() + Duration::from_secs(20);
        let store = loop {
            let peer = bind(peer_port).await;
            let peer_url = format!("http://{}", peer.local_addr().unwrap());
            match StoreNode::start(store_config(dir, &peer_url), peer, Arc::new(NetworkFaults::default())).await {
                Ok(s) => break s,
                Err(e) => assert!(Instant::now() < deadline, "store restarts: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ControlPlane::with_store(store, bind(api_port).await).await
    }

    async fn start_with(dir: &std::path::Path, peer: TcpListener, api: TcpListener) -> ControlPlane {
        let peer_url = format!("http://{}", peer.local_addr().unwrap());
        let config = store_config(dir, &peer_url);
        let store = StoreNode::start(config, peer, Arc::new(NetworkFaults::default())).await.expect("store starts");
        ControlPlane::with_store(store, api).await
    }

    async fn with_store(store: Store, api: TcpListener) -> ControlPlane {
        let api_url = format!("http://{}", api.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let control = ControlPlane::start_api(store.clone(), api, shutdown.clone());
        let cp = ControlPlane { store, api_url, shutdown, control: Some(control), _dir: None };
        // The leader tasks create the system namespaces (kube-node-lease among them).
        let client = cp.client();
        eventually(Duration::from_secs(20), "kube-node-lease namespace", || {
            let client = client.clone();
            async move {
                let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
                ns.get_opt("kube-node-lease").await.ok().flatten()
            }
        })
        .await;
        cp
    }

    fn start_api(store: Store, listener: TcpListener, shutdown: CancellationToken) -> Api {
        Api::start(store, listener, "s0", shutdown)
    }

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

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
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

/// A pod bound to `node` with one container `c` (image `busybox`) and `annotations`.
pub fn pod(name: &str, node: Option<&str>, annotations: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": annotations.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
        }
    }))
    .unwrap()
}
