//! One test run, start to finish: network and cluster up, clients and nemesis for the time
//! limit, heal and recover, final reads, teardown, check, report. Everything the run
//! creates is owned by values whose `Drop` removes it (processes by PID, then namespaces and
//! bridge), so an error or a Ctrl-C (the `shutdown` token) still leaves the machine clean.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::checker::{CheckResult, Verdict};
use crate::clock::Faketime;
use crate::db::DbCluster;
use crate::history::History;
use crate::nemesis::{self, NemesisConfig, NemesisKind};
use crate::net::Network;
use crate::procs::Db;
use crate::recorder::Recorder;
use crate::report::{self, ReportSummary, RunInfo};
use crate::workload::{self, WorkloadCtx, WorkloadKind};
use crate::HarnessError;

/// Agents (hollow worker nodes) of the control-plane workloads.
pub const CONTROL_AGENTS: usize = 3;

#[derive(Debug, Clone)]
pub struct TestConfig {
    pub db: Db,
    pub nodes: usize,
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
    pub time_limit: Duration,
    pub concurrency: usize,
    pub rate: f64,
    pub seed: u64,
    /// Quiet time between faults and how long each is held.
    pub nemesis_interval: Duration,
    pub op_timeout: Duration,
    /// How long the healed cluster gets to answer again before final reads.
    pub recovery: Duration,
    /// Time budget of the linearizability search.
    pub check_budget: Duration,
    /// Runs go into `<store>/<db>-<workload>-<nemeses>-<seed>/`.
    pub store: PathBuf,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: ReportSummary,
    pub results: Vec<CheckResult>,
}

/// Validates the configuration with errors that name the flag.
pub fn validate(cfg: &TestConfig) -> Result<(), String> {
    if !(3..=9).contains(&cfg.nodes) {
        return Err(format!("--nodes {}: use 3 or 5 (3 to 9 accepted)", cfg.nodes));
    }
    if cfg.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if matches!(cfg.workload, WorkloadKind::Watch | WorkloadKind::ApiWatch) && cfg.concurrency < 2 {
        return Err(format!(
            "--concurrency must be at least 2 for the {} workload (writers and watchers)",
            cfg.workload
        ));
    }
    if cfg.workload.needs_kube_api() && cfg.db != Db::Berth {
        return Err(format!("--workload {}: a Kubernetes-API workload needs --db berth", cfg.workload));
    }
    if let Some(k) = cfg.nemeses.iter().find(|k| k.needs_agents() && !cfg.workload.is_control_plane()) {
        return Err(format!("--nemesis {k} needs agents: use it with --workload bind, deploy or statefulset"));
    }
    if cfg.nemeses.contains(&NemesisKind::Failpoint) && cfg.db != Db::Berth {
        return Err("--nemesis failpoint: failpoints are Berth's (use --db berth)".into());
    }
    if cfg.rate < 0.0 || !cfg.rate.is_finite() {
        return Err(format!("--rate {}: must be a non-negative number", cfg.rate));
    }
    if cfg.time_limit.is_zero() {
        return Err("--time-limit must be at least 1 second".into());
    }
    Ok(())
}

/// Runs one test. `shutdown` (Ctrl-C) cuts the fault phase short; cleanup always happens.
pub async fn run_test(cfg: &TestConfig, shutdown: CancellationToken) -> Result<RunOutcome, HarnessError> {
    validate(cfg).map_err(HarnessError::Config)?;
    crate::net::require_root()?;
    for leftover in crate::net::sweep_stale().into_iter().chain(crate::disk::sweep_stale()) {
        tracing::warn!(%leftover, "removed a leftover of an earlier harness run");
    }
    let dir = cfg.store.join(format!("{}-{}-{}-{}", cfg.db, cfg.workload, nemesis::label(&cfg.nemeses), cfg.seed));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut notes = vec![];
    let faketime = if cfg.nemeses.contains(&NemesisKind::Clock) {
        let found = Faketime::detect();
        if found.is_none() {
            notes.push("clock nemesis: libfaketime not found (apt-get install faketime); clock faults fail".into());
        }
        found
    } else {
        None
    };
    if cfg.nemeses.contains(&NemesisKind::Netem) && !Network::netem_available() {
        notes.push("netem: this kernel has no sch_netem; see the fault details for what was applied instead".into());
    }

    let names: Vec<String> = (1..=cfg.nodes).map(|i| format!("n{i}")).collect();
    let net = Network::create(&names)?;
    let disk_mb = cfg.nemeses.contains(&NemesisKind::DiskFull).then_some(crate::disk::DISK_MB);
    let mut cluster = DbCluster::start(cfg.db, net, &dir, faketime.as_ref(), disk_mb)?;
    let mut log_files = cluster.log_files();
    cluster.wait_ready(Duration::from_secs(60)).await?;
    if cfg.nemeses.contains(&NemesisKind::Failpoint) {
        // Before any workload: a server without failpoints would make every fault fail.
        crate::failpoint::probe(&cluster.api_url(&names[0])?).await?;
    }
    if cfg.workload.is_control_plane() {
        cluster.start_agents(CONTROL_AGENTS, cfg.workload.agent_runtime())?;
        log_files.extend(cluster.agent_log_files());
    }
    tracing::info!(dir = %dir.display(), "cluster ready; starting {} with nemesis {}", cfg.workload, nemesis::label(&cfg.nemeses));

    let recorder = Arc::new(Recorder::new());
    let nodes: Vec<(String, String)> =
        names.iter().filter_map(|n| cluster.urls(n).ok().map(|(client_url, _)| (n.clone(), client_url))).collect();
    let api = match cfg.db {
        Db::Berth => names.iter().filter_map(|n| cluster.api_url(n).ok().map(|url| (n.clone(), url))).collect(),
        Db::Etcd => vec![],
    };
    let stop_clients = CancellationToken::new();
    let ctx = Arc::new(WorkloadCtx {
        recorder: recorder.clone(),
        nodes,
        api,
        concurrency: cfg.concurrency,
        rate: cfg.rate,
        seed: cfg.seed,
        op_timeout: cfg.op_timeout,
        stop: stop_clients.clone(),
    });
    if cfg.workload == WorkloadKind::ApiWatch {
        // The namespace; no agents to wait for.
        workload::pods::prepare(&ctx, 0, Duration::from_secs(60)).await?;
    }
    let pod_recorder = if cfg.workload.is_control_plane() {
        workload::pods::prepare(&ctx, CONTROL_AGENTS, Duration::from_secs(60)).await?;
        if cfg.workload == WorkloadKind::StatefulSet {
            let ledger = dir.join(workload::statefulset::LEDGER);
            workload::statefulset::prepare(&ctx, &ledger, Duration::from_secs(60)).await?;
        }
        Some(workload::pods::spawn_recorder(ctx.clone()))
    } else {
        None
    };
    let stop_watchers = CancellationToken::new();
    let mut clients = match cfg.workload {
        WorkloadKind::Register => workload::register::spawn(&ctx),
        WorkloadKind::Set => workload::set::spawn(&ctx),
        WorkloadKind::Durability => workload::durability::spawn(&ctx),
        WorkloadKind::Watch => workload::watch::spawn_writers(&ctx),
        WorkloadKind::Bind => workload::bind::spawn(&ctx),
        WorkloadKind::Deploy => workload::deploy::spawn(&ctx),
        WorkloadKind::ApiWatch => workload::api_watch::spawn_writers(&ctx),
        WorkloadKind::StatefulSet => workload::statefulset::spawn(&ctx),
    };
    let watchers =
        (cfg.workload == WorkloadKind::Watch).then(|| workload::watch::spawn_watchers(&ctx, stop_watchers.clone()));
    let api_watchers = (cfg.workload == WorkloadKind::ApiWatch)
        .then(|| workload::api_watch::spawn_watchers(&ctx, stop_watchers.clone()));

    let cluster = Arc::new(Mutex::new(cluster));
    let stop_nemesis = CancellationToken::new();
    let nemesis_cfg = NemesisConfig { kinds: cfg.nemeses.clone(), interval: cfg.nemesis_interval, seed: cfg.seed };
    let nemesis = tokio::spawn(nemesis::run(cluster.clone(), recorder.clone(), nemesis_cfg, stop_nemesis.clone()));

    let interrupted = tokio::select! {
        _ = tokio::time::sleep(cfg.time_limit) => false,
        _ = shutdown.cancelled() => true,
    };
    stop_clients.cancel();
    stop_nemesis.cancel();
    // Client calls end within their own deadline; the nemesis within its heal.
    for handle in clients.drain(..) {
        let _ = tokio::time::timeout(cfg.op_timeout * 2, handle).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(90), nemesis).await;
    let healed_at = std::time::Instant::now();
    let mut cluster = match Arc::try_unwrap(cluster) {
        Ok(m) => m.into_inner(),
        Err(_) => return Err(HarnessError::Rpc("the nemesis did not finish healing in 90 s".into())),
    };

    if !interrupted {
        if let Err(e) = cluster.wait_ready(cfg.recovery).await {
            notes.push(format!("the cluster did not recover within {}s after healing: {e}", cfg.recovery.as_secs()));
        }
        final_phase(cfg, &ctx, &mut cluster, (watchers, api_watchers), &stop_watchers, healed_at).await;
    } else {
        stop_watchers.cancel();
        notes.push("interrupted (Ctrl-C): final reads skipped, verdict is about a partial history".into());
    }
    if let Some(pod_recorder) = pod_recorder {
        pod_recorder.stop().await;
    }
    if cfg.workload.is_control_plane() {
        let gaps = cluster.agent_failovers();
        recorder.record(
            crate::workload::pods::recorder_process(&ctx) + 10,
            crate::history::OpType::Ok,
            "",
            crate::history::Call::AgentFailovers { gaps },
            None,
        );
    }
    cluster.teardown();
    drop(cluster);
    if cfg.workload == WorkloadKind::StatefulSet {
        // Every container is gone with the agents' namespaces: the ledger is complete.
        workload::statefulset::record_runs(&ctx, &dir);
    }

    let history = recorder.snapshot();
    history.save(&dir.join("history.jsonl"))?;
    let results = workload::check_history(&history, cfg.check_budget);
    let info = RunInfo {
        title: format!("{} {} / {}", cfg.db, cfg.workload, nemesis::label(&cfg.nemeses)),
        db: cfg.db.to_string(),
        nodes: cfg.nodes,
        workload: cfg.workload.to_string(),
        nemeses: cfg.nemeses.iter().map(|k| k.to_string()).collect(),
        seed: cfg.seed,
        time_limit_s: cfg.time_limit.as_secs(),
        concurrency: cfg.concurrency,
        rate: cfg.rate,
        notes,
        logs: log_files,
    };
    let summary = report::write_report(&dir, &info, &history, &results)?;
    Ok(RunOutcome { dir, summary, results })
}

/// Workload-specific reads after healing, bounded by the recovery time.
async fn final_phase(
    cfg: &TestConfig,
    ctx: &WorkloadCtx,
    cluster: &mut DbCluster,
    (watchers, api_watchers): (Option<workload::watch::Watchers>, Option<workload::api_watch::Watchers>),
    stop_watchers: &CancellationToken,
    healed_at: std::time::Instant,
) {
    match cfg.workload {
        WorkloadKind::Bind => workload::pods::final_state(ctx, cfg.recovery).await,
        WorkloadKind::Deploy => {
            workload::deploy::converge(ctx, healed_at, cfg.recovery).await;
            workload::pods::final_state(ctx, cfg.recovery).await;
        }
        WorkloadKind::StatefulSet => {
            workload::statefulset::converge(ctx, healed_at, cfg.recovery).await;
            workload::pods::final_state(ctx, cfg.recovery).await;
        }
        WorkloadKind::Register => {}
        WorkloadKind::Set => workload::set::final_reads(ctx, cfg.recovery).await,
        WorkloadKind::Durability => workload::durability::final_phase(ctx, cluster, cfg.recovery).await,
        WorkloadKind::ApiWatch => {
            let last = workload::api_watch::record_final_history(ctx, cfg.recovery).await.unwrap_or(0);
            if let Some(watchers) = api_watchers {
                // A bookmark counts as catching up.
                let caught_up = |w: &workload::api_watch::Watchers| w.caught_up(last);
                drain_watchers(cfg, watchers, caught_up, |w| w.handles, stop_watchers).await;
            }
        }
        WorkloadKind::Watch => {
            let last = workload::watch::record_final_history(ctx, cfg.recovery).await.unwrap_or(0);
            if let Some(watchers) = watchers {
                let caught_up = |w: &workload::watch::Watchers| w.caught_up(last);
                drain_watchers(cfg, watchers, caught_up, |w| w.handles, stop_watchers).await;
            }
        }
    }
    // Last, so the writes of the convergence phase are checked too.
    if cfg.workload.is_control_plane() {
        let server_logs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.member.log.clone()).collect();
        workload::fencing::record(ctx, &server_logs, cfg.recovery).await;
    }
}

/// Lets every watcher catch up to the end of the history (bounded by `--recovery`), then
/// stops them and waits (bounded) for them to end.
async fn drain_watchers<W>(
    cfg: &TestConfig,
    watchers: W,
    caught_up: impl Fn(&W) -> bool,
    handles: impl FnOnce(W) -> Vec<tokio::task::JoinHandle<()>>,
    stop_watchers: &CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + cfg.recovery;
    while tokio::time::Instant::now() < deadline && !caught_up(&watchers) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_watchers.cancel();
    for h in handles(watchers) {
        let _ = tokio::time::timeout(cfg.op_timeout * 2, h).await;
    }
}

/// `berth-jepsen check DIR`: re-decides a stored history and rewrites its report.
pub fn check_dir(dir: &Path, budget: Duration) -> Result<(ReportSummary, Vec<CheckResult>), HarnessError> {
    let history = History::load(&dir.join("history.jsonl"))?;
    let results = workload::check_history(&history, budget);
    let info = report::load_run_info(dir)
        .unwrap_or_else(|| RunInfo { title: format!("re-check of {}", dir.display()), ..RunInfo::default() });
    let summary = report::write_report(dir, &info, &history, &results)?;
    Ok((summary, results))
}

/// True when every checker said valid.
pub fn passed(results: &[CheckResult]) -> bool {
    results.iter().all(|r| r.verdict == Verdict::Valid)
}
