//! Side-by-side load: the same etcd-API workloads against a Berth cluster and an etcd
//! cluster on this machine, interleaved cell by cell so drift in machine speed hits both.
//!
//! Workloads: `put` (random keys, fixed-size values; both systems fsync every commit) and
//! `range` (linearizable single-key gets of existing keys). Clients spread their
//! connections over every member, as etcd's own clients do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::etcdserverpb::kv_client::KvClient;
use berth_proto::etcdserverpb::{PutRequest, RangeRequest};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

use crate::procs::connect;
use crate::HarnessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Put,
    Range,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub duration: Duration,
    pub warmup: Duration,
    pub value_size: usize,
    pub keys: usize,
}

#[derive(Debug, Clone)]
pub struct CellResult {
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl CellResult {
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// Connections for `clients` concurrent clients: one per 8 clients, at most 64, spread
/// round-robin over the endpoints. The same rule applies to every system measured.
pub fn connection_count(clients: usize) -> usize {
    clients.div_ceil(8).clamp(1, 64)
}

fn key(i: usize) -> Vec<u8> {
    format!("/bench/{i:08}").into_bytes()
}

async fn channels(endpoints: &[String], n: usize) -> Result<Vec<Channel>, HarnessError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(connect(&endpoints[i % endpoints.len()]).await?);
    }
    Ok(out)
}

/// The endpoints clients should use: all, the leader's, or one follower's.
pub async fn pick_endpoints(endpoints: &[String], target: &str) -> Result<Vec<String>, HarnessError> {
    use berth_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use berth_proto::etcdserverpb::StatusRequest;
    if target == "all" {
        return Ok(endpoints.to_vec());
    }
    let mut roles = Vec::new();
    for e in endpoints {
        let status = MaintenanceClient::new(connect(e).await?)
            .status(StatusRequest {})
            .await
            .map_err(|s| HarnessError::Rpc(s.to_string()))?
            .into_inner();
        let me = status.header.map(|h| h.member_id).unwrap_or(0);
        roles.push((e.clone(), status.leader == me));
    }
    let want_leader = match target {
        "leader" => true,
        "follower" => false,
        other => return Err(HarnessError::Rpc(format!("--target: {other:?} is not all, leader or follower"))),
    };
    roles
        .into_iter()
        .find(|(_, is_leader)| *is_leader == want_leader)
        .map(|(e, _)| vec![e])
        .ok_or_else(|| HarnessError::Rpc(format!("no {target} found")))
}

/// Writes every key once so range reads hit existing keys.
pub async fn populate(endpoints: &[String], cfg: &BenchConfig) -> Result<(), HarnessError> {
    let chans = channels(endpoints, 8).await?;
    let value = vec![b'v'; cfg.value_size];
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let mut kv = KvClient::new(chans[t % chans.len()].clone());
        let next = next.clone();
        let value = value.clone();
        let keys = cfg.keys;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= keys {
                    return Ok::<(), HarnessError>(());
                }
                kv.put(PutRequest { key: key(i), value: value.clone(), ..Default::default() })
                    .await
                    .map_err(|e| HarnessError::Rpc(e.to_string()))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| HarnessError::Rpc(e.to_string()))??;
    }
    Ok(())
}

/// Runs one cell: `clients` closed-loop clients for warm-up plus duration.
pub async fn run_cell(
    endpoints: &[String],
    workload: Workload,
    clients: usize,
    cfg: &BenchConfig,
) -> Result<CellResult, HarnessError> {
    let chans = channels(endpoints, connection_count(clients)).await?;
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let value = vec![b'x'; cfg.value_size];
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut kv = KvClient::new(chans[c % chans.len()].clone());
        let value = value.clone();
        let keys = cfg.keys;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors = 0u64;
            let mut rng = rand::random::<u64>();
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                // xorshift: cheap per-request key choice without a shared RNG.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = key((rng % keys as u64) as usize);
                let ok = match workload {
                    Workload::Put => {
                        kv.put(PutRequest { key: k, value: value.clone(), ..Default::default() }).await.is_ok()
                    }
                    Workload::Range => kv.range(RangeRequest { key: k, ..Default::default() }).await.is_ok(),
                };
                let done = Instant::now();
                if now >= measure_from && done <= end {
                    if ok {
                        let _ = hist.record((done - now).as_micros().max(1) as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (hist, errors)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.map_err(|e| HarnessError::Rpc(e.to_string()))?;
        all.add(h).expect("same bounds");
        errors += e;
    }
    Ok(CellResult {
        ops: all.len(),
        errors,
        seconds: cfg.duration.as_secs_f64(),
        p50_ms: all.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// One row of the comparison table.
pub struct Row {
    pub workload: Workload,
    pub clients: usize,
    pub etcd: CellResult,
    pub berth: CellResult,
}

pub fn render_table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| workload | clients | etcd ops/s | berth ops/s | berth/etcd | etcd p50 ms | berth p50 ms | etcd p99 ms | berth p99 ms | errors e/b |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.2} | {}/{} |\n",
            r.workload.name(),
            r.clients,
            r.etcd.throughput(),
            r.berth.throughput(),
            r.berth.throughput() / r.etcd.throughput().max(1e-9),
            r.etcd.p50_ms,
            r.berth.p50_ms,
            r.etcd.p99_ms,
            r.berth.p99_ms,
            r.etcd.errors,
            r.berth.errors
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_scale_with_clients_and_are_capped() {
        assert_eq!(connection_count(1), 1);
        assert_eq!(connection_count(64), 8);
        assert_eq!(connection_count(512), 64);
        assert_eq!(connection_count(5000), 64);
    }
}
