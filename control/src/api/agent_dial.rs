//! The API server's connections to agents' ports (kubelet's): TLS presenting the
//! `apiserver-kubelet-client` certificate on a secure cluster — the agent authorizes it
//! with a SubjectAccessReview — and plain HTTP on an `--insecure` one. Used by the logs
//! proxy, exec/attach/port-forward and the usage scraper.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// How long reaching an agent (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Dials agents.
#[derive(Clone, Default)]
pub struct AgentDialer {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl AgentDialer {
    /// Dials over TLS with `config` (see `berth_proto::tls::kubelet_client_config`).
    pub fn tls(config: Arc<rustls::ClientConfig>) -> AgentDialer {
        AgentDialer { tls: Some(tokio_rustls::TlsConnector::from(config)) }
    }

    /// An HTTP/1.1 connection to the agent at `host:port`, its driver running (upgrades
    /// allowed, for exec and port-forward).
    /// `port` as a Node advertises it (`daemonEndpoints.kubeletEndpoint.Port`, an int32).
    pub async fn connect(&self, host: &str, port: i64) -> Result<SendRequest<Body>, String> {
        let port = u16::try_from(port).map_err(|_| format!("the agent's port {port} is not a TCP port"))?;
        let bare_ipv6 = host.contains(':') && !host.starts_with('[');
        let address = if bare_ipv6 { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(&address).await.map_err(|e| e.to_string())?;
            match &self.tls {
                None => handshake(tcp).await,
                Some(connector) => {
                    // The name is not checked (the agent's certificate is self-signed).
                    let name = rustls::pki_types::ServerName::try_from("kubelet").expect("a valid name");
                    let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                    handshake(tls).await
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| format!("connecting to the agent at {address}: timed out"))?
            .map_err(|e| format!("connecting to the agent at {address}: {e}"))
    }

    /// `https` or `http`, for messages.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Body>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}
