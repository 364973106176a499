//! The scrape loop: every `--metric-resolution`, GET `/stats/summary` from each agent
//! (over TLS on a secure cluster: see `crate::api::agent_dial`)
//! (the address and port its Node object advertises, as for `pods/{name}/log`), all at
//! once with a bounded fan-out and a per-request timeout shorter than the period, and hand
//! the summaries to the [`UsageCache`]. Hollow nodes of one agent share one endpoint: it is
//! scraped once. A failed scrape is logged and its endpoint's points age out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{parse_summary, UsageCache};
use crate::cache::{Filter, WatchCache};
use crate::periodic::Every;
use crate::registry::object;
use crate::resource;

/// Agents scraped at once.
const FAN_OUT: usize = 16;
/// Longest wait for one agent (never longer than the period itself).
const MAX_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

use crate::api::agent_dial::AgentDialer;

/// The endpoints to scrape: `host:port` → the Node names it serves.
fn endpoints(nodes: &[Arc<Value>]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for n in nodes {
        let Some((host, port)) = crate::registry::object::agent_address(n) else { continue };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        out.entry(format!("{host}:{port}")).or_default().push(object::name(n).unwrap_or_default().to_string());
    }
    out
}

async fn fetch(agents: &AgentDialer, endpoint: &str, timeout: Duration) -> Result<Value, String> {
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| format!("bad endpoint {endpoint}"))?;
    let port: i64 = port.parse().map_err(|e| format!("bad endpoint {endpoint}: {e}"))?;
    let work = async {
        let mut sender = agents.connect(host, port).await?;
        let request = axum::http::Request::get("/stats/summary")
            .header(axum::http::header::HOST, endpoint)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(request).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("decoding summary: {e}"))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("timed out after {timeout:?}"))?
}

/// One round: scrape every endpoint and record what answered.
pub async fn scrape_once(usage: &UsageCache, watch_cache: &WatchCache, agents: &AgentDialer) {
    let info = resource::find("", "v1", "nodes").expect("nodes are served");
    let filter = Filter { resource: "nodes", ..Default::default() };
    let nodes = match watch_cache.get(info).list(&filter, 0).await {
        Ok((nodes, _)) => nodes,
        Err(e) => {
            tracing::debug!(error = %e, "metrics scrape: cannot list nodes");
            return;
        }
    };
    let targets = endpoints(&nodes);
    let live: HashSet<String> = targets.keys().cloned().collect();
    let timeout = usage.resolution.min(MAX_SCRAPE_TIMEOUT);
    let results: Vec<_> = futures::stream::iter(targets)
        .map(|(endpoint, names)| async move {
            let got = fetch(agents, &endpoint, timeout).await;
            (endpoint, names, got, Timestamp::now())
        })
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    for (endpoint, names, got, at) in results {
        match got.map(|v| parse_summary(&v, at)) {
            Ok(Some(summary)) => {
                // One Node behind the endpoint: its usage is that Node's whatever the
                // agent calls itself; several (hollow nodes): only the one it names.
                let node = match names.as_slice() {
                    [one] => Some(one.clone()),
                    many => many.iter().find(|n| **n == summary.node_name).cloned(),
                };
                usage.ingest(&endpoint, summary, node.as_deref());
            }
            Ok(None) => tracing::debug!(%endpoint, "metrics scrape: not a summary"),
            Err(e) => tracing::debug!(%endpoint, error = %e, "metrics scrape failed"),
        }
    }
    usage.retain(&live);
}

/// Scrapes every `usage.resolution` until `shutdown`.
pub async fn run(
    usage: Arc<UsageCache>,
    watch_cache: Arc<WatchCache>,
    agents: AgentDialer,
    shutdown: CancellationToken,
) {
    let mut every = Every::new(usage.resolution, shutdown);
    while every.tick().await {
        if every.pass(scrape_once(&usage, &watch_cache, &agents)).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hollow_nodes_share_one_endpoint() {
        let node = |name: &str, ip: &str, port: i64| {
            Arc::new(json!({"metadata": {"name": name}, "status": {
                "addresses": [{"type": "InternalIP", "address": ip}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
        };
        let e = endpoints(&[node("a", "127.0.0.1", 10250), node("b", "127.0.0.1", 10250), node("c", "::1", 7)]);
        assert_eq!(e["127.0.0.1:10250"], vec!["a".to_string(), "b".to_string()]);
        assert_eq!(e["[::1]:7"], vec!["c".to_string()]);
    }
}
