//! A server's certificates on disk (`<data-dir>/pki`, kubeadm's layout): the cluster CA,
//! created by the first server of a new cluster (or placed there beforehand, so that the
//! members of a statically bootstrapped cluster share one), and the API's serving
//! certificate, issued for every name the server answers on and issued again — while it
//! serves — when a name is added or a third of its life is left.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::pki::{self, Ca, Issued};
use berth_proto::tls::{self, ClientAuth, ClientCertCheck, ReloadableCert};
use tokio_util::sync::CancellationToken;

use crate::ServerError;

/// The serving certificate's files.
const SERVING_CERT: &str = "apiserver.crt";
const SERVING_KEY: &str = "apiserver.key";
/// How often a running server looks at its serving certificate's age.
const RENEW_CHECK: Duration = Duration::from_secs(3600);

/// The names every server's serving certificate carries besides its own addresses: how
/// pods reach the API (the `kubernetes` Service, by name and ClusterIP) and how agents
/// that fail over between servers name any of them.
pub fn cluster_sans() -> Vec<String> {
    let mut sans: Vec<String> =
        ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
            .map(String::from)
            .to_vec();
    sans.push(crate::tasks::kubernetes_service::CLUSTER_IP.into());
    sans.extend(["localhost", "127.0.0.1"].map(String::from));
    sans
}

/// The serving certificate's SANs: the cluster names, the host of every API URL the
/// server listens on or advertises (not wildcard addresses), the machine's hostname, and
/// the operator's `--tls-san`s.
pub fn serving_sans(urls: &[String], extra: &[String]) -> Vec<String> {
    let mut sans = cluster_sans();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string());
    let hosts = urls.iter().filter_map(|u| url::Url::parse(u).ok()).filter_map(|u| u.host_str().map(String::from));
    for name in hosts.chain(hostname).chain(extra.iter().cloned()) {
        let name = name.trim_start_matches('[').trim_end_matches(']').to_string();
        let wildcard = name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !name.is_empty() && !wildcard && !sans.contains(&name) {
            sans.push(name);
        }
    }
    sans
}

/// The API port's TLS material, kept current.
pub struct ApiPki {
    pub ca: Ca,
    pub serving: Arc<ReloadableCert>,
    pub config: Arc<rustls::ServerConfig>,
    pub clients: Arc<ClientCertCheck>,
    dir: PathBuf,
    sans: Vec<String>,
}

fn config_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("TLS: {e}"))
}

impl ApiPki {
    /// Loads the data dir's CA — or creates it when `may_create_ca` (the first server of
    /// a new cluster) — and a serving certificate for `sans`.
    pub fn load_or_create(data_dir: &Path, may_create_ca: bool, sans: Vec<String>) -> Result<ApiPki, ServerError> {
        let dir = data_dir.join(pki::PKI_DIR);
        let ca = match pki::read_ca(data_dir).map_err(config_error)? {
            Some(ca) => ca,
            None if may_create_ca => {
                let ca = Ca::generate("berth-ca").map_err(config_error)?;
                pki::write_ca(data_dir, &ca).map_err(config_error)?;
                tracing::info!(dir = %dir.display(), "created the cluster CA");
                ca
            }
            None => {
                return Err(ServerError::Config(format!(
                    "no cluster CA in {}: a server joining an existing cluster needs the cluster's {} and {} \
                     there (copy them from a running server)",
                    dir.display(),
                    pki::CA_CERT,
                    pki::CA_KEY
                )))
            }
        };
        let serving = current_serving(&dir, &ca, &sans)?;
        let serving_cert = ReloadableCert::new(&serving.cert_pem, &serving.key_pem).map_err(config_error)?;
        let config =
            tls::server_config(serving_cert.clone(), &ca.issued.cert_pem, ClientAuth::Request, &tls::HTTP_ALPN)
                .map_err(config_error)?;
        let clients = Arc::new(ClientCertCheck::new(&ca.issued.cert_pem).map_err(config_error)?);
        Ok(ApiPki { ca, serving: serving_cert, config: Arc::new(config), clients, dir, sans })
    }

    /// Issues the serving certificate again when it needs it, until `shutdown`.
    pub async fn keep_renewed(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RENEW_CHECK) => {}
            }
            match current_serving(&self.dir, &self.ca, &self.sans) {
                Ok(issued) => {
                    if let Err(e) = self.serving.replace(&issued.cert_pem, &issued.key_pem) {
                        tracing::warn!(error = %e, "loading the renewed serving certificate");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing the serving certificate"),
            }
        }
    }
}

/// The serving certificate on disk, issued anew (and written) when there is none, it
/// lacks one of `sans`, or it is a third from expiry.
fn current_serving(dir: &Path, ca: &Ca, sans: &[String]) -> Result<Issued, ServerError> {
    let (cert_path, key_path) = (dir.join(SERVING_CERT), dir.join(SERVING_KEY));
    let on_disk = std::fs::read_to_string(&cert_path).ok().zip(std::fs::read_to_string(&key_path).ok());
    if let Some((cert_pem, key_pem)) = on_disk {
        let fresh =
            pki::cert_info(&cert_pem).is_ok_and(|info| !pki::needs_renewal(&info, sans, std::time::SystemTime::now()));
        if fresh {
            return Ok(Issued { cert_pem, key_pem });
        }
    }
    let issued = ca.issue_serving("berth-apiserver", sans).map_err(config_error)?;
    std::fs::write(&cert_path, &issued.cert_pem)
        .map_err(|e| ServerError::Config(format!("{}: {e}", cert_path.display())))?;
    pki::write_private_key(&key_path, &issued.key_pem).map_err(config_error)?;
    tracing::info!(sans = ?sans, "issued the API serving certificate");
    Ok(issued)
}

/// The admin client certificate written into a fresh server's kubeconfig (kubeadm's
/// `kubernetes-admin` in `system:masters`).
pub fn admin_client(ca: &Ca) -> Result<Issued, ServerError> {
    ca.issue_client("kubernetes-admin", &[crate::api::authn::MASTERS]).map_err(config_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_name_the_cluster_and_every_concrete_address() {
        let urls =
            vec!["https://10.1.2.3:6443".to_string(), "https://0.0.0.0:7443".into(), "https://[::1]:6443".into()];
        let sans = serving_sans(&urls, &["api.example.com".into()]);
        for want in ["kubernetes.default.svc.cluster.local", "10.96.0.1", "10.1.2.3", "::1", "api.example.com"] {
            assert!(sans.contains(&want.to_string()), "{want} in {sans:?}");
        }
        assert!(!sans.contains(&"0.0.0.0".to_string()));
    }

    #[test]
    fn a_fresh_server_creates_the_ca_a_joining_one_needs_it_and_a_restart_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let err = ApiPki::load_or_create(dir.path(), false, cluster_sans()).err().unwrap().to_string();
        assert!(err.contains("no cluster CA"), "{err}");
        let first = ApiPki::load_or_create(dir.path(), true, cluster_sans()).unwrap();
        let cert = std::fs::read_to_string(dir.path().join("pki/apiserver.crt")).unwrap();
        let again = ApiPki::load_or_create(dir.path(), false, cluster_sans()).unwrap();
        assert_eq!(again.ca.issued, first.ca.issued);
        assert_eq!(std::fs::read_to_string(dir.path().join("pki/apiserver.crt")).unwrap(), cert, "kept");
        let mut more = cluster_sans();
        more.push("10.9.9.9".into());
        ApiPki::load_or_create(dir.path(), false, more).unwrap();
        let reissued = std::fs::read_to_string(dir.path().join("pki/apiserver.crt")).unwrap();
        assert!(pki::cert_info(&reissued).unwrap().sans.contains(&"10.9.9.9".to_string()));
    }
}
