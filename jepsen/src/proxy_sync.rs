//! `berth-bench-control proxy-sync`: how fast the agent's service proxy programs the
//! kernel, in a network namespace of the benchmark's own (removed after). N Services × M
//! endpoints are made as Service and EndpointSlice objects; the proxy's own code decides the
//! rules (`proxy::model::plan`) and writes them (`proxy::nft::Rules`), and `nft -f`
//! applies them: a full sync from nothing, then one endpoint changed at a time, applied
//! incrementally as the agent does (the work from an EndpointSlice change to the rule
//! being live: deciding, rendering the change, `nft`; watch delivery excluded).
//!
//! The reference in the same run is kube-proxy's iptables mode for the same Services: its
//! ruleset shape (KUBE-SERVICES → KUBE-SVC-* with `statistic` → KUBE-SEP-* DNAT) loaded
//! with `iptables-restore` (iptables-nft here), whole, as kube-proxy's iptables mode does
//! on a full sync.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_agent::proxy::{model, nft};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The benchmark's shape.
#[derive(Debug, Clone, Copy)]
pub struct ProxySyncConfig {
    pub services: usize,
    pub endpoints: usize,
    /// Endpoint changes timed one after another.
    pub changes: usize,
}

/// A network namespace deleted when dropped.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns> {
        let name = format!("bproxy{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status()?.success();
        anyhow::ensure!(ok, "ip netns add {name} failed (root needed)");
        Ok(Netns(name))
    }

    /// Runs `program args` inside, feeding `input`; returns (wall time, CPU time used).
    fn run(&self, program: &str, args: &[&str], input: &str) -> Result<(Duration, Duration)> {
        let cpu_before = children_cpu();
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        let wall = started.elapsed();
        if !out.status.success() {
            bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok((wall, children_cpu().saturating_sub(cpu_before)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// User + system CPU of the benchmark's finished children.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {"type": "NodePort", "clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + (i % 2700)}]}
    }))
    .expect("a valid Service")
}

fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<serde_json::Value> = (0..endpoints)
        .map(|j| {
            let n = i * endpoints + j + generation;
            serde_json::json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 62_500 % 100, n / 250 % 250, n % 250 + 1)],
                               "nodeName": format!("node-{}", j % 10), "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{i}-abcde"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps
    }))
    .expect("a valid EndpointSlice")
}

/// kube-proxy's iptables-mode ruleset for the same plans (the reference's shape).
fn iptables_rules(plans: &[model::ServicePortPlan]) -> String {
    let mut out = String::from("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let mut rules = String::new();
    for (i, p) in plans.iter().enumerate() {
        let svc = format!("KUBE-SVC-{i:06}");
        out.push_str(&format!(":{svc} - [0:0]\n"));
        let ip = p.cluster_ip.map(|ip| ip.to_string()).unwrap_or_default();
        rules.push_str(&format!(
            "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {ip} --dport {} -j {svc}\n",
            p.id, p.port
        ));
        if let Some(node_port) = p.node_port {
            rules.push_str(&format!("-A KUBE-NODEPORTS -m tcp -p tcp --dport {node_port} -j {svc}\n"));
        }
        let n = p.internal.len();
        for (j, t) in p.internal.iter().enumerate() {
            let sep = format!("KUBE-SEP-{i:06}{j:03}");
            out.push_str(&format!(":{sep} - [0:0]\n"));
            let probability = if j + 1 == n {
                String::new()
            } else {
                format!(" -m statistic --mode random --probability {:.10}", 1.0 / (n - j) as f64)
            };
            rules.push_str(&format!("-A {svc}{probability} -j {sep}\n"));
            rules.push_str(&format!("-A {sep} -s {}/32 -j KUBE-MARK-MASQ\n", t.ip));
            rules.push_str(&format!("-A {sep} -m tcp -p tcp -j DNAT --to-destination {}:{}\n", t.ip, t.port));
        }
    }
    rules.push_str("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    out.push_str(&rules);
    out.push_str("COMMIT\n");
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the benchmark and prints its figures.
pub fn proxy_sync(cfg: &ProxySyncConfig) -> Result<()> {
    anyhow::ensure!(cfg.services > 0 && cfg.endpoints > 0 && cfg.changes > 0, "sizes must be positive");
    anyhow::ensure!(cfg.services <= 60_000, "--services: at most 60000 (one /12 of cluster IPs)");
    let ns = Netns::create()?;
    let cidr = "10.128.0.0/9".parse().expect("a CIDR");
    let services: Vec<Service> = (0..cfg.services).map(service).collect();
    let mut slices: Vec<EndpointSlice> = (0..cfg.services).map(|i| slice(i, cfg.endpoints, 0)).collect();
    let svc_refs: Vec<&Service> = services.iter().collect();

    let started = Instant::now();
    let plans = model::plan(&svc_refs, &slices.iter().collect::<Vec<_>>(), "node-0");
    let mut applied = nft::Rules::of(&plans, &cidr);
    let script = applied.full();
    let decide = started.elapsed();
    let (full, full_cpu) = ns.run("nft", &["-f", "-"], &script)?;

    let mut change_walls = Vec::new();
    let mut change_cpu = Duration::ZERO;
    for k in 0..cfg.changes {
        let i = k * 7919 % cfg.services;
        slices[i] = slice(i, cfg.endpoints, k + 1);
        let started = Instant::now();
        let plans = model::plan(&svc_refs, &slices.iter().collect::<Vec<_>>(), "node-0");
        let rules = nft::Rules::of(&plans, &cidr);
        let (_, cpu) = ns.run("nft", &["-f", "-"], &rules.changes_from(&applied))?;
        applied = rules;
        change_walls.push(started.elapsed());
        change_cpu += cpu;
    }
    change_walls.sort();

    let reference = iptables_rules(&plans);
    let (ipt_full, ipt_cpu) = ns.run("iptables-restore", &["-w", "10"], &reference)?;
    let mut ipt_changes = Vec::new();
    for _ in 0..cfg.changes.min(5) {
        ipt_changes.push(ns.run("iptables-restore", &["-w", "10"], &reference)?.0);
    }
    ipt_changes.sort();

    let endpoints = cfg.services * cfg.endpoints;
    println!(
        "proxy sync: {} Services x {} endpoints ({endpoints} endpoints), rules in a private netns",
        cfg.services, cfg.endpoints
    );
    println!("  full ruleset: {} lines, {} KiB", script.lines().count(), script.len() / 1024);
    println!("  decide (plan + render): {}", ms(decide));
    println!("  full sync, nft -f: {} wall, {} CPU", ms(full), ms(full_cpu));
    println!(
        "  one endpoint changed -> rules live ({} changes): p50 {}  p99 {}  (CPU per sync {})",
        cfg.changes,
        ms(percentile(&change_walls, 0.5)),
        ms(percentile(&change_walls, 0.99)),
        ms(change_cpu / cfg.changes as u32)
    );
    println!(
        "reference, kube-proxy iptables-mode ruleset via iptables-restore: full {} wall ({} CPU), resync p50 {}",
        ms(ipt_full),
        ms(ipt_cpu),
        ms(percentile(&ipt_changes, 0.5))
    );
    println!(
        "ratio berth/iptables-restore: full sync {:.2}x, change {:.2}x",
        full.as_secs_f64() / ipt_full.as_secs_f64().max(1e-9),
        percentile(&change_walls, 0.5).as_secs_f64() / percentile(&ipt_changes, 0.5).as_secs_f64().max(1e-9)
    );
    Ok(())
}
