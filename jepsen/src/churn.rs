//! The churn soak: does a server's footprint follow its live data, or its history?
//!
//! One `berth-server` and a hollow agent; a steady, modest load through the Kubernetes API
//! (ConfigMaps created, updated and deleted; a Deployment whose pods are rolled over and
//! over) for a fixed time. Every sample prints the server's RSS, the store's size on disk,
//! its current and compacted revisions. With automatic compaction (the default) RSS and
//! DB size level off while the revision keeps climbing; pass
//! `--server-arg=--auto-compaction-retention=0` to see history pile up instead.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::control_bench::{client, deployment, memory_mib, start_servers, wait_nodes_ready, AgentProcess};
use crate::HarnessError;

#[derive(Debug, Clone)]
pub struct ChurnConfig {
    pub duration: Duration,
    pub sample: Duration,
    /// ConfigMap writes per second (creates, updates and deletes of a rotating set).
    pub writes_per_second: u32,
    /// Pods of the Deployment that is rolled every `roll_every`.
    pub replicas: i32,
    pub roll_every: Duration,
    pub server_args: Vec<String>,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct ChurnSample {
    pub elapsed: Duration,
    pub rss_mib: f64,
    pub db_bytes: i64,
    pub revision: i64,
    pub compacted: i64,
    pub writes: u64,
}

/// Reads one gauge of the Prometheus text at the client port's `/metrics`.
fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

async fn scrape(client_url: &str) -> Result<(i64, i64, i64), HarnessError> {
    let text = reqwest_like_get(&format!("{client_url}/metrics")).await?;
    let get = |name| gauge(&text, name).ok_or_else(|| HarnessError::Rpc(format!("/metrics has no {name}")));
    Ok((get("berth_db_size_bytes")?, get("berth_mvcc_revision")?, get("berth_mvcc_compact_revision")?))
}

/// A plain HTTP/1.0 GET with a timeout (1.0: no chunked encoding to split the lines).
async fn reqwest_like_get(url: &str) -> Result<String, HarnessError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let (host, path) = addr.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((addr, "/".into()));
    let fetch = async {
        let mut conn = tokio::net::TcpStream::connect(host).await?;
        conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
        let mut body = String::new();
        conn.read_to_string(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    match tokio::time::timeout(Duration::from_secs(10), fetch).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(HarnessError::Rpc(format!("GET {url}: {e}"))),
        Err(_) => Err(HarnessError::Rpc(format!("GET {url}: timed out"))),
    }
}

/// Runs the soak and returns its samples (also printed as they come).
pub async fn churn(dir: &Path, cfg: &ChurnConfig) -> Result<Vec<ChurnSample>, HarnessError> {
    let cluster = start_servers(dir, 1, &cfg.server_args).await?;
    let server = &cluster.members[0];
    let pid = server.pid().ok_or_else(|| HarnessError::Rpc("server not running".into()))?;
    let c = client(&server.api_url)?;
    let _agent = AgentProcess::start(&server.api_url, 5, dir)?;
    wait_nodes_ready(&c, 5, Duration::from_secs(60)).await?;

    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("churn", cfg.replicas)).await.map_err(rpc)?;
    let writes = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(configmap_load(c.clone(), cfg.writes_per_second, writes.clone(), stop.clone()));
    let roller = tokio::spawn(roll_forever(deployments.clone(), cfg.roll_every, stop.clone()));

    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "ELAPSED", "RSS(MiB)", "DB(MB)", "REVISION", "COMPACTED", "WRITES"
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let (db_bytes, revision, compacted) = scrape(&server.client_url).await?;
        let rss_mib = memory_mib(pid).map_or(0.0, |(rss, _)| rss);
        let s = ChurnSample {
            elapsed: started.elapsed(),
            rss_mib,
            db_bytes,
            revision,
            compacted,
            writes: writes.load(Ordering::Relaxed),
        };
        println!(
            "{:>7}s {:>10.1} {:>10.1} {:>10} {:>10} {:>9}",
            s.elapsed.as_secs(),
            s.rss_mib,
            s.db_bytes as f64 / 1e6,
            s.revision,
            s.compacted,
            s.writes
        );
        samples.push(s);
        if started.elapsed() >= cfg.duration {
            break;
        }
        let pause = cfg.sample.min(cfg.duration.saturating_sub(started.elapsed())).max(Duration::from_secs(1));
        // Ctrl-C ends the run early with its summary (and the processes stopped).
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    stop.cancel();
    let _ = load.await;
    let _ = roller.await;
    Ok(samples)
}

fn rpc(e: kube::Error) -> HarnessError {
    HarnessError::Rpc(e.to_string())
}

/// Creates, updates and deletes ConfigMaps of a rotating set of 200 names at a steady rate.
async fn configmap_load(
    c: kube::Client,
    per_second: u32,
    writes: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let payload = "x".repeat(2048);
    let mut i: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let name = format!("churn-{}", i % 200);
        // Per name: create, 3 updates, delete, in turn.
        let step = (i / 200) % 5;
        let result = match step {
            0 => {
                let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": payload}}))
                    .expect("a valid ConfigMap");
                api.create(&PostParams::default(), &cm).await.map(drop)
            }
            4 => api.delete(&name, &DeleteParams::default()).await.map(drop),
            _ => {
                let patch = json!({"data": {"v": format!("{payload}{i}")}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
            }
        };
        if result.is_ok() {
            writes.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
}

/// Rolls the Deployment's pods by changing a template annotation.
async fn roll_forever(api: Api<Deployment>, every: Duration, stop: tokio_util::sync::CancellationToken) {
    let mut generation = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        generation += 1;
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {"churn/generation": generation.to_string()}}}}});
        let _ = api.patch("churn", &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
}

/// Prints first/last/peak figures of a run.
pub fn print_summary(samples: &[ChurnSample]) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return };
    let peak_rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let peak_db = samples.iter().map(|s| s.db_bytes).max().unwrap_or(0);
    println!(
        "\nchurn: {} s, {} API writes, revision {} → {} (compacted to {}); RSS {:.1} → {:.1} MiB (peak {:.1}); DB {:.1} → {:.1} MB (peak {:.1})",
        last.elapsed.as_secs(),
        last.writes,
        first.revision,
        last.revision,
        last.compacted,
        first.rss_mib,
        last.rss_mib,
        peak_rss,
        first.db_bytes as f64 / 1e6,
        last.db_bytes as f64 / 1e6,
        peak_db as f64 / 1e6
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_by_exact_name() {
        let text = "# HELP x\nberth_mvcc_revision_total 5\nberth_mvcc_revision 42\nberth_db_size_bytes 1.5e6\n";
        assert_eq!(gauge(text, "berth_mvcc_revision"), Some(42));
        assert_eq!(gauge(text, "berth_db_size_bytes"), Some(1_500_000));
        assert_eq!(gauge(text, "berth_mvcc_compact_revision"), None);
    }
}
