//! The admin kubeconfig every Berth client reads and every fresh server writes, with
//! Berth's `berth.dev/servers` cluster extension listing all servers of an HA cluster (API
//! URLs for failover, etcd client URLs for the store's own operations). kubectl ignores the
//! extension and uses the cluster's `server`.
//!
//! ```yaml
//! clusters:
//! - name: berth
//!   cluster:
//!     server: http://127.0.0.1:6443
//!     extensions:
//!     - name: berth.dev/servers
//!       extension:
//!         apiServers: [http://127.0.0.1:6443, http://127.0.0.1:16443]
//!         etcdEndpoints: [https://127.0.0.1:2379, https://127.0.0.1:12379]
//!     - name: berth.dev/etcd-client
//!       extension:
//!         certificateAuthorityData: LS0t…
//!         clientCertificateData: LS0t…
//!         clientKeyData: LS0t…
//! ```
//!
//! The second extension, in an administrator's kubeconfig only, is the etcd client
//! certificate for those endpoints (etcd's CA is not the API's; see `pki::CaRole`).

use serde::{Deserialize, Serialize};

/// Name of Berth's cluster extension in a kubeconfig.
pub const SERVERS_EXTENSION: &str = "berth.dev/servers";
/// Name of the cluster extension holding the etcd client certificate.
pub const ETCD_CLIENT_EXTENSION: &str = "berth.dev/etcd-client";
/// File name of the admin kubeconfig in a server's or local cluster's data dir.
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";
/// The URL kubectl-style tools use when nothing is configured.
pub const DEFAULT_API_URL: &str = "https://127.0.0.1:6443";

/// The contents of the `berth.dev/servers` extension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServersExtension {
    /// Kubernetes API URLs of every server.
    #[serde(default)]
    pub api_servers: Vec<String>,
    /// etcd v3 client URLs of every server (cluster status, members, snapshots).
    #[serde(default)]
    pub etcd_endpoints: Vec<String>,
}

/// The TLS half of a kubeconfig: the CA that signed the servers' certificates and a client
/// certificate (kubectl's `certificate-authority-data`, `client-certificate-data`,
/// `client-key-data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ca_pem: String,
    pub client: crate::pki::Issued,
}

/// The contents of the `berth.dev/etcd-client` extension: base64 PEM, as kubeconfig's
/// own `*-data` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClientExtension {
    pub certificate_authority_data: String,
    pub client_certificate_data: String,
    pub client_key_data: String,
}

impl EtcdClientExtension {
    pub fn new(credentials: &Credentials) -> EtcdClientExtension {
        EtcdClientExtension {
            certificate_authority_data: b64(&credentials.ca_pem),
            client_certificate_data: b64(&credentials.client.cert_pem),
            client_key_data: b64(&credentials.client.key_pem),
        }
    }

    /// The credentials it carries; None when a field is not base64 PEM text.
    pub fn credentials(&self) -> Option<Credentials> {
        use base64::Engine;
        let text =
            |data: &str| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?).ok();
        Some(Credentials {
            ca_pem: text(&self.certificate_authority_data)?,
            client: crate::pki::Issued {
                cert_pem: text(&self.client_certificate_data)?,
                key_pem: text(&self.client_key_data)?,
            },
        })
    }
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// What an administrator's kubeconfig carries: the API credentials and, from a server
/// that has them, the etcd client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCredentials {
    pub api: Credentials,
    pub etcd: Option<Credentials>,
}

/// [`admin_kubeconfig_yaml`] with the etcd client extension when `credentials` has one.
pub fn admin_kubeconfig_with_etcd_yaml(
    cluster_name: &str,
    servers: &ServersExtension,
    credentials: Option<&AdminCredentials>,
) -> String {
    let mut doc = admin_kubeconfig(cluster_name, servers, credentials.map(|c| &c.api));
    if let Some(etcd) = credentials.and_then(|c| c.etcd.as_ref()) {
        add_etcd_client(&mut doc, etcd);
    }
    serde_yaml::to_string(&doc).expect("a JSON value always serializes")
}

/// Adds the `berth.dev/etcd-client` extension with `etcd` to every cluster of `kubeconfig`
/// (what [`admin_kubeconfig`] returns).
pub fn add_etcd_client(kubeconfig: &mut serde_json::Value, etcd: &Credentials) {
    let extension = serde_json::json!({"name": ETCD_CLIENT_EXTENSION, "extension": EtcdClientExtension::new(etcd)});
    let clusters = kubeconfig.get_mut("clusters").and_then(|c| c.as_array_mut());
    for cluster in clusters.into_iter().flatten() {
        if let Some(extensions) = cluster.pointer_mut("/cluster/extensions").and_then(|e| e.as_array_mut()) {
            extensions.retain(|e| e.get("name").and_then(|n| n.as_str()) != Some(ETCD_CLIENT_EXTENSION));
            extensions.push(extension.clone());
        }
    }
}

impl Credentials {
    /// tonic's client TLS for a gRPC port (etcd's client or peer port) with these
    /// credentials.
    pub fn grpc_tls(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.client.cert_pem, &self.client.key_pem))
    }

    /// A kube-rs client configuration for the API at `url` with these credentials.
    pub fn kube_config(&self, url: http::Uri) -> kube::Config {
        let mut config = kube::Config::new(url);
        self.apply(&mut config);
        config
    }

    /// Sets `config`'s CA and client certificate to these.
    pub fn apply(&self, config: &mut kube::Config) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        config.root_cert = crate::tls::certificates("CA", &self.ca_pem)
            .ok()
            .map(|certs| certs.into_iter().map(|c| c.to_vec()).collect());
        config.auth_info.client_certificate_data = Some(b64(&self.client.cert_pem));
        config.auth_info.client_key_data = Some(b64(&self.client.key_pem).into());
    }
}

/// Builds an admin kubeconfig for a Berth cluster: with `credentials` (a secure cluster)
/// or without (an `--insecure` one). `api_servers[0]` is the cluster's `server`; the
/// extension lists them all.
pub fn admin_kubeconfig(
    cluster_name: &str,
    servers: &ServersExtension,
    credentials: Option<&Credentials>,
) -> serde_json::Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let server = servers.api_servers.first().cloned().unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let mut cluster = serde_json::json!({
        "server": server,
        "extensions": [{"name": SERVERS_EXTENSION, "extension": servers}],
    });
    let mut user = serde_json::json!({});
    if let Some(c) = credentials {
        cluster["certificate-authority-data"] = b64(&c.ca_pem).into();
        user["client-certificate-data"] = b64(&c.client.cert_pem).into();
        user["client-key-data"] = b64(&c.client.key_pem).into();
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": "admin", "namespace": "default"}}],
        "current-context": cluster_name,
        "preferences": {},
    })
}

/// `kube-public/cluster-info`'s kubeconfig (kubeadm's discovery document): the servers and
/// the cluster CA, no user — what a joining node trusts once the CA matches its pin.
pub fn cluster_info_kubeconfig_yaml(api_servers: &[String], ca_pem: &str) -> String {
    use base64::Engine;
    let servers = ServersExtension { api_servers: api_servers.to_vec(), etcd_endpoints: vec![] };
    let server = api_servers.first().cloned().unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            "extensions": [{"name": SERVERS_EXTENSION, "extension": servers}],
        }}],
        "contexts": [],
        "users": [],
        "current-context": "",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("a JSON value always serializes")
}

/// The servers and CA PEM of a cluster-info kubeconfig (see
/// [`cluster_info_kubeconfig_yaml`]).
pub fn read_cluster_info(yaml: &str) -> Option<(Vec<String>, String)> {
    use base64::Engine;
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).ok()?;
    let cluster = doc.get("clusters")?.get(0)?.get("cluster")?;
    let ca = cluster.get("certificate-authority-data")?.as_str()?;
    let ca = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca).ok()?).ok()?;
    let mut servers: Vec<String> = cluster
        .get("extensions")
        .and_then(|e| e.as_sequence())
        .into_iter()
        .flatten()
        .filter(|e| e.get("name").and_then(|n| n.as_str()) == Some(SERVERS_EXTENSION))
        .filter_map(|e| serde_yaml::from_value::<ServersExtension>(e.get("extension")?.clone()).ok())
        .flat_map(|s| s.api_servers)
        .collect();
    if servers.is_empty() {
        servers.push(cluster.get("server")?.as_str()?.to_string());
    }
    Some((servers, ca))
}

/// The admin kubeconfig as YAML text, ready to write to a file.
pub fn admin_kubeconfig_yaml(
    cluster_name: &str,
    servers: &ServersExtension,
    credentials: Option<&Credentials>,
) -> String {
    serde_yaml::to_string(&admin_kubeconfig(cluster_name, servers, credentials))
        .expect("a JSON value always serializes")
}

/// `yaml` (a kubeconfig) with every `berth.dev/servers` extension it carries set to
/// `servers`; `None` when nothing changes (or the text is not a kubeconfig). Everything else
/// — the `server` field, users, contexts, an operator's edits — is kept: servers rewrite
/// only the list of members in the file they wrote, to keep it current.
pub fn with_servers_extension(yaml: &str, servers: &ServersExtension) -> Option<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(yaml).ok()?;
    let wanted = serde_yaml::to_value(servers).ok()?;
    let mut changed = false;
    for cluster in doc.get_mut("clusters")?.as_sequence_mut()? {
        let Some(extensions) = cluster.get_mut("cluster").and_then(|c| c.get_mut("extensions")) else { continue };
        for ext in extensions.as_sequence_mut().into_iter().flatten() {
            if ext.get("name").and_then(|n| n.as_str()) == Some(SERVERS_EXTENSION)
                && ext.get("extension") != Some(&wanted)
            {
                ext["extension"] = wanted.clone();
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    serde_yaml::to_string(&doc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_extension_is_rewritten_in_place() {
        let one = ServersExtension {
            api_servers: vec!["http://a:6443".into()],
            etcd_endpoints: vec!["http://a:2379".into()],
        };
        let yaml = admin_kubeconfig_yaml("berth", &one, None);
        assert_eq!(with_servers_extension(&yaml, &one), None, "unchanged");
        let three = ServersExtension {
            api_servers: vec!["http://a:6443".into(), "http://b:6443".into(), "http://c:6443".into()],
            etcd_endpoints: vec!["http://a:2379".into()],
        };
        let updated = with_servers_extension(&yaml, &three).unwrap();
        assert_eq!(updated, admin_kubeconfig_yaml("berth", &three, None));
        assert!(updated.contains("server: http://a:6443"), "the cluster's server stays");
        assert_eq!(with_servers_extension("not: [a kubeconfig", &three), None);
        assert_eq!(with_servers_extension("kind: Config\n", &three), None);
    }

    #[test]
    fn yaml_is_block_style_and_lists_every_server() {
        let servers = ServersExtension {
            api_servers: vec!["http://127.0.0.1:6443".into(), "http://127.0.0.1:16443".into()],
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
        };
        let yaml = admin_kubeconfig_yaml("berth", &servers, None);
        assert_eq!(
            yaml,
            r#"apiVersion: v1
clusters:
- cluster:
    extensions:
    - extension:
        apiServers:
        - http://127.0.0.1:6443
        - http://127.0.0.1:16443
        etcdEndpoints:
        - http://127.0.0.1:2379
      name: berth.dev/servers
    server: http://127.0.0.1:6443
  name: berth
contexts:
- context:
    cluster: berth
    namespace: default
    user: admin
  name: berth
current-context: berth
kind: Config
preferences: {}
users:
- name: admin
  user: {}
"#
        );
    }
}
