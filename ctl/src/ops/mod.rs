//! Berth's own commands, which kubectl has no verbs for: the replicated control plane's
//! status and membership and backups (over the etcd v3 API of the servers), and the local
//! cluster that `berthctl up` starts and `berthctl down` stops.
//!
//! This module holds what they share: finding the servers' etcd endpoints (flags, the
//! kubeconfig extension, else the servers' identity Leases), bounded gRPC calls, and the
//! mapping of gRPC failures to `berthctl` errors.

pub mod certs;
pub mod cluster;
pub mod local;
pub mod member;
pub mod node_net;
pub mod snapshot;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use berth_proto::etcdserverpb::cluster_client::ClusterClient;
use berth_proto::etcdserverpb::{MemberListRequest, MemberListResponse};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::{CtlError, Result};
use crate::session::Session;

/// How long one etcd call may take when `--request-timeout` is not set: a server that does
/// not answer within it counts as unhealthy.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(3);

pub use berth_proto::identity::IdentityRecord;
use berth_proto::identity::{identity_record, lease_valid};

/// The per-call timeout for etcd calls: `--request-timeout`, else [`DEFAULT_RPC_TIMEOUT`].
pub fn rpc_timeout(session: &Session) -> Result<Duration> {
    Ok(session.request_timeout()?.unwrap_or(DEFAULT_RPC_TIMEOUT))
}

/// The etcd client URLs to talk to and the client certificate for the `https://` ones.
#[derive(Debug, Clone)]
pub struct EtcdTarget {
    pub urls: Vec<String>,
    pub tls: Option<ClientTlsConfig>,
}

impl EtcdTarget {
    /// A lazily connecting gRPC channel to one of the servers' etcd client URLs.
    pub fn channel(&self, url: &str, timeout: Duration) -> Result<Channel> {
        channel(url, self.tls.as_ref(), timeout)
    }
}

/// A lazily connecting gRPC channel to one etcd client URL (an `https://` one with `tls`);
/// every call on it is bounded by `timeout` (connect and handshake included).
pub fn channel(url: &str, tls: Option<&ClientTlsConfig>, timeout: Duration) -> Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| CtlError::usage(format!("invalid endpoint {url:?}: {e}")))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let tls = tls.ok_or_else(|| {
            CtlError::usage(format!(
                "{url} needs an etcd client certificate: pass --etcd-cafile, --etcd-certfile and --etcd-keyfile, \
                 or use an admin kubeconfig (with the berth.dev/etcd-client extension)"
            ))
        })?;
        endpoint = endpoint
            .tls_config(tls.clone().timeout(timeout))
            .map_err(|e| CtlError::usage(format!("TLS for {url}: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Runs `call` with a deadline; a timeout becomes a `deadline exceeded` status.
pub async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = std::result::Result<T, tonic::Status>>,
) -> std::result::Result<T, tonic::Status> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded("context deadline exceeded")),
    }
}

/// A gRPC failure in a few words (`etcdserver: member not found`, `connection refused`).
pub fn status_text(status: &tonic::Status) -> String {
    let message = status.message();
    if status.code() == tonic::Code::Unavailable || message.starts_with("transport error") {
        let mut text = message.to_string();
        let mut source = std::error::Error::source(status);
        while let Some(s) = source {
            text = s.to_string();
            source = s.source();
        }
        return if text.is_empty() { "unavailable".into() } else { text };
    }
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    }
}

/// A failed etcd call as a command error, etcdctl's way (`error: etcdserver: …`).
pub fn status_error(status: &tonic::Status) -> CtlError {
    CtlError::usage(status_text(status))
}

/// A member ID the way etcd prints it: lower-case hex without leading zeros.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

/// Who holds the control plane's Leases: server identities by name and leader-task holders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    pub identities: BTreeMap<String, IdentityRecord>,
    /// Leader-task lease name (`berth-scheduler`, …) → holder, for leases still valid.
    pub tasks: BTreeMap<String, String>,
}

/// The leader-task Leases `berth-server` publishes in `kube-system`.
pub const TASK_LEASES: [&str; 2] = ["berth-scheduler", "berth-controller-manager"];

/// Reads identity and task holders out of `kube-system`'s Leases (pure).
pub fn lease_view(leases: &[Lease], now: k8s_openapi::jiff::Timestamp) -> LeaseView {
    let mut view = LeaseView::default();
    for lease in leases {
        if let Some((holder, record)) = identity_record(lease, now) {
            view.identities.insert(holder, record);
            continue;
        }
        let name = lease.metadata.name.clone().unwrap_or_default();
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        if TASK_LEASES.contains(&name.as_str()) && !holder.is_empty() && lease_valid(lease, now) {
            view.tasks.insert(name, holder);
        }
    }
    view
}

/// The `kube-system` Leases through the API (with failover between API servers), bounded.
pub async fn fetch_lease_view(session: &mut Session, timeout: Duration) -> Result<LeaseView> {
    let list = tokio::time::timeout(
        timeout * 2,
        session.call(|client| async move {
            Api::<Lease>::namespaced(client, "kube-system").list(&ListParams::default()).await
        }),
    )
    .await
    .map_err(|_| CtlError::Connect {
        server: session.server_url().unwrap_or_default(),
        detail: "timed out".into(),
    })??;
    Ok(lease_view(&list.items, k8s_openapi::jiff::Timestamp::now()))
}

/// The etcd client URLs to talk to: `--endpoints`, else the kubeconfig's `berth.dev/servers`
/// extension, else what the servers publish in their identity Leases.
pub async fn etcd_endpoints(session: &mut Session) -> Result<EtcdTarget> {
    let tls = session.target()?.etcd_credentials.as_ref().map(|c| c.grpc_tls());
    let urls = etcd_urls(session).await?;
    Ok(EtcdTarget { urls, tls })
}

async fn etcd_urls(session: &mut Session) -> Result<Vec<String>> {
    let endpoints = session.target()?.etcd_endpoints.clone();
    if !endpoints.is_empty() {
        return Ok(endpoints);
    }
    let timeout = rpc_timeout(session)?;
    let view = fetch_lease_view(session, timeout).await?;
    let mut found: Vec<String> = Vec::new();
    // Servers that renewed their identity recently first: they are the likeliest to answer.
    let mut records: Vec<&IdentityRecord> = view.identities.values().collect();
    records.sort_by_key(|r| !r.fresh);
    for record in records {
        for url in &record.client_urls {
            if !found.contains(url) {
                found.push(url.clone());
            }
        }
    }
    if found.is_empty() {
        return Err(CtlError::usage(
            "no etcd endpoints: pass --endpoints, or use a kubeconfig with the berth.dev/servers extension",
        ));
    }
    Ok(found)
}

/// `MemberList` from the first endpoint that answers (serializable, so it works without a
/// quorum), with the URL that answered.
pub async fn member_list(endpoints: &EtcdTarget, timeout: Duration) -> Result<(MemberListResponse, String)> {
    let mut errors = Vec::new();
    for url in &endpoints.urls {
        let mut client = ClusterClient::new(endpoints.channel(url, timeout)?);
        match bounded(timeout, client.member_list(MemberListRequest { linearizable: false })).await {
            Ok(resp) => return Ok((resp.into_inner(), url.clone())),
            Err(status) => {
                tracing::debug!(endpoint = %url, error = %status, "member list");
                errors.push(format!("{url}: {}", status_text(&status)));
            }
        }
    }
    Err(CtlError::usage(format!("no etcd endpoint answered ({})", errors.join("; "))))
}

/// Runs `call` against each endpoint in turn until one does not fail with a connection
/// error; returns the last error otherwise. Deterministic rejections (`member not found`)
/// are returned at once.
pub async fn first_answer<T, F, Fut>(endpoints: &EtcdTarget, timeout: Duration, mut call: F) -> Result<T>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = std::result::Result<T, tonic::Status>>,
{
    let mut last = CtlError::usage("no etcd endpoints");
    for url in &endpoints.urls {
        match bounded(timeout, call(endpoints.channel(url, timeout)?)).await {
            Ok(v) => return Ok(v),
            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                tracing::debug!(endpoint = %url, error = %status, "trying the next endpoint");
                last = CtlError::usage(format!("{url}: {}", status_text(&status)));
            }
            Err(status) => return Err(status_error(&status)),
        }
    }
    Err(last)
}

/// etcdctl's `humanize.Bytes`: SI units, one decimal below 10 (`25 kB`, `1.2 MB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exp = (((bytes as f64).ln() / 1000f64.ln()).floor() as usize).min(UNITS.len() - 1);
    let value = ((bytes as f64 / 1000f64.powi(exp as i32)) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::identity::{API_URL_ANNOTATION, CLIENT_URLS_ANNOTATION, IDENTITY_LABEL, PEER_URLS_ANNOTATION};
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    use k8s_openapi::jiff::Timestamp;

    fn lease(name: &str, holder: &str, renewed: Timestamp, identity: bool) -> Lease {
        let mut meta = ObjectMeta { name: Some(name.into()), ..Default::default() };
        if identity {
            meta.labels = Some([(IDENTITY_LABEL.to_string(), "berth-server".to_string())].into());
            meta.annotations = Some(
                [
                    (API_URL_ANNOTATION.to_string(), format!("http://{holder}:6443")),
                    (CLIENT_URLS_ANNOTATION.to_string(), format!("http://{holder}:2379,http://{holder}:3379")),
                    (PEER_URLS_ANNOTATION.to_string(), format!("http://{holder}:2380")),
                ]
                .into(),
            );
        }
        Lease {
            metadata: meta,
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn leases_tell_identities_and_task_holders() {
        let now: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let recent: Timestamp = "2025-01-01T00:00:55Z".parse().unwrap();
        let old: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let leases = vec![
            lease("berth-server-a", "a", recent, true),
            lease("berth-server-b", "b", old, true),
            lease("berth-scheduler", "a", recent, false),
            lease("berth-controller-manager", "b", old, false),
            lease("something-else", "c", recent, false),
        ];
        let view = lease_view(&leases, now);
        assert_eq!(view.identities.len(), 2);
        assert_eq!(
            view.identities["a"],
            IdentityRecord {
                api_url: "http://a:6443".into(),
                client_urls: vec!["http://a:2379".into(), "http://a:3379".into()],
                peer_urls: vec!["http://a:2380".into()],
                fresh: true,
            }
        );
        assert!(!view.identities["b"].fresh);
        assert_eq!(view.tasks, BTreeMap::from([("berth-scheduler".to_string(), "a".to_string())]));
    }

    #[test]
    fn bytes_read_like_etcdctl() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(3_000_000_000), "3.0 GB");
    }
}
