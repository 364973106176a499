//! The kubelet's streaming endpoints on the agent — `/exec/{ns}/{pod}/{container}`,
//! `/attach/{ns}/{pod}/{container}` and `/portForward/{ns}/{pod}` — which the API server
//! proxies for `pods/{name}/exec|attach|portforward`. The runtime opens the session (CRI
//! `Exec`/`Attach`/`PortForward` give a URL on containerd's streaming server, which speaks
//! SPDY); the agent connects to it and serves the client in the client's protocol:
//! * WebSocket `v5.channel.k8s.io`/`v4.channel.k8s.io` (kubectl ≥ 1.30 exec and attach,
//!   the Python client): translated to SPDY streams ([`channels`]);
//! * WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl ≥ 1.31 port-forward): SPDY frames
//!   tunnelled in binary messages, piped as bytes;
//! * WebSocket port-forward in the channel protocol (kube-rs, the Python client; the ports
//!   in the query): translated to SPDY stream pairs ([`port_forward`]);
//! * a plain `Upgrade: SPDY/3.1` (older clients, kubectl's fallback): piped as bytes.

pub mod channels;
pub mod host_exec;
pub mod port_forward;
pub mod spdy;
pub mod upgrade;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::{Runtime, StreamOptions, StreamRefused, StreamRequest};
use channels::normal_close;

/// The port-forward tunnelling subprotocol, and what the agent asks the runtime for.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The streaming routes over `runtime`.
pub fn router(runtime: Arc<dyn Runtime>) -> Router {
    Router::new()
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .route("/attach/{ns}/{pod}/{container}", get(attach).post(attach))
        .route("/portForward/{ns}/{pod}", get(port_forward).post(port_forward))
        .with_state(runtime)
}

/// The query of an exec, attach or port-forward request (pure): repeated `command`s,
/// the stream flags (`true`/`1`), repeated or comma-separated `ports`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub command: Vec<String>,
    pub options: StreamOptions,
    pub ports: Vec<i32>,
}

impl SessionQuery {
    pub fn parse(raw: Option<&str>) -> Result<SessionQuery, String> {
        let mut q = SessionQuery::default();
        let on = |v: &str| matches!(v, "1" | "true" | "True");
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "command" => q.command.push(v.into_owned()),
                "stdin" | "input" => q.options.stdin = on(&v),
                "stdout" | "output" => q.options.stdout = on(&v),
                "stderr" | "error" => q.options.stderr = on(&v),
                "tty" => q.options.tty = on(&v),
                "ports" => {
                    for p in v.split(',').filter(|p| !p.is_empty()) {
                        let port: i32 = p.trim().parse().map_err(|_| format!("invalid port {p:?}"))?;
                        if !(1..=65535).contains(&port) {
                            return Err(format!("port {port} must be between 1 and 65535"));
                        }
                        q.ports.push(port);
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The kubelet's checks of an exec or attach request.
    fn check_streams(&self) -> Result<(), String> {
        let o = self.options;
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(())
    }
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// The query of an exec or attach request, checked (Err: why it is a bad request).
fn stream_query(raw: Option<&str>) -> Result<SessionQuery, String> {
    SessionQuery::parse(raw).and_then(|q| q.check_streams().map(|_| q))
}

async fn exec(
    State(runtime): State<Arc<dyn Runtime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let q = match stream_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, e),
    };
    if q.command.is_empty() {
        return refusal(StatusCode::BAD_REQUEST, "you must specify a command");
    }
    let options = q.options;
    match runtime.host_exec(&namespace, &pod, &container) {
        Ok(Some(target)) => return host_exec_session(target, q.command, options, req).await,
        Ok(None) => {}
        Err(StreamRefused::NotFound(m)) => return refusal(StatusCode::NOT_FOUND, m),
        Err(StreamRefused::Failed(m)) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
    let request = StreamRequest::Exec { namespace, pod, container, command: q.command, options };
    session(runtime, request, options, req).await
}

/// An exec the agent runs itself (a host-process container): WebSocket clients only.
async fn host_exec_session(
    target: crate::prober::ExecTarget,
    command: Vec<String>,
    options: StreamOptions,
    req: Request,
) -> Response {
    if upgrade_kind(req.headers()) != Some("websocket") {
        return refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "exec into a host-process container needs a WebSocket client ({:?})",
                channels::WEBSOCKET_PROTOCOLS
            ),
        );
    }
    let (mut parts, _) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws.protocols(channels::WEBSOCKET_PROTOCOLS),
        Err(rejection) => return rejection.into_response(),
    };
    let Some(selected) = ws.selected_protocol().and_then(|p| p.to_str().ok()).map(str::to_string) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            format!("no supported channel protocol; offer one of {:?}", channels::WEBSOCKET_PROTOCOLS),
        );
    };
    tracing::info!(?command, tty = options.tty, "exec in a host-process container");
    let v5 = selected == channels::WEBSOCKET_PROTOCOLS[0];
    ws.on_upgrade(move |socket| host_exec::serve(socket, v5, command, target, options))
}

async fn attach(
    State(runtime): State<Arc<dyn Runtime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let q = match stream_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, e),
    };
    let options = q.options;
    session(runtime, StreamRequest::Attach { namespace, pod, container, options }, options, req).await
}

async fn port_forward(
    State(runtime): State<Arc<dyn Runtime>>,
    Path((namespace, pod)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let q = match SessionQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, e),
    };
    session(runtime, StreamRequest::PortForward { namespace, pod, ports: q.ports }, StreamOptions::default(), req).await
}

fn upgrade_kind(headers: &HeaderMap) -> Option<&'static str> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?.to_ascii_lowercase();
    if upgrade == "websocket" {
        Some("websocket")
    } else if upgrade.starts_with("spdy/3.1") {
        Some("spdy")
    } else {
        None
    }
}

/// The stream protocols a SPDY client offers (`X-Stream-Protocol-Version`, repeated or
/// comma-separated).
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Opens the runtime's side, then upgrades the client's connection and joins the two.
async fn session(runtime: Arc<dyn Runtime>, request: StreamRequest, options: StreamOptions, req: Request) -> Response {
    let Some(kind) = upgrade_kind(req.headers()) else {
        return refusal(StatusCode::BAD_REQUEST, "Upgrade request required");
    };
    let forwarded_ports: Option<Vec<u16>> = match &request {
        StreamRequest::PortForward { ports, .. } => Some(ports.iter().map(|p| *p as u16).collect()),
        _ => None,
    };
    let what = format!("{request:?}");
    let url = match runtime.stream_url(request).await {
        Ok(url) => url,
        Err(StreamRefused::NotFound(m)) => return refusal(StatusCode::NOT_FOUND, m),
        Err(StreamRefused::Failed(m)) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    tracing::info!(session = %what, via = kind, "opening a streaming session");
    if kind == "spdy" {
        return spdy_passthrough(url, req).await;
    }
    let (mut parts, _) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if let Some(ports) = forwarded_ports {
        let known = [PORT_FORWARD_TUNNEL, port_forward::WEBSOCKET_PROTOCOLS[0], port_forward::WEBSOCKET_PROTOCOLS[1]];
        let ws = ws.protocols(known);
        let Some(selected) = ws.selected_protocol().and_then(|p| p.to_str().ok()).map(str::to_string) else {
            return refusal(StatusCode::BAD_REQUEST, format!("port-forward needs one of the subprotocols {known:?}"));
        };
        if selected != PORT_FORWARD_TUNNEL && ports.is_empty() {
            return refusal(StatusCode::BAD_REQUEST, "query parameter \"ports\" is required");
        }
        let upstream = match upgrade::connect(&url, &[PORT_FORWARD_PROTOCOL.to_string()]).await {
            Ok(u) => u,
            Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, e.message),
        };
        if selected == PORT_FORWARD_TUNNEL {
            return ws.on_upgrade(move |socket| tunnel(socket, upstream.stream));
        }
        return ws.on_upgrade(move |socket| port_forward::bridge(socket, upstream, ports));
    }
    let ws = ws.protocols(channels::WEBSOCKET_PROTOCOLS);
    let Some(selected) = ws.selected_protocol().and_then(|p| p.to_str().ok()).map(str::to_string) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            format!("no supported channel protocol; offer one of {:?}", channels::WEBSOCKET_PROTOCOLS),
        );
    };
    let upstream = match upgrade::connect(&url, &[channels::SPDY_PROTOCOL.to_string()]).await {
        Ok(u) => u,
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, e.message),
    };
    let v5 = selected == channels::WEBSOCKET_PROTOCOLS[0];
    ws.on_upgrade(move |socket| channels::bridge(socket, v5, upstream, options))
}

/// Pipes a SPDY client's upgraded connection to the runtime's, byte for byte.
async fn spdy_passthrough(url: String, mut req: Request) -> Response {
    let protocols = offered_protocols(req.headers());
    let upstream = match upgrade::connect(&url, &protocols).await {
        Ok(u) => u,
        Err(e) => {
            let status = e.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
            return refusal(status, e.message);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let protocol = upstream.protocol.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(client) => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                let mut runtime_side = upstream.stream;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut runtime_side).await;
            }
            Err(e) => tracing::warn!(error = %e, "the SPDY client's upgrade failed"),
        }
    });
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert("x-stream-protocol-version", v);
    }
    response
}

/// Pipes a WebSocket tunnel's binary messages to and from the runtime's SPDY connection.
async fn tunnel(socket: WebSocket, upstream: tokio::net::TcpStream) {
    let (mut to_client, mut from_client) = socket.split();
    let (mut read, mut write) = upstream.into_split();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            msg = from_client.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if write.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            n = read.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.send(Message::Binary(chunk[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    let _ = to_client.send(normal_close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_queries_parse() {
        let q =
            SessionQuery::parse(Some("command=sh&command=-c&command=echo+hi&stdin=true&stdout=1&tty=true")).unwrap();
        assert_eq!(q.command, vec!["sh", "-c", "echo hi"]);
        assert_eq!(q.options, StreamOptions { stdin: true, stdout: true, stderr: false, tty: true });
        assert_eq!(SessionQuery::parse(Some("ports=8080,9090&ports=1")).unwrap().ports, vec![8080, 9090, 1]);
        assert!(SessionQuery::parse(Some("ports=0")).unwrap_err().contains("between 1 and 65535"));
        assert!(SessionQuery::parse(Some("ports=x")).is_err());
        assert!(SessionQuery::parse(None).unwrap().check_streams().unwrap_err().contains("at least 1 of"));
    }

    #[test]
    fn spdy_clients_offer_protocols_in_repeated_or_listed_headers() {
        let mut h = HeaderMap::new();
        h.append("X-Stream-Protocol-Version", HeaderValue::from_static("v4.channel.k8s.io"));
        h.append("X-Stream-Protocol-Version", HeaderValue::from_static("v3.channel.k8s.io, v2.channel.k8s.io"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(offered_protocols(&h), vec!["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"]);
        assert_eq!(upgrade_kind(&h), Some("spdy"));
    }
}
