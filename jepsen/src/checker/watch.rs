//! The watch workload: writers put and delete keys under a prefix while watchers watch it,
//! resuming after every break; after healing the harness reads the full event history
//! (`final-history`), which is the reference. This module checks etcd's watch guarantees
//! against it — ordered, unique, atomic, bookmarkable, reliable, resumable, filtered,
//! correct create flag and prev_kv — and the writers' acknowledged writes.
//!
//! A *session* is one `watch` invocation of a watcher process up to its `watch-end` (or the
//! end of the history); a watcher is one process number across all its sessions.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{completed_ops, list_some, Anomaly, CheckResult};
use crate::history::{Call, EventKind, History, Op, OpType, WatchEvent, WatchFilter, NEMESIS};

const CHECKER: &str = "watch";

/// At most this many anomalies of one kind are listed; the rest are counted.
const SHOWN_PER_KIND: usize = 50;

/// Checks every watcher session and every writer against the final history. Without an
/// `ok` `final-history` record only the session-internal guarantees (order, uniqueness,
/// atomicity, bookmarks, resumption, filters) can be checked and the verdict is at best
/// `unknown`.
pub fn check(history: &History) -> CheckResult {
    let sessions = sessions(history);
    let reference =
        find_final_history(history).map(|(index, events, revision)| Reference::new(index, events, revision));
    let mut report = Report::default();
    let mut counts = Counts::default();

    let mut watchers: BTreeMap<i64, Vec<&Session<'_>>> = BTreeMap::new();
    for session in &sessions {
        watchers.entry(session.watcher).or_default().push(session);
    }
    for watcher_sessions in watchers.values() {
        check_watcher(watcher_sessions, reference.as_ref(), &mut report, &mut counts);
    }
    match &reference {
        Some(reference) => {
            check_reference(reference, &mut report);
            check_writers(history, reference, &mut report);
        }
        None => report.push(
            "no-final-history",
            "no ok final-history record: delivered events and writes cannot be compared with the store".into(),
            vec![],
        ),
    }

    let stats = BTreeMap::from([
        ("watchers".to_string(), watchers.len() as u64),
        ("sessions".to_string(), sessions.len() as u64),
        ("events_delivered".to_string(), counts.events_delivered),
        ("final_events".to_string(), reference.as_ref().map_or(0, |r| r.events.len() as u64)),
        ("acknowledged_writes".to_string(), acknowledged_writes(history)),
        ("progress_notifications".to_string(), counts.progress_notifications),
    ]);
    CheckResult::from_anomalies(CHECKER, report.finish(), &["no-final-history"], stats)
}

#[derive(Debug, Default)]
struct Counts {
    events_delivered: u64,
    progress_notifications: u64,
}

/// Anomalies, listing at most [`SHOWN_PER_KIND`] of each kind.
#[derive(Debug, Default)]
struct Report {
    anomalies: Vec<Anomaly>,
    shown: HashMap<String, usize>,
    hidden: BTreeMap<String, usize>,
}

impl Report {
    fn push(&mut self, kind: &str, message: String, ops: Vec<u64>) {
        let shown = self.shown.entry(kind.to_string()).or_default();
        if *shown < SHOWN_PER_KIND {
            *shown += 1;
            self.anomalies.push(Anomaly::new(kind, message, ops));
        } else {
            *self.hidden.entry(kind.to_string()).or_default() += 1;
        }
    }

    fn finish(mut self) -> Vec<Anomaly> {
        for (kind, hidden) in self.hidden {
            self.anomalies.push(Anomaly::new(
                &kind,
                format!("… and {hidden} more {kind} anomalies not listed"),
                vec![],
            ));
        }
        self.anomalies
    }
}

// ---------------------------------------------------------------------------------------
// Reading sessions and the reference out of the history.

/// One watch session: its request and the responses received, in order.
#[derive(Debug)]
struct Session<'a> {
    watcher: i64,
    /// History index of the `watch` invocation.
    opened_at: u64,
    prefix: &'a str,
    start_revision: i64,
    prev_kv: bool,
    filter: WatchFilter,
    responses: Vec<Response<'a>>,
}

#[derive(Debug)]
struct Response<'a> {
    index: u64,
    header_revision: i64,
    events: &'a [WatchEvent],
    progress: bool,
}

impl Session<'_> {
    fn name(&self) -> String {
        format!(
            "watcher {} session #{} (prefix {:?} from revision {})",
            self.watcher, self.opened_at, self.prefix, self.start_revision
        )
    }

    fn passes_filter(&self, kind: EventKind) -> bool {
        !matches!(
            (self.filter, kind),
            (WatchFilter::NoPut, EventKind::Put) | (WatchFilter::NoDelete, EventKind::Delete)
        )
    }
}

/// Every session in the order opened. A `watch` invocation opens a session of its process;
/// responses belong to the process's open session; `watch-end` closes it (a new `watch`
/// invocation also closes the previous one, as does the end of the history).
fn sessions(history: &History) -> Vec<Session<'_>> {
    let mut sessions: Vec<Session<'_>> = Vec::new();
    let mut open: HashMap<i64, usize> = HashMap::new();
    for op in history.client_ops() {
        match &op.call {
            Call::Watch { prefix, start_revision, prev_kv, filter, .. } if op.kind == OpType::Invoke => {
                open.insert(op.process, sessions.len());
                sessions.push(Session {
                    watcher: op.process,
                    opened_at: op.index,
                    prefix,
                    start_revision: *start_revision,
                    prev_kv: *prev_kv,
                    filter: *filter,
                    responses: Vec::new(),
                });
            }
            Call::WatchResponse { header_revision, events, progress, .. } => {
                if let Some(session) = open.get(&op.process).and_then(|&s| sessions.get_mut(s)) {
                    let response =
                        Response { index: op.index, header_revision: *header_revision, events, progress: *progress };
                    session.responses.push(response);
                }
            }
            Call::WatchEnd { .. } => {
                open.remove(&op.process);
            }
            _ => {}
        }
    }
    sessions
}

/// The last `ok` `final-history` record: its index, events and revision.
fn find_final_history(history: &History) -> Option<(u64, &[WatchEvent], i64)> {
    history.ops.iter().rev().filter(|op| op.process != NEMESIS && op.kind == OpType::Ok).find_map(|op| match &op.call {
        Call::FinalHistory { events, revision } => Some((op.index, events.as_slice(), *revision)),
        _ => None,
    })
}

/// The final history, indexed for lookups by key and revision.
struct Reference<'a> {
    index: u64,
    revision: i64,
    /// As recorded (validated separately).
    events: &'a [WatchEvent],
    /// Sorted by revision (stable), for range queries.
    sorted: Vec<&'a WatchEvent>,
    at: HashMap<(&'a str, i64), &'a WatchEvent>,
    /// Each key's events in revision order.
    by_key: HashMap<&'a str, Vec<&'a WatchEvent>>,
}

impl<'a> Reference<'a> {
    fn new(index: u64, events: &'a [WatchEvent], revision: i64) -> Reference<'a> {
        let mut sorted: Vec<&WatchEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.mod_revision);
        let mut at = HashMap::new();
        let mut by_key: HashMap<&str, Vec<&WatchEvent>> = HashMap::new();
        for &event in &sorted {
            // A repeated event (reported by `check_reference`) is indexed once.
            if at.insert((event.key.as_str(), event.mod_revision), event).is_none() {
                by_key.entry(event.key.as_str()).or_default().push(event);
            }
        }
        Reference { index, revision, events, sorted, at, by_key }
    }

    fn get(&self, key: &str, revision: i64) -> Option<&'a WatchEvent> {
        self.at.get(&(key, revision)).copied()
    }

    /// The key's last event before `revision`.
    fn before(&self, key: &str, revision: i64) -> Option<&'a WatchEvent> {
        let events = self.by_key.get(key)?;
        let n = events.partition_point(|e| e.mod_revision < revision);
        n.checked_sub(1).map(|i| events[i])
    }

    /// Whether the key was absent just before `revision` (never written, or deleted).
    fn absent_before(&self, key: &str, revision: i64) -> bool {
        self.before(key, revision).is_none_or(|e| e.kind == EventKind::Delete)
    }

    /// Events with `from <= revision <= to`, in revision order.
    fn range(&self, from: i64, to: i64) -> &[&'a WatchEvent] {
        let lo = self.sorted.partition_point(|e| e.mod_revision < from);
        let hi = self.sorted.partition_point(|e| e.mod_revision <= to);
        &self.sorted[lo..hi.max(lo)]
    }
}

fn describe(event: &WatchEvent) -> String {
    match event.kind {
        EventKind::Put => format!("PUT {}={:?} @{}", event.key, event.value, event.mod_revision),
        EventKind::Delete => format!("DELETE {} @{}", event.key, event.mod_revision),
    }
}

// ---------------------------------------------------------------------------------------
// Watchers.

/// An event as a session delivered it.
#[derive(Debug, Clone, Copy)]
struct Delivered<'a> {
    /// History index of the response that carried it.
    index: u64,
    event: &'a WatchEvent,
}

/// What a session delivered, once its stream-level checks are done.
#[derive(Debug, Default)]
struct Delivery<'a> {
    /// Events to compare with the reference: not repeats, and within the session's filter.
    events: Vec<Delivered<'a>>,
    /// (key, revision) of every event the session delivered, repeats included: what the
    /// reliability check counts as received.
    received: HashSet<(&'a str, i64)>,
    first_revision: Option<i64>,
    last_revision: Option<i64>,
}

fn check_watcher(
    sessions: &[&Session<'_>],
    reference: Option<&Reference<'_>>,
    report: &mut Report,
    counts: &mut Counts,
) {
    // (key, revision) → response index of the first delivery, across all the sessions.
    let mut seen: HashMap<(&str, i64), u64> = HashMap::new();
    let mut previous: Option<(&Session<'_>, Option<i64>)> = None;
    for &session in sessions {
        if let Some((before, last)) = previous {
            check_resume(before, last, session, report);
        }
        let delivery = check_stream(session, &mut seen, report, counts);
        if let Some(reference) = reference {
            check_reliable(session, &delivery, reference, report);
            for delivered in &delivery.events {
                check_event(session, delivered, reference, report);
            }
        }
        previous = Some((session, delivery.last_revision));
    }
}

/// Resumable: after a session that delivered events up to L the next must start at L + 1;
/// after one that delivered nothing, where that one started (unless it started at "now").
fn check_resume(before: &Session<'_>, last: Option<i64>, next: &Session<'_>, report: &mut Report) {
    let expected = match last {
        Some(last) => last + 1,
        None if before.start_revision > 0 => before.start_revision,
        None => return,
    };
    if next.start_revision != expected {
        let why = match last {
            Some(last) => format!("the previous session #{} delivered up to revision {last}", before.opened_at),
            None => format!("the previous session #{} delivered nothing", before.opened_at),
        };
        let message =
            format!("{} resumed at revision {} but should have at {expected}: {why}", next.name(), next.start_revision);
        report.push("resume", message, vec![before.opened_at, next.opened_at]);
    }
}

/// The guarantees visible in the stream itself: ordered, unique, atomic, bookmarkable,
/// filtered. Returns the events worth comparing with the reference.
fn check_stream<'a>(
    session: &Session<'a>,
    seen: &mut HashMap<(&'a str, i64), u64>,
    report: &mut Report,
    counts: &mut Counts,
) -> Delivery<'a> {
    let mut delivery = Delivery::default();
    // The last event revision and the response that carried it.
    let mut last: Option<(i64, u64)> = None;
    let mut last_progress: Option<i64> = None;
    for response in &session.responses {
        if response.progress && response.events.is_empty() {
            counts.progress_notifications += 1;
            check_progress(session, response, last.map(|(rev, _)| rev), last_progress, report);
            last_progress = last_progress.max(Some(response.header_revision));
            continue;
        }
        for event in response.events {
            counts.events_delivered += 1;
            let revision = event.mod_revision;
            delivery.received.insert((event.key.as_str(), revision));
            if let Some(&first) = seen.get(&(event.key.as_str(), revision)) {
                let message = format!("{} received {} again (first in #{first})", session.name(), describe(event));
                report.push("duplicate", message, vec![first, response.index]);
                continue;
            }
            seen.insert((event.key.as_str(), revision), response.index);
            check_order(session, response.index, event, last, report);
            if let Some(progress) = last_progress.filter(|&p| revision <= p) {
                let message = format!(
                    "{} received {} after a progress notification at revision {progress}",
                    session.name(),
                    describe(event)
                );
                report.push("bookmark", message, vec![response.index]);
            }
            if last.is_none_or(|(rev, _)| revision > rev) {
                last = Some((revision, response.index));
            }
            delivery.first_revision.get_or_insert(revision);
            if check_filter(session, response.index, event, report) {
                delivery.events.push(Delivered { index: response.index, event });
            }
        }
    }
    delivery.last_revision = last.map(|(rev, _)| rev);
    delivery
}

/// Ordered and atomic: revisions never decrease, and one revision (a txn may have several
/// events) never spans two responses.
fn check_order(session: &Session<'_>, index: u64, event: &WatchEvent, last: Option<(i64, u64)>, report: &mut Report) {
    let Some((last_revision, last_index)) = last else { return };
    if event.mod_revision < last_revision {
        let message = format!(
            "{} received {} after an event at revision {last_revision} (#{last_index})",
            session.name(),
            describe(event)
        );
        report.push("unordered", message, vec![last_index, index]);
    } else if event.mod_revision == last_revision && index != last_index {
        let message = format!(
            "{} received revision {last_revision} split across responses #{last_index} and #{index} ({})",
            session.name(),
            describe(event)
        );
        report.push("split-revision", message, vec![last_index, index]);
    }
}

/// Bookmarkable: a progress notification never goes backwards, nor behind an event already
/// delivered.
fn check_progress(
    session: &Session<'_>,
    response: &Response<'_>,
    last_event: Option<i64>,
    last_progress: Option<i64>,
    report: &mut Report,
) {
    let header = response.header_revision;
    if let Some(previous) = last_progress.filter(|&p| header < p) {
        let message =
            format!("{} got a progress notification at revision {header} after one at {previous}", session.name());
        report.push("bookmark", message, vec![response.index]);
    }
    if let Some(event) = last_event.filter(|&e| header < e) {
        let message = format!(
            "{} got a progress notification at revision {header} after an event at revision {event}",
            session.name()
        );
        report.push("bookmark", message, vec![response.index]);
    }
}

/// Filtered: no event of a filtered-out kind, none outside the prefix. False if the event
/// should not have been delivered at all.
fn check_filter(session: &Session<'_>, index: u64, event: &WatchEvent, report: &mut Report) -> bool {
    let why = if !session.passes_filter(event.kind) {
        format!("despite its {:?} filter", session.filter)
    } else if !event.key.starts_with(session.prefix) {
        "outside its prefix".to_string()
    } else {
        return true;
    };
    report.push("filter", format!("{} received {} {why}", session.name(), describe(event)), vec![index]);
    false
}

/// Reliable: from the session's start to its last delivered event, exactly the reference's
/// events (under the prefix, through the filter) were delivered — nothing missing, nothing
/// invented.
fn check_reliable(session: &Session<'_>, delivery: &Delivery<'_>, reference: &Reference<'_>, report: &mut Report) {
    let Some(last) = delivery.last_revision else { return };
    // A watch from "now" (0) starts wherever the store was; its first event is the start.
    let start =
        if session.start_revision > 0 { session.start_revision } else { delivery.first_revision.unwrap_or(last) };
    let missing: Vec<String> = reference
        .range(start, last)
        .iter()
        .filter(|e| e.key.starts_with(session.prefix) && session.passes_filter(e.kind))
        .filter(|e| !delivery.received.contains(&(e.key.as_str(), e.mod_revision)))
        .map(|e| describe(e))
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "{} delivered events up to revision {last} but skipped {} event(s) of the final history: {}",
            session.name(),
            missing.len(),
            list_some(&missing)
        );
        report.push("gap", message, vec![session.opened_at, reference.index]);
    }
}

/// One delivered event against the reference: it exists with the same content, its create
/// flag and version agree with the key's history, and its prev_kv is the previous value.
fn check_event(session: &Session<'_>, delivered: &Delivered<'_>, reference: &Reference<'_>, report: &mut Report) {
    let event = delivered.event;
    let ops = vec![delivered.index, reference.index];
    let found = reference.get(&event.key, event.mod_revision);
    match found {
        None => {
            let message = format!("{} received {}, which is not in the final history", session.name(), describe(event));
            report.push("phantom-event", message, ops.clone());
        }
        Some(expected) if !same_content(event, expected) => {
            let message = format!("{} received {event:?} but the final history has {expected:?}", session.name());
            report.push("mismatch", message, ops.clone());
        }
        Some(_) => {}
    }
    if event.kind == EventKind::Put {
        let problems = create_flag_problems(event, found, reference);
        if !problems.is_empty() {
            let message = format!("{} received {}: {}", session.name(), describe(event), problems.join("; "));
            report.push("create-flag", message, ops.clone());
        }
    }
    if session.prev_kv {
        let expected = reference
            .before(&event.key, event.mod_revision)
            .filter(|e| e.kind == EventKind::Put)
            .map(|e| e.value.as_str());
        if event.prev_value.as_deref() != expected {
            let message = format!(
                "{} received {} with prev_kv {:?}, but the value before was {expected:?}",
                session.name(),
                describe(event),
                event.prev_value
            );
            report.push("prev-kv", message, ops);
        }
    }
}

fn same_content(a: &WatchEvent, b: &WatchEvent) -> bool {
    a.kind == b.kind && a.value == b.value && a.create_revision == b.create_revision && a.version == b.version
}

/// A put creates the key exactly when the key was absent before it: then create_revision
/// is its own revision and version is 1.
fn create_flag_problems(event: &WatchEvent, found: Option<&WatchEvent>, reference: &Reference<'_>) -> Vec<String> {
    let absent = reference.absent_before(&event.key, event.mod_revision);
    let state = if absent { "absent" } else { "present" };
    let mut problems = Vec::new();
    if (event.create_revision == event.mod_revision) != absent {
        problems.push(format!("create_revision {} but the key was {state} before", event.create_revision));
    }
    if (event.version == 1) != absent {
        problems.push(format!("version {} but the key was {state} before", event.version));
    }
    if let Some(expected) = found.filter(|f| f.create_revision != event.create_revision) {
        problems.push(format!("the final history has create_revision {}", expected.create_revision));
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The reference itself, and the writers.

/// The final history must be in revision order, without repeats, consistent in its create
/// revisions and versions, and not beyond its own header revision.
fn check_reference(reference: &Reference<'_>, report: &mut Report) {
    let ops = vec![reference.index];
    let mut seen = HashSet::new();
    let mut previous: Option<&WatchEvent> = None;
    for event in reference.events {
        if let Some(before) = previous.filter(|p| event.mod_revision < p.mod_revision) {
            let message = format!("final history lists {} after {}", describe(event), describe(before));
            report.push("final-history", message, ops.clone());
        }
        if !seen.insert((event.key.as_str(), event.mod_revision)) {
            report.push("final-history", format!("final history lists {} twice", describe(event)), ops.clone());
        }
        if event.mod_revision > reference.revision {
            let message = format!("final history lists {} beyond its revision {}", describe(event), reference.revision);
            report.push("final-history", message, ops.clone());
        }
        previous = Some(event);
    }
    for events in reference.by_key.values() {
        for pair in events.windows(2) {
            if let Some(problem) = inconsistent_successor(pair[0], pair[1]) {
                report.push("final-history", format!("final history: {problem}"), ops.clone());
            }
        }
        if let Some(first) = events.first().filter(|e| e.kind == EventKind::Put) {
            if first.create_revision != first.mod_revision || first.version != 1 {
                let message = format!("final history: first event {} does not create the key", describe(first));
                report.push("final-history", message, ops.clone());
            }
        }
    }
}

/// A put after a delete creates the key afresh; a put after a put keeps its create
/// revision and bumps its version.
fn inconsistent_successor(before: &WatchEvent, event: &WatchEvent) -> Option<String> {
    if event.kind != EventKind::Put {
        return None;
    }
    let (create, version) = match before.kind {
        EventKind::Delete => (event.mod_revision, 1),
        EventKind::Put => (before.create_revision, before.version + 1),
    };
    (event.create_revision != create || event.version != version).then(|| {
        format!(
            "{} has create_revision {} version {} after {} (expected {create}, {version})",
            describe(event),
            event.create_revision,
            event.version,
            describe(before)
        )
    })
}

/// Acknowledged writes are in the final history, failed ones are not, and nothing in it
/// was written by no one.
fn check_writers(history: &History, reference: &Reference<'_>, report: &mut Report) {
    let mut invoked: HashSet<(&str, &str)> = HashSet::new();
    for op in completed_ops(history) {
        match op.call() {
            Call::Put { key, value, revision } => {
                invoked.insert((key, value));
                match op.outcome() {
                    OpType::Ok => check_acknowledged_put(op.completion, key, value, *revision, reference, report),
                    OpType::Fail => check_failed_put(op.completion, key, value, reference, report),
                    OpType::Info | OpType::Invoke => {}
                }
            }
            Call::Delete { key, revision, deleted } if op.outcome() == OpType::Ok && deleted.is_some_and(|d| d > 0) => {
                check_acknowledged_delete(op.completion, key, *revision, reference, report);
            }
            _ => {}
        }
    }
    for event in reference.events.iter().filter(|e| e.kind == EventKind::Put) {
        if !invoked.contains(&(event.key.as_str(), event.value.as_str())) {
            let message = format!("final history has {}, a value no writer put to that key", describe(event));
            report.push("phantom-write", message, vec![reference.index]);
        }
    }
}

/// Writer puts and deletes that completed `ok`.
fn acknowledged_writes(history: &History) -> u64 {
    let writes =
        completed_ops(history).into_iter().filter(|op| matches!(op.call(), Call::Put { .. } | Call::Delete { .. }));
    writes.filter(|op| op.outcome() == OpType::Ok).count() as u64
}

fn puts_of<'a>(reference: &Reference<'a>, key: &str, value: &str) -> Vec<&'a WatchEvent> {
    let events = reference.by_key.get(key).map(Vec::as_slice).unwrap_or_default();
    events.iter().copied().filter(|e| e.kind == EventKind::Put && e.value == value).collect()
}

fn check_acknowledged_put(
    completion: Option<&Op>,
    key: &str,
    value: &str,
    revision: Option<i64>,
    reference: &Reference<'_>,
    report: &mut Report,
) {
    let present = match revision {
        Some(revision) => reference.get(key, revision).is_some_and(|e| e.kind == EventKind::Put && e.value == value),
        // Without the revision, the value being there at all is all one can ask.
        None => !puts_of(reference, key, value).is_empty(),
    };
    if !present {
        let at = revision.map_or_else(String::new, |r| format!(" at revision {r}"));
        let index = completion.map_or(reference.index, |c| c.index);
        let message = format!("acknowledged put {key}={value:?}{at} (#{index}) is not in the final history");
        report.push("lost-write", message, vec![index, reference.index]);
    }
}

fn check_failed_put(completion: Option<&Op>, key: &str, value: &str, reference: &Reference<'_>, report: &mut Report) {
    if let Some(event) = puts_of(reference, key, value).first() {
        let index = completion.map_or(reference.index, |c| c.index);
        let message = format!("failed put {key}={value:?} (#{index}) is in the final history as {}", describe(event));
        report.push("failed-write-present", message, vec![index, reference.index]);
    }
}

fn check_acknowledged_delete(
    completion: Option<&Op>,
    key: &str,
    revision: Option<i64>,
    reference: &Reference<'_>,
    report: &mut Report,
) {
    let present = match revision {
        Some(revision) => reference.get(key, revision).is_some_and(|e| e.kind == EventKind::Delete),
        None => reference.by_key.get(key).is_some_and(|events| events.iter().any(|e| e.kind == EventKind::Delete)),
    };
    if !present {
        let at = revision.map_or_else(String::new, |r| format!(" at revision {r}"));
        let index = completion.map_or(reference.index, |c| c.index);
        let message = format!("acknowledged delete of {key}{at} (#{index}) is not in the final history");
        report.push("lost-write", message, vec![index, reference.index]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;
    use crate::checker::Verdict;

    const WRITER: i64 = 10;
    const WATCHER: i64 = 20;

    /// The store's history under `w/`: a and b written, b deleted and recreated, then one
    /// txn-like revision (7) with two events.
    fn final_events() -> Vec<WatchEvent> {
        vec![
            put_event("w/a", "a1", 2, 2, 1),
            put_event("w/b", "b1", 3, 3, 1),
            put_event("w/a", "a2", 4, 2, 2),
            delete_event("w/b", 5),
            put_event("w/b", "b2", 6, 6, 1),
            put_event("w/c", "c1", 7, 7, 1),
            put_event("w/d", "d1", 7, 7, 1),
        ]
    }

    /// The final history's event at `revision` (the first, for 7).
    fn ev(revision: i64) -> WatchEvent {
        final_events().into_iter().find(|e| e.mod_revision == revision).expect("revision in the scenario")
    }

    fn ev_d7() -> WatchEvent {
        final_events().pop().expect("scenario has events")
    }

    /// The events as a prev_kv watch sees them.
    fn evp(revision: i64) -> WatchEvent {
        let prev = match revision {
            4 => Some("a1"),
            5 => Some("b1"),
            _ => None,
        };
        with_prev(ev(revision), prev)
    }

    /// The writers' records matching the final history.
    fn writers() -> Vec<crate::history::Op> {
        let mut ops = Vec::new();
        let mut t = 0;
        let mut write = |call: Call, done: Call| {
            ops.push(invoke(WRITER, t, call));
            ops.push(ok(WRITER, t + 1, done));
            t += 2;
        };
        for (key, value, rev) in [("w/a", "a1", 2), ("w/b", "b1", 3), ("w/a", "a2", 4)] {
            write(put(key, value, None), put(key, value, Some(rev)));
        }
        write(delete("w/b", None, None), delete("w/b", Some(5), Some(1)));
        for (key, value, rev) in [("w/b", "b2", 6), ("w/c", "c1", 7), ("w/d", "d1", 7)] {
            write(put(key, value, None), put(key, value, Some(rev)));
        }
        ops
    }

    /// Writers, then the given watcher records, then the final history.
    fn scenario(watchers: Vec<crate::history::Op>) -> History {
        let mut ops = writers();
        ops.push(nemesis(50));
        ops.extend(watchers);
        ops.push(ok(99, 1_000, final_history(final_events(), 7)));
        history(ops)
    }

    fn open(from: i64, t: u64) -> Vec<crate::history::Op> {
        open_with(from, t, false, WatchFilter::None)
    }

    fn open_with(from: i64, t: u64, prev_kv: bool, filter: WatchFilter) -> Vec<crate::history::Op> {
        vec![invoke(WATCHER, t, watch("w/", from, prev_kv, filter)), ok(WATCHER, t, watch("w/", from, prev_kv, filter))]
    }

    fn got(t: u64, events: Vec<WatchEvent>) -> crate::history::Op {
        let header = events.iter().map(|e| e.mod_revision).max().unwrap_or(0);
        ok(WATCHER, t, response(header, events))
    }

    fn assert_only(r: &CheckResult, kind: &str) {
        assert_eq!(r.verdict, Verdict::Invalid, "{r:#?}");
        assert!(r.anomalies.iter().all(|a| a.kind == kind), "expected only {kind}: {r:#?}");
    }

    #[test]
    fn faithful_session_passes() {
        let mut ops = open_with(2, 100, true, WatchFilter::None);
        ops.extend([
            got(101, vec![evp(2)]),
            got(102, vec![evp(3), evp(4)]),
            ok(WATCHER, 103, progress(4)),
            got(104, vec![evp(5)]),
            got(105, vec![evp(6)]),
            got(106, vec![evp(7), with_prev(ev_d7(), None)]),
            ok(WATCHER, 107, progress(7)),
            ok(WATCHER, 108, watch_end(7)),
        ]);
        let r = check(&scenario(ops));
        assert_eq!(r.verdict, Verdict::Valid, "{r:#?}");
        assert_eq!(r.stats["watchers"], 1);
        assert_eq!(r.stats["sessions"], 1);
        assert_eq!(r.stats["events_delivered"], 7);
        assert_eq!(r.stats["final_events"], 7);
        assert_eq!(r.stats["acknowledged_writes"], 7);
        assert_eq!(r.stats["progress_notifications"], 2);
    }

    #[test]
    fn watcher_resumed_correctly_across_a_break_passes() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2)]), got(102, vec![ev(3)]), info(WATCHER, 103, watch_end(3))]);
        // The reconnect fails once; the retry starts where the failed one would have.
        ops.extend([invoke(WATCHER, 104, watch("w/", 4, false, WatchFilter::None))]);
        ops.push(fail(WATCHER, 105, watch("w/", 4, false, WatchFilter::None)));
        ops.extend(open(4, 106));
        ops.extend([got(107, vec![ev(4), ev(5)]), got(108, vec![ev(6)])]);
        // The last session simply runs until the end of the history.
        let r = check(&scenario(ops));
        assert_eq!(r.verdict, Verdict::Valid, "{r:#?}");
        assert_eq!(r.stats["sessions"], 3);
    }

    #[test]
    fn duplicated_event_is_rejected() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(3)]), got(102, vec![ev(3)]), got(103, vec![ev(4)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "duplicate");
        assert!(r.anomalies[0].message.contains("PUT w/b=\"b1\" @3 again"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn duplicate_across_sessions_is_rejected_with_the_bad_resume() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(3)]), info(WATCHER, 102, watch_end(3))]);
        ops.extend(open(3, 103));
        ops.extend([got(104, vec![ev(3)]), got(105, vec![ev(4)])]);
        let r = check(&scenario(ops));
        assert_eq!(kinds(&r), ["resume", "duplicate"], "{r:#?}");
    }

    #[test]
    fn missing_event_is_a_gap() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2)]), got(102, vec![ev(4)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "gap");
        assert!(r.anomalies[0].message.contains("skipped 1 event(s) of the final history: PUT w/b=\"b1\" @3"));
    }

    #[test]
    fn missing_first_events_are_a_gap() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(4)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "gap");
        assert!(r.anomalies[0].message.contains("skipped 2 event(s)"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn reordered_events_are_rejected() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(4), ev(3)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "unordered");

        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2)]), got(102, vec![ev(4)]), got(103, vec![ev(3)])]);
        assert_only(&check(&scenario(ops)), "unordered");
    }

    #[test]
    fn split_revision_is_rejected() {
        let mut ops = open(6, 100);
        ops.extend([got(101, vec![ev(6), ev(7)]), got(102, vec![ev_d7()])]);
        let r = check(&scenario(ops));
        assert_only(&r, "split-revision");
        assert!(r.anomalies[0].message.contains("revision 7 split"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn bad_resume_is_rejected() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(3)]), info(WATCHER, 102, watch_end(3))]);
        // Resumes past revision 4: the watcher would never see it.
        ops.extend(open(5, 103));
        ops.extend([got(104, vec![ev(5)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "resume");
        assert!(r.anomalies[0].message.contains("resumed at revision 5 but should have at 4"));
    }

    #[test]
    fn bookmarks_going_backwards_or_past_events_are_rejected() {
        // A progress notification at 5, then an event at 4.
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(3)]), ok(WATCHER, 102, progress(5)), got(103, vec![ev(4)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "bookmark");
        assert!(r.anomalies[0].message.contains("after a progress notification at revision 5"));

        // Progress notifications going backwards, and one behind a delivered event.
        let mut ops = open(2, 100);
        ops.extend([ok(WATCHER, 101, progress(6)), ok(WATCHER, 102, progress(1))]);
        assert_only(&check(&scenario(ops)), "bookmark");
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(3)]), ok(WATCHER, 102, progress(2))]);
        assert_only(&check(&scenario(ops)), "bookmark");
    }

    #[test]
    fn bad_create_flag_is_rejected() {
        // The second put of w/a presented as a creation.
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), ev(3), put_event("w/a", "a2", 4, 4, 1)])]);
        let r = check(&scenario(ops));
        assert_eq!(kinds(&r), ["mismatch", "create-flag"], "{r:#?}");
        assert!(r.anomalies[1].message.contains("create_revision 4 but the key was present before"));
        assert!(r.anomalies[1].message.contains("version 1 but the key was present before"));

        // The recreation of w/b after its delete presented as an update.
        let mut ops = open(6, 100);
        ops.extend([got(101, vec![put_event("w/b", "b2", 6, 3, 2)])]);
        let r = check(&scenario(ops));
        assert!(kinds(&r).contains(&"create-flag"), "{r:#?}");
    }

    #[test]
    fn bad_prev_kv_is_rejected() {
        let mut ops = open_with(4, 100, true, WatchFilter::None);
        ops.extend([got(101, vec![with_prev(ev(4), None), evp(5), with_prev(ev(6), Some("b1"))])]);
        let r = check(&scenario(ops));
        assert_only(&r, "prev-kv");
        assert_eq!(r.anomalies.len(), 2, "{r:#?}");
        assert!(r.anomalies[0].message.contains("prev_kv None, but the value before was Some(\"a1\")"));
        assert!(r.anomalies[1].message.contains("prev_kv Some(\"b1\"), but the value before was None"));
    }

    #[test]
    fn filter_violation_is_rejected() {
        let mut ops = open_with(4, 100, false, WatchFilter::NoDelete);
        ops.extend([got(101, vec![ev(4), ev(5), ev(6)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "filter");
        assert!(r.anomalies[0].message.contains("DELETE w/b @5 despite its NoDelete filter"));
    }

    #[test]
    fn filtered_watch_skipping_filtered_events_passes() {
        let mut ops = open_with(2, 100, false, WatchFilter::NoPut);
        ops.extend([got(101, vec![ev(5)])]);
        let r = check(&scenario(ops));
        assert_eq!(r.verdict, Verdict::Valid, "{r:#?}");
    }

    #[test]
    fn watch_from_now_is_checked_from_its_first_event() {
        let mut ops = open(0, 100);
        ops.extend([got(101, vec![ev(4)]), got(102, vec![ev(6)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "gap");
        assert!(r.anomalies[0].message.contains("DELETE w/b @5"), "{}", r.anomalies[0].message);
    }

    #[test]
    fn event_not_in_the_final_history_is_a_phantom() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2), put_event("w/z", "z", 2, 2, 1), ev(3)])]);
        let r = check(&scenario(ops));
        assert_only(&r, "phantom-event");
    }

    #[test]
    fn writes_are_checked_against_the_final_history() {
        let mut ops = writers();
        // Acknowledged at revision 8, never in the store.
        ops.push(invoke(WRITER, 60, put("w/a", "lost", None)));
        ops.push(ok(WRITER, 61, put("w/a", "lost", Some(8))));
        // Acknowledged delete at revision 9, absent.
        ops.push(invoke(WRITER, 62, delete("w/a", None, None)));
        ops.push(ok(WRITER, 63, delete("w/a", Some(9), Some(1))));
        // A failed put of c1 (c1 was also put successfully, at 7).
        ops.push(invoke(WRITER, 64, put("w/c", "c1", None)));
        ops.push(fail(WRITER, 65, put("w/c", "c1", None)));
        let mut events = final_events();
        events.push(put_event("w/e", "nobody", 8, 8, 1));
        ops.push(ok(99, 1_000, final_history(events, 8)));
        let r = check(&history(ops));
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["lost-write", "lost-write", "failed-write-present", "phantom-write"], "{r:#?}");
        assert!(r.anomalies[0].message.contains("w/a=\"lost\" at revision 8"));
        assert!(r.anomalies[3].message.contains("w/e=\"nobody\""));
        assert_eq!(r.stats["acknowledged_writes"], 9);
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_be_present() {
        let mut ops = writers();
        ops.push(invoke(WRITER, 60, put("w/x", "maybe", None)));
        ops.push(info(WRITER, 61, put("w/x", "maybe", None)));
        ops.push(invoke(WRITER + 1, 62, put("w/y", "maybe-not", None)));
        let mut events = final_events();
        events.push(put_event("w/x", "maybe", 8, 8, 1));
        ops.push(ok(99, 1_000, final_history(events, 8)));
        let r = check(&history(ops));
        assert_eq!(r.verdict, Verdict::Valid, "{r:#?}");
    }

    #[test]
    fn broken_final_history_is_reported() {
        let mut events = final_events();
        events.swap(0, 1);
        events.push(ev(6));
        let mut ops = writers();
        ops.push(ok(99, 1_000, final_history(events, 7)));
        let r = check(&history(ops));
        assert_only(&r, "final-history");
        // Two out of order, one twice.
        assert_eq!(r.anomalies.len(), 3, "{r:#?}");
    }

    #[test]
    fn without_final_history_stream_checks_still_apply() {
        let mut ops = open(2, 100);
        ops.extend([got(101, vec![ev(2)]), got(102, vec![ev(4)])]);
        // A gap cannot be seen without the reference: unknown.
        let r = check(&history(ops.clone()));
        assert_eq!(r.verdict, Verdict::Unknown, "{r:#?}");
        assert_eq!(kinds(&r), ["no-final-history"]);
        // A duplicate can.
        ops.push(got(103, vec![ev(4)]));
        let r = check(&history(ops));
        assert_eq!(r.verdict, Verdict::Invalid, "{r:#?}");
        assert_eq!(kinds(&r), ["duplicate", "no-final-history"]);
    }

    #[test]
    fn anomalies_of_one_kind_are_capped() {
        let mut ops = open(2, 100);
        for t in 0..60 {
            ops.push(got(101 + t, vec![ev(2)]));
        }
        let r = check(&scenario(ops));
        assert_eq!(r.anomalies.len(), SHOWN_PER_KIND + 1);
        assert!(r.anomalies[SHOWN_PER_KIND].message.contains("9 more duplicate anomalies"));
    }
}
