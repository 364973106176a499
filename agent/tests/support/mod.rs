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
    _dir: tempfile::TempDir,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_url = format!("http://{}", peer.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::single("s0", dir.path().to_path_buf(), "http://127.0.0.1:1", &peer_url);
        config.heartbeat_interval = Duration::from_millis(50);
        config.election_timeout = Duration::from_millis(500);
        let store = StoreNode::start(config, peer, Arc::new(NetworkFaults::default())).await.expect("store starts");
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("http://{}", api.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let control = ControlPlane::start_api(store.clone(), api, shutdown.clone());
        let cp = ControlPlane { store, api_url, shutdown, control: Some(control), _dir: dir };
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
