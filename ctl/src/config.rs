//! Where `berthctl` finds its cluster: the kubeconfig chain kubectl uses (`--kubeconfig`,
//! `KUBECONFIG`, `~/.kube/config`), then the local cluster's file written by `berthctl up`
//! (`~/.berth/local/admin.kubeconfig`), plus Berth's kubeconfig extension that lists every
//! server of an HA cluster so commands can fail over when one dies.
//!
//! The extension is an ordinary kubeconfig cluster extension, ignored by kubectl:
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
//!         etcdEndpoints: [http://127.0.0.1:2379, http://127.0.0.1:12379]
//! ```

use std::path::{Path, PathBuf};

use crate::error::{CtlError, Result};
use kube::config::{KubeConfigOptions, Kubeconfig, NamedExtension};

// The extension and the admin kubeconfig are shared with the servers (which write one on
// first start), so they live in `berth-proto`; re-exported here for the commands.
pub use berth_proto::kubeconfig::{
    admin_kubeconfig, Credentials, EtcdClientExtension, ServersExtension, ADMIN_KUBECONFIG, DEFAULT_API_URL,
    ETCD_CLIENT_EXTENSION, SERVERS_EXTENSION,
};
use berth_proto::pki::Issued;

/// Connection flags shared by every command (kubectl's global flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true, env = "BERTH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long, global = true)]
    pub server: Option<String>,
    /// etcd client URLs of the servers (cluster, member and snapshot commands), comma-separated.
    #[arg(long, global = true, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// The etcd CA's certificate file for https endpoints (kube-apiserver's flag)
    /// [default: the kubeconfig's berth.dev/etcd-client extension].
    #[arg(long, global = true, value_name = "FILE", requires_all = ["etcd_certfile", "etcd_keyfile"])]
    pub etcd_cafile: Option<PathBuf>,
    /// The etcd client certificate file.
    #[arg(long, global = true, value_name = "FILE", requires_all = ["etcd_cafile", "etcd_keyfile"])]
    pub etcd_certfile: Option<PathBuf>,
    /// The etcd client key file.
    #[arg(long, global = true, value_name = "FILE", requires_all = ["etcd_cafile", "etcd_certfile"])]
    pub etcd_keyfile: Option<PathBuf>,
    /// The length of time to wait before giving up on a single server request (e.g. 5s, 1m; 0 = no limit).
    #[arg(long, global = true, default_value = "0")]
    pub request_timeout: String,
}

/// What a command connects to, resolved from the flags and the kubeconfig chain.
#[derive(Debug, Clone)]
pub struct Target {
    /// The merged kubeconfig (an empty one when none exists).
    pub kubeconfig: Kubeconfig,
    /// The file it came from, when there was one.
    pub source: Option<PathBuf>,
    /// Context to use (`--context` or the current context).
    pub context: Option<String>,
    /// Namespace for namespaced requests: `-n`, else the context's, else `default`.
    pub namespace: String,
    /// Kubernetes API URLs, the one to try first at the front.
    pub api_servers: Vec<String>,
    /// etcd client URLs (may be empty when neither `--endpoints` nor the extension gives any).
    pub etcd_endpoints: Vec<String>,
    /// The etcd client certificate for https endpoints: `--etcd-*file`, else the
    /// kubeconfig's `berth.dev/etcd-client` extension.
    pub etcd_credentials: Option<Credentials>,
}

/// `~/.berth/local`: where `berthctl up` keeps the local cluster (data, logs, kubeconfig).
pub fn local_cluster_dir() -> PathBuf {
    match std::env::var_os("BERTH_HOME") {
        Some(home) => PathBuf::from(home).join("local"),
        None => home_dir().join(".berth").join("local"),
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

/// The kubeconfig files to read, in kubectl's order, falling back to the local cluster's.
fn kubeconfig_paths(global: &GlobalArgs) -> Vec<PathBuf> {
    if let Some(path) = &global.kubeconfig {
        return vec![path.clone()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).filter(|p| p.exists()).collect();
    }
    let home = home_dir().join(".kube").join("config");
    if home.exists() {
        return vec![home];
    }
    let local = local_cluster_dir().join(ADMIN_KUBECONFIG);
    if local.exists() {
        return vec![local];
    }
    vec![]
}

/// Reads one kubeconfig file.
pub fn read_kubeconfig(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path)
        .map_err(|e| CtlError::Parse { context: path.display().to_string(), message: e.to_string() })
}

/// Resolves flags and kubeconfig files into a [`Target`]. Never touches the network.
pub fn resolve(global: &GlobalArgs) -> Result<Target> {
    let paths = kubeconfig_paths(global);
    let mut merged: Option<Kubeconfig> = None;
    for path in &paths {
        let next = read_kubeconfig(path)?;
        merged = Some(match merged {
            None => next,
            Some(acc) => acc
                .merge(next)
                .map_err(|e| CtlError::Parse { context: path.display().to_string(), message: e.to_string() })?,
        });
    }
    let kubeconfig = merged.unwrap_or_default();
    let context_name = global.context.clone().or_else(|| kubeconfig.current_context.clone());
    let context = context_name
        .as_ref()
        .and_then(|name| kubeconfig.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.clone());
    if let (Some(name), None, false) = (&global.context, &context, kubeconfig.contexts.is_empty()) {
        return Err(CtlError::usage(format!("context was not found for specified context: {name}")));
    }
    let cluster = context
        .as_ref()
        .and_then(|c| kubeconfig.clusters.iter().find(|cl| cl.name == c.cluster))
        .and_then(|c| c.cluster.clone());
    let extension = cluster.as_ref().and_then(|c| servers_extension(c.extensions.as_deref().unwrap_or(&[])));
    let mut api_servers = Vec::new();
    if let Some(server) = &global.server {
        api_servers.push(normalize_url(server));
    } else {
        if let Some(server) = cluster.as_ref().and_then(|c| c.server.clone()) {
            api_servers.push(server);
        }
        for s in extension.iter().flat_map(|e| e.api_servers.iter()) {
            if !api_servers.contains(s) {
                api_servers.push(s.clone());
            }
        }
    }
    if api_servers.is_empty() {
        api_servers.push(DEFAULT_API_URL.to_string());
    }
    let etcd_endpoints = if global.endpoints.is_empty() {
        extension.map(|e| e.etcd_endpoints).unwrap_or_default()
    } else {
        global.endpoints.iter().map(|e| normalize_url(e)).collect()
    };
    let etcd_credentials = match (&global.etcd_cafile, &global.etcd_certfile, &global.etcd_keyfile) {
        (Some(ca), Some(cert), Some(key)) => {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path).map_err(|e| CtlError::io(format!("reading {}", path.display()), e))
            };
            Some(Credentials { ca_pem: read(ca)?, client: Issued { cert_pem: read(cert)?, key_pem: read(key)? } })
        }
        _ => cluster.as_ref().and_then(|c| etcd_client_extension(c.extensions.as_deref().unwrap_or(&[]))),
    };
    let namespace = global
        .namespace
        .clone()
        .or_else(|| context.as_ref().and_then(|c| c.namespace.clone()))
        .unwrap_or_else(|| "default".to_string());
    Ok(Target {
        kubeconfig,
        source: paths.first().cloned(),
        context: context_name,
        namespace,
        api_servers,
        etcd_endpoints,
        etcd_credentials,
    })
}

/// `host:port` → `http://host:port`, as kubectl accepts a bare address for `--server`.
pub fn normalize_url(url: &str) -> String {
    if url.contains("://") {
        url.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", url.trim_end_matches('/'))
    }
}

/// The etcd client credentials in a cluster's `berth.dev/etcd-client` extension.
pub fn etcd_client_extension(extensions: &[NamedExtension]) -> Option<Credentials> {
    let ext = extensions.iter().find(|e| e.name == ETCD_CLIENT_EXTENSION)?;
    serde_json::from_value::<EtcdClientExtension>(ext.extension.clone()).ok()?.credentials()
}

/// Decodes the `berth.dev/servers` extension out of a cluster's extensions.
pub fn servers_extension(extensions: &[NamedExtension]) -> Option<ServersExtension> {
    let ext = extensions.iter().find(|e| e.name == SERVERS_EXTENSION)?;
    serde_json::from_value(ext.extension.clone()).ok()
}

impl Target {
    /// The PEM CA the current context's cluster trusts (`certificate-authority-data` or
    /// the `certificate-authority` file), if it names one.
    pub fn ca_pem(&self) -> Option<String> {
        use base64::Engine;
        let context = self.context.as_ref().and_then(|n| self.kubeconfig.contexts.iter().find(|c| &c.name == n))?;
        let cluster_name = &context.context.as_ref()?.cluster;
        let cluster = self.kubeconfig.clusters.iter().find(|c| &c.name == cluster_name)?.cluster.as_ref()?;
        if let Some(data) = &cluster.certificate_authority_data {
            let bytes = base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?;
            return String::from_utf8(bytes).ok();
        }
        std::fs::read_to_string(cluster.certificate_authority.as_ref()?).ok()
    }

    /// A kube-rs client configuration for the API server `api_servers[index]`.
    pub async fn kube_config(&self, index: usize, timeout: Option<std::time::Duration>) -> Result<kube::Config> {
        let server = &self.api_servers[index % self.api_servers.len()];
        let uri: http::Uri =
            server.parse().map_err(|e| CtlError::usage(format!("invalid server URL {server:?}: {e}")))?;
        let mut config = if self.kubeconfig.contexts.is_empty() {
            kube::Config::new(uri.clone())
        } else {
            let options = KubeConfigOptions { context: self.context.clone(), cluster: None, user: None };
            kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &options)
                .await
                .map_err(|e| CtlError::Parse { context: "kubeconfig".into(), message: e.to_string() })?
        };
        config.cluster_url = uri;
        config.default_namespace = self.namespace.clone();
        config.read_timeout = timeout;
        config.write_timeout = timeout;
        // kubectl's retries, not kube-rs's: client-go retries a 429/503 only when the server
        // says when (Retry-After), and drain retries a refused eviction every 5 s itself,
        // saying so; kube-rs's default policy would back off silently for minutes.
        config.default_retry = false;
        if let Some(t) = timeout {
            config.connect_timeout = Some(t);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_kubeconfig_round_trips_through_kube_rs() {
        let servers = ServersExtension {
            api_servers: vec!["http://127.0.0.1:6443".into(), "http://127.0.0.1:16443".into()],
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
        };
        let yaml = serde_yaml::to_string(&admin_kubeconfig("berth", &servers, None)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, yaml).unwrap();
        let global = GlobalArgs { kubeconfig: Some(path), ..Default::default() };
        let target = resolve(&global).unwrap();
        assert_eq!(target.api_servers, servers.api_servers);
        assert_eq!(target.etcd_endpoints, servers.etcd_endpoints);
        assert_eq!(target.namespace, "default");
        let global = GlobalArgs { server: Some("127.0.0.1:7000".into()), namespace: Some("x".into()), ..global };
        let target = resolve(&global).unwrap();
        assert_eq!(target.api_servers, vec!["http://127.0.0.1:7000".to_string()]);
        assert_eq!(target.namespace, "x");
    }

    #[test]
    fn unknown_context_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, serde_yaml::to_string(&admin_kubeconfig("berth", &Default::default(), None)).unwrap())
            .unwrap();
        let global = GlobalArgs { kubeconfig: Some(path), context: Some("nope".into()), ..Default::default() };
        let err = resolve(&global).unwrap_err();
        assert_eq!(err.to_string(), "error: context was not found for specified context: nope");
    }
}
