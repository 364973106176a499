use std::collections::BTreeMap;

use super::*;
use crate::checker::Anomaly;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn fault(h: &mut History, t: u64, kind: OpType, name: &str, detail: &str) {
    h.push(t, NEMESIS, kind, "", Call::Fault { name: name.into(), detail: detail.into() }, None);
}

fn heal(h: &mut History, t: u64, kind: OpType, name: &str, detail: &str) {
    h.push(t, NEMESIS, kind, "", Call::Heal { name: name.into(), detail: detail.into() }, None);
}

/// A small deterministic pseudo-random sequence (no seeding games in tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `n` register operations by 5 sequential processes over `n / 50` seconds: mostly ok, every
/// 7th a fail, every 23rd an info (after which the process number moves on, as in a real run),
/// latencies from 0.2 ms to ~200 ms. Faults: a partition from 2 s to 4 s and a kill from 5 s to
/// 6 s, each with its invoke records. Returns the history and its (ok, fail, info) counts.
fn synthetic(n: usize) -> (History, (u64, u64, u64)) {
    let mut rng = Lcg(7);
    let mut events: Vec<(u64, i64, OpType, Call, Option<String>)> = Vec::new();
    let mut counts = (0, 0, 0);
    let span = (n as u64 / 50).max(8) * S;
    let per_proc = n / 5;
    for p in 0..5i64 {
        let mut process = p;
        let mut t = 1 + p as u64 * 3 * MS;
        for i in 0..per_proc {
            let call = match i % 3 {
                0 => Call::Read { key: format!("r{}", i % 4), value: None },
                1 => Call::Write { key: format!("r{}", i % 4), value: i as i64 },
                _ => Call::Cas { key: format!("r{}", i % 4), from: 1, to: 2 },
            };
            let lat = 200_000 + rng.next() % (1 + rng.next() % 200) * MS;
            let (kind, error) = match (i % 7, i % 23) {
                (_, 22) => (OpType::Info, Some("timeout".to_string())),
                (6, _) => (OpType::Fail, Some("compare failed".to_string())),
                _ => (OpType::Ok, None),
            };
            events.push((t, process, OpType::Invoke, call.clone(), None));
            events.push((t + lat, process, kind, call, error));
            match kind {
                OpType::Ok => counts.0 += 1,
                OpType::Fail => counts.1 += 1,
                _ => counts.2 += 1,
            }
            if kind == OpType::Info {
                process += 5;
            }
            t += lat + span / per_proc as u64;
        }
    }
    events.sort_by_key(|e| e.0);
    let mut h = History::default();
    let mut faults = vec![
        (2 * S - 10 * MS, OpType::Invoke, true, "partition", "n1 | n2 n3"),
        (2 * S, OpType::Ok, true, "partition", "n1 | n2 n3"),
        (4 * S - 5 * MS, OpType::Invoke, false, "partition", "n1 | n2 n3"),
        (4 * S, OpType::Ok, false, "partition", "n1 | n2 n3"),
        (5 * S, OpType::Invoke, true, "kill", "n2"),
        (5 * S + MS, OpType::Ok, true, "kill", "n2"),
        (6 * S, OpType::Invoke, false, "kill", "n2"),
        (6 * S + 300 * MS, OpType::Ok, false, "kill", "n2"),
    ]
    .into_iter()
    .peekable();
    for (t, process, kind, call, error) in events {
        while let Some(&(ft, fk, is_fault, name, detail)) = faults.peek() {
            if ft > t {
                break;
            }
            if is_fault {
                fault(&mut h, ft, fk, name, detail);
            } else {
                heal(&mut h, ft, fk, name, detail);
            }
            faults.next();
        }
        h.push(t, process, kind, "n1", call, error);
    }
    (h, counts)
}

fn results() -> Vec<CheckResult> {
    let anomalies = (0..57)
        .map(|i| Anomaly {
            kind: "stale-read".into(),
            message: format!("read of r{i} saw <script>alert(1)</script> & an old value"),
            ops: vec![i, i + 1],
        })
        .collect();
    vec![
        CheckResult {
            checker: "linearizable".into(),
            verdict: Verdict::Invalid,
            anomalies,
            stats: BTreeMap::from([("ok".to_string(), 300), ("keys".to_string(), 4)]),
        },
        CheckResult { checker: "set".into(), verdict: Verdict::Valid, anomalies: vec![], stats: BTreeMap::new() },
    ]
}

fn info() -> RunInfo {
    RunInfo {
        title: "register under partitions".into(),
        db: "berth".into(),
        nodes: 3,
        workload: "register".into(),
        nemeses: vec!["partition".into(), "kill".into()],
        seed: 42,
        time_limit_s: 10,
        concurrency: 5,
        rate: 50.0,
        notes: vec!["synthetic history for <tests>".into()],
        logs: vec!["logs/n1.log".into(), "logs/n2.log".into()],
    }
}

#[test]
fn report_has_counts_verdict_plots_and_escaped_anomalies() {
    let (mut h, (ok, fail, info_n)) = synthetic(400);
    // A watch response has no invocation: counted as a completion, not plotted.
    let t = h.ops.last().unwrap().time_ns;
    h.push(
        t + 1,
        99,
        OpType::Ok,
        "n1",
        Call::WatchResponse {
            header_revision: 3,
            events: vec![],
            progress: true,
            compact_revision: 0,
            canceled: false,
        },
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = write_report(dir.path(), &info(), &h, &results()).unwrap();
    assert_eq!(summary.ok, ok + 1);
    assert_eq!((summary.fail, summary.info), (fail, info_n));
    assert_eq!(summary.ops, ok + 1 + fail + info_n);
    assert!(fail > 0 && info_n > 0);
    assert_eq!(summary.faults, 2);
    assert_eq!(summary.anomalies, 57);
    assert_eq!(summary.verdict, Verdict::Invalid);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "invalid");
    assert_eq!(json["summary"]["ops"], summary.ops);
    assert_eq!(json["summary"]["fail"], fail);
    assert_eq!(json["summary"]["faults"], 2);
    assert_eq!(json["run"]["seed"], 42);
    assert_eq!(json["run"]["logs"][1], "logs/n2.log");
    assert_eq!(json["checkers"].as_array().unwrap().len(), 2);
    assert_eq!(json["checkers"][0]["anomalies"].as_array().unwrap().len(), 57);
    assert_eq!(json["fault_windows"].as_array().unwrap().len(), 2);

    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 2, "two inline plots");
    assert!(page.contains("id=\"verdict\">invalid<"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; an old value"));
    assert!(!page.contains("<script"), "no markup from the history gets through");
    assert!(page.contains("… and 7 more"), "anomalies are capped at 50");
    assert_eq!(page.matches("<li><code>stale-read</code>").count(), 50);
    assert!(page.contains("synthetic history for &lt;tests&gt;"));
    for name in ["partition", "kill", "n1 | n2 n3"] {
        assert!(page.contains(name), "{name}");
    }
    assert!(page.contains("href=\"logs/n2.log\"") && page.contains("href=\"history.jsonl\""));
    assert!(page.contains("1 completions without an invocation"));
    assert!(!page.contains("src=") && !page.contains("<link"), "self-contained: nothing loaded from elsewhere");
}

#[test]
fn run_info_reads_back_from_results_json() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load_run_info(dir.path()), None);
    write_report(dir.path(), &info(), &History::default(), &results()).unwrap();
    assert_eq!(load_run_info(dir.path()), Some(info()));
}

#[test]
fn empty_history_and_no_results_render() {
    let dir = tempfile::tempdir().unwrap();
    let summary = write_report(dir.path(), &RunInfo::default(), &History::default(), &[]).unwrap();
    assert_eq!(summary.verdict, Verdict::Unknown);
    assert_eq!((summary.ops, summary.faults, summary.anomalies), (0, 0, 0));
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("no completed client operations"));
    assert!(page.contains(">unknown<"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "unknown");
}

#[test]
fn a_control_plane_run_shows_its_convergence_time() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = |convergence: Option<u64>| CheckResult {
        checker: "deploy".into(),
        verdict: if convergence.is_some() { Verdict::Valid } else { Verdict::Invalid },
        anomalies: vec![],
        stats: convergence.map(|ms| BTreeMap::from([("convergence_ms".to_string(), ms)])).unwrap_or_default(),
    };
    let run = RunInfo { workload: "deploy".into(), ..info() };
    let summary = write_report(dir.path(), &run, &History::default(), &[deploy(Some(1629))]).unwrap();
    assert_eq!(summary.convergence_ms, Some(1629));
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(page.contains("converged 1.6 s after the final heal"), "{page}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["summary"]["convergence_ms"], 1629);
    write_report(dir.path(), &run, &History::default(), &[deploy(None)]).unwrap();
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(page.contains("did not converge"), "{page}");
}

#[test]
fn degenerate_histories_render() {
    // One operation at time 0 with zero latency, no faults: every range would be empty.
    let mut h = History::default();
    h.push(0, 0, OpType::Invoke, "n1", Call::Add { element: 1 }, None);
    h.push(0, 0, OpType::Ok, "n1", Call::Add { element: 1 }, None);
    let dir = tempfile::tempdir().unwrap();
    write_report(dir.path(), &info(), &h, &results()[1..]).unwrap();
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(!page.contains("could not be drawn"));
    assert!(!page.contains("fault (shaded)"), "no fault legend without faults");

    // A record absurdly late (a hand-edited history): buckets widen instead of exhausting memory.
    let mut h = History::default();
    h.push(0, 0, OpType::Invoke, "n1", Call::Add { element: 1 }, None);
    h.push(u64::MAX / 2, 0, OpType::Ok, "n1", Call::Add { element: 1 }, None);
    let dir = tempfile::tempdir().unwrap();
    write_report(dir.path(), &info(), &h, &[]).unwrap();
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(!page.contains("could not be drawn"));

    // Only faults, one never healed, no client operations.
    let mut h = History::default();
    fault(&mut h, 5, OpType::Ok, "pause", "n3");
    let dir = tempfile::tempdir().unwrap();
    write_report(dir.path(), &info(), &h, &[]).unwrap();
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(page.contains("fault (shaded)") && page.contains("never (until end)"));
}

#[test]
fn fault_windows_pair_fault_ok_with_heal_ok() {
    let mut h = History::default();
    fault(&mut h, 10, OpType::Invoke, "kill", "n1");
    fault(&mut h, 12, OpType::Ok, "kill", "n1");
    fault(&mut h, 13, OpType::Invoke, "kill", "n2");
    fault(&mut h, 14, OpType::Ok, "kill", "n2");
    // A fault that could not be applied opens no window.
    fault(&mut h, 15, OpType::Fail, "partition", "ring");
    fault(&mut h, 16, OpType::Ok, "pause", "n3");
    // Heals the second kill by detail, not the oldest.
    heal(&mut h, 20, OpType::Invoke, "kill", "n2");
    heal(&mut h, 21, OpType::Ok, "kill", "n2");
    // A heal with another detail takes the oldest open window of its name.
    heal(&mut h, 30, OpType::Ok, "kill", "all");
    // A heal of nothing open is ignored.
    heal(&mut h, 31, OpType::Ok, "partition", "ring");
    h.push(40, 0, OpType::Invoke, "n1", Call::Add { element: 1 }, None);
    let w = fault_windows(&h);
    let summary: Vec<_> =
        w.iter().map(|w| (w.name.as_str(), w.detail.as_str(), w.start_ns, w.end_ns, w.healed)).collect();
    assert_eq!(
        summary,
        vec![("kill", "n1", 12, 30, true), ("kill", "n2", 14, 21, true), ("pause", "n3", 16, 40, false)]
    );
    assert!(fault_windows(&History::default()).is_empty());
}

#[test]
fn overall_verdict_needs_a_checker_and_lets_invalid_win() {
    let r = |v| CheckResult { checker: "c".into(), verdict: v, anomalies: vec![], stats: BTreeMap::new() };
    assert_eq!(overall_verdict(&[]), Verdict::Unknown);
    assert_eq!(overall_verdict(&[r(Verdict::Valid), r(Verdict::Valid)]), Verdict::Valid);
    assert_eq!(overall_verdict(&[r(Verdict::Valid), r(Verdict::Unknown)]), Verdict::Unknown);
    assert_eq!(overall_verdict(&[r(Verdict::Unknown), r(Verdict::Invalid), r(Verdict::Valid)]), Verdict::Invalid);
}

#[test]
fn completions_pair_with_their_own_process_and_function() {
    let mut h = History::default();
    h.push(1, 0, OpType::Invoke, "n1", Call::Add { element: 1 }, None);
    h.push(2, 1, OpType::Invoke, "n1", Call::Add { element: 2 }, None);
    h.push(5, 1, OpType::Fail, "n1", Call::Add { element: 2 }, None);
    h.push(9, 0, OpType::Info, "n1", Call::Add { element: 1 }, None);
    h.push(10, 2, OpType::Ok, "n1", Call::WatchEnd { last_revision: 3 }, None);
    let (done, unpaired) = completed_ops(&h);
    let got: Vec<_> = done.iter().map(|c| (c.outcome, c.invoke_ns, c.latency_ns())).collect();
    assert_eq!(got, vec![(OpType::Fail, 2, 3), (OpType::Info, 1, 8)]);
    assert_eq!(unpaired, 1);
}

#[test]
fn a_large_history_is_thinned_and_says_so() {
    let (h, (ok, fail, info_n)) = synthetic(50_000);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let summary = write_report(dir.path(), &info(), &h, &results()).unwrap();
    eprintln!("report of {} records took {:?}", h.ops.len(), started.elapsed());
    assert_eq!(summary.ops, ok + fail + info_n);
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(page.contains("id=\"downsampled\""), "the page says markers were thinned");
    // Every marker is one SVG element; the page stays bounded whatever the history's size.
    assert!(page.len() < 8 * plot::MAX_POINTS * 100, "{} bytes", page.len());
}

/// Writes the example report to `$BERTH_REPORT_EXAMPLE` (a directory) to look at by eye, with
/// `$BERTH_REPORT_EXAMPLE_OPS` operations (default 600).
#[test]
fn example_report_for_eyeballing() {
    let Some(dir) = std::env::var_os("BERTH_REPORT_EXAMPLE") else { return };
    let n = std::env::var("BERTH_REPORT_EXAMPLE_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let (h, _) = synthetic(n);
    let dir = std::path::PathBuf::from(dir);
    write_report(&dir, &info(), &h, &results()).unwrap();
    h.save(&dir.join("history.jsonl")).unwrap();
}
