//! Checkers: pure functions from a [`History`](crate::history::History) to a verdict.
//! None of them does I/O; `berth-jepsen check DIR` and the test runner call the same code.
//!
//! A verdict is `valid`, `invalid` (with every anomaly found, each a kind and a readable
//! explanation pointing at history indices) or `unknown` (the checker could not decide, e.g.
//! the linearizability search ran out of its time budget). `unknown` is never reported as
//! `valid`.

use serde::{Deserialize, Serialize};

/// The outcome of one checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

impl Verdict {
    /// Combines verdicts: any invalid → invalid; else any unknown → unknown; else valid.
    pub fn combine(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Valid,
        }
    }
}

/// One anomaly: a short kind (`stale-read`, `lost-write`, `duplicate-event`…) and a message
/// naming the key/element/watcher and the history indices involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: String,
    pub message: String,
    /// History indices of the records involved (may be empty).
    #[serde(default)]
    pub ops: Vec<u64>,
}

/// What one checker decided, with counters worth printing (ops checked, lost, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub checker: String,
    pub verdict: Verdict,
    pub anomalies: Vec<Anomaly>,
    /// Named counts, e.g. {"ok": 1200, "lost": 0}; printed in summaries.
    pub stats: std::collections::BTreeMap<String, u64>,
}

pub mod api_watch;
pub mod bind;
pub mod deploy;
pub mod durability;
pub mod fencing;
pub mod linear;
pub mod set;
pub mod statefulset;
pub mod watch;

#[cfg(test)]
pub(crate) mod testkit;

use crate::history::{Call, History, Op, OpType};

impl Anomaly {
    pub(crate) fn new(kind: &str, message: impl Into<String>, ops: Vec<u64>) -> Anomaly {
        Anomaly { kind: kind.to_string(), message: message.into(), ops }
    }
}

impl CheckResult {
    /// Builds a result whose verdict follows from its anomalies: none → valid; only
    /// `undecided` kinds (the checker lacked what it needed to decide) → unknown; any other
    /// kind → invalid.
    pub(crate) fn from_anomalies(
        checker: &str,
        anomalies: Vec<Anomaly>,
        undecided: &[&str],
        stats: std::collections::BTreeMap<String, u64>,
    ) -> CheckResult {
        let verdict = anomalies.iter().fold(Verdict::Valid, |verdict, anomaly| {
            let this = if undecided.contains(&anomaly.kind.as_str()) { Verdict::Unknown } else { Verdict::Invalid };
            verdict.combine(this)
        });
        CheckResult { checker: checker.to_string(), verdict, anomalies, stats }
    }
}

/// A client operation: its invocation and, unless the history ended first, its completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completed<'a> {
    pub invoke: &'a Op,
    pub completion: Option<&'a Op>,
}

impl<'a> Completed<'a> {
    /// How the operation ended; an operation the history never completed is indeterminate.
    pub fn outcome(&self) -> OpType {
        self.completion.map_or(OpType::Info, |c| c.kind)
    }

    /// The call with its results when it completed, else as invoked.
    pub fn call(&self) -> &'a Call {
        self.completion.map_or(&self.invoke.call, |c| &c.call)
    }

    /// History indices of the invocation and the completion.
    pub fn indices(&self) -> Vec<u64> {
        std::iter::once(self.invoke.index).chain(self.completion.map(|c| c.index)).collect()
    }
}

/// Pairs every client invocation with its completion. Each process is sequential, so the
/// completion is the next non-invoke record of the same process naming the same function;
/// records with no pending invocation (watch responses, bare final reads) are not
/// operations and are left out. Nemesis records are ignored. Sorted by invocation index.
pub(crate) fn completed_ops(history: &History) -> Vec<Completed<'_>> {
    let mut pending: std::collections::HashMap<i64, &Op> = std::collections::HashMap::new();
    let mut done = Vec::new();
    for op in history.client_ops() {
        if op.kind == OpType::Invoke {
            // A new invocation while one is pending means the first never completed.
            if let Some(previous) = pending.insert(op.process, op) {
                done.push(Completed { invoke: previous, completion: None });
            }
            continue;
        }
        let matches = pending.get(&op.process).is_some_and(|inv| inv.call.name() == op.call.name());
        if matches {
            if let Some(invoke) = pending.remove(&op.process) {
                done.push(Completed { invoke, completion: Some(op) });
            }
        }
    }
    done.extend(pending.into_values().map(|invoke| Completed { invoke, completion: None }));
    done.sort_by_key(|c| c.invoke.index);
    done
}

/// At most 20 elements, then how many more: keeps anomaly messages readable.
pub(crate) fn list_some<T: std::fmt::Display>(items: &[T]) -> String {
    const SHOWN: usize = 20;
    let mut text = items.iter().take(SHOWN).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(", … ({} more)", items.len() - SHOWN));
    }
    text
}
