//! Serving a router over TCP with the connection timeouts `axum::serve` lacks.
//!
//! Without them a client could hold connections open forever: an idle keep-alive
//! connection, or one that sends half a request head (slowloris). As Go's `http.Server`
//! under kube-apiserver (`ReadHeaderTimeout`, `IdleTimeout`), each connection here has:
//! - a header-read timeout: once the first byte of a request head arrives, the whole head
//!   must follow within [`ConnTimeouts::header_read`], else the connection is dropped;
//! - an idle timeout: a connection with no request in flight and nothing arriving for
//!   [`ConnTimeouts::idle`] is closed gracefully;
//! - HTTP/2 keep-alive pings, so dead h2 peers are noticed.
//!
//! A request is "in flight" from the moment hyper hands it to the router until its
//! response body is finished or dropped, so long responses (watches, log follows) are
//! never cut by these timeouts. The request *body* timeout lives with the body reader
//! in the API layer, which knows the size limit too.
//!
//! A port is plain HTTP (`--insecure` only) or TLS ([`Transport`]); the TLS handshake has
//! the head's time limit, and each request carries what its connection says about the
//! caller (`api::authn::Connection`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use berth_proto::tls::ClientCertCheck;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::authn::Connection;

/// Per-connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    /// From the first byte of a request head to its end.
    pub header_read: Duration,
    /// A connection with nothing in flight and nothing arriving is closed after this.
    pub idle: Duration,
    /// HTTP/2: ping an idle peer this often, and give up if a ping is unanswered for as long.
    pub h2_keep_alive: Duration,
}

impl Default for ConnTimeouts {
    fn default() -> Self {
        // Go's net/http defaults as kube-apiserver sets them: IdleTimeout 90 s; its
        // ReadHeaderTimeout is 32 s, shorter here since no legitimate client pauses
        // mid-head on a LAN.
        ConnTimeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(90),
            h2_keep_alive: Duration::from_secs(30),
        }
    }
}

/// What one connection is doing, shared by its IO wrapper, its service and its watchdog.
struct Phase {
    in_flight: usize,
    /// When the last request finished (or the connection opened).
    idle_since: Instant,
    /// When the first byte of the next request head arrived, while nothing was in flight.
    head_since: Option<Instant>,
    /// HTTP/2 (prior knowledge): frames arrive between requests, so no head timer.
    h2: bool,
    seen_bytes: bool,
}

struct ConnState {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnState {
    fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            phase: Mutex::new(Phase {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
                h2: false,
                seen_bytes: false,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self, bytes: &[u8]) {
        let mut p = self.lock();
        if !p.seen_bytes {
            p.seen_bytes = true;
            p.h2 = bytes.starts_with(b"PRI ");
        }
        if !p.h2 && p.in_flight == 0 && p.head_since.is_none() {
            p.head_since = Some(Instant::now());
            drop(p);
            self.changed.notify_one();
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut p = self.lock();
        p.in_flight += 1;
        p.head_since = None;
        drop(p);
        self.changed.notify_one();
        InFlight(self.clone())
    }
}

/// One request in flight; dropped when its response body is done (or abandoned).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.lock();
        p.in_flight -= 1;
        if p.in_flight == 0 {
            p.idle_since = Instant::now();
        }
        drop(p);
        self.0.changed.notify_one();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Expired {
    Idle,
    HeaderRead,
}

/// Resolves when the connection has been idle, or reading a head, for too long.
async fn watchdog(state: &ConnState, t: ConnTimeouts) -> Expired {
    loop {
        let changed = state.changed.notified();
        let deadline = {
            let p = state.lock();
            match (p.in_flight, p.head_since) {
                (0, Some(since)) => Some((since + t.header_read, Expired::HeaderRead)),
                (0, None) => Some((p.idle_since + t.idle, Expired::Idle)),
                _ => None,
            }
        };
        match deadline {
            Some((at, why)) if at <= Instant::now() => return why,
            Some((at, _)) => {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => changed.await,
        }
    }
}

/// A stream (TCP, or the plaintext side of TLS) that reports reads to its connection's state.
struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a port carries HTTP: in the clear (`--insecure`), or TLS with client certificates
/// checked against the cluster CA (see `api::authn`).
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls { acceptor: tokio_rustls::TlsAcceptor, clients: Arc<ClientCertCheck> },
}

impl Transport {
    pub fn tls(config: Arc<rustls::ServerConfig>, clients: Arc<ClientCertCheck>) -> Transport {
        Transport::Tls { acceptor: tokio_rustls::TlsAcceptor::from(config), clients }
    }
}

/// Serves `router` on `listener` until `shutdown`, then waits for open connections to
/// finish (watches end on the same token).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    timeouts: ConnTimeouts,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The head timer is the watchdog's (hyper's own also runs while idle, which would
    // close keep-alive connections after the short head timeout).
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeouts.h2_keep_alive))
        .keep_alive_timeout(timeouts.h2_keep_alive);
    // Every connection task holds a sender; when all are gone, `recv` returns None.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnectionTask {
            builder: builder.clone(),
            router: router.clone(),
            timeouts,
            shutdown: shutdown.clone(),
            _open: open_tx.clone(),
        };
        let transport = transport.clone();
        tokio::spawn(async move {
            match transport {
                Transport::Plain => conn.run(stream, Connection::Insecure).await,
                Transport::Tls { acceptor, clients } => {
                    // The handshake gets the head's time limit: a peer that connects and
                    // sends nothing is dropped as a slow head would be.
                    let tls = match tokio::time::timeout(timeouts.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake not finished in time");
                            return;
                        }
                    };
                    let cert = tls.get_ref().1.peer_certificates().map(|chain| clients.user(chain));
                    if let Some(Err(why)) = &cert {
                        tracing::info!(%peer, reason = %why, "client certificate refused");
                    }
                    conn.run(tls, Connection::Tls { cert }).await
                }
            }
        });
    }
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// One accepted connection, served until it ends, idles out or the server stops.
struct ConnectionTask {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    timeouts: ConnTimeouts,
    shutdown: CancellationToken,
    /// Held while the connection is open (see `serve`).
    _open: tokio::sync::mpsc::Sender<()>,
}

impl ConnectionTask {
    async fn run<S>(self, stream: S, caller: Connection)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let ConnectionTask { builder, router, timeouts, shutdown, _open } = self;
        let state = ConnState::new();
        let io = TokioIo::new(Watched { inner: stream, state: state.clone() });
        let service = {
            let state = state.clone();
            tower::service_fn(move |mut req: hyper::Request<Incoming>| {
                let in_flight = state.begin();
                let router = router.clone();
                req.extensions_mut().insert(caller.clone());
                async move {
                    let resp = router.oneshot(req.map(Body::new)).await?;
                    Ok::<_, Infallible>(resp.map(|inner| Body::new(TrackedBody { inner, _in_flight: in_flight })))
                }
            })
        };
        let service = hyper_util::service::TowerToHyperService::new(service);
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = shutdown.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                why = watchdog(&state, timeouts), if !closing => match why {
                    Expired::Idle => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    // Half a head: nothing to answer, drop the socket.
                    Expired::HeaderRead => {
                        tracing::debug!("request head not received in time: closing the connection");
                        return;
                    }
                },
            }
        }
    }
}
