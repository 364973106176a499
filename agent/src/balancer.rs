//! The agent's client-side load balancer: how one node keeps talking to the control plane
//! while any minority of servers is down, paused or cut off (k3s's agent load balancer,
//! in-process). Every API client of the agent dials a local TCP listener; each accepted
//! connection is spliced to the *current* server, and
//!
//! - a dial that fails (refused, timed out) moves on to the next server at once, which
//!   becomes current: a killed server costs the next request one refused connect;
//! - a health prober asks every server's `/readyz` every [`PROBE_EVERY`]; when the current
//!   one fails [`UNHEALTHY_AFTER`] probes in a row (paused, partitioned, or in a minority
//!   without a leader) and another answers, that one becomes current and every connection
//!   still open to the old one is closed, so a watch stalled on it ends and kube-rs resumes
//!   it — from its last resourceVersion — through the new server.
//!
//! It works below HTTP, so it carries HTTP/1.1, HTTP/2 and TLS alike (with TLS, clients
//! verify the server's certificate by name, not by the loopback address they dial). The
//! decisions ([`dial_order`], [`Upstreams::after_probe`]) are pure; sockets stay at the edges.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::error::{AgentError, Result};

/// How often every server's `/readyz` is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one probe (connect + answer) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Failed probes in a row after which a server counts as unhealthy.
pub const UNHEALTHY_AFTER: u32 = 2;
/// How long one dial to a server may take before the next one is tried.
pub const DIAL_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often the server list is refreshed from the identity Leases.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(10);
/// How long one discovery listing may take.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// One API server as the balancer tracks it.
#[derive(Debug)]
struct Upstream {
    url: String,
    /// `host:port` to dial.
    authority: String,
    /// Probes (or dials) failed in a row.
    failures: u32,
    /// Cancelled to close every connection currently spliced to this server.
    connections: CancellationToken,
}

impl Upstream {
    fn new(url: &str) -> Result<Upstream> {
        Ok(Upstream {
            url: url.to_string(),
            authority: authority(url)?,
            failures: 0,
            connections: CancellationToken::new(),
        })
    }

    fn healthy(&self) -> bool {
        self.failures < UNHEALTHY_AFTER
    }

    /// Closes every connection spliced to this server; later ones get a fresh token.
    fn close_connections(&mut self) {
        self.connections.cancel();
        self.connections = CancellationToken::new();
    }
}

/// The servers and which one is current (pure state; the I/O lives in [`Balancer`]).
#[derive(Debug)]
struct Upstreams {
    servers: Vec<Upstream>,
    current: usize,
    /// Since when the node has been without a working server: set when the current
    /// server first fails (a refused dial, a failed probe round), cleared by the first
    /// response through the server that replaced it — the outage an agent's requests see.
    outage_since: Option<Instant>,
}

/// The order in which to dial: the current server, then the healthy others (in list order
/// after the current one), then the unhealthy ones — a server marked down may be back.
fn dial_order(healthy: &[bool], current: usize) -> Vec<usize> {
    let n = healthy.len();
    let rotation: Vec<usize> = (1..n).map(|step| (current + step) % n).collect();
    let mut order = vec![current];
    order.extend(rotation.iter().copied().filter(|&i| healthy[i]));
    order.extend(rotation.iter().copied().filter(|&i| !healthy[i]));
    order
}

impl Upstreams {
    fn healthy_flags(&self) -> Vec<bool> {
        self.servers.iter().map(Upstream::healthy).collect()
    }

    /// Makes `index` current; closes what is left open to the old one.
    fn switch_to(&mut self, index: usize, why: &str) {
        if index == self.current {
            return;
        }
        let old = self.current;
        tracing::warn!(from = %self.servers[old].url, to = %self.servers[index].url, why, "API server failover");
        self.outage_since.get_or_insert_with(Instant::now);
        self.servers[old].close_connections();
        self.current = index;
    }

    /// Applies one round of probe results (`true` = answered ready), in server order. When
    /// the current server is unhealthy and another is healthy, switches to it.
    fn after_probe(&mut self, results: &[(String, bool)]) {
        for (url, ok) in results {
            if let Some(s) = self.servers.iter_mut().find(|s| &s.url == url) {
                s.failures = if *ok { 0 } else { s.failures.saturating_add(1) };
            }
        }
        if self.servers[self.current].healthy() {
            return;
        }
        self.outage_since.get_or_insert_with(Instant::now);
        let healthy = self.healthy_flags();
        if let Some(&next) = dial_order(&healthy, self.current).iter().skip(1).find(|&&i| healthy[i]) {
            self.switch_to(next, "current server failed its readiness probes");
        }
    }

    /// Replaces the server list (discovery), keeping what is known about servers that
    /// stay and the current one when it stays. An empty list changes nothing.
    fn set_servers(&mut self, urls: &[String]) -> Result<()> {
        if urls.is_empty() {
            return Ok(());
        }
        let current_url = self.servers[self.current].url.clone();
        let mut old: Vec<Upstream> = std::mem::take(&mut self.servers);
        let mut next = Vec::with_capacity(urls.len());
        for url in urls {
            match old.iter().position(|s| &s.url == url) {
                Some(i) => next.push(old.swap_remove(i)),
                None => next.push(Upstream::new(url)?),
            }
        }
        // Servers no longer listed: whatever is still open to them goes.
        for mut gone in old {
            gone.close_connections();
        }
        self.current = next.iter().position(|s| s.url == current_url).unwrap_or(0);
        self.servers = next;
        Ok(())
    }
}

/// `host:port` of an `http(s)://` URL (port defaulting to the scheme's).
pub fn authority(url: &str) -> Result<String> {
    let bad = |why: &str| AgentError::Config { flag: "--server", message: format!("{url:?}: {why}") };
    let uri: axum::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(bad("not an http(s) URL")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(default_port)))
}

/// A running balancer: clients use [`Balancer::local_url`]; dropping the value (or
/// cancelling the token it was started with) stops it and closes every connection.
pub struct Balancer {
    state: Arc<Mutex<Upstreams>>,
    local: SocketAddr,
    scheme: String,
    stop: CancellationToken,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Balancer {
    /// Binds `127.0.0.1:0` and starts accepting and probing. `servers` must name at least
    /// one `http(s)://` URL, all with the same scheme; `https://` servers are probed over
    /// TLS with `tls` (without it, a TCP connect is all a probe can check).
    pub async fn start(
        servers: &[String],
        tls: Option<Arc<rustls::ClientConfig>>,
        cancel: &CancellationToken,
    ) -> Result<Balancer> {
        let upstreams = servers.iter().map(|u| Upstream::new(u)).collect::<Result<Vec<_>>>()?;
        let Some(first) = upstreams.first() else {
            return Err(AgentError::Config { flag: "--server", message: "no API server given".into() });
        };
        let scheme = first.url.split("://").next().unwrap_or("http").to_string();
        if let Some(other) = upstreams.iter().find(|u| !u.url.starts_with(&format!("{scheme}://"))) {
            return Err(AgentError::Config {
                flag: "--server",
                message: format!("{:?}: every server must use {scheme}://", other.url),
            });
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| AgentError::Net { what: "binding the API load balancer on 127.0.0.1", source: e })?;
        let local = listener
            .local_addr()
            .map_err(|e| AgentError::Net { what: "reading the API load balancer's address", source: e })?;
        let state = Arc::new(Mutex::new(Upstreams { servers: upstreams, current: 0, outage_since: None }));
        let stop = cancel.child_token();
        tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        let prober = match (scheme.as_str(), tls) {
            ("http", _) => Prober::Http,
            (_, Some(config)) => Prober::Https(tokio_rustls::TlsConnector::from(config)),
            (_, None) => Prober::Connect,
        };
        tokio::spawn(probe_loop(state.clone(), Arc::new(prober), stop.clone()));
        tracing::info!(%local, servers = ?servers, "API load balancer started");
        Ok(Balancer { state, local, scheme, stop })
    }

    /// The URL API clients use: the local listener, with the servers' scheme.
    pub fn local_url(&self) -> String {
        format!("{}://{}", self.scheme, self.local)
    }

    /// The server new connections go to now.
    pub fn current(&self) -> String {
        let s = self.state.lock().expect("balancer state");
        s.servers[s.current].url.clone()
    }

    /// Every server known, in dial-rotation order.
    pub fn servers(&self) -> Vec<String> {
        self.state.lock().expect("balancer state").servers.iter().map(|s| s.url.clone()).collect()
    }

    /// Closes every connection it carries, to whichever server (after the node's client
    /// certificate changed: the next connections handshake with the new one).
    pub fn close_all_connections(&self) {
        for server in &mut self.state.lock().expect("balancer state").servers {
            server.close_connections();
        }
    }

    /// Replaces the server list (from discovery). URLs with another scheme are ignored.
    pub fn set_servers(&self, urls: &[String]) -> Result<()> {
        let prefix = format!("{}://", self.scheme);
        let urls: Vec<String> = urls.iter().filter(|u| u.starts_with(&prefix)).cloned().collect();
        self.state.lock().expect("balancer state").set_servers(&urls)
    }
}

/// Keeps the balancer's list current until `cancel`: every [`DISCOVER_EVERY`] the servers'
/// identity Leases are read through `client` (so through the balancer itself) and the list
/// becomes the `configured` servers plus every server whose lease is fresh. Configured ones
/// stay even when their lease is stale: they are what the operator said to use, and a
/// server that is down simply fails its dials and probes.
pub async fn keep_servers_current(
    balancer: Arc<Balancer>,
    configured: Vec<String>,
    client: kube::Client,
    cancel: CancellationToken,
) {
    use berth_proto::identity::{fresh_api_servers, identity_selector, IDENTITY_NAMESPACE};
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client, IDENTITY_NAMESPACE);
    let params = kube::api::ListParams::default().labels(&identity_selector());
    loop {
        let listed = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(DISCOVER_TIMEOUT, leases.list(&params)) => r,
        };
        match listed {
            Ok(Ok(list)) => {
                let mut servers = configured.clone();
                for url in fresh_api_servers(&list.items, k8s_openapi::jiff::Timestamp::now()) {
                    if !servers.contains(&url) {
                        servers.push(url);
                    }
                }
                if servers != balancer.servers() {
                    tracing::info!(?servers, "API servers discovered");
                    if let Err(e) = balancer.set_servers(&servers) {
                        tracing::warn!(error = %e, "ignoring a discovered server list");
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "listing the servers' identity leases"),
            Err(_) => tracing::debug!("listing the servers' identity leases timed out"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<Upstreams>>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((client, _)) => {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve_connection(client, state.clone(), stop.clone()));
            }
            // Out of file descriptors and the like: pause rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "API load balancer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Dials the servers in [`dial_order`] and splices `client` to the first that accepts.
async fn serve_connection(client: TcpStream, state: Arc<Mutex<Upstreams>>, stop: CancellationToken) {
    let plan: Vec<(usize, String, String)> = {
        let s = state.lock().expect("balancer state");
        dial_order(&s.healthy_flags(), s.current)
            .into_iter()
            .map(|i| (i, s.servers[i].url.clone(), s.servers[i].authority.clone()))
            .collect()
    };
    for (index, url, authority) in plan {
        let dialed = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&authority)).await;
        let upstream = match dialed {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(server = %url, error = %e, "dial failed; trying the next server");
                mark_down(&state, &url);
                continue;
            }
            Err(_) => {
                tracing::debug!(server = %url, "dial timed out; trying the next server");
                mark_down(&state, &url);
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        let closed = {
            let mut s = state.lock().expect("balancer state");
            // The list may have changed while dialling: find the server by URL again.
            let Some(now_index) = s.servers.iter().position(|u| u.url == url) else { return };
            s.servers[now_index].failures = 0;
            if now_index != s.current {
                let why =
                    if index == s.current { "current server changed" } else { "dial to the current server failed" };
                s.switch_to(now_index, why);
            }
            s.servers[now_index].connections.clone()
        };
        let first_response = || {
            let mut s = state.lock().expect("balancer state");
            if s.servers[s.current].url == url {
                if let Some(since) = s.outage_since.take() {
                    let outage_ms = since.elapsed().as_millis() as u64;
                    tracing::info!(server = %url, outage_ms, "first response through the new API server");
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = closed.cancelled() => {}
            _ = splice(client, upstream, first_response) => {}
        }
        return;
    }
    tracing::warn!("no API server accepted a connection");
}

/// Copies bytes both ways until either side is done, calling `on_first_response` when the
/// server sends its first bytes (the first response through a new server ends an outage).
async fn splice(client: TcpStream, upstream: TcpStream, on_first_response: impl FnOnce()) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    // Done when the server is: a client that half-closes still gets every response, and
    // a server that closes ends the client's connection.
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
        std::future::pending::<()>().await
    };
    let responses = async {
        let mut first = vec![0u8; 16 * 1024];
        let n = match upstream_read.read(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        on_first_response();
        if client_write.write_all(&first[..n]).await.is_ok() {
            let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
    }
}

fn mark_down(state: &Mutex<Upstreams>, url: &str) {
    let mut s = state.lock().expect("balancer state");
    if let Some(u) = s.servers.iter_mut().find(|u| u.url == url) {
        u.failures = UNHEALTHY_AFTER;
    }
    if s.servers[s.current].url == url {
        s.outage_since.get_or_insert_with(Instant::now);
    }
}

/// How a server's readiness is probed.
enum Prober {
    /// `GET /readyz` in the clear.
    Http,
    /// `GET /readyz` over TLS (anonymous callers may: kube-apiserver's public paths), the
    /// server checked as `kubernetes`, the name every Berth server's certificate carries.
    Https(tokio_rustls::TlsConnector),
    /// A TCP connect (https without a CA to check the server with).
    Connect,
}

async fn probe_loop(state: Arc<Mutex<Upstreams>>, prober: Arc<Prober>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let targets: Vec<(String, String)> = {
            let s = state.lock().expect("balancer state");
            s.servers.iter().map(|u| (u.url.clone(), u.authority.clone())).collect()
        };
        let probes = targets.into_iter().map(|(url, authority)| {
            let prober = prober.clone();
            async move {
                let ok = tokio::time::timeout(PROBE_TIMEOUT, probe(&authority, &prober)).await.unwrap_or(false);
                (url, ok)
            }
        });
        let results = futures::future::join_all(probes).await;
        state.lock().expect("balancer state").after_probe(&results);
    }
}

/// One readiness probe: `GET /readyz` must answer 200 (a server without a Raft leader
/// answers 500; a paused one does not answer at all, though the kernel still accepts its
/// connections).
async fn probe(authority: &str, prober: &Prober) -> bool {
    let Ok(stream) = TcpStream::connect(authority).await else { return false };
    match prober {
        Prober::Connect => true,
        Prober::Http => ready(stream, authority).await,
        Prober::Https(connector) => {
            let name = rustls::pki_types::ServerName::try_from("kubernetes").expect("a DNS name");
            match connector.connect(name, stream).await {
                Ok(tls) => ready(tls, authority).await,
                Err(_) => false,
            }
        }
    }
}

async fn ready<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, authority: &str) -> bool {
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(urls: &[&str]) -> Upstreams {
        Upstreams { servers: urls.iter().map(|u| Upstream::new(u).unwrap()).collect(), current: 0, outage_since: None }
    }

    #[test]
    fn dial_order_prefers_current_then_healthy() {
        assert_eq!(dial_order(&[true, true, true], 0), vec![0, 1, 2]);
        assert_eq!(dial_order(&[true, false, true], 0), vec![0, 2, 1]);
        assert_eq!(dial_order(&[true, true, false], 1), vec![1, 0, 2]);
        assert_eq!(dial_order(&[false, false, true], 1), vec![1, 2, 0]);
        assert_eq!(dial_order(&[true], 0), vec![0]);
    }

    #[test]
    fn authority_defaults_the_port() {
        assert_eq!(authority("http://127.0.0.1:6443").unwrap(), "127.0.0.1:6443");
        assert_eq!(authority("https://api.example").unwrap(), "api.example:443");
        assert_eq!(authority("http://h").unwrap(), "h:80");
        assert!(authority("ftp://h").unwrap_err().to_string().contains("not an http(s) URL"));
    }

    #[test]
    fn probes_move_off_an_unhealthy_current_server_and_close_its_connections() {
        let mut u = upstreams(&["http://a:1", "http://b:1", "http://c:1"]);
        let conns = u.servers[0].connections.clone();
        let round =
            |a, b, c| vec![("http://a:1".to_string(), a), ("http://b:1".to_string(), b), ("http://c:1".to_string(), c)];
        u.after_probe(&round(false, false, true));
        assert_eq!(u.current, 0, "one failed probe is not enough");
        u.after_probe(&round(false, false, true));
        assert_eq!(u.current, 2, "b failed too: c is the healthy one");
        assert!(conns.is_cancelled());
        // Nothing healthy elsewhere: stay.
        u.after_probe(&round(false, false, false));
        u.after_probe(&round(false, false, false));
        assert_eq!(u.current, 2);
    }

    #[test]
    fn set_servers_keeps_the_current_one_and_closes_removed_ones() {
        let mut u = upstreams(&["http://a:1", "http://b:1"]);
        u.current = 1;
        let a_conns = u.servers[0].connections.clone();
        u.set_servers(&["http://c:1".into(), "http://b:1".into()]).unwrap();
        assert_eq!(u.servers[u.current].url, "http://b:1");
        assert!(a_conns.is_cancelled());
        u.set_servers(&[]).unwrap();
        assert_eq!(u.servers.len(), 2);
        assert!(u.set_servers(&["nope".into()]).is_err());
    }

    #[tokio::test]
    async fn connections_fail_over_to_the_server_that_answers() {
        // "a" refuses (a port nothing listens on); "b" is a listener that echoes a byte.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_url = format!("http://{}", live.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = live.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                    }
                });
            }
        });
        let cancel = CancellationToken::new();
        let lb = Balancer::start(&[dead_url.clone(), live_url.clone()], None, &cancel).await.unwrap();
        let local = lb.local_url().trim_start_matches("http://").to_string();
        let mut s = TcpStream::connect(&local).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await.unwrap().unwrap();
        assert_eq!(&b, b"x");
        assert_eq!(lb.current(), live_url);
        cancel.cancel();
    }
}
