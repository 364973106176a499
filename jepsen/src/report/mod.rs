//! The run report: `results.json` (what was run, what every checker decided, the counts) and
//! `index.html`, a self-contained page a person opens after a run — the verdict first, then
//! the checkers with their anomalies, latency and throughput over time with the fault
//! windows shaded, and the nemesis timeline.
//!
//! Everything here is derived from the [`History`] and the [`CheckResult`]s, so the report can
//! be rebuilt from a run directory by re-checking it. The page has no external resources (no
//! scripts, fonts or stylesheets from anywhere) so it can be archived as a CI artifact and
//! opened offline.

mod html;
mod index;
mod plot;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use index::{write_campaign_index, CampaignEntry};

use crate::checker::{CheckResult, Verdict};
use crate::history::{Call, History, Op, OpType, NEMESIS};

/// What was run: printed in the page header and stored in `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub title: String,
    /// The system under test (`berth`, `etcd`).
    pub db: String,
    pub nodes: usize,
    pub workload: String,
    pub nemeses: Vec<String>,
    pub seed: u64,
    pub time_limit_s: u64,
    pub concurrency: usize,
    /// Target operations per second over all clients.
    pub rate: f64,
    pub notes: Vec<String>,
    /// Node logs, as paths relative to the report directory (`logs/n1.log`); linked from the page.
    #[serde(default)]
    pub logs: Vec<String>,
}

/// The headline numbers of a run, returned by [`write_report`] and stored in `results.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub verdict: Verdict,
    /// Client completions (`ok` + `fail` + `info` records of client processes, watch responses
    /// included).
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Faults that were put in place (nemesis `fault` records of type `ok`).
    pub faults: u64,
    /// Anomalies over all checkers.
    pub anomalies: u64,
    /// Control-plane runs: milliseconds from the final heal until every Deployment ran its
    /// last spec (the deploy checker's `convergence_ms`), when it converged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence_ms: Option<u64>,
    /// Control-plane runs: how many times agents failed over to another API server, and
    /// the longest outage one of them saw.
    #[serde(default)]
    pub agent_failovers: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_gap_max_ms: Option<u64>,
}

/// The time a fault was in place: from its `fault` `ok` record to the `ok` of the matching
/// `heal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub name: String,
    /// The fault's own detail (which node, which partition…).
    pub detail: String,
    pub start_ns: u64,
    /// The heal's `ok`; for a fault never healed, the time of the history's last record.
    pub end_ns: u64,
    /// False when no heal was recorded: the window was cut at the end of the history.
    pub healed: bool,
}

/// The layout of `results.json`.
#[derive(Serialize)]
struct ResultsFile<'a> {
    run: &'a RunInfo,
    verdict: Verdict,
    summary: &'a ReportSummary,
    checkers: &'a [CheckResult],
    fault_windows: &'a [FaultWindow],
}

/// Writes `results.json` (RunInfo + every CheckResult + overall verdict + op/fault counts) and
/// `index.html` into `dir`, creating it if needed.
///
/// `history.jsonl` and the node logs are written by whoever ran the test; the page only links
/// to them.
pub fn write_report(
    dir: &Path,
    info: &RunInfo,
    history: &History,
    results: &[CheckResult],
) -> std::io::Result<ReportSummary> {
    std::fs::create_dir_all(dir)?;
    let summary = summarize(history, results);
    let windows = fault_windows(history);
    let file = ResultsFile {
        run: info,
        verdict: summary.verdict,
        summary: &summary,
        checkers: results,
        fault_windows: &windows,
    };
    let json = serde_json::to_string_pretty(&file)?;
    std::fs::write(dir.join("results.json"), json + "\n")?;
    let page = html::render(&html::Page { info, history, results, summary: &summary, windows: &windows });
    std::fs::write(dir.join("index.html"), page)?;
    Ok(summary)
}

/// Reads back the [`RunInfo`] stored in a report directory's `results.json`, so that
/// re-checking a stored run keeps its description. `None` if there is no readable one.
pub fn load_run_info(dir: &Path) -> Option<RunInfo> {
    #[derive(Deserialize)]
    struct Head {
        run: RunInfo,
    }
    let text = std::fs::read_to_string(dir.join("results.json")).ok()?;
    serde_json::from_str::<Head>(&text).ok().map(|h| h.run)
}

/// The verdict of a whole run: any invalid → invalid, else any unknown → unknown, else valid.
/// A run no checker looked at is `unknown`: nothing was shown to hold.
pub fn overall_verdict(results: &[CheckResult]) -> Verdict {
    results.iter().map(|r| r.verdict).reduce(Verdict::combine).unwrap_or(Verdict::Unknown)
}

/// Pairs every fault that was put in place with the heal that undid it.
///
/// A heal closes the open window of the same name and detail if there is one, otherwise the
/// oldest open window of that name (heals may describe themselves differently, e.g. "all").
/// Windows come out in order of their start.
pub fn fault_windows(history: &History) -> Vec<FaultWindow> {
    let last_ns = history.ops.iter().map(|o| o.time_ns).max().unwrap_or(0);
    let mut windows: Vec<FaultWindow> = Vec::new();
    // Indices into `windows` of the faults not yet healed, oldest first.
    let mut open: Vec<usize> = Vec::new();
    for op in history.ops.iter().filter(|o| o.process == NEMESIS && o.kind == OpType::Ok) {
        match &op.call {
            Call::Fault { name, detail } => {
                open.push(windows.len());
                windows.push(FaultWindow {
                    name: name.clone(),
                    detail: detail.clone(),
                    start_ns: op.time_ns,
                    end_ns: last_ns,
                    healed: false,
                });
            }
            Call::Heal { name, detail } => {
                let exact = open.iter().position(|&w| windows[w].name == *name && windows[w].detail == *detail);
                let by_name = || open.iter().position(|&w| windows[w].name == *name);
                if let Some(pos) = exact.or_else(by_name) {
                    let w = &mut windows[open.remove(pos)];
                    w.end_ns = op.time_ns.max(w.start_ns);
                    w.healed = true;
                }
            }
            _ => {}
        }
    }
    windows
}

/// Counts completions, faults and anomalies.
fn summarize(history: &History, results: &[CheckResult]) -> ReportSummary {
    let mut s = ReportSummary {
        verdict: overall_verdict(results),
        ops: 0,
        ok: 0,
        fail: 0,
        info: 0,
        faults: 0,
        anomalies: results.iter().map(|r| r.anomalies.len() as u64).sum(),
        convergence_ms: results.iter().find_map(|r| r.stats.get("convergence_ms").copied()),
        agent_failovers: 0,
        agent_gap_max_ms: None,
    };
    for op in &history.ops {
        if let Call::AgentFailovers { gaps } = &op.call {
            s.agent_failovers = gaps.len() as u64;
            s.agent_gap_max_ms = gaps.iter().map(|g| g.outage_ms).max();
        }
        if op.process == NEMESIS {
            s.faults += u64::from(op.kind == OpType::Ok && matches!(op.call, Call::Fault { .. }));
            continue;
        }
        match op.kind {
            OpType::Invoke => continue,
            OpType::Ok => s.ok += 1,
            OpType::Fail => s.fail += 1,
            OpType::Info => s.info += 1,
        }
        s.ops += 1;
    }
    s
}

/// A client operation from its invocation to its completion: one point of the latency plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Completed {
    f: &'static str,
    outcome: OpType,
    invoke_ns: u64,
    complete_ns: u64,
}

impl Completed {
    fn latency_ns(&self) -> u64 {
        self.complete_ns - self.invoke_ns
    }
}

/// Pairs each client invocation with the next completion of the same process and function.
///
/// Records without an invocation of their own — watch responses, `watch-end`, the harness's
/// `final-history` — are left out: they have no latency. Returns the pairs in completion order
/// and how many completions were left out.
fn completed_ops(history: &History) -> (Vec<Completed>, u64) {
    let mut pending: HashMap<i64, &Op> = HashMap::new();
    let mut done = Vec::new();
    let mut unpaired = 0;
    for op in history.client_ops() {
        if op.kind == OpType::Invoke {
            pending.insert(op.process, op);
            continue;
        }
        match pending.get(&op.process) {
            Some(inv) if inv.call.name() == op.call.name() => {
                done.push(Completed {
                    f: op.call.name(),
                    outcome: op.kind,
                    invoke_ns: inv.time_ns,
                    // A clock never runs backwards, but a hand-made history might.
                    complete_ns: op.time_ns.max(inv.time_ns),
                });
                pending.remove(&op.process);
            }
            _ => unpaired += 1,
        }
    }
    (done, unpaired)
}
