//! The fencing checker: a leader that lost leadership never commits a write of its tasks
//! (controllers, scheduler) after a newer leader has claimed the leader epoch.
//!
//! Input: the `fence-history` record — the leader epoch's claims as the store's history
//! keeps them (term, revision of the claim) and the fenced writes the servers logged as
//! committed (term, revision). Store revisions order every write of the cluster, so the
//! invariant is a statement about revisions:
//!
//! * **stale-term-write** — a write of term `t` committed at revision `r` although a claim
//!   of a newer term `t' > t` was committed at a revision `< r`;
//! * **unclaimed-term-write** — a write of term `t` committed before (or without) any claim
//!   of `t`: a leader's tasks wrote before its claim, so nothing fenced them.
//!
//! The epoch's history must be complete (not compacted): a missing claim would hide
//! either anomaly, so an incomplete history is `unknown`, as is a run with no fenced
//! writes at all (nothing was checked). A write the servers did not log (a server killed
//! between commit and log line) is simply not checked; it can hide an anomaly, never make
//! one up.

use std::collections::BTreeMap;

use super::{list_some, Anomaly, CheckResult};
use crate::history::{Call, History, OpType, TermAt};

pub fn check(history: &History) -> CheckResult {
    let record = history.ops.iter().filter(|op| op.kind != OpType::Invoke).find_map(|op| match &op.call {
        Call::FenceHistory { claims, writes, complete } => Some((op.index, claims, writes, *complete)),
        _ => None,
    });
    let mut stats = BTreeMap::new();
    let Some((index, claims, writes, complete)) = record else {
        let missing = Anomaly::new("no-fence-history", "the run recorded no fence history", vec![]);
        return CheckResult::from_anomalies("fencing", vec![missing], &["no-fence-history"], stats);
    };
    let mut anomalies = decide(claims, writes);
    for a in &mut anomalies {
        a.ops = vec![index];
    }
    if !complete {
        anomalies.push(Anomaly::new(
            "incomplete-epoch-history",
            "the store had compacted part of the leader epoch's history; claims may be missing",
            vec![index],
        ));
    }
    if writes.is_empty() {
        anomalies.push(Anomaly::new(
            "no-fenced-writes",
            "no server logged a fenced write: nothing to check",
            vec![index],
        ));
    }
    let terms_writing: std::collections::BTreeSet<u64> = writes.iter().map(|w| w.term).collect();
    stats.insert("claims".into(), claims.len() as u64);
    stats.insert("fenced_writes".into(), writes.len() as u64);
    stats.insert("terms_writing".into(), terms_writing.len() as u64);
    CheckResult::from_anomalies(
        "fencing",
        anomalies,
        &["no-fence-history", "incomplete-epoch-history", "no-fenced-writes"],
        stats,
    )
}

/// The anomalies of a fence history (pure; indices filled in by [`check`]).
pub fn decide(claims: &[TermAt], writes: &[TermAt]) -> Vec<Anomaly> {
    let mut stale: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut unclaimed: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for w in writes {
        let superseded =
            claims.iter().filter(|c| c.term > w.term && c.revision < w.revision).min_by_key(|c| c.revision);
        if let Some(c) = superseded {
            stale
                .entry(w.term)
                .or_default()
                .push(format!("{} (term {} claimed at {})", w.revision, c.term, c.revision));
        }
        let claimed = claims.iter().any(|c| c.term == w.term && c.revision < w.revision);
        if !claimed {
            unclaimed.entry(w.term).or_default().push(w.revision);
        }
    }
    let mut out = vec![];
    for (term, revisions) in stale {
        out.push(Anomaly::new(
            "stale-term-write",
            format!(
                "{} write(s) of term {term} committed after a newer term's claim, at revision(s) {}",
                revisions.len(),
                list_some(&revisions)
            ),
            vec![],
        ));
    }
    for (term, revisions) in unclaimed {
        out.push(Anomaly::new(
            "unclaimed-term-write",
            format!(
                "{} write(s) of term {term} committed with no earlier claim of term {term}, at revision(s) {}",
                revisions.len(),
                list_some(&revisions)
            ),
            vec![],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{history, invoke, kinds, ok};
    use crate::checker::Verdict;

    fn at(term: u64, revision: i64) -> TermAt {
        TermAt { term, revision }
    }

    fn run(claims: Vec<TermAt>, writes: Vec<TermAt>, complete: bool) -> CheckResult {
        let pending = Call::FenceHistory { claims: vec![], writes: vec![], complete: false };
        check(&history(vec![invoke(9000, 0, pending), ok(9000, 1, Call::FenceHistory { claims, writes, complete })]))
    }

    #[test]
    fn writes_between_their_claim_and_the_next_are_valid() {
        let r = run(vec![at(2, 10), at(5, 40)], vec![at(2, 11), at(2, 39), at(5, 41), at(5, 90)], true);
        assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.anomalies);
        assert_eq!(r.stats["terms_writing"], 2);
    }

    #[test]
    fn a_write_of_the_old_term_after_the_new_claim_is_stale() {
        let r = run(vec![at(2, 10), at(5, 40)], vec![at(2, 11), at(2, 45), at(5, 41)], true);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["stale-term-write"]);
        assert!(r.anomalies[0].message.contains("45 (term 5 claimed at 40)"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn a_write_before_its_own_claim_is_unfenced() {
        let r = run(vec![at(2, 10), at(5, 40)], vec![at(5, 39), at(7, 50)], true);
        assert_eq!(kinds(&r), ["unclaimed-term-write", "unclaimed-term-write"]);
    }

    #[test]
    fn an_incomplete_epoch_history_or_no_writes_is_unknown() {
        assert_eq!(run(vec![at(5, 40)], vec![at(5, 41)], false).verdict, Verdict::Unknown);
        assert_eq!(run(vec![at(5, 40)], vec![], true).verdict, Verdict::Unknown);
        assert_eq!(check(&history(vec![])).verdict, Verdict::Unknown);
    }
}
