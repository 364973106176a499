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
