//! `berth-bench-control dns`: queries per second and latency of the agent's cluster DNS
//! for cached Service names, measured with dnsperf (the usual DNS load tool) against the
//! agent's own server (`berth_agent::dns`, serving N Services from its zone snapshot) and,
//! in the same run, against dnsmasq answering the same N names from a hosts file — the
//! reference: a small C DNS cache of the kind NodeLocal DNS setups use (CoreDNS itself is
//! not packaged in Debian). Both listen on 127.0.0.1; each gets a latency run (one query
//! outstanding: p50/p99 from dnsperf's per-query report) and a throughput run (dnsperf's
//! default 100 outstanding).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_agent::dns::server::ClusterDns;
use berth_agent::dns::zone::Zone;
use k8s_openapi::api::core::v1::Service;

use crate::data_path::percentile;

/// The benchmark's shape.
#[derive(Debug, Clone, Copy)]
pub struct DnsBenchConfig {
    pub services: usize,
    /// Length of each dnsperf run.
    pub duration: Duration,
}

/// One server's figures.
#[derive(Debug, Clone)]
pub struct DnsFigures {
    pub server: &'static str,
    pub qps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub lost: u64,
}

fn name(i: usize) -> String {
    format!("svc-{i}.bench.svc.cluster.local")
}

fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// A free UDP and TCP port on 127.0.0.1 (dnsmasq binds both).
fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1")
}

/// Runs dnsperf against `server` with `outstanding` queries in flight; returns (qps,
/// per-query latencies when `per_query`, lost queries).
async fn dnsperf(
    server: SocketAddr,
    queries: &Path,
    duration: Duration,
    outstanding: u32,
    per_query: bool,
) -> Result<(f64, Vec<Duration>, u64)> {
    let mut cmd = tokio::process::Command::new("dnsperf");
    cmd.args(["-s", &server.ip().to_string(), "-p", &server.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args(["-l", &duration.as_secs().max(1).to_string(), "-q", &outstanding.to_string(), "-t", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if per_query {
        cmd.arg("-v");
    }
    let out = tokio::time::timeout(duration + Duration::from_secs(30), cmd.output())
        .await
        .context("dnsperf did not finish")?
        .context("running dnsperf (apt-get install dnsperf)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("dnsperf failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    let field = |label: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
        line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
    };
    let qps = field("Queries per second").context("no qps in dnsperf's report")?;
    let lost = field("Queries lost").unwrap_or(0.0) as u64;
    let mut latencies: Vec<Duration> = text
        .lines()
        .filter(|l| l.starts_with("> NOERROR"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    latencies.sort();
    Ok((qps, latencies, lost))
}

/// Measures one server.
async fn measure(server: &'static str, addr: SocketAddr, queries: &Path, cfg: &DnsBenchConfig) -> Result<DnsFigures> {
    // Warm-up: every name asked once (the reference's cache filled).
    dnsperf(addr, queries, Duration::from_secs(1), 10, false).await?;
    let (_, latencies, lost_latency) = dnsperf(addr, queries, cfg.duration, 1, true).await?;
    if latencies.is_empty() {
        bail!("{server} answered no query with NOERROR");
    }
    let (qps, _, lost) = dnsperf(addr, queries, cfg.duration, 100, false).await?;
    Ok(DnsFigures {
        server,
        qps,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        lost: lost + lost_latency,
    })
}

/// Kills dnsmasq when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark in `dir` and prints the figures.
pub async fn dns_bench(dir: &Path, cfg: &DnsBenchConfig) -> Result<Vec<DnsFigures>> {
    anyhow::ensure!(cfg.services > 0 && cfg.services <= 60_000, "--services must be 1..=60000");
    let services: Vec<Service> = (0..cfg.services)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80}]}
            }))
            .expect("a valid Service")
        })
        .collect();
    let refs: Vec<&Service> = services.iter().collect();
    let domain = hickory_proto::rr::Name::from_ascii("cluster.local.")?;
    let zone = Arc::new(RwLock::new(Arc::new(Zone::build(&domain, &refs, &[]))));
    let queries = dir.join("queries.txt");
    let hosts = dir.join("hosts");
    std::fs::write(&queries, (0..cfg.services).map(|i| format!("{} A\n", name(i))).collect::<String>())?;
    std::fs::write(&hosts, (0..cfg.services).map(|i| format!("{} {}\n", cluster_ip(i), name(i))).collect::<String>())?;

    let berth_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let _server = berth_agent::dns::bind(berth_addr, ClusterDns::new(zone, &[])?).await?;
    let dnsmasq_port = free_port()?;
    let _dnsmasq = Child(
        std::process::Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--bind-interfaces", "--listen-address=127.0.0.1", "--no-resolv"])
            .args(["--no-hosts", "--local=/cluster.local/", "--cache-size=10000"])
            .arg(format!("--port={dnsmasq_port}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (apt-get install dnsmasq-base)")?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let berth = measure("berth-agent DNS", berth_addr, &queries, cfg).await?;
    let reference = measure("dnsmasq (reference)", ([127, 0, 0, 1], dnsmasq_port).into(), &queries, cfg).await?;
    Ok(vec![berth, reference])
}

/// Prints the figures and the ratios.
pub fn print(cfg: &DnsBenchConfig, figures: &[DnsFigures]) {
    println!(
        "cluster DNS: {} Services, cached A queries over UDP on 127.0.0.1, dnsperf {}s runs",
        cfg.services,
        cfg.duration.as_secs()
    );
    println!("{:<22} {:>12} {:>10} {:>10} {:>6}", "server", "queries/s", "p50", "p99", "lost");
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    for f in figures {
        println!("{:<22} {:>12.0} {:>10} {:>10} {:>6}", f.server, f.qps, us(f.p50), us(f.p99), f.lost);
    }
    if let [berth, reference] = figures {
        println!(
            "ratio berth/reference: throughput {:.2}×, p50 {:.2}×, p99 {:.2}×",
            berth.qps / reference.qps,
            berth.p50.as_secs_f64() / reference.p50.as_secs_f64().max(1e-9),
            berth.p99.as_secs_f64() / reference.p99.as_secs_f64().max(1e-9)
        );
    }
}
