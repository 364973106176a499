//! The Kubernetes-API side of the control-plane workloads: a kube-rs client per server
//! (each bound to one server, as the etcd workloads' clients are), a deadline on every
//! call, and the one place kube errors are classified as definite (the request certainly
//! had no effect) or indeterminate, so workloads record `fail` vs `info` consistently.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::client::CallError;
use crate::history::{NodeView, PodView};
use crate::HarnessError;

/// The namespace every control-plane workload works in.
pub const NAMESPACE: &str = "jepsen";

/// A client of the API at `url`; `timeout` bounds reads of the response.
pub fn client(url: &str, timeout: Duration) -> Result<kube::Client, HarnessError> {
    let uri = url.parse().map_err(|e| HarnessError::Config(format!("API URL {url:?}: {e}")))?;
    let mut config = kube::Config::new(uri);
    config.connect_timeout = Some(Duration::from_secs(1));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(|e| HarnessError::Rpc(format!("kube client for {url}: {e}")))
}

/// A kube error as a [`CallError`]. The API server answers 4xx only for requests it refused
/// (not found, conflict, invalid, …): definite. A 5xx may come after the write committed
/// (a timeout waiting for the apply), and a transport error may be a lost response:
/// indeterminate — unless the connection was refused, when nothing was sent.
pub fn classify(e: kube::Error) -> CallError {
    match e {
        kube::Error::Api(status) => CallError {
            message: format!("{} {}: {}", status.code, status.reason, status.message),
            definite: (400..500).contains(&status.code) && status.code != 408,
        },
        other => {
            let text = format!("{other:?}");
            let refused = text.contains("Connection refused") || text.contains("ConnectionRefused");
            CallError { message: other.to_string(), definite: refused }
        }
    }
}

/// Whether a definite API error is `code`.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Runs `call` with a deadline; running out of time is indeterminate.
pub async fn deadline<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(CallError { message: format!("timed out after {} ms", timeout.as_millis()), definite: false }),
    }
}

/// CPU in millicores from a quantity (`500m`, `2`, `0.5`); unparsable → 0.
pub fn cpu_milli(q: &Quantity) -> u64 {
    let s = q.0.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().unwrap_or(0);
    }
    s.parse::<f64>().map(|c| (c * 1000.0).round() as u64).unwrap_or(0)
}

/// Bytes from a quantity (`64Mi`, `2Gi`, `1G`, `1000`); unparsable → 0.
pub fn bytes(q: &Quantity) -> u64 {
    let s = q.0.trim();
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().map(|v| (v * factor as f64).round() as u64).unwrap_or(0);
        }
    }
    s.parse::<f64>().map(|v| v.round() as u64).unwrap_or(0)
}

fn requests(c: &Container, name: &str) -> Option<Quantity> {
    c.resources.as_ref()?.requests.as_ref()?.get(name).cloned()
}

/// A pod as the checkers see it: its binding and its summed container requests.
pub fn pod_view(pod: &Pod) -> PodView {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let cpu = containers.iter().filter_map(|c| requests(c, "cpu")).map(|q| cpu_milli(&q)).sum();
    let memory = containers.iter().filter_map(|c| requests(c, "memory")).map(|q| bytes(&q)).sum();
    PodView {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        resource_version: resource_version(pod.resource_version()),
        cpu_milli: cpu,
        memory_bytes: memory,
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// A node's allocatable resources.
pub fn node_view(node: &Node) -> NodeView {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
    NodeView {
        name: node.name_any(),
        cpu_milli: alloc.get("cpu").map(cpu_milli).unwrap_or(0),
        memory_bytes: alloc.get("memory").map(bytes).unwrap_or(0),
        pods: alloc.get("pods").map(|q| q.0.parse().unwrap_or(0)).unwrap_or(0),
    }
}

/// `metadata.resourceVersion` as a number (Berth's is the store revision); missing → 0.
pub fn resource_version(rv: Option<String>) -> u64 {
    rv.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Whether a pod is Ready (its Ready condition is True).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a node is Ready.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse() {
        assert_eq!(cpu_milli(&Quantity("250m".into())), 250);
        assert_eq!(cpu_milli(&Quantity("2".into())), 2000);
        assert_eq!(cpu_milli(&Quantity("0.5".into())), 500);
        assert_eq!(bytes(&Quantity("64Mi".into())), 64 << 20);
        assert_eq!(bytes(&Quantity("2Gi".into())), 2 << 30);
        assert_eq!(bytes(&Quantity("1G".into())), 1_000_000_000);
        assert_eq!(bytes(&Quantity("1000".into())), 1000);
    }
}
