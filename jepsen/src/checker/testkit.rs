//! Compact builders for hand-written histories in the checkers' tests: one line per record,
//! indices assigned in order, every client talking to node `n1`.

use super::CheckResult;
use crate::history::{Call, EventKind, History, Op, OpType, WatchEvent, WatchFilter, NEMESIS};

/// The kinds of a result's anomalies, in order.
pub(crate) fn kinds(r: &CheckResult) -> Vec<&str> {
    r.anomalies.iter().map(|a| a.kind.as_str()).collect()
}

fn record(process: i64, time_ns: u64, kind: OpType, call: Call) -> Op {
    let node = if process == NEMESIS { String::new() } else { "n1".to_string() };
    Op { index: 0, time_ns, process, kind, node, call, error: None }
}

pub(crate) fn invoke(process: i64, time_ns: u64, call: Call) -> Op {
    record(process, time_ns, OpType::Invoke, call)
}

pub(crate) fn ok(process: i64, time_ns: u64, call: Call) -> Op {
    record(process, time_ns, OpType::Ok, call)
}

pub(crate) fn fail(process: i64, time_ns: u64, call: Call) -> Op {
    record(process, time_ns, OpType::Fail, call)
}

pub(crate) fn info(process: i64, time_ns: u64, call: Call) -> Op {
    record(process, time_ns, OpType::Info, call)
}

/// Numbers the records in the order given.
pub(crate) fn history(ops: Vec<Op>) -> History {
    let ops = ops.into_iter().enumerate().map(|(i, op)| Op { index: i as u64, ..op }).collect();
    History { ops }
}

/// A nemesis fault record, which every checker must ignore.
pub(crate) fn nemesis(time_ns: u64) -> Op {
    record(NEMESIS, time_ns, OpType::Info, Call::Fault { name: "kill".into(), detail: "n2".into() })
}

// ---- register ----

pub(crate) fn read(key: &str, value: Option<i64>) -> Call {
    Call::Read { key: key.into(), value }
}

pub(crate) fn write(key: &str, value: i64) -> Call {
    Call::Write { key: key.into(), value }
}

pub(crate) fn cas(key: &str, from: i64, to: i64) -> Call {
    Call::Cas { key: key.into(), from, to }
}

// ---- set and durability ----

pub(crate) fn add(element: u64) -> Call {
    Call::Add { element }
}

pub(crate) fn read_all(elements: Option<Vec<u64>>) -> Call {
    Call::ReadAll { elements }
}

pub(crate) fn member_read(member: &str, elements: Option<Vec<u64>>) -> Call {
    Call::MemberRead { member: member.into(), elements }
}

pub(crate) fn boot(member: &str) -> Call {
    Call::Boot { member: member.into() }
}

// ---- watch ----

pub(crate) fn put(key: &str, value: &str, revision: Option<i64>) -> Call {
    Call::Put { key: key.into(), value: value.into(), revision }
}

pub(crate) fn delete(key: &str, revision: Option<i64>, deleted: Option<i64>) -> Call {
    Call::Delete { key: key.into(), revision, deleted }
}

pub(crate) fn watch(prefix: &str, start_revision: i64, prev_kv: bool, filter: WatchFilter) -> Call {
    Call::Watch { prefix: prefix.into(), start_revision, prev_kv, filter, watch_id: None }
}

pub(crate) fn response(header_revision: i64, events: Vec<WatchEvent>) -> Call {
    Call::WatchResponse { header_revision, events, progress: false, compact_revision: 0, canceled: false }
}

pub(crate) fn progress(header_revision: i64) -> Call {
    Call::WatchResponse { header_revision, events: vec![], progress: true, compact_revision: 0, canceled: false }
}

pub(crate) fn watch_end(last_revision: i64) -> Call {
    Call::WatchEnd { last_revision }
}

pub(crate) fn final_history(events: Vec<WatchEvent>, revision: i64) -> Call {
    Call::FinalHistory { events, revision }
}

/// A put event; `create_revision`/`version` given explicitly so tests can get them wrong.
pub(crate) fn put_event(key: &str, value: &str, mod_revision: i64, create_revision: i64, version: i64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Put,
        key: key.into(),
        value: value.into(),
        create_revision,
        mod_revision,
        version,
        prev_value: None,
    }
}

/// A delete event as etcd reports it: no value, create revision and version zero.
pub(crate) fn delete_event(key: &str, mod_revision: i64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        key: key.into(),
        value: String::new(),
        create_revision: 0,
        mod_revision,
        version: 0,
        prev_value: None,
    }
}

/// The same event carrying a prev_kv value.
pub(crate) fn with_prev(event: WatchEvent, prev_value: Option<&str>) -> WatchEvent {
    WatchEvent { prev_value: prev_value.map(str::to_string), ..event }
}
