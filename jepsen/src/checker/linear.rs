//! Linearizability of the register workload: `read`/`write`/`cas` on independent keys
//! holding integers, every key absent at the start.
//!
//! The search is Wing & Gong's, with Lowe's memoisation, laid out the way porcupine does it:
//! the history is split per key (linearizability is compositional, so each key is checked
//! alone), each key's operations become a time-sorted doubly linked list of call and return
//! entries, and a depth-first search repeatedly *lifts* a call out of the list (linearizes
//! it) when the register model allows it, or backtracks when it meets a return entry whose
//! operation is still pending. A cache of (set of linearized operations, register state)
//! keeps the search from exploring the same configuration twice.
//!
//! Indeterminate operations (`info`, or never completed) may have taken effect at any time
//! after their call, or never: they get no return entry, so the search may lift them at any
//! point or leave them out, and it succeeds once every operation with a known return has
//! been linearized. Failed operations and indeterminate reads had no effect and are dropped.
//!
//! Indeterminate writes are what makes such searches blow up (each one doubles the
//! configurations for the rest of the history), so on top of porcupine the search only
//! considers linearizations in a canonical form that loses no verdict: an indeterminate
//! operation is linearized only right before an operation observing its value
//! ([`Config`]), only the earliest-called of identical ones is a candidate
//! ([`Slots::first_of_twins`]), and configurations dominated by an explored one are
//! skipped ([`Cache`]). A test checks the whole against a brute-force decision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{completed_ops, list_some, Anomaly, CheckResult, Completed};
use crate::history::{Call, History, OpType};

const CHECKER: &str = "linearizable-register";

/// A register's content; `None` = the key is absent.
type Value = Option<i64>;

/// Decides linearizability of every register key within `budget` of wall-clock time (all
/// keys together). Keys the search could not finish in time make the verdict `unknown`.
pub fn check(history: &History, budget: Duration) -> CheckResult {
    let deadline = Instant::now() + budget;
    let (keys, invoked) = partition(history);
    let outcomes = search_all(&keys, deadline);

    let mut anomalies = Vec::new();
    let mut undecided = Vec::new();
    let mut linearizable = 0;
    for ((key, ops), outcome) in keys.iter().zip(&outcomes) {
        match outcome {
            Outcome::Linearizable => linearizable += 1,
            Outcome::TimedOut => undecided.push(key.as_str()),
            Outcome::Nonlinearizable(deepest) => anomalies.push(nonlinearizable(key, ops, deepest)),
        }
    }
    if !undecided.is_empty() {
        let message = format!(
            "the search ran out of its {budget:?} budget before deciding {} key(s): {}",
            undecided.len(),
            list_some(&undecided)
        );
        anomalies.push(Anomaly::new("timeout", message, vec![]));
    }
    let stats = BTreeMap::from([
        ("keys".to_string(), keys.len() as u64),
        ("ops".to_string(), invoked),
        ("linearizable_keys".to_string(), linearizable),
    ]);
    CheckResult::from_anomalies(CHECKER, anomalies, &["timeout"], stats)
}

// ---------------------------------------------------------------------------------------
// The register model and the operations it is checked against.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    /// An `ok` read that returned this value.
    Read(Value),
    Write(i64),
    Cas {
        from: i64,
        to: i64,
    },
}

impl Action {
    /// The register model: the state after the action, or `None` if the action cannot take
    /// effect (with this result) in `state`.
    fn step(self, state: Value) -> Option<Value> {
        match self {
            Action::Read(seen) => (state == seen).then_some(state),
            Action::Write(value) => Some(Some(value)),
            Action::Cas { from, to } => (state == Some(from)).then_some(Some(to)),
        }
    }

    /// The value this action stores, if it stores one.
    fn written(self) -> Option<i64> {
        match self {
            Action::Read(_) => None,
            Action::Write(value) | Action::Cas { to: value, .. } => Some(value),
        }
    }

    fn describe(self) -> String {
        match self {
            Action::Read(value) => format!("read → {}", show(value)),
            Action::Write(value) => format!("write {value}"),
            Action::Cas { from, to } => format!("cas {from}→{to}"),
        }
    }
}

fn show(value: Value) -> String {
    value.map_or_else(|| "nil".to_string(), |v| v.to_string())
}

/// One register operation that may have taken effect.
#[derive(Debug, Clone, Copy)]
struct RegisterOp<'a> {
    action: Action,
    call_ns: u64,
    /// `None`: indeterminate — may take effect any time after the call, or never.
    return_ns: Option<u64>,
    source: Completed<'a>,
}

impl RegisterOp<'_> {
    fn describe(&self) -> String {
        let invoke = self.source.invoke;
        let completion = match self.source.completion {
            Some(done) => format!("{} #{}", kind_name(done.kind), done.index),
            None => "never completed".to_string(),
        };
        let node = self.source.completion.map_or(&invoke.node, |done| &done.node);
        format!(
            "{} (invoke #{}, {completion}, node {}, process {})",
            self.action.describe(),
            invoke.index,
            if node.is_empty() { "?" } else { node },
            invoke.process
        )
    }
}

fn kind_name(kind: OpType) -> &'static str {
    match kind {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

type Keyed<'a> = BTreeMap<String, Vec<RegisterOp<'a>>>;

/// Splits the register operations per key, keeping only those that may have taken effect,
/// and counts every register operation invoked.
fn partition(history: &History) -> (Keyed<'_>, u64) {
    let mut keys: Keyed<'_> = BTreeMap::new();
    let mut invoked = 0;
    for source in completed_ops(history) {
        let (key, action) = match source.call() {
            Call::Read { key, value } => (key, Action::Read(*value)),
            Call::Write { key, value } => (key, Action::Write(*value)),
            Call::Cas { key, from, to } => (key, Action::Cas { from: *from, to: *to }),
            _ => continue,
        };
        invoked += 1;
        let ops = keys.entry(key.clone()).or_default();
        let return_ns = match (source.outcome(), action) {
            // It certainly did not happen (a CAS whose compare did not match fails).
            (OpType::Fail, _) => continue,
            // A read that may or may not have happened has no effect either way.
            (OpType::Info | OpType::Invoke, Action::Read(_)) => continue,
            (OpType::Info | OpType::Invoke, _) => None,
            (OpType::Ok, _) => source.completion.map(|done| done.time_ns),
        };
        ops.push(RegisterOp { action, call_ns: source.invoke.time_ns, return_ns, source });
    }
    for ops in keys.values_mut() {
        drop_unobserved_indeterminate(ops);
    }
    (keys, invoked)
}

/// Removes indeterminate writes whose value no read or CAS ever observed. Such a write
/// cannot be what makes a history linearizable: between it and the next write nothing can
/// be linearized (every read or CAS there would have to see its value), so leaving it out
/// of any linearization keeps that linearization legal. Dropping them spares the search
/// from trying each one at every point.
fn drop_unobserved_indeterminate(ops: &mut Vec<RegisterOp<'_>>) {
    let observed: HashSet<i64> = ops
        .iter()
        .filter_map(|op| match op.action {
            Action::Read(value) => value,
            Action::Cas { from, .. } => Some(from),
            Action::Write(_) => None,
        })
        .collect();
    ops.retain(|op| op.return_ns.is_some() || op.action.written().is_some_and(|v| observed.contains(&v)));
}

fn nonlinearizable(key: &str, ops: &[RegisterOp<'_>], deepest: &Deepest) -> Anomaly {
    let blocked = &ops[deepest.blocked];
    let after = match deepest.last {
        Some(last) => format!(", set by {}", ops[last].describe()),
        None => " (initial)".to_string(),
    };
    let message = format!(
        "key {key}: no linearization; the deepest the search got was {} of {} operations linearized, \
         where {} could not be linearized in state {}{after}",
        deepest.linearized,
        ops.len(),
        blocked.describe(),
        show(deepest.state),
    );
    let mut indices = blocked.source.indices();
    if let Some(last) = deepest.last {
        indices.extend(ops[last].source.indices());
    }
    Anomaly::new("nonlinearizable", message, indices)
}

// ---------------------------------------------------------------------------------------
// Running the per-key searches.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Linearizable,
    Nonlinearizable(Deepest),
    TimedOut,
}

/// Where a failed search got furthest: how many operations it had linearized, the
/// operation whose return it could not get past, the state then and the last operation
/// linearized (which produced that state).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deepest {
    linearized: usize,
    blocked: usize,
    state: Value,
    last: Option<usize>,
}

/// Checks every key, on as many threads as there are cores (keys are independent), and
/// returns the outcomes in key order.
fn search_all(keys: &Keyed<'_>, deadline: Instant) -> Vec<Outcome> {
    let work: Vec<&[RegisterOp<'_>]> = keys.values().map(Vec::as_slice).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(work.len()).max(1);
    let next = AtomicUsize::new(0);
    let mut outcomes = vec![Outcome::TimedOut; work.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(ops) = work.get(i) else { break };
                        done.push((i, search(ops, deadline)));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            // A worker that panicked leaves its keys undecided (`TimedOut`), never valid.
            for (i, outcome) in worker.join().unwrap_or_default() {
                outcomes[i] = outcome;
            }
        }
    });
    outcomes
}

/// How many search steps between two looks at the clock.
const CLOCK_EVERY: u64 = 1024;

/// Which pending calls a scan of the entry list considers. Calls with a known return are
/// tried first, indeterminate ones only once those are exhausted: a configuration that
/// leaves an indeterminate operation out dominates the same one with it in (see
/// [`Cache`]), so exploring the former first lets the cache prune the latter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Determinate,
    Indeterminate,
}

/// Where the search stands, besides the set of linearized operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    value: Value,
    /// The last operation linearized was indeterminate, so the next must observe its value.
    ///
    /// An indeterminate write is only worth linearizing right before a read or CAS that
    /// sees what it wrote: if a write followed it instead, leaving it out changes nothing
    /// (the write overwrites it; a read or CAS of another value could not have followed).
    /// So every linearization has a counterpart where each indeterminate operation is
    /// immediately observed, and the search only looks for those. Without this rule each
    /// indeterminate write multiplies the configurations for the rest of the history.
    awaiting_observer: bool,
}

impl Config {
    const INITIAL: Config = Config { value: None, awaiting_observer: false };

    /// The configuration after `op`, if it may be linearized now.
    fn after(self, op: &RegisterOp<'_>) -> Option<Config> {
        if self.awaiting_observer && matches!(op.action, Action::Write(_)) {
            return None;
        }
        let value = op.action.step(self.value)?;
        Some(Config { value, awaiting_observer: op.return_ns.is_none() })
    }
}

/// The Wing–Gong–Lowe search over one key's operations.
fn search(ops: &[RegisterOp<'_>], deadline: Instant) -> Outcome {
    if Instant::now() >= deadline {
        return Outcome::TimedOut;
    }
    let slots = Slots::new(ops);
    let mut list = EntryList::new(ops);
    let mut linearized = Linearized::new(&slots);
    let mut cache = Cache::default();
    let mut config = Config::INITIAL;
    cache.visit(&linearized, config);
    // Lifted calls with the configuration and pass before each, to undo them when
    // backtracking.
    let mut lifted: Vec<(usize, Config, Pass)> = Vec::new();
    // Operations with a known return that are not linearized yet: done when none is left.
    let mut pending = slots.determinate;
    let mut deepest: Option<Deepest> = None;
    let mut cursor = list.first();
    let mut pass = Pass::Determinate;
    let mut steps = 0u64;

    while pending > 0 {
        steps += 1;
        if steps.is_multiple_of(CLOCK_EVERY) && Instant::now() >= deadline {
            return Outcome::TimedOut;
        }
        if let Some(entry) = cursor.filter(|&e| list.is_call(e)) {
            let op = list.op(entry);
            let candidate = match pass {
                Pass::Determinate => ops[op].return_ns.is_some(),
                Pass::Indeterminate => ops[op].return_ns.is_none() && slots.first_of_twins(op, &linearized),
            };
            if let Some(next) = config.after(&ops[op]).filter(|_| candidate) {
                linearized.insert(slots.of[op]);
                if cache.visit(&linearized, next) {
                    lifted.push((entry, config, pass));
                    config = next;
                    list.lift(entry);
                    pending -= usize::from(ops[op].return_ns.is_some());
                    cursor = list.first();
                    pass = Pass::Determinate;
                    continue;
                }
                // This configuration, or one that can do all it can, was explored before.
                linearized.remove(slots.of[op]);
            }
            cursor = list.next(entry);
            continue;
        }
        // A return entry (the list cannot run out while an operation with a return is
        // pending, but treat that the same way): its operation had to be linearized by now.
        if pass == Pass::Determinate && slots.indeterminate > 0 {
            pass = Pass::Indeterminate;
            cursor = list.first();
            continue;
        }
        // No pending call can go next: undo the last choice.
        if let Some(blocked) = cursor.map(|e| list.op(e)) {
            if deepest.as_ref().is_none_or(|d| lifted.len() > d.linearized) {
                let last = lifted.last().map(|&(entry, _, _)| list.op(entry));
                deepest = Some(Deepest { linearized: lifted.len(), blocked, state: config.value, last });
            }
        }
        let Some((entry, before, lifted_in)) = lifted.pop() else {
            return match deepest {
                Some(deepest) => Outcome::Nonlinearizable(deepest),
                // Unreachable with a pending operation; never claim validity regardless.
                None => Outcome::TimedOut,
            };
        };
        let op = list.op(entry);
        list.unlift(entry);
        linearized.remove(slots.of[op]);
        config = before;
        pending += usize::from(ops[op].return_ns.is_some());
        pass = lifted_in;
        cursor = list.next(entry);
    }
    Outcome::Linearizable
}

// ---------------------------------------------------------------------------------------
// The entry list: call and return entries in time order, doubly linked so that lifting an
// operation out and putting it back are O(1).

const NIL: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    prev: usize,
    next: usize,
    op: usize,
    /// For a call entry, its return entry (`NIL` for an indeterminate operation); `NIL` on
    /// return entries.
    ret: usize,
    call: bool,
}

struct EntryList {
    /// Entry 0 is the head sentinel.
    entries: Vec<Entry>,
}

impl EntryList {
    fn new(ops: &[RegisterOp<'_>]) -> EntryList {
        // (time, return?, op): at equal times calls sort first, so operations that merely
        // touch count as concurrent — the permissive reading, which never invents anomalies.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call_ns, false, i));
            if let Some(ret) = op.return_ns {
                events.push((ret.max(op.call_ns), true, i));
            }
        }
        events.sort_unstable();

        let head = Entry { prev: NIL, next: NIL, op: NIL, ret: NIL, call: false };
        let mut entries = vec![head];
        let mut return_of = vec![NIL; ops.len()];
        for &(_, is_return, op) in &events {
            let position = entries.len();
            entries.push(Entry { prev: position - 1, next: NIL, op, ret: NIL, call: !is_return });
            entries[position - 1].next = position;
            if is_return {
                return_of[op] = position;
            }
        }
        for entry in entries.iter_mut().skip(1).filter(|e| e.call) {
            entry.ret = return_of[entry.op];
        }
        EntryList { entries }
    }

    fn first(&self) -> Option<usize> {
        self.next(0)
    }

    fn next(&self, entry: usize) -> Option<usize> {
        Some(self.entries[entry].next).filter(|&n| n != NIL)
    }

    fn op(&self, entry: usize) -> usize {
        self.entries[entry].op
    }

    fn is_call(&self, entry: usize) -> bool {
        self.entries[entry].call
    }

    /// Takes a call entry and its return entry out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.entries[call].ret;
        if ret != NIL {
            self.unlink(ret);
        }
    }

    /// Undoes [`lift`](Self::lift); must be called in reverse order of the lifts.
    fn unlift(&mut self, call: usize) {
        let ret = self.entries[call].ret;
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn unlink(&mut self, entry: usize) {
        let Entry { prev, next, .. } = self.entries[entry];
        self.entries[prev].next = next;
        if next != NIL {
            self.entries[next].prev = prev;
        }
    }

    /// Puts an entry back between the neighbours it still points at.
    fn relink(&mut self, entry: usize) {
        let Entry { prev, next, .. } = self.entries[entry];
        self.entries[prev].next = entry;
        if next != NIL {
            self.entries[next].prev = entry;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The memo of explored configurations.

/// Where each operation sits in the linearized sets: determinate operations (with a
/// return) and indeterminate ones are numbered apart, because the cache treats them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Determinate(usize),
    Indeterminate(usize),
}

struct Slots {
    of: Vec<Slot>,
    determinate: usize,
    indeterminate: usize,
    /// For an indeterminate operation, the indeterminate operation with the same action
    /// called just before it.
    twin_before: Vec<Option<usize>>,
}

impl Slots {
    fn new(ops: &[RegisterOp<'_>]) -> Slots {
        let (mut determinate, mut indeterminate) = (0, 0);
        let of = ops
            .iter()
            .map(|op| {
                let (counter, slot): (&mut usize, fn(usize) -> Slot) = match op.return_ns {
                    Some(_) => (&mut determinate, Slot::Determinate),
                    None => (&mut indeterminate, Slot::Indeterminate),
                };
                *counter += 1;
                slot(*counter - 1)
            })
            .collect();
        Slots { of, determinate, indeterminate, twin_before: twins_before(ops) }
    }

    /// Symmetry breaking: of indeterminate operations with the same action, only the
    /// earliest called one not yet linearized is a candidate. Any linearization using a
    /// later twin works as well with the earlier one in its place — both are optional, and
    /// the earlier one is available whenever the later one is — so the search need not
    /// tell them apart, and the linearized ones of each action stay a prefix.
    fn first_of_twins(&self, op: usize, linearized: &Linearized) -> bool {
        self.twin_before[op].is_none_or(|twin| linearized.contains(self.of[twin]))
    }
}

/// Links each indeterminate operation to the previous one (in the entry list's call order)
/// with the same action.
fn twins_before(ops: &[RegisterOp<'_>]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].return_ns.is_none()).collect();
    order.sort_unstable_by_key(|&i| (ops[i].call_ns, i));
    let mut last: HashMap<Action, usize> = HashMap::new();
    let mut twin_before = vec![None; ops.len()];
    for i in order {
        twin_before[i] = last.insert(ops[i].action, i);
    }
    twin_before
}

/// The operations linearized so far, split by kind.
struct Linearized {
    determinate: OpSet,
    indeterminate: OpSet,
}

impl Linearized {
    fn new(slots: &Slots) -> Linearized {
        Linearized { determinate: OpSet::new(slots.determinate), indeterminate: OpSet::new(slots.indeterminate) }
    }

    fn insert(&mut self, slot: Slot) {
        match slot {
            Slot::Determinate(i) => self.determinate.insert(i),
            Slot::Indeterminate(i) => self.indeterminate.insert(i),
        }
    }

    fn remove(&mut self, slot: Slot) {
        match slot {
            Slot::Determinate(i) => self.determinate.remove(i),
            Slot::Indeterminate(i) => self.indeterminate.remove(i),
        }
    }

    fn contains(&self, slot: Slot) -> bool {
        match slot {
            Slot::Determinate(i) => self.determinate.contains(i),
            Slot::Indeterminate(i) => self.indeterminate.contains(i),
        }
    }
}

/// A set of small integers as a bitset, with a Zobrist hash kept up to date on every
/// change so that looking a configuration up costs O(1) until the final comparison.
struct OpSet {
    words: Vec<u64>,
    hash: u64,
}

impl OpSet {
    fn new(size: usize) -> OpSet {
        OpSet { words: vec![0; size.div_ceil(64)], hash: 0 }
    }

    /// Adds a member that is not in the set.
    fn insert(&mut self, id: usize) {
        self.words[id / 64] |= 1 << (id % 64);
        self.hash ^= mix(id as u64);
    }

    fn contains(&self, id: usize) -> bool {
        self.words[id / 64] & (1 << (id % 64)) != 0
    }

    /// Removes a member that is in the set.
    fn remove(&mut self, id: usize) {
        self.words[id / 64] &= !(1 << (id % 64));
        self.hash ^= mix(id as u64);
    }
}

fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small.iter().zip(large).all(|(s, l)| s & !l == 0)
}

/// splitmix64's finaliser: a well-spread 64-bit value per operation id or state.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn state_hash(state: Value) -> u64 {
    match state {
        None => 0x5bd1_e995,
        Some(v) => mix(v as u64 ^ 0xa5a5_a5a5_a5a5_a5a5),
    }
}

/// The keys are already well-mixed hashes: pass them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// An explored configuration.
struct Seen {
    determinate: Box<[u64]>,
    indeterminate: Box<[u64]>,
    config: Config,
}

impl Seen {
    /// Whether this configuration can do everything the other can: the same determinate
    /// operations linearized and the same value, no more indeterminate ones used, and no
    /// observer owed unless the other owes one too.
    fn dominates(&self, determinate: &[u64], indeterminate: &[u64], config: Config) -> bool {
        self.config.value == config.value
            && (!self.config.awaiting_observer || config.awaiting_observer)
            && *self.determinate == *determinate
            && is_subset(&self.indeterminate, indeterminate)
    }

    /// The converse of [`dominates`](Self::dominates).
    fn dominated_by(&self, determinate: &[u64], indeterminate: &[u64], config: Config) -> bool {
        self.config.value == config.value
            && (!config.awaiting_observer || self.config.awaiting_observer)
            && *self.determinate == *determinate
            && is_subset(indeterminate, &self.indeterminate)
    }
}

/// Explored configurations, bucketed by the hash of their determinate part and value.
///
/// Beyond Lowe's exact memo, a configuration is skipped when an explored one *dominates*
/// it (see [`Seen::dominates`]): whatever the skipped configuration could still do, the
/// dominating one can too, leaving the extra indeterminate operations out — they block
/// nothing, having no return. Explored configurations are either exhausted or on the
/// search's current path, whose remaining branches cover the skipped one.
#[derive(Default)]
struct Cache {
    buckets: HashMap<u64, Vec<Seen>, BuildHasherDefault<PassThrough>>,
}

impl Cache {
    /// Records a configuration; false if it, or one dominating it, was explored already.
    fn visit(&mut self, linearized: &Linearized, config: Config) -> bool {
        let (determinate, indeterminate) = (&linearized.determinate.words, &linearized.indeterminate.words);
        let bucket = self.buckets.entry(linearized.determinate.hash ^ state_hash(config.value)).or_default();
        if bucket.iter().any(|seen| seen.dominates(determinate, indeterminate, config)) {
            return false;
        }
        // Those this one dominates will never be needed again.
        bucket.retain(|seen| !seen.dominated_by(determinate, indeterminate, config));
        bucket.push(Seen {
            determinate: determinate.clone().into_boxed_slice(),
            indeterminate: indeterminate.clone().into_boxed_slice(),
            config,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;
    use crate::checker::Verdict;
    use crate::history::Op;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const BUDGET: Duration = Duration::from_secs(30);

    fn verdict(h: &History) -> CheckResult {
        check(h, BUDGET)
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = history(vec![
            invoke(0, 0, read("x", None)),
            ok(0, 1, read("x", None)),
            invoke(0, 2, write("x", 1)),
            ok(0, 3, write("x", 1)),
            invoke(0, 4, cas("x", 1, 2)),
            ok(0, 5, cas("x", 1, 2)),
            invoke(0, 6, cas("x", 1, 3)),
            fail(0, 7, cas("x", 1, 3)),
            invoke(0, 8, read("x", None)),
            ok(0, 9, read("x", Some(2))),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["keys"], 1);
        assert_eq!(r.stats["ops"], 5);
        assert_eq!(r.stats["linearizable_keys"], 1);
    }

    #[test]
    fn stale_read_is_rejected() {
        // write 1 completes, then a read that starts later still sees nothing.
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            ok(0, 10, write("x", 1)),
            invoke(1, 20, read("x", None)),
            ok(1, 30, read("x", None)),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        assert_eq!(r.anomalies.len(), 1);
        let a = &r.anomalies[0];
        assert_eq!(a.kind, "nonlinearizable");
        assert!(a.message.contains("key x"), "{}", a.message);
        assert!(a.message.contains("read → nil (invoke #2, ok #3, node n1, process 1)"), "{}", a.message);
        assert!(a.message.contains("in state 1, set by write 1"), "{}", a.message);
        assert_eq!(a.ops, vec![2, 3, 0, 1]);
        assert_eq!(r.stats["linearizable_keys"], 0);
    }

    #[test]
    fn lost_write_is_rejected() {
        // write 1 then write 2 complete in turn; a later read sees the overwritten 1.
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            ok(0, 10, write("x", 1)),
            invoke(1, 20, write("x", 2)),
            ok(1, 30, write("x", 2)),
            invoke(2, 40, read("x", None)),
            ok(2, 50, read("x", Some(1))),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        assert!(r.anomalies[0].message.contains("read → 1"), "{:?}", r.anomalies);
    }

    #[test]
    fn ok_cas_on_wrong_value_is_rejected() {
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            ok(0, 10, write("x", 1)),
            invoke(0, 20, cas("x", 5, 6)),
            ok(0, 30, cas("x", 5, 6)),
        ]);
        assert_eq!(verdict(&h).verdict, Verdict::Invalid);
    }

    #[test]
    fn concurrent_ops_with_several_valid_orders_pass() {
        // Two overlapping writes; readers that overlap them see either order, and a later
        // read settles on 2 (so 1 must go first).
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            invoke(1, 1, write("x", 2)),
            invoke(2, 2, read("x", None)),
            ok(2, 3, read("x", Some(2))),
            invoke(3, 4, read("x", None)),
            ok(3, 5, read("x", Some(1))),
            ok(0, 10, write("x", 1)),
            ok(1, 11, write("x", 2)),
            invoke(2, 12, read("x", None)),
            ok(2, 13, read("x", Some(2))),
        ]);
        // 2 is read, then 1, then 2 again: impossible with one write of each — invalid.
        assert_eq!(verdict(&h).verdict, Verdict::Invalid);

        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            invoke(1, 1, write("x", 2)),
            invoke(2, 2, read("x", None)),
            ok(2, 3, read("x", Some(1))),
            invoke(3, 4, read("x", None)),
            ok(3, 5, read("x", Some(2))),
            ok(0, 10, write("x", 1)),
            ok(1, 11, write("x", 2)),
            invoke(2, 12, cas("x", 2, 3)),
            ok(2, 13, cas("x", 2, 3)),
            invoke(3, 14, read("x", None)),
            ok(3, 15, read("x", Some(3))),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }

    #[test]
    fn keys_are_independent_and_nemesis_records_are_ignored() {
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            nemesis(1),
            ok(0, 2, write("x", 1)),
            invoke(1, 3, read("y", None)),
            ok(1, 4, read("y", None)),
            invoke(1, 5, read("x", None)),
            ok(1, 6, read("x", Some(1))),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["keys"], 2);
        assert_eq!(r.stats["linearizable_keys"], 2);
    }

    #[test]
    fn failed_ops_and_indeterminate_reads_have_no_effect() {
        let h = history(vec![
            invoke(0, 0, write("x", 7)),
            fail(0, 1, write("x", 7)),
            invoke(1, 2, read("x", None)),
            info(1, 3, read("x", Some(99))),
            invoke(2, 4, read("x", None)),
            ok(2, 5, read("x", None)),
        ]);
        assert_eq!(verdict(&h).verdict, Verdict::Valid);
    }

    #[test]
    fn info_write_that_took_effect_later_passes() {
        // The write timed out at t=10, yet a read long after sees its value.
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            info(0, 10, write("x", 1)),
            invoke(1, 20, read("x", None)),
            ok(1, 30, read("x", None)),
            invoke(1, 40, read("x", None)),
            ok(1, 50, read("x", Some(1))),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }

    #[test]
    fn info_write_that_never_took_effect_passes() {
        // Value 2 is observed (written by process 2 later), so the search itself has to
        // leave process 0's indeterminate write 2 out: it must not be placed before the
        // reads of 1, and placing it anywhere after them is unnecessary.
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            ok(0, 5, write("x", 1)),
            invoke(1, 10, write("x", 2)),
            info(1, 15, write("x", 2)),
            invoke(2, 20, read("x", None)),
            ok(2, 25, read("x", Some(1))),
            invoke(2, 30, cas("x", 1, 3)),
            ok(2, 35, cas("x", 1, 3)),
            invoke(2, 40, read("x", None)),
            ok(2, 45, read("x", Some(3))),
            invoke(3, 50, write("x", 2)),
            ok(3, 55, write("x", 2)),
            invoke(3, 60, read("x", None)),
            ok(3, 65, read("x", Some(2))),
        ]);
        let r = verdict(&h);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }

    #[test]
    fn info_cas_is_taken_only_if_its_compare_could_match() {
        // cas 5→6 timed out; 6 is read later, but 5 was never there: invalid.
        let h = history(vec![
            invoke(0, 0, write("x", 1)),
            ok(0, 5, write("x", 1)),
            invoke(1, 10, cas("x", 5, 6)),
            info(1, 15, cas("x", 5, 6)),
            invoke(2, 20, read("x", None)),
            ok(2, 25, read("x", Some(6))),
        ]);
        assert_eq!(verdict(&h).verdict, Verdict::Invalid);
        // With 5 written first, the indeterminate CAS explains the read.
        let h = history(vec![
            invoke(0, 0, write("x", 5)),
            ok(0, 5, write("x", 5)),
            invoke(1, 10, cas("x", 5, 6)),
            info(1, 15, cas("x", 5, 6)),
            invoke(2, 20, read("x", None)),
            ok(2, 25, read("x", Some(6))),
        ]);
        assert_eq!(verdict(&h).verdict, Verdict::Valid);
    }

    #[test]
    fn never_completed_ops_count_as_indeterminate() {
        let h =
            history(vec![invoke(0, 0, write("x", 4)), invoke(1, 10, read("x", None)), ok(1, 20, read("x", Some(4)))]);
        assert_eq!(verdict(&h).verdict, Verdict::Valid);
    }

    /// Simulates a real register: every operation takes effect at an instant inside its
    /// interval; results follow from the order of those instants. Some operations are
    /// recorded as indeterminate (whether or not they took effect) and their process retires.
    fn simulated_history(seed: u64, ops_wanted: usize, processes: usize, keys: usize) -> History {
        struct Planned {
            process: i64,
            call: u64,
            effect: u64,
            ret: u64,
            key: String,
            kind: u8,
            arg: i64,
            to: i64,
            outcome: OpType,
            applies: bool,
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut planned = Vec::new();
        let mut clock = vec![0u64; processes];
        let mut ids: Vec<i64> = (0..processes as i64).collect();
        let mut next_id = processes as i64;
        for n in 0..ops_wanted {
            let slot = n % processes;
            let call = clock[slot] + rng.random_range(0..50);
            let effect = call + rng.random_range(1..100);
            let ret = effect + rng.random_range(1..100);
            clock[slot] = ret + 1;
            let indeterminate = rng.random_bool(0.02);
            planned.push(Planned {
                process: ids[slot],
                call,
                effect,
                ret,
                key: format!("k{}", rng.random_range(0..keys)),
                kind: rng.random_range(0..3),
                arg: rng.random_range(0..5),
                to: rng.random_range(0..5),
                outcome: if indeterminate { OpType::Info } else { OpType::Ok },
                applies: !indeterminate || rng.random_bool(0.5),
            });
            if indeterminate {
                ids[slot] = next_id;
                next_id += 1;
            }
        }
        // Apply in effect order to find results.
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| planned[i].effect);
        let mut state: HashMap<String, i64> = HashMap::new();
        let mut records: Vec<(u64, Op)> = Vec::new();
        for i in order {
            let p = &mut planned[i];
            let current = state.get(&p.key).copied();
            let (invoked, completed) = match p.kind {
                0 => (read(&p.key, None), read(&p.key, current)),
                1 => {
                    if p.applies {
                        state.insert(p.key.clone(), p.arg);
                    }
                    (write(&p.key, p.arg), write(&p.key, p.arg))
                }
                _ => {
                    let matches = current == Some(p.arg);
                    if matches && p.applies {
                        state.insert(p.key.clone(), p.to);
                    }
                    if !matches && p.outcome == OpType::Ok {
                        p.outcome = OpType::Fail;
                    }
                    (cas(&p.key, p.arg, p.to), cas(&p.key, p.arg, p.to))
                }
            };
            records.push((p.call, invoke(p.process, p.call, invoked)));
            let done = match p.outcome {
                OpType::Ok => ok(p.process, p.ret, completed),
                OpType::Fail => fail(p.process, p.ret, completed),
                _ => info(p.process, p.ret, completed),
            };
            records.push((p.ret, done));
        }
        records.sort_by_key(|(t, op)| (*t, op.kind != OpType::Invoke));
        history(records.into_iter().map(|(_, op)| op).collect())
    }

    #[test]
    fn generated_valid_history_of_5000_ops_is_linearizable() {
        let h = simulated_history(7, 5000, 10, 5);
        let started = Instant::now();
        let r = check(&h, Duration::from_secs(60));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["ops"], 5000);
        assert_eq!(r.stats["linearizable_keys"], 5);
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    }

    #[test]
    fn corrupting_one_read_of_a_generated_history_is_caught() {
        let mut h = simulated_history(11, 2000, 10, 3);
        // Make the last ok read return a value no one ever wrote.
        let victim =
            h.ops.iter().rposition(|op| op.kind == OpType::Ok && matches!(op.call, Call::Read { .. })).expect("a read");
        if let Call::Read { value, .. } = &mut h.ops[victim].call {
            *value = Some(1_000);
        }
        let r = check(&h, Duration::from_secs(60));
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        assert_eq!(r.anomalies.len(), 1);
        assert!(r.anomalies[0].ops.contains(&(victim as u64)), "{:?}", r.anomalies[0]);
    }

    #[test]
    fn hard_history_with_tiny_budget_is_unknown() {
        // 40 overlapping writes of distinct values and a read of a value nobody wrote: the
        // search has to rule out every order of every subset of the writes.
        let mut ops = Vec::new();
        for p in 0..40 {
            ops.push(invoke(p, p as u64, write("x", p)));
        }
        ops.push(invoke(99, 50, read("x", None)));
        ops.push(ok(99, 60, read("x", Some(1_000))));
        for p in 0..40 {
            ops.push(ok(p, 100 + p as u64, write("x", p)));
        }
        ops.push(invoke(98, 200, read("y", None)));
        ops.push(ok(98, 210, read("y", None)));
        let h = history(ops);
        let started = Instant::now();
        let r = check(&h, Duration::from_millis(20));
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert_eq!(r.anomalies.len(), 1);
        assert_eq!(r.anomalies[0].kind, "timeout");
        assert!(r.anomalies[0].message.contains(": x"), "{}", r.anomalies[0].message);
        // Key y is easy, but may not have been reached before the deadline on one core.
        assert!(r.stats["linearizable_keys"] <= 1, "{r:?}");
    }

    /// A deliberately naive decision: try every order of the operations (each indeterminate
    /// one optionally) that respects real time.
    fn brute_force(ops: &[(Action, u64, Option<u64>)]) -> bool {
        fn go(ops: &[(Action, u64, Option<u64>)], used: &mut Vec<bool>, state: Value) -> bool {
            let remaining_determinate = (0..ops.len()).filter(|&i| !used[i] && ops[i].2.is_some());
            if remaining_determinate.count() == 0 {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                let blocked = (0..ops.len()).any(|j| j != i && !used[j] && ops[j].2.is_some_and(|ret| ret < ops[i].1));
                let Some(next) = ops[i].0.step(state).filter(|_| !blocked) else { continue };
                used[i] = true;
                let found = go(ops, used, next);
                used[i] = false;
                if found {
                    return true;
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], None)
    }

    /// Random small histories, mostly nonsense results: the search (with all its pruning)
    /// must decide exactly as the brute force does.
    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = StdRng::seed_from_u64(3);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..3000 {
            let mut records: Vec<(u64, Op)> = Vec::new();
            let mut reference = Vec::new();
            let mut next_process = 0;
            for _ in 0..3 {
                let (mut process, mut clock) = (next_process, rng.random_range(0..5u64));
                next_process += 1;
                for _ in 0..rng.random_range(1..4) {
                    let value = |rng: &mut StdRng| rng.random_range(0..3i64);
                    let (call, action) = match rng.random_range(0..3) {
                        0 => {
                            let seen = Some(value(&mut rng)).filter(|_| rng.random_bool(0.8));
                            (read("x", seen), Action::Read(seen))
                        }
                        1 => {
                            let v = value(&mut rng);
                            (write("x", v), Action::Write(v))
                        }
                        _ => {
                            let (from, to) = (value(&mut rng), value(&mut rng));
                            (cas("x", from, to), Action::Cas { from, to })
                        }
                    };
                    let (start, end) = (clock, clock + rng.random_range(0..8));
                    clock = end + rng.random_range(1..3);
                    records.push((start, invoke(process, start, call.clone())));
                    match rng.random_range(0..10) {
                        0 => records.push((end, fail(process, end, call))),
                        1 | 2 => {
                            records.push((end, info(process, end, call)));
                            if !matches!(action, Action::Read(_)) {
                                reference.push((action, start, None));
                            }
                            process = next_process;
                            next_process += 1;
                        }
                        _ => {
                            records.push((end, ok(process, end, call)));
                            reference.push((action, start, Some(end)));
                        }
                    }
                }
            }
            records.sort_by_key(|(t, op)| (*t, op.kind != OpType::Invoke));
            let h = history(records.into_iter().map(|(_, op)| op).collect());
            let expected = brute_force(&reference);
            let r = check(&h, BUDGET);
            let got = r.verdict == Verdict::Valid;
            assert_eq!(got, expected, "{r:?}\n{h:#?}");
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(valid > 300 && invalid > 300, "{valid} valid, {invalid} invalid");
    }

    #[test]
    fn empty_history_is_valid() {
        let r = check(&History::default(), BUDGET);
        assert_eq!(r.verdict, Verdict::Valid);
        assert_eq!(r.stats["keys"], 0);
    }
}
