//! Each server's identity, published Kubernetes-style so clients can find every server
//! through any one of them: a `coordination.k8s.io` Lease `berth-server-<name>` in
//! `kube-system` (as kube-apiserver publishes its `apiserver-…` identity leases), held by the
//! server's name, labelled [`IDENTITY_LABEL`], with its API, etcd client and peer URLs as
//! annotations. Every server renews its own — not only the leader — through the in-process
//! API client, so a stale `renewTime` means the server is gone (or cut off).
//!
//! Also writes the admin kubeconfig a fresh server leaves in its data dir, and keeps its list
//! of servers current from the other servers' identity leases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::identity::{identity_record, IdentityRecord};
use berth_proto::kubeconfig::{
    admin_kubeconfig_with_etcd_yaml, with_servers_extension, ServersExtension, ADMIN_KUBECONFIG,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

// The lease's contract (label, annotations, name prefix) is shared with every client that
// reads it, so it lives in `berth-proto`.
pub use berth_proto::identity::{
    API_URL_ANNOTATION, CLIENT_URLS_ANNOTATION, IDENTITY_LABEL, IDENTITY_LABEL_VALUE, IDENTITY_NAMESPACE, LEASE_PREFIX,
    PEER_URLS_ANNOTATION,
};
/// Renewal period.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Retry period before the lease was first published.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// The lease's duration: three missed renewals.
const LEASE_SECONDS: i32 = 15;

/// Who this server is and where it can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    pub name: String,
    pub api_url: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
}

impl ServerIdentity {
    pub fn lease_name(&self) -> String {
        format!("{LEASE_PREFIX}{}", self.name)
    }

    /// The `berth.dev/servers` extension describing this one server.
    pub fn servers_extension(&self) -> ServersExtension {
        ServersExtension { api_servers: vec![self.api_url.clone()], etcd_endpoints: self.client_urls.clone() }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The identity lease as this server renews it (pure but for the clock): labels,
/// annotations and holder are rewritten every time, so a changed URL shows at once.
pub fn renewed(current: Option<Lease>, identity: &ServerIdentity) -> Lease {
    let mut lease = current.unwrap_or_default();
    let meta = &mut lease.metadata;
    meta.name = Some(identity.lease_name());
    meta.namespace = Some(IDENTITY_NAMESPACE.into());
    meta.labels.get_or_insert_with(BTreeMap::new).insert(IDENTITY_LABEL.into(), IDENTITY_LABEL_VALUE.into());
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(API_URL_ANNOTATION.into(), identity.api_url.clone());
    annotations.insert(CLIENT_URLS_ANNOTATION.into(), identity.client_urls.join(","));
    annotations.insert(PEER_URLS_ANNOTATION.into(), identity.peer_urls.join(","));
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity.name.as_str()) {
        spec.holder_identity = Some(identity.name.clone());
        spec.acquire_time = Some(now());
    }
    spec.lease_duration_seconds = Some(LEASE_SECONDS);
    spec.renew_time = Some(now());
    lease
}

async fn renew(api: &Api<Lease>, identity: &ServerIdentity) -> Result<(), kube::Error> {
    let name = identity.lease_name();
    let current = api.get_opt(&name).await?;
    let exists = current.is_some();
    let lease = renewed(current, identity);
    if exists {
        api.replace(&name, &PostParams::default(), &lease).await?;
    } else {
        api.create(&PostParams::default(), &lease).await?;
    }
    Ok(())
}

/// The `berth.dev/servers` extension for this server's kubeconfig: this server first, then
/// every other server whose identity lease is fresh (in name order), so a client holding
/// any server's kubeconfig can fail over to every live member.
pub fn cluster_servers(
    identity: &ServerIdentity,
    leases: &[Lease],
    now: k8s_openapi::jiff::Timestamp,
) -> ServersExtension {
    let mut servers = identity.servers_extension();
    let mut others: Vec<(String, IdentityRecord)> = leases
        .iter()
        .filter_map(|l| identity_record(l, now))
        .filter(|(name, r)| r.fresh && *name != identity.name)
        .collect();
    others.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, record) in others {
        if !record.api_url.is_empty() && !servers.api_servers.contains(&record.api_url) {
            servers.api_servers.push(record.api_url);
        }
        for url in record.client_urls {
            if !servers.etcd_endpoints.contains(&url) {
                servers.etcd_endpoints.push(url);
            }
        }
    }
    servers
}

/// Rewrites the member lists in `path` (the admin kubeconfig this server wrote) when they
/// changed; returns whether it did. A missing or foreign file is left alone.
fn refresh_admin_kubeconfig(path: &Path, servers: &ServersExtension) -> std::io::Result<bool> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(false) };
    let Some(updated) = with_servers_extension(&text, servers) else { return Ok(false) };
    write_private_file(path, &updated)?;
    Ok(true)
}

async fn refresh_members(api: &Api<Lease>, identity: &ServerIdentity, kubeconfig: &Path) {
    let params = kube::api::ListParams::default().labels(&berth_proto::identity::identity_selector());
    let leases = match api.list(&params).await {
        Ok(list) => list.items,
        Err(e) => return tracing::debug!(error = %e, "listing identity leases for the admin kubeconfig"),
    };
    let servers = cluster_servers(identity, &leases, k8s_openapi::jiff::Timestamp::now());
    match refresh_admin_kubeconfig(kubeconfig, &servers) {
        Ok(true) => {
            tracing::info!(path = %kubeconfig.display(), servers = ?servers.api_servers, "updated the admin kubeconfig's server list")
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(path = %kubeconfig.display(), error = %e, "updating the admin kubeconfig"),
    }
}

/// Renews this server's identity lease every [`RENEW_EVERY`] until `shutdown`, and keeps
/// the server list of the admin kubeconfig at `kubeconfig` current. Failures (no leader
/// yet, `kube-system` not created yet, a conflict) are retried next period.
pub async fn run(client: kube::Client, identity: ServerIdentity, kubeconfig: PathBuf, shutdown: CancellationToken) {
    let api: Api<Lease> = Api::namespaced(client, IDENTITY_NAMESPACE);
    let mut published = false;
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(RENEW_EVERY, renew(&api, &identity)) => r,
        };
        let ok = matches!(result, Ok(Ok(())));
        if ok {
            let _ = tokio::time::timeout(RENEW_EVERY, refresh_members(&api, &identity, &kubeconfig)).await;
        }
        match result {
            Ok(Ok(())) if !published => {
                published = true;
                tracing::info!(lease = %identity.lease_name(), "published the server identity lease");
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "renewing the server identity lease"),
            Err(_) => tracing::debug!("renewing the server identity lease timed out"),
        }
        // Until the first success (no leader yet, `kube-system` not created yet) retry
        // soon, so clients find a new server within a second or two.
        let pause = if ok || published { RENEW_EVERY } else { RETRY_EVERY };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Writes `<data_dir>/admin.kubeconfig` for this server unless it exists (it is written
/// on the first start and never replaced — an operator may have edited it; only its
/// `berth.dev/servers` member list is kept current, by [`run`]).
/// Returns the path when it was written.
pub fn write_admin_kubeconfig(
    data_dir: &Path,
    identity: &ServerIdentity,
    credentials: Option<&berth_proto::kubeconfig::AdminCredentials>,
) -> std::io::Result<Option<PathBuf>> {
    let path = data_dir.join(ADMIN_KUBECONFIG);
    if path.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(data_dir)?;
    write_private_file(&path, &admin_kubeconfig_with_etcd_yaml("berth", &identity.servers_extension(), credentials))?;
    Ok(Some(path))
}

/// Writes `text` to `path` atomically (a synced temporary file renamed over it), readable
/// by the owner only: kubeconfigs carry admin credentials by convention.
fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The URL clients use for a listener bound at `addr` from `listen_url`: the listen URL's
/// scheme with the bound address, where an unspecified host (0.0.0.0, ::) becomes loopback.
pub fn reachable_url(listen_url: &str, addr: std::net::SocketAddr) -> String {
    let scheme = listen_url.split("://").next().filter(|s| *s != listen_url).unwrap_or("http");
    let ip = if addr.ip().is_unspecified() {
        match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        addr.ip()
    };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ServerIdentity {
        ServerIdentity {
            name: "n1".into(),
            api_url: "http://127.0.0.1:6443".into(),
            client_urls: vec!["http://127.0.0.1:2379".into(), "http://10.0.0.1:2379".into()],
            peer_urls: vec!["http://127.0.0.1:2380".into()],
        }
    }

    #[test]
    fn the_lease_names_the_server_and_its_urls() {
        let lease = renewed(None, &identity());
        assert_eq!(lease.metadata.name.as_deref(), Some("berth-server-n1"));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(lease.metadata.labels.as_ref().unwrap()[IDENTITY_LABEL], "berth-server");
        let a = lease.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[API_URL_ANNOTATION], "http://127.0.0.1:6443");
        assert_eq!(a[CLIENT_URLS_ANNOTATION], "http://127.0.0.1:2379,http://10.0.0.1:2379");
        assert_eq!(a[PEER_URLS_ANNOTATION], "http://127.0.0.1:2380");
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(LEASE_SECONDS));
        let acquired = spec.acquire_time.clone();
        let mut moved = identity();
        moved.api_url = "http://127.0.0.1:7443".into();
        let again = renewed(Some(lease), &moved);
        assert_eq!(again.spec.as_ref().unwrap().acquire_time, acquired, "the same holder keeps its acquire time");
        assert_eq!(again.metadata.annotations.as_ref().unwrap()[API_URL_ANNOTATION], "http://127.0.0.1:7443");
    }

    #[test]
    fn the_kubeconfig_lists_this_server_first_then_the_fresh_others() {
        let mut other = identity();
        other.name = "n2".into();
        other.api_url = "http://127.0.0.1:16443".into();
        other.client_urls = vec!["http://127.0.0.1:12379".into()];
        let mut gone = identity();
        gone.name = "n3".into();
        gone.api_url = "http://127.0.0.1:26443".into();
        let mut stale = renewed(None, &gone);
        stale.spec.as_mut().unwrap().renew_time =
            Some(MicroTime(k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60)));
        let leases = vec![renewed(None, &identity()), stale, renewed(None, &other)];
        let servers = cluster_servers(&identity(), &leases, k8s_openapi::jiff::Timestamp::now());
        assert_eq!(servers.api_servers, vec!["http://127.0.0.1:6443", "http://127.0.0.1:16443"]);
        assert_eq!(
            servers.etcd_endpoints,
            vec!["http://127.0.0.1:2379", "http://10.0.0.1:2379", "http://127.0.0.1:12379"]
        );
    }

    #[test]
    fn unspecified_hosts_become_loopback() {
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(reachable_url("http://0.0.0.0:6443", addr("0.0.0.0:6443")), "http://127.0.0.1:6443");
        assert_eq!(reachable_url("http://[::]:6443", addr("[::]:6443")), "http://[::1]:6443");
        assert_eq!(reachable_url("http://127.0.0.1:0", addr("127.0.0.1:41000")), "http://127.0.0.1:41000");
    }

    #[test]
    fn the_admin_kubeconfig_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_admin_kubeconfig(dir.path(), &identity(), None).unwrap().expect("written");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("server: http://127.0.0.1:6443"), "{text}");
        assert!(text.contains("- http://10.0.0.1:2379"), "{text}");
        std::fs::write(&path, "edited").unwrap();
        assert_eq!(write_admin_kubeconfig(dir.path(), &identity(), None).unwrap(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "edited");
    }
}
