//! Helpers shared by the agent's integration tests.

use k8s_openapi::api::core::v1::Pod;

/// A pod `name` in the default namespace with the given spec.
pub fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

/// `GET path` on the agent's port at `addr` over TLS, presenting `credentials` (none:
/// anonymous): (status, body).
pub async fn agent_get(
    addr: std::net::SocketAddr,
    path: &str,
    credentials: Option<&berth_proto::kubeconfig::Credentials>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = match credentials {
        Some(c) => berth_proto::tls::kubelet_client_config(&c.client.cert_pem, &c.client.key_pem).unwrap(),
        None => {
            // Anonymous: the same unverified-server client, without a certificate.
            let ca = berth_proto::pki::Ca::generate("throwaway").unwrap();
            let issued = ca.issue_client("nobody", &[]).unwrap();
            let mut c = berth_proto::tls::kubelet_client_config(&issued.cert_pem, &issued.key_pem).unwrap();
            c.client_auth_cert_resolver = std::sync::Arc::new(NoCert);
            c
        }
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("kubelet").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Sends no client certificate.
#[derive(Debug)]
struct NoCert;
impl rustls::client::ResolvesClientCert for NoCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        None
    }
    fn has_certs(&self) -> bool {
        false
    }
}
