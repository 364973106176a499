//! The harness's cluster CA: one per harness process, given to every Berth server's data
//! dir before it starts (so the members of a statically bootstrapped cluster — and any
//! member the harness adds later — share it, kubeadm's "copy the certificates"), and the
//! credentials the harness's clients and agents authenticate with.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_proto::kubeconfig::{admin_kubeconfig_yaml, Credentials, ServersExtension};
use berth_proto::pki::{self, Ca};

use crate::HarnessError;

struct HarnessPki {
    ca: Ca,
    admin: Credentials,
}

fn harness() -> &'static HarnessPki {
    static PKI: OnceLock<HarnessPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = Ca::generate("berth-jepsen-ca").expect("generating a CA cannot fail");
        let client = ca.issue_client("kubernetes-admin", &["system:masters"]).expect("issuing a certificate");
        let admin = Credentials { ca_pem: ca.issued.cert_pem.clone(), client };
        HarnessPki { ca, admin }
    })
}

fn pki_error(e: pki::PkiError) -> HarnessError {
    HarnessError::Config(format!("cluster CA: {e}"))
}

/// Puts the harness CA into a server's data dir (unless it has one).
pub fn seed_server(data_dir: &Path) -> Result<(), HarnessError> {
    if pki::read_ca(data_dir).map_err(pki_error)?.is_none() {
        pki::write_ca(data_dir, &harness().ca).map_err(pki_error)?;
    }
    Ok(())
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
fn write_kubeconfig(path: &Path, api_servers: &[String], credentials: &Credentials) -> Result<PathBuf, HarnessError> {
    let servers = ServersExtension { api_servers: api_servers.to_vec(), etcd_endpoints: vec![] };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, admin_kubeconfig_yaml("berth", &servers, Some(credentials)))?;
    Ok(path.to_path_buf())
}

/// An administrator's kubeconfig (for kubectl) at `path`.
pub fn write_admin_kubeconfig(path: &Path, api_servers: &[String]) -> Result<PathBuf, HarnessError> {
    write_kubeconfig(path, api_servers, admin())
}

/// Agent `node`'s kubeconfig under `dir`: its node certificate (`system:node:<node>`).
pub fn write_node_kubeconfig(dir: &Path, node: &str, api_servers: &[String]) -> Result<PathBuf, HarnessError> {
    let client = harness().ca.issue_client(&format!("system:node:{node}"), &["system:nodes"]).map_err(pki_error)?;
    let credentials = Credentials { ca_pem: harness().ca.issued.cert_pem.clone(), client };
    write_kubeconfig(&dir.join(format!("{node}.kubeconfig")), api_servers, &credentials)
}
