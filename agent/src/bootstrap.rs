//! Joining a cluster with a bootstrap token (kubeadm's discovery and kubelet's TLS
//! bootstrap), before the agent has any credential of its own:
//!
//! 1. **Discovery** (`berth_proto::bootstrap_token::discover`, shared with the server's
//!    join): `kube-public/cluster-info`, read trusting nothing, must be signed with the
//!    token and name a CA whose hash is one of the pins (`--discovery-token-ca-cert-hash`).
//! 2. **TLS bootstrap** ([`request_certificate`]): with that CA and the token, ask for a
//!    node client certificate (`system:node:<name>` in `system:nodes`) with a
//!    CertificateSigningRequest; the servers approve and sign it.
//! 3. The certificate, its key and a kubeconfig go to the data dir
//!    ([`KUBECONFIG`]); later starts use them, and renew the certificate (asking as the
//!    node itself) once less than a fifth of its life is left ([`needs_renewal`]).
//!
//! Every wait is bounded ([`CERTIFICATE_TIMEOUT`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::bootstrap_token::{self as bt, Token};
use berth_proto::kubeconfig::{AdminCredentials, Credentials, ServersExtension};
use berth_proto::pki::{self, Issued};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::error::{AgentError, Result};

/// The agent's own kubeconfig, written by the bootstrap (relative to the data dir).
pub const KUBECONFIG: &str = "kubelet.kubeconfig";
const CERT: &str = "pki/kubelet-client.crt";
const KEY: &str = "pki/kubelet-client.key";
/// How long the agent waits for its certificate to be signed.
pub const CERTIFICATE_TIMEOUT: Duration = Duration::from_secs(120);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn join_error(message: impl Into<String>) -> AgentError {
    AgentError::Config { flag: "--token", message: message.into() }
}

/// A client of `server` trusting `ca_pem`, authenticated as the node by `issued`.
fn node_client(server: &str, ca_pem: &str, issued: &Issued) -> Result<kube::Client> {
    let mut config = kube::Config::new(server.parse().map_err(|e| join_error(format!("{server}: {e}")))?);
    config.tls_server_name = Some(bt::API_SERVER_NAME.into());
    Credentials { ca_pem: ca_pem.to_string(), client: issued.clone() }.apply(&mut config);
    kube::Client::try_from(config).map_err(|e| join_error(format!("{server}: {e}")))
}

/// Asks for node `node`'s client certificate over `client` and waits (at most
/// [`CERTIFICATE_TIMEOUT`]) until it is signed; a denial is an error with its reason.
async fn request_certificate(client: kube::Client, node: &str) -> Result<Issued> {
    let user = format!("system:node:{node}");
    let (csr_pem, key_pem) = pki::client_csr(&user, &["system:nodes"]).map_err(|e| join_error(e.to_string()))?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let mut csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": "",
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }))
    .expect("a valid CertificateSigningRequest");
    csr.spec.request = k8s_openapi::ByteString(csr_pem.into_bytes());
    let created = tokio::time::timeout(REQUEST_TIMEOUT, api.create(&PostParams::default(), &csr))
        .await
        .map_err(|_| join_error("creating the certificate signing request: timed out"))?
        .map_err(|e| join_error(format!("creating the certificate signing request: {e}")))?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, %user, "asked for the node's client certificate");
    let deadline = tokio::time::Instant::now() + CERTIFICATE_TIMEOUT;
    loop {
        if let Ok(Ok(csr)) = tokio::time::timeout(REQUEST_TIMEOUT, api.get(&name)).await {
            let status = csr.status.unwrap_or_default();
            if let Some(denied) =
                status.conditions.iter().flatten().find(|c| c.type_ == "Denied" || c.type_ == "Failed")
            {
                return Err(join_error(format!(
                    "certificate signing request {name} was {}: {}",
                    denied.type_.to_lowercase(),
                    denied.message.clone().unwrap_or_default()
                )));
            }
            if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                let cert_pem =
                    String::from_utf8(cert.0).map_err(|_| join_error("the signed certificate is not PEM"))?;
                return Ok(Issued { cert_pem, key_pem });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(join_error(format!(
                "certificate signing request {name} was not signed within {}s",
                CERTIFICATE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a certificate with `info` should be renewed at `now`: less than a fifth of its
/// life left (kubelet rotates at 70–90%).
pub fn needs_renewal(info: &pki::CertInfo, now: std::time::SystemTime) -> bool {
    let life = info.not_after.duration_since(info.not_before).unwrap_or_default();
    let left = info.not_after.duration_since(now).unwrap_or_default();
    left < life / 5
}

fn write(data_dir: &Path, discovered: &bt::Discovered, issued: &Issued) -> Result<PathBuf> {
    let io = |path: &Path, e: std::io::Error| join_error(format!("{}: {e}", path.display()));
    let pki_dir = data_dir.join("pki");
    std::fs::create_dir_all(&pki_dir).map_err(|e| io(&pki_dir, e))?;
    std::fs::write(data_dir.join(CERT), &issued.cert_pem).map_err(|e| io(&data_dir.join(CERT), e))?;
    pki::write_private_key(&data_dir.join(KEY), &issued.key_pem).map_err(|e| join_error(e.to_string()))?;
    let servers = ServersExtension { api_servers: discovered.servers.clone(), etcd_endpoints: vec![] };
    let credentials =
        AdminCredentials { api: Credentials { ca_pem: discovered.ca_pem.clone(), client: issued.clone() }, etcd: None };
    let text = berth_proto::kubeconfig::admin_kubeconfig_with_etcd_yaml("berth", &servers, Some(&credentials));
    let path = data_dir.join(KUBECONFIG);
    pki::write_private_key(&path, &text).map_err(|e| join_error(e.to_string()))?;
    Ok(path)
}

/// The agent's kubeconfig after joining with `token`: the one a previous join wrote
/// (renewed first if its certificate is near expiry), else a new one from discovery and
/// a TLS bootstrap against `servers`.
pub async fn join(
    data_dir: &Path,
    node: &str,
    servers: &[String],
    token: &Token,
    pins: &[String],
    discovery_timeout: Duration,
) -> Result<PathBuf> {
    let path = data_dir.join(KUBECONFIG);
    let existing =
        std::fs::read_to_string(data_dir.join(CERT)).ok().zip(std::fs::read_to_string(data_dir.join(KEY)).ok());
    if let (true, Some((cert_pem, key_pem))) = (path.exists(), existing) {
        let info = pki::cert_info(&cert_pem).map_err(|e| join_error(format!("{CERT}: {e}")))?;
        if !needs_renewal(&info, std::time::SystemTime::now()) {
            return Ok(path);
        }
        // Renew as the node itself (the servers approve a node's request for its own name).
        let kubeconfig = std::fs::read_to_string(&path).map_err(|e| join_error(format!("{}: {e}", path.display())))?;
        let (known, ca_pem) = berth_proto::kubeconfig::read_cluster_info(&kubeconfig)
            .ok_or_else(|| join_error(format!("{}: unreadable", path.display())))?;
        let current = Issued { cert_pem, key_pem };
        let server = known.first().cloned().unwrap_or_default();
        let renewed = request_certificate(node_client(&server, &ca_pem, &current)?, node).await?;
        tracing::info!(node, "renewed the node's client certificate");
        return write(data_dir, &bt::Discovered { ca_pem, servers: known }, &renewed);
    }
    let discovered = bt::discover(servers, token, pins, discovery_timeout).await.map_err(join_error)?;
    tracing::info!(servers = ?discovered.servers, "discovered the cluster; its CA is pinned");
    let server = discovered.servers.first().cloned().unwrap_or_else(|| servers[0].clone());
    let issued = request_certificate(bt::client(&server, &discovered.ca_pem, token).map_err(join_error)?, node).await?;
    tracing::info!(node, "the node's client certificate is signed");
    write(data_dir, &discovered, &issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_renewed_with_a_fifth_of_their_life_left() {
        let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let info = |days: u64| pki::CertInfo {
            not_before: t0,
            not_after: t0 + Duration::from_secs(days * 86400),
            sans: vec![],
            subject: String::new(),
        };
        assert!(!needs_renewal(&info(100), t0 + Duration::from_secs(79 * 86400)));
        assert!(needs_renewal(&info(100), t0 + Duration::from_secs(81 * 86400)));
    }
}
