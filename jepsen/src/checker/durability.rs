//! The durability workload: clients add unique elements while servers are killed and
//! restarted; after the last restart every member must boot, and every member's own
//! (serializable) read must hold every acknowledged add and nothing never added.
//!
//! The judgement of one read is the set checker's ([`Adds::judge`]), applied per member.

use std::collections::{BTreeMap, BTreeSet};

use super::set::{ok_reads, Adds, Totals};
use super::{Anomaly, CheckResult};
use crate::history::{Call, History, OpType};

const CHECKER: &str = "durability";

/// Judges the `boot` records and every `ok` `member-read`. A member that never got an ok
/// read (and did not fail to boot, which is already invalid) leaves the verdict `unknown`.
pub fn check(history: &History) -> CheckResult {
    let adds = Adds::from_history(history);
    let boots = boot_outcomes(history);
    let reads = ok_reads(history, |call| match call {
        Call::MemberRead { member, elements: Some(elements) } => Some((member.as_str(), elements.as_slice())),
        _ => None,
    });

    let mut anomalies = Vec::new();
    let failed: Vec<&(String, u64, OpType)> = boots.iter().filter(|(_, _, outcome)| *outcome == OpType::Fail).collect();
    for (member, index, _) in &failed {
        anomalies.push(Anomaly::new(
            "boot-failure",
            format!("member {member} failed to boot (#{index})"),
            vec![*index],
        ));
    }

    let mut totals = Totals::default();
    let mut read_members = BTreeSet::new();
    for read in &reads {
        let (member, elements) = read.value;
        read_members.insert(member);
        let judgement = adds.judge(elements, read.start);
        let what = format!("member {member}'s read #{}", read.index);
        anomalies.extend(judgement.anomalies(&adds, &what, read.index));
        totals.add(&judgement);
    }

    let mut members: BTreeSet<&str> = boots.iter().map(|(member, _, _)| member.as_str()).collect();
    members.extend(&read_members);
    let failed_members: BTreeSet<&str> = failed.iter().map(|(member, _, _)| member.as_str()).collect();
    let unread: Vec<&str> =
        members.iter().copied().filter(|m| !read_members.contains(m) && !failed_members.contains(m)).collect();
    if reads.is_empty() {
        anomalies.push(Anomaly::new("no-final-read", "no ok member-read with elements: nothing to judge", vec![]));
    } else if !unread.is_empty() {
        let message = format!("no ok member-read for member(s) {}: their durability is undecided", unread.join(", "));
        anomalies.push(Anomaly::new("no-member-read", message, vec![]));
    }

    let stats = BTreeMap::from([
        ("acknowledged".to_string(), adds.acknowledged() as u64),
        ("members".to_string(), members.len() as u64),
        ("lost".to_string(), totals.lost.len() as u64),
        ("boot_failures".to_string(), failed.len() as u64),
    ]);
    CheckResult::from_anomalies(CHECKER, anomalies, &["no-final-read", "no-member-read"], stats)
}

/// Every `boot` completion: (member, history index, outcome). `ok` = booted, `fail` =
/// did not boot; an `info` boot says nothing by itself (the member's read decides).
fn boot_outcomes(history: &History) -> Vec<(String, u64, OpType)> {
    history
        .client_ops()
        .filter(|op| op.kind != OpType::Invoke)
        .filter_map(|op| match &op.call {
            Call::Boot { member } => Some((member.clone(), op.index, op.kind)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;
    use crate::checker::Verdict;

    /// Adds 1 (ok), 2 (info), 3 (fail), then the harness's restart records and reads.
    fn run(after: Vec<crate::history::Op>) -> History {
        let mut ops = vec![
            invoke(0, 0, add(1)),
            ok(0, 1, add(1)),
            invoke(1, 2, add(2)),
            info(1, 3, add(2)),
            invoke(2, 4, add(3)),
            fail(2, 5, add(3)),
            nemesis(6),
        ];
        ops.extend(after);
        history(ops)
    }

    #[test]
    fn every_member_holding_the_acknowledged_adds_passes() {
        let h = run(vec![
            ok(-2, 10, boot("n1")),
            ok(-2, 11, boot("n2")),
            invoke(5, 12, member_read("n1", None)),
            ok(5, 13, member_read("n1", Some(vec![1, 2]))),
            invoke(5, 14, member_read("n2", None)),
            ok(5, 15, member_read("n2", Some(vec![1]))),
        ]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["acknowledged"], 1);
        assert_eq!(r.stats["members"], 2);
        assert_eq!(r.stats["lost"], 0);
        assert_eq!(r.stats["boot_failures"], 0);
    }

    #[test]
    fn boot_failure_is_rejected() {
        let h =
            run(vec![invoke(-2, 9, boot("n3")), fail(-2, 10, boot("n3")), ok(5, 13, member_read("n1", Some(vec![1])))]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["boot-failure"]);
        assert!(r.anomalies[0].message.contains("member n3"), "{}", r.anomalies[0].message);
        assert_eq!(r.stats["boot_failures"], 1);
    }

    #[test]
    fn member_missing_an_acknowledged_add_is_rejected() {
        let h = run(vec![ok(5, 13, member_read("n1", Some(vec![1]))), ok(5, 14, member_read("n2", Some(vec![2])))]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["lost"]);
        assert_eq!(r.anomalies[0].message, "member n2's read #8 lacks acknowledged element(s) (1): 1");
        assert_eq!(r.stats["lost"], 1);
    }

    #[test]
    fn member_with_never_added_or_failed_element_is_rejected() {
        let h = run(vec![ok(5, 13, member_read("n1", Some(vec![1, 3, 42])))]);
        let r = check(&h);
        assert_eq!(kinds(&r), ["unexpected", "failed-but-present"]);
        assert!(r.anomalies[0].message.contains("member n1") && r.anomalies[0].message.contains("42"));
    }

    #[test]
    fn booted_member_without_a_read_is_unknown() {
        let h = run(vec![ok(-2, 10, boot("n2")), ok(5, 13, member_read("n1", Some(vec![1])))]);
        let r = check(&h);
        assert_eq!(r.verdict, Verdict::Unknown);
        assert_eq!(kinds(&r), ["no-member-read"]);
    }

    #[test]
    fn no_reads_at_all_is_unknown() {
        let r = check(&run(vec![]));
        assert_eq!(r.verdict, Verdict::Unknown);
        assert_eq!(kinds(&r), ["no-final-read"]);
    }
}
