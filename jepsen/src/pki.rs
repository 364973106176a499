//! The harness's cluster CA and etcd CA: one each per harness process, given to every
//! Berth server's data dir before it starts (so the members of a statically bootstrapped
//! cluster — and any member the harness adds later — share them, kubeadm's "copy the
//! certificates"), and the credentials the harness's clients and agents authenticate with:
//! API clients with the cluster CA's, etcd clients with the etcd CA's.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_proto::kubeconfig::{admin_kubeconfig_with_etcd_yaml, AdminCredentials, Credentials, ServersExtension};
use berth_proto::pki::{self, Ca, CaRole};
use tonic::transport::Endpoint;

use crate::HarnessError;

struct HarnessPki {
    ca: Ca,
    admin: Credentials,
    etcd_ca: Ca,
    etcd_client: Credentials,
    /// The encryption-at-rest configuration every server of the harness shares.
    encryption: String,
    /// The service-account signing key every server of the harness shares.
    service_account_key: String,
}

fn harness() -> &'static HarnessPki {
    static PKI: OnceLock<HarnessPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = Ca::generate("berth-jepsen-ca").expect("generating a CA cannot fail");
        let client = ca.issue_client("kubernetes-admin", &["system:masters"]).expect("issuing a certificate");
        let admin = Credentials { ca_pem: ca.issued.cert_pem.clone(), client };
        let etcd_ca = Ca::generate("berth-jepsen-etcd-ca").expect("generating a CA cannot fail");
        let client = etcd_ca.issue_client("berth-jepsen", &[]).expect("issuing a certificate");
        let etcd_client = Credentials { ca_pem: etcd_ca.issued.cert_pem.clone(), client };
        let encryption = pki::new_encryption_config().expect("a key");
        let service_account_key = pki::new_service_account_key().expect("a key");
        HarnessPki { ca, admin, etcd_ca, etcd_client, encryption, service_account_key }
    })
}

fn pki_error(e: pki::PkiError) -> HarnessError {
    HarnessError::Config(format!("cluster CA: {e}"))
}

/// Puts the harness CAs, encryption configuration and service-account key into a server's data dir (unless it
/// has them).
pub fn seed_server(data_dir: &Path) -> Result<(), HarnessError> {
    for (role, ca) in [(CaRole::Cluster, &harness().ca), (CaRole::Etcd, &harness().etcd_ca)] {
        if pki::read_ca(data_dir, role).map_err(pki_error)?.is_none() {
            pki::write_ca(data_dir, role, ca).map_err(pki_error)?;
        }
    }
    for (relative, text) in
        [(pki::ENCRYPTION_CONFIG, &harness().encryption), (pki::SERVICE_ACCOUNT_KEY, &harness().service_account_key)]
    {
        let path = data_dir.join(relative);
        if !path.exists() {
            pki::write_private_key(&path, text).map_err(pki_error)?;
        }
    }
    Ok(())
}

/// The harness's etcd client credentials (etcdctl's `--cacert`, `--cert`, `--key`).
pub fn etcd_client() -> &'static Credentials {
    &harness().etcd_client
}

/// A tonic endpoint for an etcd client URL: an `https://` one (a secure Berth server's)
/// with the harness's etcd client certificate, an `http://` one plain.
pub fn etcd_endpoint(url: &str) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| format!("bad url {url}: {e}"))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    endpoint.tls_config(etcd_client().grpc_tls()).map_err(|e| format!("TLS for {url}: {e}"))
}

/// etcd's own TLS flags for a reference member on loopback, as Berth serves its ports:
/// a member certificate from the harness's etcd CA on both ports, client certificates
/// required on both. The files go under `dir`.
pub fn etcd_tls_args(dir: &Path) -> Result<Vec<String>, HarnessError> {
    std::fs::create_dir_all(dir)?;
    let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let member = harness().etcd_ca.issue_peer("etcd-member", &sans).map_err(pki_error)?;
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("member.crt"), dir.join("member.key"));
    std::fs::write(&ca, &harness().etcd_ca.issued.cert_pem)?;
    std::fs::write(&cert, &member.cert_pem)?;
    pki::write_private_key(&key, &member.key_pem).map_err(pki_error)?;
    let [ca, cert, key] = [ca, cert, key].map(|p| p.display().to_string());
    Ok(vec![
        format!("--trusted-ca-file={ca}"),
        format!("--cert-file={cert}"),
        format!("--key-file={key}"),
        "--client-cert-auth".into(),
        format!("--peer-trusted-ca-file={ca}"),
        format!("--peer-cert-file={cert}"),
        format!("--peer-key-file={key}"),
        "--peer-client-cert-auth".into(),
    ])
}

/// etcdctl's TLS flags (`--cacert`, `--cert`, `--key`) for the harness's etcd client
/// certificate, whose files are written under `dir`.
pub fn etcdctl_tls_args(dir: &Path) -> Result<Vec<String>, HarnessError> {
    std::fs::create_dir_all(dir)?;
    let c = etcd_client();
    let (ca, cert, key) = (dir.join("etcd-ca.crt"), dir.join("etcd-client.crt"), dir.join("etcd-client.key"));
    std::fs::write(&ca, &c.ca_pem)?;
    std::fs::write(&cert, &c.client.cert_pem)?;
    pki::write_private_key(&key, &c.client.key_pem).map_err(pki_error)?;
    Ok(vec![
        format!("--cacert={}", ca.display()),
        format!("--cert={}", cert.display()),
        format!("--key={}", key.display()),
    ])
}

/// The administrator's credentials (`system:masters`).
pub fn admin() -> &'static Credentials {
    &harness().admin
}

/// A kube-rs configuration for the API at `url` as the administrator.
pub fn admin_config(url: &str) -> Result<kube::Config, HarnessError> {
    let uri = url.parse().map_err(|e| HarnessError::Config(format!("API URL {url:?}: {e}")))?;
    Ok(admin().kube_config(uri))
}

/// A kube-rs configuration for the API at `url` as `user` in `groups`.
pub fn user_config(url: &str, user: &str, groups: &[&str]) -> Result<kube::Config, HarnessError> {
    let uri = url.parse().map_err(|e| HarnessError::Config(format!("API URL {url:?}: {e}")))?;
    let client = harness().ca.issue_client(user, groups).map_err(pki_error)?;
    Ok(Credentials { ca_pem: harness().ca.issued.cert_pem.clone(), client }.kube_config(uri))
}

/// A TLS client configuration trusting the harness CA, presenting no certificate.
pub fn anonymous_tls() -> Result<rustls::ClientConfig, HarnessError> {
    berth_proto::tls::client_config(&harness().ca.issued.cert_pem, None)
        .map_err(|e| HarnessError::Config(format!("TLS: {e}")))
}

/// Writes a kubeconfig for `api_servers` with `credentials` at `path`.
fn write_kubeconfig(
    path: &Path,
    api_servers: &[String],
    credentials: AdminCredentials,
) -> Result<PathBuf, HarnessError> {
    let servers = ServersExtension { api_servers: api_servers.to_vec(), etcd_endpoints: vec![] };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, admin_kubeconfig_with_etcd_yaml("berth", &servers, Some(&credentials)))?;
    Ok(path.to_path_buf())
}

/// The administrator's kubeconfig contents: the API credentials and the etcd client's.
pub fn admin_credentials() -> AdminCredentials {
    AdminCredentials { api: admin().clone(), etcd: Some(etcd_client().clone()) }
}

/// An administrator's kubeconfig (for kubectl and berthctl) at `path`.
pub fn write_admin_kubeconfig(path: &Path, api_servers: &[String]) -> Result<PathBuf, HarnessError> {
    write_kubeconfig(path, api_servers, admin_credentials())
}

/// Agent `node`'s kubeconfig under `dir`: its node certificate (`system:node:<node>`).
pub fn write_node_kubeconfig(dir: &Path, node: &str, api_servers: &[String]) -> Result<PathBuf, HarnessError> {
    write_agent_kubeconfig(dir, node, &format!("system:node:{node}"), &["system:nodes"])
        .and_then(|(path, credentials)| write_kubeconfig(&path, api_servers, credentials))
}

/// The kubeconfig of a hollow-node agent `prefix` (`--fake-nodes N`, nodes `prefix-0…`)
/// under `dir`. One process is many nodes, which no node identity may be (the Node
/// authorizer keeps `system:node:X` to node X), so hollow nodes — fakes for scale tests —
/// act as an administrator, as kubemark's shared hollow-kubelet identity is given rights
/// through RBAC rather than the Node authorizer.
pub fn write_hollow_kubeconfig(dir: &Path, prefix: &str, api_servers: &[String]) -> Result<PathBuf, HarnessError> {
    write_agent_kubeconfig(dir, prefix, "berth-hollow-nodes", &["system:masters"])
        .and_then(|(path, credentials)| write_kubeconfig(&path, api_servers, credentials))
}

fn write_agent_kubeconfig(
    dir: &Path,
    name: &str,
    user: &str,
    groups: &[&str],
) -> Result<(PathBuf, AdminCredentials), HarnessError> {
    let client = harness().ca.issue_client(user, groups).map_err(pki_error)?;
    let credentials = Credentials { ca_pem: harness().ca.issued.cert_pem.clone(), client };
    Ok((dir.join(format!("{name}.kubeconfig")), AdminCredentials { api: credentials, etcd: None }))
}
