//! `berth-server`: the Berth control plane.
//!
//! Today a server runs one member of the replicated store and serves the etcd v3 API; the
//! Kubernetes API server, scheduler and controllers join it in later issues. The binary is
//! thin: [`cli`] turns etcd-style flags into a [`ServerConfig`], [`run`] does the rest.

pub mod cli;

use std::sync::Arc;

use berth_store::{NetworkFaults, StoreConfig, StoreNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error("binding {url}: {message}")]
    Bind { url: String, message: String },
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
}

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub store: StoreConfig,
    pub listen_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
}

/// Binds `url`'s host and port.
pub async fn bind(url: &str) -> Result<TcpListener, ServerError> {
    let parsed = url::Url::parse(url).map_err(|e| ServerError::Config(format!("{url}: {e}")))?;
    let host = parsed.host_str().ok_or_else(|| ServerError::Config(format!("{url}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_or_known_default().ok_or_else(|| ServerError::Config(format!("{url}: no port")))?;
    TcpListener::bind((host, port))
        .await
        .map_err(|e| ServerError::Bind { url: url.to_string(), message: e.to_string() })
}

/// Runs a server until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    let mut client_listeners = Vec::new();
    for url in &config.listen_client_urls {
        client_listeners.push(bind(url).await?);
    }
    let peer_url =
        config.listen_peer_urls.first().ok_or_else(|| ServerError::Config("--listen-peer-urls is empty".into()))?;
    let peer_listener = bind(peer_url).await?;
    let store = StoreNode::start(config.store.clone(), peer_listener, Arc::new(NetworkFaults::default())).await?;
    let mut servers = Vec::new();
    for listener in client_listeners {
        servers.push(tokio::spawn(berth_store::server::serve_client(store.clone(), listener, shutdown.clone())));
    }
    let stopped = store.shutdown_token();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = stopped.cancelled() => tracing::warn!("the store member stopped"),
    }
    shutdown.cancel();
    store.shutdown().await;
    for s in servers {
        let _ = s.await;
    }
    Ok(())
}
