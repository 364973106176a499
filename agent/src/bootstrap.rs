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
//!    ([`KUBECONFIG`]); later starts use them.
//! 4. **Rotation** (kubelet's `--rotate-certificates`): once less than a fifth of the
//!    certificate's life is left ([`needs_renewal`]) the agent asks for a new one as the
//!    node itself, at start or while it runs ([`keep_certificate_fresh`]). A running agent
//!    presents the new certificate from the next handshake on and closes its open
//!    connections, as kubelet does: the servers authenticate a connection once, at its
//!    handshake, so one opened with the old certificate would outlive it.
//!
//! Every wait is bounded ([`CERTIFICATE_TIMEOUT`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::bootstrap_token::{self as bt, Token};
use berth_proto::kubeconfig::{AdminCredentials, Credentials, ServersExtension};
use berth_proto::pki::{self, Issued};
use berth_proto::tls::ReloadableCert;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;

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

/// When a certificate with `info` is due for renewal: once less than a fifth of its life
/// is left (kubelet rotates at 70–90%).
pub fn renewal_due(info: &pki::CertInfo) -> SystemTime {
    let life = info.not_after.duration_since(info.not_before).unwrap_or_default();
    info.not_after - life / 5
}

/// Whether a certificate with `info` should be renewed at `now`.
pub fn needs_renewal(info: &pki::CertInfo, now: SystemTime) -> bool {
    now >= renewal_due(info)
}

/// How long to wait before asking again after a failed renewal: a twentieth of the
/// certificate's life, between a second and a minute (a short-lived certificate must
/// still get several tries before it expires).
fn retry_after(info: &pki::CertInfo) -> Duration {
    let life = info.not_after.duration_since(info.not_before).unwrap_or_default();
    (life / 20).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The node certificate and key a join wrote.
fn current(data_dir: &Path) -> Result<Issued> {
    let read = |file: &str| {
        std::fs::read_to_string(data_dir.join(file))
            .map_err(|e| join_error(format!("{}: {e}", data_dir.join(file).display())))
    };
    Ok(Issued { cert_pem: read(CERT)?, key_pem: read(KEY)? })
}

/// The node's certificate as a TLS identity that [`keep_certificate_fresh`] replaces.
pub fn identity(data_dir: &Path) -> Result<Arc<ReloadableCert>> {
    let issued = current(data_dir)?;
    ReloadableCert::new(&issued.cert_pem, &issued.key_pem).map_err(|e| join_error(format!("{CERT}: {e}")))
}

/// Asks for a new certificate for `node` over `client` (authenticated as the node) and
/// writes it, its key and the kubeconfig naming them to `data_dir`.
async fn renew(client: kube::Client, data_dir: &Path, node: &str) -> Result<Issued> {
    let path = data_dir.join(KUBECONFIG);
    let kubeconfig = std::fs::read_to_string(&path).map_err(|e| join_error(format!("{}: {e}", path.display())))?;
    let (servers, ca_pem) = berth_proto::kubeconfig::read_cluster_info(&kubeconfig)
        .ok_or_else(|| join_error(format!("{}: unreadable", path.display())))?;
    let renewed = request_certificate(client, node).await?;
    write(data_dir, &bt::Discovered { ca_pem, servers }, &renewed)?;
    tracing::info!(node, "renewed the node's client certificate");
    Ok(renewed)
}

/// Renews the node's certificate whenever it is due, for as long as the agent runs (until
/// `cancel`): the new one goes to the data dir and into `identity`, and every connection
/// `balancer` carries is closed so the next ones present it. A failed renewal is retried
/// ([`retry_after`]) while the current certificate still works.
pub async fn keep_certificate_fresh(
    client: kube::Client,
    data_dir: PathBuf,
    node: String,
    identity: Arc<ReloadableCert>,
    balancer: Arc<Balancer>,
    cancel: CancellationToken,
) {
    loop {
        let info =
            match current(&data_dir).and_then(|c| pki::cert_info(&c.cert_pem).map_err(|e| join_error(e.to_string()))) {
                Ok(info) => info,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the node's certificate; it will not be rotated");
                    return;
                }
            };
        let wait = renewal_due(&info).duration_since(SystemTime::now()).unwrap_or_default();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let renewed = tokio::select! {
            _ = cancel.cancelled() => return,
            renewed = renew(client.clone(), &data_dir, &node) => renewed,
        };
        match renewed.and_then(|issued| {
            identity.replace(&issued.cert_pem, &issued.key_pem).map_err(|e| join_error(format!("{CERT}: {e}")))
        }) {
            Ok(()) => balancer.close_all_connections(),
            Err(e) => {
                let retry = retry_after(&info);
                tracing::warn!(error = %e, retry_in = ?retry, "renewing the node's client certificate failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
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
    if let (true, Ok(existing)) = (path.exists(), current(data_dir)) {
        let info = pki::cert_info(&existing.cert_pem).map_err(|e| join_error(format!("{CERT}: {e}")))?;
        if !needs_renewal(&info, SystemTime::now()) {
            return Ok(path);
        }
        // Renew as the node itself (the servers approve a node's request for its own name).
        let kubeconfig = std::fs::read_to_string(&path).map_err(|e| join_error(format!("{}: {e}", path.display())))?;
        let (known, ca_pem) = berth_proto::kubeconfig::read_cluster_info(&kubeconfig)
            .ok_or_else(|| join_error(format!("{}: unreadable", path.display())))?;
        let server = known.first().cloned().unwrap_or_default();
        renew(node_client(&server, &ca_pem, &existing)?, data_dir, node).await?;
        return Ok(path);
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
