//! Joining a cluster with a bootstrap token (kubeadm's discovery and kubelet's TLS
//! bootstrap), before the agent has any credential of its own:
//!
//! 1. **Discovery** ([`discover`]): read `kube-public/cluster-info` anonymously, trusting no
//!    certificate yet; it must carry this token's signature (`jws-kubeconfig-<id>`, so it
//!    came from a cluster that knows the token) and a CA whose hash is one of the pins
//!    (`--discovery-token-ca-cert-hash`, so it is the cluster the operator meant).
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
use k8s_openapi::api::core::v1::ConfigMap;
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
/// The name every Berth server's certificate carries.
const SERVER_NAME: &str = "kubernetes";

fn join_error(message: impl Into<String>) -> AgentError {
    AgentError::Config { flag: "--token", message: message.into() }
}

/// What discovery found: the cluster's CA and servers.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub ca_pem: String,
    pub servers: Vec<String>,
}

/// Checks a cluster-info ConfigMap's data against `token` and `pins` (pure): the token's
/// signature must verify and the CA must be pinned (unless `pins` is empty, which is
/// `--discovery-token-unsafe-skip-ca-verification`).
pub fn check_cluster_info(
    data: &std::collections::BTreeMap<String, String>,
    token: &Token,
    pins: &[String],
) -> std::result::Result<Discovered, String> {
    let kubeconfig = data.get("kubeconfig").ok_or("the cluster-info ConfigMap has no kubeconfig")?;
    let jws = data.get(&format!("{}{}", bt::JWS_PREFIX, token.id)).ok_or_else(|| {
        format!(
            "there is no JWS signed token in the cluster-info ConfigMap: token id {:?} is invalid for this cluster or \
             has expired (a token just created is signed within seconds)",
            token.id
        )
    })?;
    if !bt::verify_detached_jws(kubeconfig, token, jws) {
        return Err(format!("failed to verify the JWS signature of cluster-info with token id {:?}", token.id));
    }
    let (servers, ca_pem) = berth_proto::kubeconfig::read_cluster_info(kubeconfig)
        .ok_or("the cluster-info kubeconfig has no cluster CA")?;
    let hash = pki::ca_cert_hash(&ca_pem).map_err(|e| format!("the cluster-info CA: {e}"))?;
    if !pins.is_empty() && !pins.iter().any(|p| p.eq_ignore_ascii_case(&hash)) {
        return Err(format!(
            "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{hash}\" are pinned"
        ));
    }
    Ok(Discovered { ca_pem, servers })
}

/// Why discovery failed: worth another try (the document is not there or not signed
/// yet), or final (it names a CA that is not pinned).
enum Discovery {
    Retry(String),
    Final(String),
}

/// Reads and checks `cluster-info` from the first of `servers` that answers, trying again
/// (every second, for at most `timeout`) while it is missing or not yet signed with the
/// token, as kubeadm's discovery does; a CA that is not pinned fails at once.
pub async fn discover(servers: &[String], token: &Token, pins: &[String], timeout: Duration) -> Result<Discovered> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut last = String::from("no --server given");
        for server in servers {
            match discover_at(server, token, pins).await {
                Ok(found) => return Ok(found),
                Err(Discovery::Final(why)) => return Err(join_error(why)),
                Err(Discovery::Retry(why)) => last = why,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(join_error(last));
        }
        tracing::info!(%last, "discovery: trying again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn discover_at(server: &str, token: &Token, pins: &[String]) -> std::result::Result<Discovered, Discovery> {
    let url = server.parse().map_err(|e| Discovery::Final(format!("{server}: {e}")))?;
    let mut config = kube::Config::new(url);
    // Nothing is trusted yet: what is read is checked against the token and the pins.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).map_err(|e| Discovery::Final(format!("{server}: {e}")))?;
    let api: Api<ConfigMap> = Api::namespaced(client, bt::CLUSTER_INFO_NAMESPACE);
    let cm = match tokio::time::timeout(REQUEST_TIMEOUT, api.get(bt::CLUSTER_INFO)).await {
        Ok(Ok(cm)) => cm,
        Ok(Err(e)) => return Err(Discovery::Retry(format!("{server}: reading cluster-info: {e}"))),
        Err(_) => return Err(Discovery::Retry(format!("{server}: reading cluster-info: timed out"))),
    };
    let data = cm.data.unwrap_or_default();
    check_cluster_info(&data, token, pins).map_err(|why| {
        if why.contains("none of the public keys") {
            Discovery::Final(why)
        } else {
            Discovery::Retry(why)
        }
    })
}

/// A client of `server` trusting `ca_pem`, authenticated by `auth` (token or certificate).
fn client(server: &str, ca_pem: &str, auth: Auth<'_>) -> Result<kube::Client> {
    let mut config = kube::Config::new(server.parse().map_err(|e| join_error(format!("{server}: {e}")))?);
    config.root_cert =
        berth_proto::tls::certificates("CA", ca_pem).ok().map(|c| c.into_iter().map(|c| c.to_vec()).collect());
    config.tls_server_name = Some(SERVER_NAME.into());
    match auth {
        Auth::Token(token) => config.auth_info.token = Some(token.to_string().into()),
        Auth::Certificate(issued) => {
            Credentials { ca_pem: ca_pem.to_string(), client: issued.clone() }.apply(&mut config)
        }
    }
    kube::Client::try_from(config).map_err(|e| join_error(format!("{server}: {e}")))
}

enum Auth<'a> {
    Token(&'a Token),
    Certificate(&'a Issued),
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

fn write(data_dir: &Path, discovered: &Discovered, issued: &Issued) -> Result<PathBuf> {
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
        let renewed = request_certificate(client(&server, &ca_pem, Auth::Certificate(&current))?, node).await?;
        tracing::info!(node, "renewed the node's client certificate");
        return write(data_dir, &Discovered { ca_pem, servers: known }, &renewed);
    }
    let discovered = discover(servers, token, pins, discovery_timeout).await?;
    tracing::info!(servers = ?discovered.servers, "discovered the cluster; its CA is pinned");
    let server = discovered.servers.first().cloned().unwrap_or_else(|| servers[0].clone());
    let issued = request_certificate(client(&server, &discovered.ca_pem, Auth::Token(token))?, node).await?;
    tracing::info!(node, "the node's client certificate is signed");
    write(data_dir, &discovered, &issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_trusts_only_a_signed_document_with_a_pinned_ca() {
        let ca = pki::Ca::generate("test-ca").unwrap();
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        let kubeconfig = berth_proto::kubeconfig::cluster_info_kubeconfig_yaml(
            &["https://10.0.0.1:6443".into()],
            &ca.issued.cert_pem,
        );
        let data = std::collections::BTreeMap::from([
            ("kubeconfig".to_string(), kubeconfig.clone()),
            ("jws-kubeconfig-abcdef".to_string(), bt::detached_jws(&kubeconfig, &token)),
        ]);
        let pin = ca.cert_hash().unwrap();
        let found = check_cluster_info(&data, &token, std::slice::from_ref(&pin)).unwrap();
        assert_eq!((found.ca_pem.as_str(), found.servers.len()), (ca.issued.cert_pem.as_str(), 1));
        let other = pki::Ca::generate("other").unwrap().cert_hash().unwrap();
        let err = check_cluster_info(&data, &token, &[other]).unwrap_err();
        assert!(err.contains("none of the public keys") && err.contains(&pin), "{err}");
        let stranger = Token::parse("zzzzzz.0123456789abcdef").unwrap();
        assert!(check_cluster_info(&data, &stranger, std::slice::from_ref(&pin))
            .unwrap_err()
            .contains("no JWS signed token"));
        let wrong_secret = Token::parse("abcdef.ffffffffffffffff").unwrap();
        assert!(check_cluster_info(&data, &wrong_secret, &[pin]).unwrap_err().contains("failed to verify"));
    }

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
