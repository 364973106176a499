//! The servers' identity Leases as every client reads them: each `berth-server` publishes a
//! `coordination.k8s.io` Lease `kube-system/berth-server-<name>` (as kube-apiserver
//! publishes its `apiserver-…` identity leases), held by its name, labelled
//! [`IDENTITY_LABEL`]` = berth-server`, with its API, etcd client and peer URLs as
//! annotations. The servers write them (`control::identity`); berthctl and the agent read
//! them to find every server of an HA cluster through any one of them.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Namespace of the identity leases.
pub const IDENTITY_NAMESPACE: &str = "kube-system";
/// Label every identity lease carries (value: [`IDENTITY_LABEL_VALUE`]).
pub const IDENTITY_LABEL: &str = "berth.dev/identity";
/// The value of [`IDENTITY_LABEL`] on server identity leases.
pub const IDENTITY_LABEL_VALUE: &str = "berth-server";
/// Annotation: the server's Kubernetes API URL.
pub const API_URL_ANNOTATION: &str = "berth.dev/api-url";
/// Annotation: the server's advertised etcd client URLs, comma-separated.
pub const CLIENT_URLS_ANNOTATION: &str = "berth.dev/client-urls";
/// Annotation: the server's advertised peer URLs, comma-separated.
pub const PEER_URLS_ANNOTATION: &str = "berth.dev/peer-urls";
/// Prefix of the lease names: `berth-server-<name>`.
pub const LEASE_PREFIX: &str = "berth-server-";

/// The label selector that lists exactly the identity leases.
pub fn identity_selector() -> String {
    format!("{IDENTITY_LABEL}={IDENTITY_LABEL_VALUE}")
}

/// A server as its identity Lease describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityRecord {
    pub api_url: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    /// Whether the lease was renewed within its duration.
    pub fresh: bool,
}

/// Whether a Lease's holder renewed it within `leaseDurationSeconds` of `now`.
pub fn lease_valid(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return false };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else { return false };
    renewed.0 + SignedDuration::from_secs(seconds as i64) >= now
}

fn split_urls(text: Option<&String>) -> Vec<String> {
    text.map(|t| t.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect()).unwrap_or_default()
}

/// The server (holder name and record) an identity lease describes; `None` for any other
/// Lease or one without a holder.
pub fn identity_record(lease: &Lease, now: Timestamp) -> Option<(String, IdentityRecord)> {
    let labelled = lease.metadata.labels.as_ref().and_then(|l| l.get(IDENTITY_LABEL));
    if labelled.map(String::as_str) != Some(IDENTITY_LABEL_VALUE) {
        return None;
    }
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty())?;
    let empty = BTreeMap::new();
    let a = lease.metadata.annotations.as_ref().unwrap_or(&empty);
    let record = IdentityRecord {
        api_url: a.get(API_URL_ANNOTATION).cloned().unwrap_or_default(),
        client_urls: split_urls(a.get(CLIENT_URLS_ANNOTATION)),
        peer_urls: split_urls(a.get(PEER_URLS_ANNOTATION)),
        fresh: lease_valid(lease, now),
    };
    Some((holder, record))
}

/// The API URLs of the servers whose identity lease is fresh, in server-name order: the
/// members a client can fail over to right now.
pub fn fresh_api_servers(leases: &[Lease], now: Timestamp) -> Vec<String> {
    let servers: BTreeMap<String, IdentityRecord> =
        leases.iter().filter_map(|l| identity_record(l, now)).filter(|(_, r)| r.fresh).collect();
    let mut urls: Vec<String> = Vec::new();
    for record in servers.into_values() {
        if !record.api_url.is_empty() && !urls.contains(&record.api_url) {
            urls.push(record.api_url);
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn lease(holder: &str, api: &str, renewed_secs_ago: i64, label: bool) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some(format!("{LEASE_PREFIX}{holder}"));
        if label {
            l.metadata.labels = Some([(IDENTITY_LABEL.to_string(), IDENTITY_LABEL_VALUE.to_string())].into());
        }
        l.metadata.annotations = Some(
            [
                (API_URL_ANNOTATION.to_string(), api.to_string()),
                (CLIENT_URLS_ANNOTATION.to_string(), "http://a:2379,,http://b:2379".to_string()),
            ]
            .into(),
        );
        l.spec = Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now() - SignedDuration::from_secs(renewed_secs_ago))),
            ..Default::default()
        });
        l
    }

    #[test]
    fn only_fresh_labelled_leases_name_servers() {
        let leases = vec![
            lease("n2", "http://127.0.0.1:16443", 1, true),
            lease("n1", "http://127.0.0.1:6443", 2, true),
            lease("n3", "http://127.0.0.1:26443", 60, true),
            lease("other", "http://127.0.0.1:9", 1, false),
        ];
        let now = now();
        assert_eq!(fresh_api_servers(&leases, now), vec!["http://127.0.0.1:6443", "http://127.0.0.1:16443"]);
        let (name, record) = identity_record(&leases[2], now).unwrap();
        assert_eq!(name, "n3");
        assert!(!record.fresh);
        assert_eq!(record.client_urls, vec!["http://a:2379", "http://b:2379"]);
        assert!(identity_record(&leases[3], now).is_none());
    }
}
