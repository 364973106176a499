//! The StatefulSet checker: **at most one running container per StatefulSet identity** at
//! any time — the guarantee Kubernetes gives only because a StatefulSet pod's name is
//! reused only once the old pod is confirmed gone.
//!
//! Input: the `container-runs` record, every container run the StatefulSets' pods wrote to
//! the ledger: each run certainly ran from its first heartbeat to its last (a process is
//! alive in between). Two runs of the same pod name whose intervals overlap ran at the same
//! moment: **two-running**, whatever their uid or node. The check is conservative: an
//! overlap shorter than the heartbeat period can go unseen, a reported one is certain.
//!
//! Liveness: the `statefulset-converge` record must be `ok` (after the final heal every
//! StatefulSet ran exactly its replicas); otherwise **not-converged** — a Berth that never
//! replaced a pod would pass the at-most-one check trivially.
//!
//! Also reported: the handovers (a run of a pod followed by a run of a *new* uid of the same
//! name) and the gap between them, which shows Berth waiting for the old pod's deletion to
//! be confirmed before starting its replacement.

use std::collections::BTreeMap;

use super::{Anomaly, CheckResult};
use crate::history::{Call, ContainerRun, History, OpType};

pub fn check(history: &History) -> CheckResult {
    let record = history.ops.iter().filter(|op| op.kind != OpType::Invoke).find_map(|op| match &op.call {
        Call::ContainerRuns { runs } => Some((op.index, runs)),
        _ => None,
    });
    let Some((index, runs)) = record else {
        let missing = Anomaly::new("no-container-runs", "the run recorded no container ledger", vec![]);
        return CheckResult::from_anomalies("statefulset", vec![missing], &["no-container-runs"], BTreeMap::new());
    };
    let decision = decide(runs);
    let mut stats = BTreeMap::new();
    let mut anomalies: Vec<Anomaly> = decision
        .overlaps
        .iter()
        .map(|(a, b, overlap_ns)| {
            Anomaly::new(
                "two-running",
                format!(
                    "pod {} ran twice at once for {} ms: uid {} on {} (pid {}) and uid {} on {} (pid {})",
                    a.pod,
                    overlap_ns / 1_000_000,
                    a.uid,
                    a.node,
                    a.pid,
                    b.uid,
                    b.node,
                    b.pid
                ),
                vec![index],
            )
        })
        .collect();
    match converged(history) {
        Some(Ok(seconds)) => {
            stats.insert("convergence_ms".into(), (seconds * 1000.0) as u64);
        }
        Some(Err((index, message))) => anomalies.push(Anomaly::new("not-converged", message, vec![index])),
        None => {}
    }
    if runs.is_empty() {
        anomalies.push(Anomaly::new("no-container-runs", "no container wrote a heartbeat", vec![index]));
    }
    stats.insert("runs".into(), runs.len() as u64);
    stats.insert("pods".into(), decision.pods as u64);
    stats.insert("handovers".into(), decision.handover_gaps_ns.len() as u64);
    stats.insert("moved_between_nodes".into(), decision.moves as u64);
    if let Some(max) = decision.handover_gaps_ns.iter().max() {
        stats.insert("handover_gap_ms_max".into(), max / 1_000_000);
        stats.insert("handover_gap_ms_min".into(), decision.handover_gaps_ns.iter().min().unwrap_or(max) / 1_000_000);
    }
    CheckResult::from_anomalies("statefulset", anomalies, &["no-container-runs"], stats)
}

/// The convergence record's outcome: seconds after the heal, or (index, why not).
fn converged(history: &History) -> Option<Result<f64, (u64, String)>> {
    let op = history
        .ops
        .iter()
        .rev()
        .find(|op| op.kind != OpType::Invoke && matches!(op.call, Call::StatefulSetConverge { .. }))?;
    let Call::StatefulSetConverge { seconds, state } = &op.call else { return None };
    match (op.kind, seconds) {
        (OpType::Ok, Some(s)) => Some(Ok(*s)),
        _ => {
            let why = op.error.clone().unwrap_or_else(|| "did not converge".into());
            Some(Err((op.index, format!("{why}; last seen: {}", state.as_deref().unwrap_or("nothing")))))
        }
    }
}

/// What the runs show (pure).
#[derive(Debug, Default)]
pub struct Decision<'a> {
    /// Overlapping runs of one pod name, with how long they overlapped.
    pub overlaps: Vec<(&'a ContainerRun, &'a ContainerRun, u64)>,
    /// Gaps from the last heartbeat of a pod's old uid to the first of its next uid.
    pub handover_gaps_ns: Vec<u64>,
    /// Handovers whose new uid ran on another node.
    pub moves: usize,
    pub pods: usize,
}

pub fn decide(runs: &[ContainerRun]) -> Decision<'_> {
    let mut by_pod: BTreeMap<&str, Vec<&ContainerRun>> = BTreeMap::new();
    for r in runs {
        by_pod.entry(r.pod.as_str()).or_default().push(r);
    }
    let mut d = Decision { pods: by_pod.len(), ..Decision::default() };
    for runs in by_pod.values_mut() {
        runs.sort_by_key(|r| (r.first_ns, r.last_ns));
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                if b.first_ns > a.last_ns {
                    break;
                }
                let overlap = a.last_ns.min(b.last_ns) - b.first_ns;
                d.overlaps.push((a, b, overlap));
            }
        }
        for pair in runs.windows(2) {
            let (old, new) = (pair[0], pair[1]);
            if old.uid != new.uid && new.first_ns > old.last_ns {
                d.handover_gaps_ns.push(new.first_ns - old.last_ns);
                if old.node != new.node {
                    d.moves += 1;
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{fail, history, kinds, ok};
    use crate::checker::Verdict;

    const MS: u64 = 1_000_000;

    fn run(pod: &str, uid: &str, node: &str, first_ms: u64, last_ms: u64) -> ContainerRun {
        ContainerRun {
            pod: pod.into(),
            uid: uid.into(),
            node: node.into(),
            pid: 100,
            first_ns: first_ms * MS,
            last_ns: last_ms * MS,
            beats: (last_ms - first_ms) / 100 + 1,
        }
    }

    fn check_runs(runs: Vec<ContainerRun>) -> CheckResult {
        check(&history(vec![ok(9000, 1, Call::ContainerRuns { runs })]))
    }

    #[test]
    fn successive_runs_of_a_pod_are_valid_and_their_handover_is_reported() {
        let r = check_runs(vec![
            run("web-0", "u1", "a1", 0, 1000),
            run("web-0", "u2", "a2", 3500, 9000),
            run("web-1", "u3", "a2", 0, 9000),
        ]);
        assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.anomalies);
        assert_eq!(r.stats["handovers"], 1);
        assert_eq!(r.stats["moved_between_nodes"], 1);
        assert_eq!(r.stats["handover_gap_ms_max"], 2500);
    }

    #[test]
    fn two_runs_of_one_pod_at_once_are_invalid_whatever_their_nodes() {
        let r = check_runs(vec![
            run("web-0", "u1", "a1", 0, 5000),
            run("web-0", "u2", "a2", 4000, 9000),
            run("web-1", "u3", "a2", 0, 9000),
            run("web-1", "u3", "a2", 8800, 9500),
        ]);
        assert_eq!(kinds(&r), ["two-running", "two-running"]);
        assert!(r.anomalies[0].message.contains("web-0 ran twice at once for 1000 ms"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn not_converging_after_the_heal_is_invalid() {
        let converge = |kind: fn(i64, u64, Call) -> crate::history::Op, seconds| {
            kind(9001, 2, Call::StatefulSetConverge { seconds, state: Some("s0 replicas=2 ready={}".into()) })
        };
        let runs = Call::ContainerRuns { runs: vec![run("web-0", "u1", "a1", 0, 1000)] };
        let stuck = check(&history(vec![ok(9000, 1, runs.clone()), converge(fail, None)]));
        assert_eq!(kinds(&stuck), ["not-converged"]);
        assert!(stuck.anomalies[0].message.contains("ready={}"));
        let fine = check(&history(vec![ok(9000, 1, runs), converge(ok, Some(2.5))]));
        assert_eq!(fine.verdict, Verdict::Valid);
        assert_eq!(fine.stats["convergence_ms"], 2500);
    }

    #[test]
    fn no_ledger_is_unknown() {
        assert_eq!(check_runs(vec![]).verdict, Verdict::Unknown);
        assert_eq!(check(&history(vec![])).verdict, Verdict::Unknown);
    }
}
