//! `berth-bench`: a 3-member Berth store and a 3-member etcd 3.5 on loopback, the same
//! etcd-API workloads against both, one comparison table. Optionally `etcdctl check perf`.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_jepsen::bench::{self, BenchConfig, Row, Workload};
use berth_jepsen::procs::{etcdctl, ClusterSpec, Db, ProcessCluster};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "berth-bench", about = "Berth vs etcd, side by side on this machine")]
struct Args {
    /// Concurrent clients per cell, comma-separated.
    #[arg(long, default_value = "1,64,512", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up seconds per cell (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Workloads, comma-separated (put, range).
    #[arg(long, default_value = "put,range", value_delimiter = ',')]
    workloads: Vec<String>,
    /// Also run `etcdctl check perf --load=LOAD` against both (s, m, l, xl).
    #[arg(long)]
    check_perf: Option<String>,
    /// Members per cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Where data directories and logs go (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Which members clients talk to: all (default), leader, or follower (diagnosis).
    #[arg(long, default_value = "all")]
    target: String,
    /// Measure one system only (for profiling); the table then shows it in both columns.
    #[arg(long)]
    only: Option<String>,
    /// A few seconds per cell and fewer keys: checks the command works (CI).
    #[arg(long)]
    quick: bool,
    /// Both systems over plain HTTP (Berth with `--insecure`); by default both serve TLS
    /// with client-certificate authentication.
    #[arg(long)]
    plain: bool,
}

fn check_perf(load: &str, endpoints: &[String]) -> Result<String> {
    // A secure Berth's https endpoints want the harness's etcd client certificate.
    let files = tempfile::tempdir()?;
    let tls = match endpoints.iter().any(|e| e.starts_with("https://")) {
        true => berth_jepsen::pki::etcdctl_tls_args(files.path())?,
        false => vec![],
    };
    let out = Command::new(etcdctl()?)
        .env("ETCDCTL_API", "3")
        .args(["check", "perf", &format!("--load={load}"), &format!("--endpoints={}", endpoints.join(","))])
        .args(&tls)
        .output()
        .context("running etcdctl check perf")?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let verdict: Vec<&str> = text.lines().filter(|l| l.starts_with("PASS") || l.starts_with("FAIL")).collect();
    Ok(verdict.join("; "))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let mut args = Args::parse();
    if args.quick {
        args.seconds = 2;
        args.warmup = 1;
        args.keys = 1000;
    }
    let workloads: Vec<Workload> = args
        .workloads
        .iter()
        .map(|w| match w.as_str() {
            "put" => Ok(Workload::Put),
            "range" => Ok(Workload::Range),
            other => Err(anyhow::anyhow!("--workloads: unknown workload {other:?} (put, range)")),
        })
        .collect::<Result<_>>()?;
    let tmp = tempfile::tempdir()?;
    let base = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let cfg = BenchConfig {
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(args.warmup),
        value_size: args.value_size,
        keys: args.keys,
    };
    let mut etcd_spec = ClusterSpec::new(Db::Etcd, args.nodes);
    let mut berth_spec = ClusterSpec::new(Db::Berth, args.nodes);
    match args.plain {
        true => berth_spec.extra_args.push("--insecure".into()),
        false => etcd_spec.etcd_tls = true,
    }
    let mut etcd = ProcessCluster::start(&etcd_spec, &base.join("etcd"))?;
    let mut berth = ProcessCluster::start(&berth_spec, &base.join("berth"))?;
    etcd.wait_ready(Duration::from_secs(30)).await.context("etcd cluster")?;
    berth.wait_ready(Duration::from_secs(30)).await.context("berth cluster")?;
    println!(
        "# berth-bench: {} members each, {}, {}-byte values, {} keys, {}s per cell after {}s warm-up, {} cores",
        args.nodes,
        if args.plain { "plain HTTP" } else { "TLS with client certificates" },
        args.value_size,
        args.keys,
        args.seconds,
        args.warmup,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    if workloads.contains(&Workload::Range) {
        bench::populate(&etcd.endpoints(), &cfg).await?;
        bench::populate(&berth.endpoints(), &cfg).await?;
    }
    let etcd_eps = bench::pick_endpoints(&etcd.endpoints(), &args.target).await?;
    let berth_eps = bench::pick_endpoints(&berth.endpoints(), &args.target).await?;
    let mut rows = Vec::new();
    for &workload in &workloads {
        for &clients in &args.clients {
            let (e, b) = match args.only.as_deref() {
                Some("berth") => {
                    let b = bench::run_cell(&berth_eps, workload, clients, &cfg).await?;
                    (b.clone(), b)
                }
                Some("etcd") => {
                    let e = bench::run_cell(&etcd_eps, workload, clients, &cfg).await?;
                    (e.clone(), e)
                }
                _ => {
                    let e = bench::run_cell(&etcd_eps, workload, clients, &cfg).await?;
                    let b = bench::run_cell(&berth_eps, workload, clients, &cfg).await?;
                    (e, b)
                }
            };
            eprintln!(
                "{} x{}: etcd {:.0}/s p99 {:.2}ms | berth {:.0}/s p99 {:.2}ms",
                workload.name(),
                clients,
                e.throughput(),
                e.p99_ms,
                b.throughput(),
                b.p99_ms
            );
            rows.push(Row { workload, clients, etcd: e, berth: b });
        }
    }
    println!("{}", bench::render_table(&rows));
    if let Some(load) = &args.check_perf {
        println!("etcdctl check perf --load={load}");
        if args.only.as_deref() != Some("berth") {
            println!("  etcd : {}", check_perf(load, &etcd.endpoints())?);
        }
        if args.only.as_deref() != Some("etcd") {
            println!("  berth: {}", check_perf(load, &berth.endpoints())?);
        }
    }
    drop(etcd);
    drop(berth);
    Ok(())
}
