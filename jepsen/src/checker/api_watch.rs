//! The api-watch workload's checker: Kubernetes list+watch of ConfigMaps against the
//! store's own history of `/registry/configmaps/jepsen/` (the `final-history` record, read
//! through the etcd API after healing).
//!
//! Invariants, for every watcher session that started from resourceVersion S and whose
//! last event or bookmark was at E:
//! * it delivered exactly the store's ConfigMap events with S < revision ≤ E, in revision
//!   order — none missed (`missed`), none twice or at/below S (`duplicated`), none out of
//!   order (`reordered`), none that the store did not have at that revision, or with
//!   another name or type (`wrong-event`; ADDED is a put of version 1, MODIFIED a later
//!   put, DELETED a delete, and the event's resourceVersion is the revision of the change);
//! * a watcher resumes from the E of its previous session, or from the resourceVersion of
//!   the list it made after `410 Gone` (`resume-mismatch`: a harness bug, not Berth's);
//! * every list equals the store's state at the list's resourceVersion (`list-mismatch`);
//! * every acknowledged create or update is in the store at its resourceVersion
//!   (`lost-write`).
//!
//! Without the reference only order and duplication can be judged (`no-final-history`,
//! verdict at best unknown).

use std::collections::{BTreeMap, BTreeSet};

use super::{completed_ops, list_some, Anomaly, CheckResult};
use crate::history::{Call, EventKind, History, Op, OpType, WatchEvent};

const CHECKER: &str = "api-watch";
/// The store keys of the workload's ConfigMaps (namespace `jepsen`).
pub const KEY_PREFIX: &str = "/registry/configmaps/jepsen/";
/// At most this many anomalies of one kind are listed; the rest are counted.
const SHOWN_PER_KIND: usize = 30;

/// One change to a ConfigMap in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    event: &'static str,
    name: String,
}

/// The store's ConfigMap changes by revision, up to `revision`.
struct Reference {
    changes: BTreeMap<u64, Change>,
    revision: u64,
}

impl Reference {
    fn new(events: &[WatchEvent], revision: i64) -> Reference {
        let changes = events
            .iter()
            .filter_map(|e| {
                let name = e.key.strip_prefix(KEY_PREFIX)?.to_string();
                let event = match e.kind {
                    EventKind::Delete => "DELETED",
                    EventKind::Put if e.version == 1 => "ADDED",
                    EventKind::Put => "MODIFIED",
                };
                Some((e.mod_revision as u64, Change { event, name }))
            })
            .collect();
        Reference { changes, revision: revision.max(0) as u64 }
    }

    /// Name → resourceVersion of every ConfigMap at `revision`.
    fn state_at(&self, revision: u64) -> BTreeMap<String, u64> {
        let mut state = BTreeMap::new();
        for (rev, change) in self.changes.range(..=revision) {
            if change.event == "DELETED" {
                state.remove(&change.name);
            } else {
                state.insert(change.name.clone(), *rev);
            }
        }
        state
    }
}

/// One watch session of one watcher.
struct Session<'a> {
    start: u64,
    opened: &'a Op,
    /// (event, name, resourceVersion, record index); bookmarks included.
    events: Vec<(&'a str, &'a str, u64, u64)>,
}

impl Session<'_> {
    /// The resourceVersion the session reached: its last event or bookmark, else its start.
    fn end(&self) -> u64 {
        self.events.iter().map(|e| e.2).max().unwrap_or(self.start).max(self.start)
    }
}

/// What one watcher did, in order: lists (resourceVersion, index) and sessions.
enum Step<'a> {
    List(u64, u64),
    Watch(Session<'a>),
}

fn watchers(history: &History) -> BTreeMap<i64, Vec<Step<'_>>> {
    let mut by_watcher: BTreeMap<i64, Vec<Step<'_>>> = BTreeMap::new();
    for op in &history.ops {
        if op.kind == OpType::Invoke {
            continue;
        }
        match &op.call {
            Call::ConfigMapList { resource_version, .. } if op.kind == OpType::Ok => {
                by_watcher.entry(op.process).or_default().push(Step::List(*resource_version, op.index))
            }
            Call::ApiWatch { resource_version } => by_watcher
                .entry(op.process)
                .or_default()
                .push(Step::Watch(Session { start: *resource_version, opened: op, events: vec![] })),
            Call::ApiWatchEvent { event, name, resource_version } => {
                if let Some(Step::Watch(session)) = by_watcher.get_mut(&op.process).and_then(|s| s.last_mut()) {
                    session.events.push((event.as_str(), name.as_str(), *resource_version, op.index));
                }
            }
            _ => {}
        }
    }
    by_watcher
}

#[derive(Default)]
struct Report {
    anomalies: Vec<Anomaly>,
    counts: BTreeMap<String, usize>,
}

impl Report {
    fn push(&mut self, kind: &str, message: String, ops: Vec<u64>) {
        let n = self.counts.entry(kind.to_string()).or_default();
        *n += 1;
        if *n <= SHOWN_PER_KIND {
            self.anomalies.push(Anomaly::new(kind, message, ops));
        }
    }

    fn finish(mut self) -> Vec<Anomaly> {
        for (kind, n) in &self.counts {
            if *n > SHOWN_PER_KIND {
                let more = n - SHOWN_PER_KIND;
                self.anomalies.push(Anomaly::new(kind, format!("… and {more} more {kind} anomalies"), vec![]));
            }
        }
        self.anomalies
    }
}

/// Checks the watchers, lists and writers against the store's history.
pub fn check(history: &History) -> CheckResult {
    let reference = history.ops.iter().rev().find_map(|op| match (&op.call, op.kind) {
        (Call::FinalHistory { events, revision }, OpType::Ok) => Some(Reference::new(events, *revision)),
        _ => None,
    });
    let mut report = Report::default();
    let watchers = watchers(history);
    let (mut sessions, mut delivered, mut lists) = (0u64, 0u64, 0u64);
    for steps in watchers.values() {
        let mut resume_from: Option<u64> = None;
        for step in steps {
            match step {
                Step::List(rv, index) => {
                    lists += 1;
                    resume_from = Some(*rv);
                    if let (Some(r), Some(Call::ConfigMapList { items, .. })) =
                        (&reference, history.ops.get(*index as usize).map(|o| &o.call))
                    {
                        check_list(r, *rv, items, *index, &mut report);
                    }
                }
                Step::Watch(session) => {
                    sessions += 1;
                    delivered += session.events.iter().filter(|e| e.0 != "BOOKMARK").count() as u64;
                    if resume_from != Some(session.start) {
                        report.push(
                            "resume-mismatch",
                            format!(
                                "watcher {} opened a watch from {} where it should have resumed from {:?}",
                                session.opened.process, session.start, resume_from
                            ),
                            vec![session.opened.index],
                        );
                    }
                    check_session(session, reference.as_ref(), &mut report);
                    resume_from = Some(session.end());
                }
            }
        }
    }
    match &reference {
        Some(r) => check_writers(history, r, &mut report),
        None => report.push(
            "no-final-history",
            "no ok final-history record: deliveries and writes cannot be compared with the store".into(),
            vec![],
        ),
    }
    let stats = BTreeMap::from([
        ("watchers".to_string(), watchers.len() as u64),
        ("sessions".to_string(), sessions),
        ("lists".to_string(), lists),
        ("events_delivered".to_string(), delivered),
        ("store_changes".to_string(), reference.as_ref().map_or(0, |r| r.changes.len() as u64)),
    ]);
    CheckResult::from_anomalies(CHECKER, report.finish(), &["no-final-history"], stats)
}

fn check_session(session: &Session<'_>, reference: Option<&Reference>, report: &mut Report) {
    let watcher = session.opened.process;
    let mut last = session.start;
    let mut seen = BTreeSet::new();
    for &(event, name, rv, index) in &session.events {
        if event == "BOOKMARK" {
            if rv < last {
                report.push("reordered", format!("watcher {watcher}: bookmark at {rv} after {last}"), vec![index]);
            }
            last = last.max(rv);
            continue;
        }
        if rv <= session.start || !seen.insert(rv) {
            report.push(
                "duplicated",
                format!("watcher {watcher}: {event} {name} at {rv} again (session from {})", session.start),
                vec![session.opened.index, index],
            );
        } else if rv <= last {
            report.push("reordered", format!("watcher {watcher}: {event} {name} at {rv} after {last}"), vec![index]);
        }
        last = last.max(rv);
        if let Some(r) = reference {
            match r.changes.get(&rv) {
                Some(c) if c.event == event && c.name == name => {}
                Some(c) => report.push(
                    "wrong-event",
                    format!("watcher {watcher}: {event} {name} at {rv}; the store has {} {} there", c.event, c.name),
                    vec![index],
                ),
                None => report.push(
                    "wrong-event",
                    format!("watcher {watcher}: {event} {name} at {rv}; the store has no ConfigMap change there"),
                    vec![index],
                ),
            }
        }
    }
    let Some(r) = reference else { return };
    let end = session.end().min(r.revision);
    if end <= session.start {
        return;
    }
    let missed: Vec<String> = r
        .changes
        .range(session.start + 1..=end)
        .filter(|(rev, _)| !seen.contains(*rev))
        .map(|(rev, c)| format!("{} {} at {rev}", c.event, c.name))
        .collect();
    if !missed.is_empty() {
        report.push(
            "missed",
            format!(
                "watcher {watcher}: session from {} to {end} missed {}: {}",
                session.start,
                missed.len(),
                list_some(&missed)
            ),
            vec![session.opened.index],
        );
    }
}

fn check_list(reference: &Reference, rv: u64, items: &[(String, u64)], index: u64, report: &mut Report) {
    if rv > reference.revision {
        return;
    }
    let listed: BTreeMap<String, u64> = items.iter().cloned().collect();
    let expected = reference.state_at(rv);
    if listed != expected {
        let missing: Vec<String> =
            expected.iter().filter(|(n, v)| listed.get(*n) != Some(v)).map(|(n, v)| format!("{n}@{v}")).collect();
        let extra: Vec<String> =
            listed.iter().filter(|(n, v)| expected.get(*n) != Some(v)).map(|(n, v)| format!("{n}@{v}")).collect();
        report.push(
            "list-mismatch",
            format!("list at {rv}: missing {}; not in the store {}", list_some(&missing), list_some(&extra)),
            vec![index],
        );
    }
}

fn check_writers(history: &History, reference: &Reference, report: &mut Report) {
    for op in completed_ops(history) {
        if op.outcome() != OpType::Ok {
            continue;
        }
        let Call::ConfigMapWrite { name, action, resource_version: Some(rv) } = op.call() else { continue };
        let event = if action == "create" { "ADDED" } else { "MODIFIED" };
        let found = reference.changes.get(rv).is_some_and(|c| c.event == event && &c.name == name);
        if !found {
            report.push(
                "lost-write",
                format!("acknowledged {action} of {name} at {rv} is not in the store's history"),
                op.indices(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn put(name: &str, rev: i64, version: i64) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            key: format!("{KEY_PREFIX}{name}"),
            value: String::new(),
            create_revision: rev - version + 1,
            mod_revision: rev,
            version,
            prev_value: None,
        }
    }

    fn del(name: &str, rev: i64) -> WatchEvent {
        WatchEvent { kind: EventKind::Delete, version: 0, create_revision: 0, ..put(name, rev, 1) }
    }

    /// Store: a created at 3, b at 4, a modified at 6, an unrelated key at 7, b deleted at 8.
    fn history(watch: &[(&str, &str, u64)], second_from: Option<u64>) -> History {
        let mut h = History::default();
        let w = 100;
        h.push(1, w, OpType::Ok, "n1", Call::ConfigMapList { items: vec![], resource_version: 2 }, None);
        h.push(2, w, OpType::Ok, "n1", Call::ApiWatch { resource_version: 2 }, None);
        for (event, name, rv) in watch {
            let call = Call::ApiWatchEvent { event: event.to_string(), name: name.to_string(), resource_version: *rv };
            h.push(3, w, OpType::Ok, "n1", call, None);
        }
        if let Some(from) = second_from {
            h.push(4, w, OpType::Info, "n1", Call::ApiWatchEnd { resource_version: 0 }, None);
            h.push(5, w, OpType::Ok, "n2", Call::ApiWatch { resource_version: from }, None);
            let call = Call::ApiWatchEvent { event: "DELETED".into(), name: "b".into(), resource_version: 8 };
            h.push(6, w, OpType::Ok, "n2", call, None);
        }
        h.push(
            7,
            0,
            OpType::Invoke,
            "n1",
            Call::ConfigMapWrite { name: "a".into(), action: "update".into(), resource_version: None },
            None,
        );
        h.push(
            8,
            0,
            OpType::Ok,
            "n1",
            Call::ConfigMapWrite { name: "a".into(), action: "update".into(), resource_version: Some(6) },
            None,
        );
        let mut other = put("x", 7, 1);
        other.key = "/registry/pods/jepsen/x".into();
        let events = vec![put("a", 3, 1), put("b", 4, 1), put("a", 6, 2), other, del("b", 8)];
        h.push(9, 1000, OpType::Ok, "n1", Call::FinalHistory { events, revision: 9 }, None);
        h
    }

    fn kinds(h: &History) -> Vec<String> {
        check(h).anomalies.iter().map(|a| a.kind.clone()).collect()
    }

    #[test]
    fn the_exact_continuation_with_a_resume_is_valid() {
        let h = history(&[("ADDED", "a", 3), ("ADDED", "b", 4), ("BOOKMARK", "", 5), ("MODIFIED", "a", 6)], Some(6));
        let result = check(&h);
        assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.anomalies);
        assert_eq!(result.stats["sessions"], 2);
    }

    #[test]
    fn a_missed_event_after_a_bookmark_is_found() {
        let h = history(&[("ADDED", "a", 3), ("BOOKMARK", "", 5)], None);
        assert_eq!(kinds(&h), vec!["missed"]);
    }

    #[test]
    fn duplicates_reorders_and_wrong_events_are_found() {
        let h = history(&[("ADDED", "b", 4), ("ADDED", "a", 3), ("ADDED", "a", 3), ("ADDED", "a", 6)], Some(6));
        let found = kinds(&h);
        assert!(found.contains(&"reordered".to_string()), "{found:?}");
        assert!(found.contains(&"duplicated".to_string()), "{found:?}");
        assert!(found.contains(&"wrong-event".to_string()), "{found:?}");
    }

    #[test]
    fn resuming_from_the_wrong_version_is_found() {
        let h = history(&[("ADDED", "a", 3), ("ADDED", "b", 4), ("MODIFIED", "a", 6)], Some(7));
        assert_eq!(kinds(&h), vec!["resume-mismatch"]);
    }

    #[test]
    fn a_list_must_equal_the_state_at_its_version() {
        let mut h = history(&[], None);
        h.push(
            10,
            100,
            OpType::Ok,
            "n1",
            Call::ConfigMapList { items: vec![("a".into(), 6)], resource_version: 6 },
            None,
        );
        assert_eq!(kinds(&h), vec!["list-mismatch"]);
        let mut h = history(&[], None);
        let items = vec![("a".into(), 6), ("b".into(), 4)];
        h.push(10, 100, OpType::Ok, "n1", Call::ConfigMapList { items, resource_version: 7 }, None);
        assert!(kinds(&h).is_empty());
    }

    #[test]
    fn a_lost_write_and_a_missing_reference_are_reported() {
        let mut h = history(&[], None);
        h.ops.retain(|o| !matches!(o.call, Call::FinalHistory { .. }));
        assert_eq!(check(&h).verdict, Verdict::Unknown);
        let mut h = history(&[], None);
        if let Call::ConfigMapWrite { resource_version, .. } = &mut h.ops[3].call {
            *resource_version = Some(4);
        }
        assert_eq!(kinds(&h), vec!["lost-write"]);
    }
}
