//! Cluster DNS (CoreDNS's job), in the agent: every node serves the cluster domain on its
//! InternalIP, port 53 (UDP and TCP); the `kube-dns` Service in `kube-system` sends each
//! pod's queries to its own node's server (`internalTrafficPolicy: Local`; berth-control's
//! `cluster_dns` leader task keeps the Service and its endpoints), and pods get the
//! kubelet's resolv.conf ([`resolv`]).
//!
//! * [`zone`] — the names, decided purely from Services and EndpointSlices;
//! * [`server`] — the hickory-server request handler: the zone, else upstream;
//! * [`run_dns`] — binds the sockets and rebuilds the zone on every change of the node's
//!   [`ServiceView`] (changes within [`DEBOUNCE`] together).

pub mod resolv;
pub mod server;
pub mod zone;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;
use hickory_server::Server;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio_util::sync::CancellationToken;

use crate::service_view::ServiceView;

/// Changes arriving within this window are rebuilt together.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How soon binding the DNS port is tried again.
const BIND_RETRY: Duration = Duration::from_secs(10);
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The node's DNS server.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The cluster domain (`--cluster-domain`).
    pub domain: String,
    /// Where to listen (the node's InternalIP, port `--dns-port`).
    pub listen: SocketAddr,
    /// The resolvers other names are forwarded to (the nameservers of `--resolv-conf`).
    pub upstream: Vec<SocketAddr>,
}

/// The zone of the view's current Services and EndpointSlices.
fn zone_of(view: &ServiceView, domain: &Name) -> zone::Zone {
    let (services, slices) = view.snapshot();
    let services: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
    let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
    zone::Zone::build(domain, &services, &slices)
}

/// Binds UDP and TCP on `listen` into a server with `handler` (serving until dropped or
/// shut down).
pub async fn bind(listen: SocketAddr, handler: server::ClusterDns) -> std::io::Result<Server<server::ClusterDns>> {
    let udp = tokio::net::UdpSocket::bind(listen).await?;
    let tcp = tokio::net::TcpListener::bind(listen).await?;
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE, 64);
    Ok(server)
}

/// Serves cluster DNS until `cancel`. The sockets are bound once the view is listed (no
/// empty zone is ever served); a port in use is retried every [`BIND_RETRY`].
pub async fn run_dns(view: ServiceView, settings: DnsSettings, cancel: CancellationToken) {
    let domain = match Name::from_ascii(&settings.domain) {
        Ok(mut d) => {
            d.set_fqdn(true);
            d
        }
        Err(e) => {
            tracing::error!(domain = %settings.domain, error = %e, "not a DNS name; cluster DNS is off");
            return;
        }
    };
    let mut changes = view.changes();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = view.wait_until_ready() => {}
    }
    let zone = Arc::new(RwLock::new(Arc::new(zone_of(&view, &domain))));
    let mut server = loop {
        let handler = match server::ClusterDns::new(zone.clone(), &settings.upstream) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cluster DNS: the upstream resolver could not be made; cluster DNS is off");
                return;
            }
        };
        match bind(settings.listen, handler).await {
            Ok(server) => break server,
            Err(e) => tracing::error!(listen = %settings.listen, error = %e, "cluster DNS cannot listen; trying again"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(BIND_RETRY) => {}
        }
    };
    tracing::info!(listen = %settings.listen, domain = %domain, upstream = ?settings.upstream, "cluster DNS serving");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(DEBOUNCE) => {}
                }
                let started = Instant::now();
                let fresh = Arc::new(zone_of(&view, &domain));
                *zone.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                tracing::debug!(took = ?started.elapsed(), "cluster DNS zone rebuilt");
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), server.shutdown_gracefully()).await;
}
