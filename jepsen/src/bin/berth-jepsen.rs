//! `berth-jepsen`: fault-injection tests of Berth (or etcd, as a control).
//!
//! * `test`: one run — cluster in network namespaces, workload, nemesis, checkers, report.
//! * `check DIR`: re-decide a stored run from its `history.jsonl`.
//! * `campaign [--quick]`: a matrix of runs and a summary table.
//!
//! Exit codes: 0 valid, 1 invalid or unknown, 2 bad usage or the harness could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth_jepsen::campaign::{self, CellOutcome};
use berth_jepsen::nemesis;
use berth_jepsen::procs::Db;
use berth_jepsen::runner::{self, TestConfig};
use berth_jepsen::workload::WorkloadKind;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "berth-jepsen", about = "Jepsen-style fault injection for Berth, with etcd as a control")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Nodes per cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds of workload under faults (healing and final reads come after).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Concurrent client processes.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Target operations per second over all clients (0 = unthrottled).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seed of every random choice (operations, fault targets).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds between faults and how long each fault is held.
    #[arg(long, default_value_t = 5)]
    nemesis_interval: u64,
    /// Per-operation client deadline, milliseconds.
    #[arg(long, default_value_t = 2000)]
    op_timeout_ms: u64,
    /// Seconds the healed cluster gets before the final reads.
    #[arg(long, default_value_t = 60)]
    recovery: u64,
    /// Time budget of the linearizability checker, seconds (exceeded → unknown).
    #[arg(long, default_value_t = 60)]
    check_budget: u64,
    /// Where run directories go (not `store/`: that is the store crate in this repository).
    #[arg(long, default_value = "jepsen-out")]
    store: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One test run.
    Test {
        /// berth or etcd.
        #[arg(long, default_value = "berth", value_parser = parse_db)]
        db: Db,
        /// register, set, watch, durability; Kubernetes API: api-watch; control plane: bind, deploy, statefulset.
        #[arg(long, default_value = "register")]
        workload: WorkloadKind,
        /// Comma-separated: kill, pause, partition, netem, member, clock, kill-all, kill-leader,
        /// disk-full, failpoint (a server built with --features berth-store/failpoints);
        /// with bind/deploy/statefulset also kill-agent, pause-agent, partition-agent, partition-agent-server,
        /// kill-agent-server; or none.
        #[arg(long, default_value = "kill,partition")]
        nemesis: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Re-check a stored run directory (reads history.jsonl, rewrites results.json and index.html).
    Check { dir: PathBuf },
    /// Run a matrix of tests and print a summary table.
    Campaign {
        /// The CI matrix: Berth only, register + set + watch under kill and partition, and
        /// deploy under kill-leader and partition-agent.
        #[arg(long)]
        quick: bool,
        /// Databases of the full campaign, comma-separated.
        #[arg(long, default_value = "berth,etcd", value_delimiter = ',', value_parser = parse_db)]
        dbs: Vec<Db>,
        #[command(flatten)]
        run: RunArgs,
    },
}

fn parse_db(s: &str) -> Result<Db, String> {
    match s {
        "berth" => Ok(Db::Berth),
        "etcd" => Ok(Db::Etcd),
        other => Err(format!("unknown db {other:?} (expected berth or etcd)")),
    }
}

fn template(run: &RunArgs) -> TestConfig {
    TestConfig {
        nodes: run.nodes,
        time_limit: Duration::from_secs(run.time_limit),
        concurrency: run.concurrency,
        rate: run.rate,
        seed: run.seed,
        nemesis_interval: Duration::from_secs(run.nemesis_interval.max(1)),
        op_timeout: Duration::from_millis(run.op_timeout_ms.max(100)),
        recovery: Duration::from_secs(run.recovery),
        check_budget: Duration::from_secs(run.check_budget),
        ..campaign::template(run.store.clone(), Duration::from_secs(run.time_limit), run.seed)
    }
}

/// Ctrl-C or SIGTERM cancel the token; the run then heals, tears down and reports.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        eprintln!("berth-jepsen: interrupted; cleaning up");
        t.cancel();
    });
    token
}

fn print_results(dir: &std::path::Path, results: &[berth_jepsen::checker::CheckResult]) {
    for r in results {
        let stats: Vec<String> = r.stats.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {:<12} {:<8} {}", r.checker, format!("{:?}", r.verdict).to_lowercase(), stats.join(" "));
        for a in r.anomalies.iter().take(10) {
            println!("    {}: {}", a.kind, a.message);
        }
        if r.anomalies.len() > 10 {
            println!("    … {} more in {}/results.json", r.anomalies.len() - 10, dir.display());
        }
    }
    println!("  report: {}/index.html", dir.display());
}

async fn run_campaign(cells: Vec<campaign::Cell>, template: TestConfig, shutdown: CancellationToken) -> ExitCode {
    let mut outcomes = vec![];
    for cell in cells {
        if shutdown.is_cancelled() {
            break;
        }
        let cfg = campaign::config_for(&cell, &template);
        let label = format!("{} {} {}", cell.db, cell.workload, nemesis::label(&cell.nemeses));
        println!("== {label}");
        match runner::run_test(&cfg, shutdown.clone()).await {
            Ok(outcome) => {
                print_results(&outcome.dir, &outcome.results);
                let mut kinds: Vec<String> =
                    outcome.results.iter().flat_map(|r| r.anomalies.iter().map(|a| a.kind.clone())).collect();
                kinds.sort();
                kinds.dedup();
                outcomes.push(CellOutcome {
                    cell,
                    summary: Some(outcome.summary),
                    error: None,
                    anomaly_kinds: kinds,
                    dir: Some(outcome.dir),
                });
            }
            Err(e) => {
                println!("  run failed: {e}");
                outcomes.push(CellOutcome {
                    cell,
                    summary: None,
                    error: Some(e.to_string()),
                    anomaly_kinds: vec![],
                    dir: None,
                });
            }
        }
    }
    println!("\n{}", campaign::summary_table(&outcomes));
    let entries: Vec<_> = outcomes.iter().map(campaign::index_entry).collect();
    match berth_jepsen::report::write_campaign_index(&template.store, &entries) {
        Ok(path) => println!("campaign report: {}", path.display()),
        Err(e) => println!("campaign report not written: {e}"),
    }
    let all_valid =
        outcomes.iter().all(|o| o.summary.as_ref().map(|s| s.verdict) == Some(berth_jepsen::checker::Verdict::Valid));
    if all_valid && !shutdown.is_cancelled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "berth_jepsen=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Test { db, workload, nemesis: nemesis_list, run } => {
            let nemeses = match nemesis::parse_list(&nemesis_list) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("berth-jepsen: --nemesis: {e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = TestConfig { db, workload, nemeses, ..template(&run) };
            let shutdown = shutdown_on_signals();
            match runner::run_test(&cfg, shutdown).await {
                Ok(outcome) => {
                    println!("{} {} {}: {:?}", cfg.db, cfg.workload, nemesis_list, outcome.summary.verdict);
                    print_results(&outcome.dir, &outcome.results);
                    if runner::passed(&outcome.results) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("berth-jepsen: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check { dir } => match runner::check_dir(&dir, Duration::from_secs(120)) {
            Ok((summary, results)) => {
                println!("{}: {:?}", dir.display(), summary.verdict);
                print_results(&dir, &results);
                if runner::passed(&results) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("berth-jepsen: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
        Command::Campaign { quick, dbs, run } => {
            let shutdown = shutdown_on_signals();
            let cells = if quick { campaign::quick_matrix() } else { campaign::full_matrix(&dbs) };
            run_campaign(cells, template(&run), shutdown).await
        }
    }
}
