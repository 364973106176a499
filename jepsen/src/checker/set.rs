//! The set workload: clients add unique elements; after healing, `read-all` reads every
//! element present. No acknowledged add may be missing, nothing may appear that was never
//! added, and no add that failed may appear.
//!
//! The bookkeeping of adds and the judgement of one read ([`Adds`], [`Judgement`],
//! [`ok_reads`]) are shared with the durability checker, which applies them per member.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{completed_ops, list_some, Anomaly, CheckResult};
use crate::history::{Call, History, OpType};

const CHECKER: &str = "set";

/// Judges every `ok` `read-all` that carries elements against the adds. Without such a read
/// nothing can be said: `unknown` with a `no-final-read` anomaly.
pub fn check(history: &History) -> CheckResult {
    let adds = Adds::from_history(history);
    let reads = ok_reads(history, |call| match call {
        Call::ReadAll { elements: Some(elements) } => Some(elements.as_slice()),
        _ => None,
    });

    let mut anomalies = Vec::new();
    let mut totals = Totals::default();
    for read in &reads {
        let judgement = adds.judge(read.value, read.start);
        let what = format!("read-all #{}", read.index);
        anomalies.extend(judgement.anomalies(&adds, &what, read.index));
        totals.add(&judgement);
    }
    if reads.is_empty() {
        anomalies.push(Anomaly::new(
            "no-final-read",
            "no ok read-all with elements: nothing to judge the adds by",
            vec![],
        ));
    }

    let stats = BTreeMap::from([
        ("attempted".to_string(), adds.attempted() as u64),
        ("acknowledged".to_string(), adds.acknowledged() as u64),
        ("lost".to_string(), totals.lost.len() as u64),
        ("unexpected".to_string(), totals.unexpected.len() as u64),
        ("recovered".to_string(), totals.recovered.len() as u64),
        ("failed_present".to_string(), totals.failed_present.len() as u64),
        ("final_size".to_string(), reads.last().map_or(0, |r| distinct(r.value).len() as u64)),
    ]);
    CheckResult::from_anomalies(CHECKER, anomalies, &["no-final-read"], stats)
}

/// How the adds of one element ended, over all attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddRecord {
    /// The strongest outcome seen: `ok` over `info` over `fail`.
    outcome: OpType,
    /// History index by which the add was acknowledged (its first `ok` completion).
    acknowledged_at: Option<u64>,
    /// Invocation index of the first attempt, to point at it in anomalies.
    first_invoke: u64,
}

/// Every element the workload tried to add and how that ended.
#[derive(Debug, Default)]
pub(crate) struct Adds {
    elements: HashMap<u64, AddRecord>,
}

impl Adds {
    pub(crate) fn from_history(history: &History) -> Adds {
        let mut elements: HashMap<u64, AddRecord> = HashMap::new();
        for op in completed_ops(history) {
            let Call::Add { element } = op.call() else { continue };
            let outcome = op.outcome();
            let acknowledged_at = op.completion.filter(|c| c.kind == OpType::Ok).map(|c| c.index);
            let record = elements.entry(*element).or_insert(AddRecord {
                outcome: OpType::Fail,
                acknowledged_at: None,
                first_invoke: op.invoke.index,
            });
            // Elements are unique by design; if one was added twice, it counts as
            // acknowledged once any attempt was, and as failed only if every attempt failed.
            record.outcome = strongest(record.outcome, outcome);
            record.acknowledged_at = match (record.acknowledged_at, acknowledged_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Adds { elements }
    }

    pub(crate) fn attempted(&self) -> usize {
        self.elements.len()
    }

    pub(crate) fn acknowledged(&self) -> usize {
        self.elements.values().filter(|r| r.outcome == OpType::Ok).count()
    }

    /// Judges one read of the elements present, whose invocation is at history index
    /// `read_start`. Only adds acknowledged before the read began must be in it: one
    /// acknowledged while the read ran may legitimately be missing.
    pub(crate) fn judge(&self, present: &[u64], read_start: u64) -> Judgement {
        let present = distinct(present);
        let mut judgement = Judgement::default();
        for (&element, record) in &self.elements {
            let required = record.acknowledged_at.is_some_and(|at| at < read_start);
            if required && !present.contains(&element) {
                judgement.lost.push(element);
            }
        }
        for &element in &present {
            match self.elements.get(&element).map(|r| r.outcome) {
                None => judgement.unexpected.push(element),
                Some(OpType::Fail) => judgement.failed_present.push(element),
                Some(OpType::Info | OpType::Invoke) => judgement.recovered.push(element),
                Some(OpType::Ok) => {}
            }
        }
        judgement.lost.sort_unstable();
        judgement
    }

    /// History indices of the first attempt to add each element (for anomaly `ops`), at
    /// most as many as a message shows.
    fn invocations(&self, elements: &[u64]) -> Vec<u64> {
        elements.iter().take(20).filter_map(|e| self.elements.get(e).map(|r| r.first_invoke)).collect()
    }
}

/// `ok` over `info` over `fail`.
fn strongest(a: OpType, b: OpType) -> OpType {
    let rank = |t: OpType| match t {
        OpType::Ok => 3,
        OpType::Info | OpType::Invoke => 2,
        OpType::Fail => 1,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn distinct(elements: &[u64]) -> BTreeSet<u64> {
    elements.iter().copied().collect()
}

/// What one read shows about the adds; every list sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Judgement {
    /// Acknowledged before the read, yet absent.
    pub lost: Vec<u64>,
    /// Present though never added.
    pub unexpected: Vec<u64>,
    /// Present though the add failed.
    pub failed_present: Vec<u64>,
    /// Present after an indeterminate add (fine: it took effect).
    pub recovered: Vec<u64>,
}

impl Judgement {
    /// One anomaly per kind found; `what` names the read ("read-all #12", "member n2's
    /// read #40") at history index `read_index`.
    pub(crate) fn anomalies(&self, adds: &Adds, what: &str, read_index: u64) -> Vec<Anomaly> {
        let kinds = [
            ("lost", &self.lost, "lacks acknowledged"),
            ("unexpected", &self.unexpected, "has never-added"),
            ("failed-but-present", &self.failed_present, "has failed-to-add"),
        ];
        kinds
            .into_iter()
            .filter(|(_, elements, _)| !elements.is_empty())
            .map(|(kind, elements, says)| {
                let message = format!("{what} {says} element(s) ({}): {}", elements.len(), list_some(elements));
                let ops = std::iter::once(read_index).chain(adds.invocations(elements)).collect();
                Anomaly::new(kind, message, ops)
            })
            .collect()
    }
}

/// Distinct elements per finding over several reads (for the stats).
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub lost: BTreeSet<u64>,
    pub unexpected: BTreeSet<u64>,
    pub failed_present: BTreeSet<u64>,
    pub recovered: BTreeSet<u64>,
}

impl Totals {
    pub(crate) fn add(&mut self, judgement: &Judgement) {
        self.lost.extend(&judgement.lost);
        self.unexpected.extend(&judgement.unexpected);
        self.failed_present.extend(&judgement.failed_present);
        self.recovered.extend(&judgement.recovered);
    }
}

/// An `ok` record of a read and where that read began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OkRead<T> {
    /// Index of its invocation, or of the record itself if it has none.
    pub start: u64,
    pub index: u64,
    pub value: T,
}

/// The `ok` records from which `extract` takes a value, in history order. Reads recorded
/// without an invocation are accepted too (the read then began at its own record).
pub(crate) fn ok_reads<'a, T>(history: &'a History, extract: impl Fn(&'a Call) -> Option<T>) -> Vec<OkRead<T>> {
    let mut invoked: HashMap<i64, (u64, &'static str)> = HashMap::new();
    let mut reads = Vec::new();
    for op in history.client_ops() {
        if op.kind == OpType::Invoke {
            invoked.insert(op.process, (op.index, op.call.name()));
            continue;
        }
        let start = match invoked.remove(&op.process) {
            Some((index, name)) if name == op.call.name() => index,
            _ => op.index,
        };
        if op.kind != OpType::Ok {
            continue;
        }
        if let Some(value) = extract(&op.call) {
            reads.push(OkRead { start, index: op.index, value });
        }
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;
    use crate::checker::Verdict;

    #[test]
    fn every_outcome_accounted_for_passes() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            ok(0, 1, add(1)),
            invoke(1, 2, add(2)),
            info(1, 3, add(2)),
            invoke(2, 4, add(3)),
            fail(2, 5, add(3)),
            invoke(3, 6, add(4)),
            info(3, 7, add(4)),
            nemesis(8),
            invoke(4, 9, read_all(None)),
            ok(4, 10, read_all(Some(vec![1, 2]))),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["attempted"], 4);
        assert_eq!(r.stats["acknowledged"], 1);
        assert_eq!(r.stats["recovered"], 1);
        assert_eq!(r.stats["lost"], 0);
        assert_eq!(r.stats["final_size"], 2);
    }

    #[test]
    fn lost_element_is_rejected() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            ok(0, 1, add(1)),
            invoke(0, 2, add(2)),
            ok(0, 3, add(2)),
            invoke(4, 9, read_all(None)),
            ok(4, 10, read_all(Some(vec![2]))),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["lost"]);
        assert_eq!(r.anomalies[0].message, "read-all #5 lacks acknowledged element(s) (1): 1");
        assert_eq!(r.anomalies[0].ops, vec![5, 0]);
        assert_eq!(r.stats["lost"], 1);
    }

    #[test]
    fn phantom_element_is_rejected() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            ok(0, 1, add(1)),
            invoke(4, 9, read_all(None)),
            ok(4, 10, read_all(Some(vec![1, 77]))),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["unexpected"]);
        assert!(r.anomalies[0].message.contains("77"), "{}", r.anomalies[0].message);
        assert_eq!(r.stats["unexpected"], 1);
    }

    #[test]
    fn failed_add_present_is_rejected() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            fail(0, 1, add(1)),
            invoke(4, 9, read_all(None)),
            ok(4, 10, read_all(Some(vec![1]))),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["failed-but-present"]);
        assert_eq!(r.stats["failed_present"], 1);
    }

    #[test]
    fn every_final_read_must_hold() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            ok(0, 1, add(1)),
            invoke(4, 9, read_all(None)),
            ok(4, 10, read_all(Some(vec![1]))),
            invoke(5, 11, read_all(None)),
            ok(5, 12, read_all(Some(vec![]))),
        ]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["lost"]);
        assert!(r.anomalies[0].message.starts_with("read-all #5"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn add_acknowledged_during_the_read_may_be_missing() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            invoke(4, 1, read_all(None)),
            ok(0, 2, add(1)),
            ok(4, 3, read_all(Some(vec![]))),
        ]);
        assert_eq!(check(&h).verdict, Verdict::Valid);
    }

    #[test]
    fn no_final_read_is_unknown() {
        let h = history(vec![
            invoke(0, 0, add(1)),
            ok(0, 1, add(1)),
            invoke(4, 9, read_all(None)),
            info(4, 10, read_all(None)),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Unknown);
        assert_eq!(kinds(&r), ["no-final-read"]);
    }

    #[test]
    fn long_lists_are_cut_in_messages() {
        let mut ops = Vec::new();
        for e in 0..30 {
            ops.push(invoke(0, e, add(e)));
            ops.push(ok(0, e, add(e)));
        }
        ops.push(invoke(1, 100, read_all(None)));
        ops.push(ok(1, 101, read_all(Some(vec![]))));
        let r = check(&history(ops));
        let message = &r.anomalies[0].message;
        assert!(message.contains("(30): 0, 1,"), "{message}");
        assert!(message.ends_with(", 19, … (10 more)"), "{message}");
        assert_eq!(r.anomalies[0].ops.len(), 21);
    }
}
