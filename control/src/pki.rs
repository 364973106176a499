//! A server's certificates on disk (`<data-dir>/pki`, kubeadm's layout): the cluster CA
//! and the etcd CA (`pki/etcd`), created by the first server of a new cluster (or placed
//! there beforehand, so that the members of a statically bootstrapped cluster share them),
//! the API's serving certificate and the store member's certificate (both etcd ports, and
//! dialing peers), each issued for every name the server answers on and issued again —
//! while it serves — when a name is added or a third of its life is left.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::kubeconfig::Credentials;
use berth_proto::pki::{self, Ca, CaRole, Issued};
use berth_proto::tls::{self, ClientAuth, ClientCertCheck, ReloadableCert};
use berth_store::config::StoreTls;
use tokio_util::sync::CancellationToken;

use crate::ServerError;

/// How often a running server looks at its certificates' age.
const RENEW_CHECK: Duration = Duration::from_secs(3600);

/// A certificate this server issues itself from one of the CAs.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    role: CaRole,
    /// File names in the CA's directory.
    cert: &'static str,
    key: &'static str,
    common_name: &'static str,
    usage: Usage,
    /// A client certificate's organizations (its user's groups).
    groups: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usage {
    Serving,
    /// Serving and client (a store member dials its peers with it).
    Peer,
    Client,
}

/// The Kubernetes API's serving certificate (`pki/apiserver.crt`).
const API_SERVING: Leaf = Leaf {
    role: CaRole::Cluster,
    cert: "apiserver.crt",
    key: "apiserver.key",
    common_name: "berth-apiserver",
    usage: Usage::Serving,
    groups: &[],
};
/// What the API server presents to agents' ports (kubeadm's `apiserver-kubelet-client`).
const APISERVER_KUBELET_CLIENT: Leaf = Leaf {
    role: CaRole::Cluster,
    cert: "apiserver-kubelet-client.crt",
    key: "apiserver-kubelet-client.key",
    common_name: "kube-apiserver-kubelet-client",
    usage: Usage::Client,
    groups: &["system:masters"],
};
/// The store member's certificate (`pki/etcd/member.crt`): it serves the client and peer
/// ports and is what the member presents to its peers.
const ETCD_MEMBER: Leaf = Leaf {
    role: CaRole::Etcd,
    cert: "member.crt",
    key: "member.key",
    common_name: "berth-etcd-member",
    usage: Usage::Peer,
    groups: &[],
};
/// An etcd client certificate for the operator (`pki/etcd/admin.crt`, for etcdctl's
/// `--cert`; kubeadm's `healthcheck-client`); also in the admin kubeconfig.
const ETCD_ADMIN: Leaf = Leaf {
    role: CaRole::Etcd,
    cert: "admin.crt",
    key: "admin.key",
    common_name: "berth-etcd-admin",
    usage: Usage::Client,
    groups: &[],
};

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

/// The API serving certificate's SANs: the cluster names, the host of every API URL the
/// server listens on or advertises (not wildcard addresses), the machine's hostname, and
/// the operator's `--tls-san`s.
pub fn serving_sans(urls: &[String], extra: &[String]) -> Vec<String> {
    with_addresses(cluster_sans(), urls, extra)
}

/// The store member certificate's SANs: loopback, the host of every client and peer URL,
/// the hostname and the `--tls-san`s.
pub fn member_sans(urls: &[String], extra: &[String]) -> Vec<String> {
    with_addresses(["localhost", "127.0.0.1"].map(String::from).to_vec(), urls, extra)
}

fn with_addresses(mut sans: Vec<String>, urls: &[String], extra: &[String]) -> Vec<String> {
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

/// The CA of `role` in `data_dir` — created when `may_create_ca` (the first server of a
/// new cluster) and there is none.
fn load_or_create_ca(data_dir: &Path, role: CaRole, may_create_ca: bool) -> Result<Ca, ServerError> {
    let dir = role.dir(data_dir);
    match pki::read_ca(data_dir, role).map_err(config_error)? {
        Some(ca) => Ok(ca),
        None if may_create_ca => {
            let ca = Ca::generate(role.common_name()).map_err(config_error)?;
            pki::write_ca(data_dir, role, &ca).map_err(config_error)?;
            tracing::info!(dir = %dir.display(), "created the {}", role.describe());
            Ok(ca)
        }
        None => Err(ServerError::Config(format!(
            "no {} in {}: the members of a cluster share it, so a server joining one, or starting one of \
             several members, needs the cluster's {} and {} there (`berthctl certs ca DATA_DIR...` before the \
             first start, or copy them from a running server)",
            role.describe(),
            dir.display(),
            pki::CA_CERT,
            pki::CA_KEY
        ))),
    }
}

/// One certificate kept current while the server runs.
struct Renewing {
    data_dir: PathBuf,
    ca: Ca,
    leaf: Leaf,
    sans: Vec<String>,
    cert: Arc<ReloadableCert>,
}

impl Renewing {
    fn load(data_dir: &Path, ca: &Ca, leaf: Leaf, sans: Vec<String>) -> Result<(Renewing, Issued), ServerError> {
        let issued = current_leaf(data_dir, ca, leaf, &sans)?;
        let cert = ReloadableCert::new(&issued.cert_pem, &issued.key_pem).map_err(config_error)?;
        Ok((Renewing { data_dir: data_dir.to_path_buf(), ca: ca.clone(), leaf, sans, cert }, issued))
    }

    /// Issues the certificate again when it needs it, until `shutdown`.
    async fn keep_renewed(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RENEW_CHECK) => {}
            }
            match current_leaf(&self.data_dir, &self.ca, self.leaf, &self.sans) {
                Ok(issued) => {
                    if let Err(e) = self.cert.replace(&issued.cert_pem, &issued.key_pem) {
                        tracing::warn!(cert = self.leaf.cert, error = %e, "loading a renewed certificate");
                    }
                }
                Err(e) => tracing::warn!(cert = self.leaf.cert, error = %e, "renewing a certificate"),
            }
        }
    }
}

/// The API port's TLS material, kept current.
pub struct ApiPki {
    pub ca: Ca,
    pub config: Arc<rustls::ServerConfig>,
    pub clients: Arc<ClientCertCheck>,
    /// How the API server dials agents' ports (its `apiserver-kubelet-client` certificate).
    pub kubelet_client: Arc<rustls::ClientConfig>,
    serving: Renewing,
}

fn config_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("TLS: {e}"))
}

impl ApiPki {
    /// Loads the data dir's cluster CA — or creates it when `may_create_ca` (the first
    /// server of a new cluster) — and a serving certificate for `sans`.
    pub fn load_or_create(data_dir: &Path, may_create_ca: bool, sans: Vec<String>) -> Result<ApiPki, ServerError> {
        let ca = load_or_create_ca(data_dir, CaRole::Cluster, may_create_ca)?;
        let (serving, _) = Renewing::load(data_dir, &ca, API_SERVING, sans)?;
        let config =
            tls::server_config(serving.cert.clone(), &ca.issued.cert_pem, ClientAuth::Request, &tls::HTTP_ALPN)
                .map_err(config_error)?;
        let clients = Arc::new(ClientCertCheck::new(&ca.issued.cert_pem).map_err(config_error)?);
        let kubelet = current_leaf(data_dir, &ca, APISERVER_KUBELET_CLIENT, &[])?;
        let kubelet_client =
            Arc::new(tls::kubelet_client_config(&kubelet.cert_pem, &kubelet.key_pem).map_err(config_error)?);
        Ok(ApiPki { ca, config: Arc::new(config), clients, kubelet_client, serving })
    }

    /// Issues the serving certificate again when it needs it, until `shutdown`.
    pub async fn keep_renewed(self, shutdown: CancellationToken) {
        self.serving.keep_renewed(shutdown).await
    }
}

/// The store's TLS material: the etcd CA and the member's certificate.
pub struct EtcdPki {
    pub ca: Ca,
    /// What the store member serves and dials with.
    pub tls: StoreTls,
    member: Renewing,
}

impl EtcdPki {
    /// Loads the data dir's etcd CA — or creates it when `may_create_ca` — and the
    /// member's certificate for `sans` (every client and peer address it answers on).
    pub fn load_or_create(data_dir: &Path, may_create_ca: bool, sans: Vec<String>) -> Result<EtcdPki, ServerError> {
        let ca = load_or_create_ca(data_dir, CaRole::Etcd, may_create_ca)?;
        let (member, issued) = Renewing::load(data_dir, &ca, ETCD_MEMBER, sans)?;
        let port = |alpn: &[&[u8]]| {
            tls::server_config(member.cert.clone(), &ca.issued.cert_pem, ClientAuth::Require, alpn)
                .map(Arc::new)
                .map_err(config_error)
        };
        let dial = Credentials { ca_pem: ca.issued.cert_pem.clone(), client: issued }.grpc_tls();
        // The client port also answers HTTP/1 (`/health`, `/metrics`); peers speak gRPC only.
        let tls = StoreTls { client_port: port(&tls::HTTP_ALPN)?, peer_port: port(&[b"h2"])?, dial };
        Ok(EtcdPki { ca, tls, member })
    }

    /// Issues the member's certificate again when it needs it, until `shutdown`. (Dialing
    /// keeps the certificate the member started with: it is valid for a year and is
    /// reissued, at a restart, once a third of that is left.)
    pub async fn keep_renewed(self, shutdown: CancellationToken) {
        self.member.keep_renewed(shutdown).await
    }

    /// The etcd client certificate of the cluster's administrator (etcdctl's, and
    /// berthctl's in the admin kubeconfig): `pki/etcd/admin.crt`, issued when missing.
    pub fn admin_client(&self, data_dir: &Path) -> Result<Credentials, ServerError> {
        let client = current_leaf(data_dir, &self.ca, ETCD_ADMIN, &[])?;
        Ok(Credentials { ca_pem: self.ca.issued.cert_pem.clone(), client })
    }
}

/// The certificate `leaf` on disk, issued anew (and written) when there is none, it lacks
/// one of `sans`, or it is a third from expiry.
fn current_leaf(data_dir: &Path, ca: &Ca, leaf: Leaf, sans: &[String]) -> Result<Issued, ServerError> {
    let dir = leaf.role.dir(data_dir);
    let (cert_path, key_path) = (dir.join(leaf.cert), dir.join(leaf.key));
    let on_disk = std::fs::read_to_string(&cert_path).ok().zip(std::fs::read_to_string(&key_path).ok());
    if let Some((cert_pem, key_pem)) = on_disk {
        let fresh =
            pki::cert_info(&cert_pem).is_ok_and(|info| !pki::needs_renewal(&info, sans, std::time::SystemTime::now()));
        if fresh {
            return Ok(Issued { cert_pem, key_pem });
        }
    }
    let issued = match leaf.usage {
        Usage::Peer => ca.issue_peer(leaf.common_name, sans),
        Usage::Serving => ca.issue_serving(leaf.common_name, sans),
        Usage::Client => ca.issue_client(leaf.common_name, leaf.groups),
    }
    .map_err(config_error)?;
    std::fs::write(&cert_path, &issued.cert_pem)
        .map_err(|e| ServerError::Config(format!("{}: {e}", cert_path.display())))?;
    pki::write_private_key(&key_path, &issued.key_pem).map_err(config_error)?;
    tracing::info!(cert = %cert_path.display(), sans = ?sans, "issued a certificate");
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

    #[test]
    fn the_store_gets_its_own_ca_a_member_certificate_for_both_ports_and_an_admin_client() {
        let dir = tempfile::tempdir().unwrap();
        let urls = vec!["https://10.1.2.3:2379".to_string(), "https://10.1.2.3:2380".into()];
        let err = EtcdPki::load_or_create(dir.path(), false, member_sans(&urls, &[])).err().unwrap().to_string();
        assert!(err.contains("no etcd CA"), "{err}");
        let api = ApiPki::load_or_create(dir.path(), true, cluster_sans()).unwrap();
        let etcd = EtcdPki::load_or_create(dir.path(), true, member_sans(&urls, &[])).unwrap();
        assert_ne!(etcd.ca.issued, api.ca.issued, "a CA of its own");
        let member = std::fs::read_to_string(dir.path().join("pki/etcd/member.crt")).unwrap();
        let info = pki::cert_info(&member).unwrap();
        assert!(info.sans.contains(&"10.1.2.3".to_string()) && info.sans.contains(&"127.0.0.1".to_string()));
        let admin = etcd.admin_client(dir.path()).unwrap();
        assert_eq!(admin.ca_pem, etcd.ca.issued.cert_pem);
        assert!(dir.path().join("pki/etcd/admin.key").exists());
        assert_eq!(etcd.admin_client(dir.path()).unwrap(), admin, "kept on disk");
        // The ports take the etcd CA's certificates and refuse the API CA's.
        let as_client = |c: &Credentials| {
            let config = tls::client_config(&etcd.ca.issued.cert_pem, Some((&c.client.cert_pem, &c.client.key_pem)));
            Arc::new(config.unwrap())
        };
        let api_admin = Credentials { ca_pem: api.ca.issued.cert_pem.clone(), client: admin_client(&api.ca).unwrap() };
        for port in [&etcd.tls.client_port, &etcd.tls.peer_port] {
            assert!(handshake(port.clone(), as_client(&admin)).is_ok());
            assert!(handshake(port.clone(), as_client(&api_admin)).is_err(), "the API CA's admin");
        }
    }

    /// A TLS handshake in memory, then one byte each way (TLS 1.3 servers judge the
    /// client's certificate after the client thinks it is done).
    fn handshake(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>) -> Result<(), String> {
        use std::io::{Read, Write};
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        c.writer().write_all(b"x").unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).map_err(|e| e.to_string())?;
            s.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
            s.process_new_packets().map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).map_err(|e| e.to_string())?;
            c.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
            c.process_new_packets().map_err(|e| format!("client: {e}"))?;
            let mut got = [0u8; 1];
            if s.reader().read(&mut got).is_ok_and(|n| n == 1) {
                return Ok(());
            }
        }
        Err("no data got through".into())
    }
}
