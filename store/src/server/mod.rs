//! Serving a member: the client port (etcd gRPC + `/metrics`, `/health`, `/version` over
//! HTTP/1) here, and the peer port in [`peer`]. Servers take an already-bound listener and a
//! shutdown token (mini-redis style), so tests can bind port 0 and stop servers
//! deterministically.
//!
//! Servers sit above the node: they call the in-process [`Store`] handle, and the node never
//! calls them (starting a whole member, node plus peer server, is [`peer`]'s
//! `StoreNode::start`).

pub mod peer;
pub mod tls;

use std::time::Duration;

use axum::routing::get;
use berth_proto::etcdserverpb::cluster_server::ClusterServer;
use berth_proto::etcdserverpb::kv_server::KvServer;
use berth_proto::etcdserverpb::lease_server::LeaseServer;
use berth_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use berth_proto::etcdserverpb::watch_server::WatchServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use futures::StreamExt;

use crate::error::{Result, StoreError};
use crate::etcd::{ClusterService, KvService, LeaseService, MaintenanceService, WatchService};
use crate::idle::{IdleTimeout, CLIENT_IDLE_TIMEOUT};
use crate::node::{Store, ETCD_API_VERSION};

/// etcd's gRPC limit for client requests (max request bytes plus overhead).
const MAX_CLIENT_MESSAGE: usize = 2 * 1024 * 1024;

/// Accepted connections with Nagle off: tonic's own `tcp_nodelay` applies only to sockets
/// it binds itself, and a delayed small response costs a delayed-ACK timeout (~40 ms).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Refreshes the Raft-state gauges and renders every metric.
pub fn render_metrics(node: &Store) -> String {
    let m = node.metrics();
    {
        let r = node.raft().metrics().borrow().clone();
        m.raft_term.set(r.current_term as i64);
        m.set_leader(r.current_leader);
        m.is_leader.set(i64::from(r.current_leader == Some(node.id)));
        m.has_leader.set(i64::from(node.leader().is_some()));
        m.applied_index.set(r.last_applied.map_or(0, |l| l.index) as i64);
        m.last_log_index.set(r.last_log_index.unwrap_or(0) as i64);
    }
    m.stopped.set(i64::from(node.stopped_reason().is_some()));
    m.commit_index.set(node.committed_index() as i64);
    m.db_size_bytes.set(node.engine().size_bytes() as i64);
    m.mvcc_revision.set(node.revision());
    m.mvcc_compact_revision.set(node.compacted_revision());
    let (watchers, unsynced) = node.hub().watcher_count();
    m.watchers.set(watchers as i64);
    m.unsynced_watchers.set(unsynced as i64);
    m.watch_streams.set(node.hub().stream_count() as i64);
    m.slow_watcher_moves.set(node.hub().slow_watcher_moves.load(std::sync::atomic::Ordering::Relaxed) as i64);
    m.leases.set(node.lease_leases().leases.len() as i64);
    m.encode()
}

/// The client-port routes: etcd services, gRPC health, and the HTTP endpoints.
pub fn client_routes(node: Store) -> Routes {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        reporter.set_service_status("etcdserverpb.KV", tonic_health::ServingStatus::Serving).await;
    });
    let metrics_node = node.clone();
    let health_node = node.clone();
    let http = axum::Router::new()
        .route("/metrics", get(move || {
            let node = metrics_node.clone();
            async move {
                ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render_metrics(&node))
            }
        }))
        .route("/health", get(move || {
            let node = health_node.clone();
            async move {
                let health = node.health();
                let reason = health.as_ref().err().cloned().unwrap_or_default();
                let body = serde_json::json!({"health": health.is_ok().to_string(), "reason": reason});
                let code = if health.is_ok() { http::StatusCode::OK } else { http::StatusCode::SERVICE_UNAVAILABLE };
                (code, axum::Json(body))
            }
        }))
        .route("/version", get(|| async {
            axum::Json(serde_json::json!({"etcdserver": ETCD_API_VERSION, "etcdcluster": ETCD_API_VERSION, "berth": env!("CARGO_PKG_VERSION")}))
        }));
    let mut routes = Routes::from(http);
    routes = routes
        .add_service(health_service)
        .add_service(KvServer::new(KvService { node: node.clone() }).max_decoding_message_size(MAX_CLIENT_MESSAGE))
        .add_service(
            WatchServer::new(WatchService { node: node.clone() }).max_decoding_message_size(MAX_CLIENT_MESSAGE),
        )
        .add_service(LeaseServer::new(LeaseService { node: node.clone() }))
        .add_service(ClusterServer::new(ClusterService { node: node.clone() }))
        .add_service(MaintenanceServer::new(MaintenanceService { node }));
    routes
}

/// tonic refuses an over-limit request with `OutOfRange` ("decoded message length too
/// large"); etcd's gRPC server says `ResourceExhausted` ("grpc: received message larger than
/// max"), and clients branch on the code. Rewrites the first into the second.
fn etcd_size_status<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let headers = resp.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        let message = format!("grpc: received message larger than max (limit {MAX_CLIENT_MESSAGE} bytes)");
        if let Ok(v) = http::HeaderValue::from_str(&message.replace(' ', "%20")) {
            headers.insert("grpc-message", v);
        }
    }
    resp
}

/// Serves the client port until `shutdown`.
pub async fn serve_client(node: Store, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    serve_client_with(node, listener, CLIENT_IDLE_TIMEOUT, shutdown).await
}

/// [`serve_client`] closing connections that send nothing for `idle` (slowloris: see
/// `idle`). The server pings HTTP/2 clients every third of that, so a healthy client,
/// even one with only a quiet watch open, always answers in time. With the member's TLS,
/// the port requires a client certificate from the etcd CA (etcd's `--client-cert-auth`).
pub async fn serve_client_with(
    node: Store,
    listener: TcpListener,
    idle: Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener.local_addr().ok();
    let tls = node.config.tls.as_ref().map(|t| t.client_port.clone());
    tracing::info!(?addr, tls = tls.is_some(), "serving etcd clients");
    let routes = client_routes(node);
    let served = match tls {
        Some(config) => {
            let connections = tls::incoming(listener, config, shutdown.clone())
                .map(move |conn| conn.map(|c| IdleTimeout::new(c, idle)));
            serve_routes(routes, connections, idle, shutdown).await
        }
        None => {
            let connections = incoming(listener).map(move |conn| conn.map(|c| IdleTimeout::new(c, idle)));
            serve_routes(routes, connections, idle, shutdown).await
        }
    };
    served.map_err(|e| StoreError::io(format!("client server on {addr:?}"), e))
}

/// Serves the client routes on `connections` (plain or TLS) until `shutdown`.
async fn serve_routes<IO>(
    routes: Routes,
    connections: impl futures::Stream<Item = std::io::Result<IO>>,
    idle: Duration,
    shutdown: CancellationToken,
) -> std::result::Result<(), tonic::transport::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
{
    tonic::transport::Server::builder()
        .accept_http1(true)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(idle / 3))
        .http2_keepalive_timeout(Some(idle / 3))
        .layer(tower::util::MapResponseLayer::new(etcd_size_status))
        .add_routes(routes)
        .serve_with_incoming_shutdown(connections, shutdown.cancelled_owned())
        .await
}
