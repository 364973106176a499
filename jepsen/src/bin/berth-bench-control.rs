//! `berth-bench-control`: control-plane benchmarks on real processes (3 `berth-server`s,
//! one `berth-agent` with hollow nodes). `failover` times the controllers' takeover after
//! kill -9 of the leader; `scheduling` times binding and starting many pods.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_jepsen::control_bench::{self, FailoverConfig, SchedulingConfig};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "berth-bench-control", about = "Berth control-plane benchmarks (failover, scheduling throughput)")]
struct Args {
    /// Where data directories and logs go (default: a temporary directory, removed after).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// kill -9 the leader, delete a pod, time until it is replaced and bound.
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 10)]
        replicas: i32,
        /// Hollow nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// Hollow nodes and Deployments totalling many pods: bind rate, time to Running.
    Scheduling {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 10)]
        deployments: usize,
        /// Create bare pods instead of Deployments: the scheduler alone.
        #[arg(long)]
        bare_pods: bool,
        /// Pod creates in flight with --bare-pods.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
        create_concurrency: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    match args.bench {
        Bench::Failover { trials, replicas, nodes } => {
            anyhow::ensure!(
                trials > 0 && replicas > 0 && nodes > 0,
                "--trials, --replicas and --nodes must be positive"
            );
            let cfg = FailoverConfig { trials, replicas, nodes };
            let (created, bound) = control_bench::failover(&dir, &cfg).await.context("failover benchmark")?;
            control_bench::print_failover(&created, &bound);
        }
        Bench::Scheduling { nodes, pods, deployments, bare_pods, create_concurrency } => {
            anyhow::ensure!(
                nodes > 0 && deployments > 0 && pods >= deployments,
                "need nodes > 0 and pods >= deployments > 0"
            );
            let cfg = SchedulingConfig {
                nodes,
                pods,
                deployments,
                bare_pods,
                create_concurrency: create_concurrency as usize,
            };
            let report = control_bench::scheduling(&dir, &cfg).await.context("scheduling benchmark")?;
            report.print();
        }
    }
    Ok(())
}
