//! Resource usage of nodes and pods — what metrics-server keeps for the
//! `metrics.k8s.io` API and the HPA controller.
//!
//! * [`quantity`] — printing CPU, memory and windows as metrics-server does;
//! * [`scraper`] — the loop that pulls each agent's `/stats/summary`.
//!
//! Design: every server scrapes every agent every `--metric-resolution` and keeps only the
//! latest two samples per agent in memory, like metrics-server. Rates are computed here
//! from the *cumulative* CPU counters of two consecutive scrapes (window = time between
//! them), not taken from the agent's own `usageNanoCores`: the agent's rate is relative to
//! whichever client sampled it last, and with three servers scraping it would cover an
//! unknown, shorter window. Every server (not only the leader) scrapes, so any server
//! answers `kubectl top` from memory, and a new leader's HPA controller has fresh usage
//! at once; the cost is one small HTTP request per agent per server per period.

pub mod quantity;
pub mod scraper;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// One container's cumulative counters in one summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawContainer {
    pub name: String,
    pub cpu_core_nanos: u64,
    pub memory_bytes: u64,
}

/// One pod in one summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<RawContainer>,
}

/// An agent's `/stats/summary`, reduced to what the metrics API needs, stamped with the
/// time it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSummary {
    pub at: Timestamp,
    pub node_name: String,
    pub node_cpu_core_nanos: u64,
    pub node_memory_bytes: u64,
    pub pods: Vec<RawPod>,
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// Parses a kubelet-style Summary (`node`, `pods[].podRef`, `pods[].containers[]` with
/// `cpu.usageCoreNanoSeconds` and `memory.workingSetBytes`). `None` when it is not one.
pub fn parse_summary(v: &Value, at: Timestamp) -> Option<RawSummary> {
    let node = v.get("node")?;
    let pods = v["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let r = &p["podRef"];
            Some(RawPod {
                namespace: r["namespace"].as_str()?.to_string(),
                name: r["name"].as_str()?.to_string(),
                uid: r["uid"].as_str().unwrap_or_default().to_string(),
                containers: p["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        Some(RawContainer {
                            name: c["name"].as_str()?.to_string(),
                            cpu_core_nanos: u64_at(c, &["cpu", "usageCoreNanoSeconds"]),
                            memory_bytes: u64_at(c, &["memory", "workingSetBytes"]),
                        })
                    })
                    .collect(),
            })
        })
        .collect();
    Some(RawSummary {
        at,
        node_name: node["nodeName"].as_str().unwrap_or_default().to_string(),
        node_cpu_core_nanos: u64_at(node, &["cpu", "usageCoreNanoSeconds"]),
        node_memory_bytes: u64_at(node, &["memory", "workingSetBytes"]),
        pods,
    })
}

/// Usage of one node or container over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// A node's usage between two scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePoint {
    pub name: String,
    /// When the later sample was taken.
    pub timestamp: Timestamp,
    pub window: Duration,
    pub usage: Usage,
}

/// A pod's usage (per container) between two scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPoint {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub timestamp: Timestamp,
    pub window: Duration,
    pub containers: Vec<(String, Usage)>,
}

/// CPU rate between two cumulative samples; `None` when the counter went backwards (the
/// container restarted) or no time passed.
fn rate(prev: u64, cur: u64, window: Duration) -> Option<u64> {
    let ns = window.as_nanos();
    if cur < prev || ns == 0 {
        return None;
    }
    Some(((u128::from(cur - prev) * 1_000_000_000) / ns) as u64)
}

/// Pure: the points two consecutive summaries of one agent give. A pod is reported only
/// when every container has a rate (like metrics-server, a half-measured pod would
/// under-report); the node is reported as `node_name` (the Node object that endpoint
/// belongs to, when the server knows it) or as the summary's own name.
pub fn points(prev: &RawSummary, cur: &RawSummary, node_name: Option<&str>) -> (Option<NodePoint>, Vec<PodPoint>) {
    let window = Duration::try_from(cur.at.duration_since(prev.at)).unwrap_or_default();
    let node = rate(prev.node_cpu_core_nanos, cur.node_cpu_core_nanos, window).map(|cpu| NodePoint {
        name: node_name.unwrap_or(&cur.node_name).to_string(),
        timestamp: cur.at,
        window,
        usage: Usage { cpu_nanocores: cpu, memory_bytes: cur.node_memory_bytes },
    });
    let before: HashMap<(&str, &str), &RawPod> =
        prev.pods.iter().map(|p| ((p.namespace.as_str(), p.name.as_str()), p)).collect();
    let pods = cur
        .pods
        .iter()
        .filter_map(|p| {
            let old = before.get(&(p.namespace.as_str(), p.name.as_str())).filter(|o| o.uid == p.uid)?;
            let containers: Option<Vec<(String, Usage)>> = p
                .containers
                .iter()
                .map(|c| {
                    let o = old.containers.iter().find(|o| o.name == c.name)?;
                    let cpu = rate(o.cpu_core_nanos, c.cpu_core_nanos, window)?;
                    Some((c.name.clone(), Usage { cpu_nanocores: cpu, memory_bytes: c.memory_bytes }))
                })
                .collect();
            let containers = containers.filter(|c| !c.is_empty())?;
            Some(PodPoint {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: p.uid.clone(),
                timestamp: cur.at,
                window,
                containers,
            })
        })
        .collect();
    (node, pods)
}

/// What one agent endpoint last gave.
#[derive(Debug)]
struct Endpoint {
    last: RawSummary,
    node: Option<NodePoint>,
    pods: Vec<PodPoint>,
    received: Instant,
}

/// How often agents are scraped unless `--metric-resolution` says otherwise (metrics-server's
/// default, 15 s).
pub const DEFAULT_METRIC_RESOLUTION: Duration = Duration::from_secs(15);

/// The latest usage points, by agent endpoint. Shared by the scraper (writer) and the
/// API handlers and HPA (readers).
#[derive(Debug)]
pub struct UsageCache {
    /// How often agents are scraped (`--metric-resolution`).
    pub resolution: Duration,
    endpoints: RwLock<HashMap<String, Endpoint>>,
}

impl UsageCache {
    pub fn new(resolution: Duration) -> UsageCache {
        UsageCache { resolution, endpoints: RwLock::default() }
    }

    /// Points older than this are not served: the agent stopped answering (metrics-server
    /// drops a node's points when a scrape fails; we allow for one missed scrape).
    fn max_age(&self) -> Duration {
        self.resolution * 3
    }

    /// Records a fresh summary from `endpoint` (which serves `node_name`, when known).
    pub fn ingest(&self, endpoint: &str, summary: RawSummary, node_name: Option<&str>) {
        let mut map = self.endpoints.write().expect("usage lock");
        let (node, pods) = match map.get(endpoint) {
            Some(e) => points(&e.last, &summary, node_name),
            None => (None, Vec::new()),
        };
        map.insert(endpoint.to_string(), Endpoint { last: summary, node, pods, received: Instant::now() });
    }

    /// Forgets endpoints no Node points at any more.
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        self.endpoints.write().expect("usage lock").retain(|k, _| live.contains(k));
    }

    /// Every node's latest point.
    pub fn nodes(&self) -> Vec<NodePoint> {
        let max_age = self.max_age();
        let map = self.endpoints.read().expect("usage lock");
        map.values().filter(|e| e.received.elapsed() <= max_age).filter_map(|e| e.node.clone()).collect()
    }

    /// Every pod's latest point.
    pub fn pods(&self) -> Vec<PodPoint> {
        let max_age = self.max_age();
        let map = self.endpoints.read().expect("usage lock");
        map.values().filter(|e| e.received.elapsed() <= max_age).flat_map(|e| e.pods.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(at_ms: i64, node_cpu: u64, pods: Value) -> RawSummary {
        let v = json!({"node": {"nodeName": "node-1", "cpu": {"usageCoreNanoSeconds": node_cpu},
            "memory": {"workingSetBytes": 4096}}, "pods": pods});
        parse_summary(&v, Timestamp::from_millisecond(at_ms).unwrap()).unwrap()
    }

    fn pod(name: &str, uid: &str, cpu: u64, mem: u64) -> Value {
        json!({"podRef": {"namespace": "default", "name": name, "uid": uid},
            "containers": [{"name": "c", "cpu": {"usageCoreNanoSeconds": cpu}, "memory": {"workingSetBytes": mem}}]})
    }

    #[test]
    fn rates_from_two_scrapes() {
        let a = summary(1_000, 10_000_000_000, json!([pod("web", "u1", 1_000_000_000, 100), pod("gone", "g", 0, 0)]));
        let b = summary(
            11_000,
            25_000_000_000,
            json!([pod("web", "u1", 6_000_000_000, 2048), pod("new", "n", 5, 5), pod("gone", "g2", 9, 9)]),
        );
        let (node, pods) = points(&a, &b, Some("node-1"));
        let node = node.unwrap();
        assert_eq!(node.window, Duration::from_secs(10));
        assert_eq!(node.usage, Usage { cpu_nanocores: 1_500_000_000, memory_bytes: 4096 });
        assert_eq!(pods.len(), 1, "a new pod, and a recreated one (other uid), have no rate yet: {pods:?}");
        assert_eq!(
            pods[0].containers,
            vec![("c".to_string(), Usage { cpu_nanocores: 500_000_000, memory_bytes: 2048 })]
        );
        assert_eq!(pods[0].timestamp, b.at);
    }

    #[test]
    fn restarted_containers_have_no_rate() {
        let a = summary(0, 0, json!([pod("web", "u1", 9_000, 1)]));
        let b = summary(1_000, 0, json!([pod("web", "u1", 10, 1)]));
        assert!(points(&a, &b, None).1.is_empty());
    }

    #[test]
    fn cache_needs_two_scrapes_and_forgets_endpoints() {
        let cache = UsageCache::new(Duration::from_secs(15));
        cache.ingest("127.0.0.1:1", summary(0, 0, json!([pod("web", "u1", 0, 1)])), Some("node-1"));
        assert!(cache.nodes().is_empty() && cache.pods().is_empty());
        cache.ingest("127.0.0.1:1", summary(1_000, 1_000_000, json!([pod("web", "u1", 500, 1)])), Some("node-1"));
        assert_eq!(cache.nodes()[0].usage.cpu_nanocores, 1_000_000);
        assert_eq!(cache.pods()[0].containers[0].1.cpu_nanocores, 500);
        cache.retain(&Default::default());
        assert!(cache.nodes().is_empty());
        assert!(parse_summary(&json!({"pods": []}), Timestamp::now()).is_none());
    }
}
