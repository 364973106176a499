//! Campaigns: a matrix of test runs (databases × workloads × nemeses) and the summary table
//! of what they found. `quick` is the CI matrix (Berth, 3 nodes, register + set + watch
//! under kill and partition, and one control-plane cell: deploy — whose pods the bind
//! checker also judges — under kill-leader and partition-agent; about two minutes);
//! `full` is the documented campaign, with etcd as the control for the etcd-API workloads.
//! Every control-plane cell is also judged by the fencing checker.

use std::fmt::Write as _;
use std::time::Duration;

use crate::nemesis::NemesisKind;
use crate::procs::Db;
use crate::report::ReportSummary;
use crate::runner::TestConfig;
use crate::workload::WorkloadKind;

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct Cell {
    pub db: Db,
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
}

/// The CI matrix.
pub fn quick_matrix() -> Vec<Cell> {
    let faults = vec![NemesisKind::Kill, NemesisKind::Partition];
    let mut cells: Vec<Cell> = [WorkloadKind::Register, WorkloadKind::Set, WorkloadKind::Watch]
        .into_iter()
        .map(|workload| Cell { db: Db::Berth, workload, nemeses: faults.clone() })
        .collect();
    cells.push(Cell {
        db: Db::Berth,
        workload: WorkloadKind::Deploy,
        nemeses: vec![NemesisKind::KillLeader, NemesisKind::PartitionAgent],
    });
    cells
}

/// The control-plane fault sets: the leader's tasks, the servers, and the agents.
fn control_plane_faults() -> Vec<Vec<NemesisKind>> {
    use NemesisKind::*;
    vec![
        vec![KillLeader],
        vec![Kill],
        vec![Pause],
        vec![Partition],
        vec![KillAgent, PauseAgent],
        vec![PartitionAgent, PartitionAgentServer],
        vec![KillAgentServer],
        vec![KillLeader, PartitionAgent, KillAgent, Pause],
    ]
}

/// The full campaign: every workload under every fault family, for each database.
pub fn full_matrix(dbs: &[Db]) -> Vec<Cell> {
    use NemesisKind::*;
    let fault_sets: Vec<Vec<NemesisKind>> = vec![
        vec![Kill],
        vec![Pause],
        vec![Partition],
        vec![Netem],
        vec![Member],
        vec![Clock],
        vec![Kill, Partition, Pause],
    ];
    let mut cells = vec![];
    for &db in dbs {
        for workload in [WorkloadKind::Register, WorkloadKind::Set, WorkloadKind::Watch] {
            for nemeses in &fault_sets {
                cells.push(Cell { db, workload, nemeses: nemeses.clone() });
            }
        }
        cells.push(Cell { db, workload: WorkloadKind::Durability, nemeses: vec![KillAll] });
        if db == Db::Berth {
            // Crashes before and after the log fsync, with every acknowledged write checked.
            cells.push(Cell { db, workload: WorkloadKind::Durability, nemeses: vec![Failpoint] });
        }
        // The store's failpoints exist on Berth only; a full disk is a fair test of both.
        for workload in [WorkloadKind::Register, WorkloadKind::Set] {
            if db == Db::Berth {
                cells.push(Cell { db, workload, nemeses: vec![Failpoint] });
            }
            cells.push(Cell { db, workload, nemeses: vec![DiskFull] });
        }
        // The Kubernetes API exists on Berth only.
        if db == Db::Berth {
            for nemeses in [vec![Kill], vec![Partition], vec![Pause], vec![Failpoint], vec![Kill, Partition, Pause]] {
                cells.push(Cell { db, workload: WorkloadKind::ApiWatch, nemeses });
            }
            for workload in [WorkloadKind::Bind, WorkloadKind::Deploy, WorkloadKind::StatefulSet] {
                for nemeses in control_plane_faults() {
                    cells.push(Cell { db, workload, nemeses });
                }
            }
        }
    }
    cells
}

/// The run configuration for a cell, from a template carrying the shared settings.
pub fn config_for(cell: &Cell, template: &TestConfig) -> TestConfig {
    TestConfig { db: cell.db, workload: cell.workload, nemeses: cell.nemeses.clone(), ..template.clone() }
}

/// One finished (or failed-to-run) cell.
#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub cell: Cell,
    pub summary: Option<ReportSummary>,
    /// Harness error (the run itself failed), if any.
    pub error: Option<String>,
    /// Anomaly kinds found, deduplicated.
    pub anomaly_kinds: Vec<String>,
    /// The run's directory (None when the run failed before making one).
    pub dir: Option<std::path::PathBuf>,
}

/// The campaign index's entry for an outcome.
pub fn index_entry(o: &CellOutcome) -> crate::report::CampaignEntry {
    crate::report::CampaignEntry {
        title: format!("{} {} {}", o.cell.db, o.cell.workload, crate::nemesis::label(&o.cell.nemeses)),
        dir: o.dir.clone(),
        summary: o.summary,
        error: o.error.clone(),
        anomaly_kinds: o.anomaly_kinds.clone(),
        control_plane: o.cell.workload.is_control_plane(),
    }
}

/// The summary table: per database, runs, operations, faults, anomalies; then per cell.
pub fn summary_table(outcomes: &[CellOutcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| db | runs | client ops | ok | info | faults | invalid runs | unknown runs | anomalies |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut dbs: Vec<Db> = outcomes.iter().map(|o| o.cell.db).collect();
    dbs.dedup();
    for db in dbs {
        let rows: Vec<&CellOutcome> = outcomes.iter().filter(|o| o.cell.db == db).collect();
        let sum = |f: fn(&ReportSummary) -> u64| rows.iter().filter_map(|o| o.summary.as_ref()).map(f).sum::<u64>();
        let count_verdict = |v: crate::checker::Verdict| {
            rows.iter().filter(|o| o.summary.as_ref().map(|s| s.verdict) == Some(v)).count()
        };
        let _ = writeln!(
            out,
            "| {db} | {} | {} | {} | {} | {} | {} | {} | {} |",
            rows.len(),
            sum(|s| s.ops),
            sum(|s| s.ok),
            sum(|s| s.info),
            sum(|s| s.faults),
            count_verdict(crate::checker::Verdict::Invalid),
            count_verdict(crate::checker::Verdict::Unknown),
            sum(|s| s.anomalies),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| db | workload | nemesis | verdict | ops | faults | converged | anomalies |");
    let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---|");
    for o in outcomes {
        let nemeses = o.cell.nemeses.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
        let (verdict, ops, faults) = match (&o.summary, &o.error) {
            (Some(s), _) => (format!("{:?}", s.verdict).to_lowercase(), s.ops, s.faults),
            (None, Some(e)) => (format!("run failed: {e}"), 0, 0),
            (None, None) => ("not run".into(), 0, 0),
        };
        let anomalies = if o.anomaly_kinds.is_empty() { "-".to_string() } else { o.anomaly_kinds.join(", ") };
        let converged = match o.summary.as_ref().and_then(|s| s.convergence_ms) {
            Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
            None if matches!(o.cell.workload, WorkloadKind::Deploy | WorkloadKind::StatefulSet)
                && o.summary.is_some() =>
            {
                "no".into()
            }
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            o.cell.db, o.cell.workload, nemeses, verdict, ops, faults, converged, anomalies
        );
    }
    out
}

/// The default template: shared settings for every campaign run.
pub fn template(store: std::path::PathBuf, time_limit: Duration, seed: u64) -> TestConfig {
    TestConfig {
        db: Db::Berth,
        nodes: 3,
        workload: WorkloadKind::Register,
        nemeses: vec![],
        time_limit,
        concurrency: 10,
        rate: 100.0,
        seed,
        nemesis_interval: Duration::from_secs(5),
        op_timeout: Duration::from_secs(2),
        recovery: Duration::from_secs(60),
        check_budget: Duration::from_secs(60),
        store,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_has_one_control_plane_cell_and_full_has_them_for_berth_only() {
        let quick = quick_matrix();
        let control: Vec<&Cell> = quick.iter().filter(|c| c.workload.is_control_plane()).collect();
        assert_eq!(control.len(), 1);
        assert_eq!(control[0].workload, WorkloadKind::Deploy);
        assert_eq!(crate::nemesis::label(&control[0].nemeses), "kill-leader,partition-agent");
        let full = full_matrix(&[Db::Berth, Db::Etcd]);
        let control: Vec<&Cell> = full.iter().filter(|c| c.workload.is_control_plane()).collect();
        assert_eq!(control.len(), 24);
        assert!(control.iter().all(|c| c.db == Db::Berth));
        // Agent faults only where there are agents.
        assert!(full.iter().all(|c| c.workload.is_control_plane() || !c.nemeses.iter().any(|k| k.needs_agents())));
        // Failpoints on Berth only; disk-full on both.
        let with = |k: NemesisKind| full.iter().filter(|c| c.nemeses.contains(&k)).map(|c| c.db).collect::<Vec<_>>();
        assert_eq!(with(NemesisKind::Failpoint), vec![Db::Berth; 4]);
        let api_watch: Vec<&Cell> = full.iter().filter(|c| c.workload == WorkloadKind::ApiWatch).collect();
        assert_eq!(api_watch.len(), 5);
        assert!(api_watch.iter().all(|c| c.db == Db::Berth));
        assert_eq!(with(NemesisKind::DiskFull), vec![Db::Berth, Db::Berth, Db::Etcd, Db::Etcd]);
    }

    #[test]
    fn the_table_shows_convergence_for_control_plane_cells() {
        let summary = |convergence_ms| ReportSummary {
            verdict: crate::checker::Verdict::Valid,
            ops: 5,
            ok: 5,
            fail: 0,
            info: 0,
            faults: 1,
            anomalies: 0,
            convergence_ms,
            agent_failovers: 0,
            agent_gap_max_ms: None,
        };
        let cell = |workload| Cell { db: Db::Berth, workload, nemeses: vec![NemesisKind::KillLeader] };
        let outcomes = vec![
            CellOutcome {
                cell: cell(WorkloadKind::Deploy),
                summary: Some(summary(Some(1629))),
                error: None,
                anomaly_kinds: vec![],
                dir: None,
            },
            CellOutcome {
                cell: cell(WorkloadKind::Deploy),
                summary: Some(summary(None)),
                error: None,
                anomaly_kinds: vec!["not-converged".into()],
                dir: None,
            },
            CellOutcome {
                cell: cell(WorkloadKind::Set),
                summary: Some(summary(None)),
                error: None,
                anomaly_kinds: vec![],
                dir: None,
            },
        ];
        let table = summary_table(&outcomes);
        assert!(table.contains("| berth | deploy | kill-leader | valid | 5 | 1 | 1.6 s | - |"), "{table}");
        assert!(table.contains("| berth | deploy | kill-leader | valid | 5 | 1 | no | not-converged |"), "{table}");
        assert!(table.contains("| berth | set | kill-leader | valid | 5 | 1 | - | - |"), "{table}");
    }
}
