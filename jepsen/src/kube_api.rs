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
    let mut config = crate::pki::admin_config(url)?;
    config.connect_timeout = Some(Duration::from_secs(1));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // kube-rs (since 2.0) retries every request answered 429, 503 or 504, POST and DELETE
    // included, up to 15 times. A 504 is the API server saying "I could not learn whether
    // your write took effect" (the store's request timed out after proposing it); the retry
    // then meets the first attempt's effect and is answered 409 AlreadyExists / 404
    // NotFound, which this client would record as a definite failure of a write that was
    // applied. One operation must be one request, whose answer is recorded as it is.
    config.default_retry = false;
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

    /// An API server that answers every request `504 Timeout` (as Berth and kube-apiserver
    /// do when the store could not say whether a write committed) and counts requests.
    async fn always_504() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // One request per connection: read the head and the body it announces.
                    loop {
                        let Ok(n) = conn.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                        if let Some(head_end) = text.find("\r\n\r\n") {
                            let length = text[..head_end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= head_end + 4 + length {
                                break;
                            }
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server was unable to complete the request","reason":"Timeout","code":504}"#;
                    let resp = format!(
                        "HTTP/1.1 504 Gateway Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (url, requests)
    }

    /// One operation is one request: a write answered 504 is recorded as indeterminate, never
    /// silently re-sent (kube-rs retries 503/504 by default; the re-sent create or delete met
    /// the first one's effect and was recorded as a definite 409/404 — "failed but applied").
    #[tokio::test]
    async fn a_write_answered_504_is_not_resent() {
        use kube::api::{Api, DeleteParams, PostParams};
        let (url, requests) = always_504().await;
        let client = client(&url, Duration::from_secs(2)).unwrap();
        let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);

        let created = deadline(Duration::from_secs(2), pods.create(&PostParams::default(), &Pod::default())).await;
        let err = created.expect_err("answered 504");
        assert!(!err.definite, "a 504 is indeterminate: {}", err.message);
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1, "the create was re-sent");

        let deleted = deadline(Duration::from_secs(2), pods.delete("p", &DeleteParams::default())).await;
        assert!(!deleted.expect_err("answered 504").definite);
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2, "the delete was re-sent");
    }

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
