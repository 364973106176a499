//! The scheduler's bookkeeping, without I/O: which pods wait (active queue, back-off),
//! which are being bound (assumed), and the snapshot they are decided against. The task
//! in [`super`] feeds it watch events and bind outcomes and executes its decisions.
//!
//! A pending pod is in exactly one place at a time:
//! ```text
//!   watch: new ─▶ active ─▶ schedule ─┬─ fits ──▶ assumed (bind in flight / awaiting watch) ─▶ watch shows it bound: done
//!                   ▲                 └─ none ─▶ preempt? ─▶ backoff ─(timer or cluster change)─┐
//!                   └───────────────────────────────────────────────────────────────────────────┘
//!                   ▲ bind 409 (re-examined from the cache) / assumption expired
//! ```
//!
//! The active queue pops the highest `spec.priority` first, then the pod queued earliest
//! (kube-scheduler's PrioritySort). A pod that preempted is nominated to its node in the
//! snapshot — that room is held against pods of lower priority — and waits in back-off;
//! its victims' deletion is a cluster change that brings it back.
//!
//! A bind that fails *without* an answer (timeout, no leader, connection lost) may still
//! have been committed, so its assumption is kept — the node's capacity stays reserved —
//! and the same bind is sent again after a back-off step: the retry either binds the pod
//! or is refused (most likely: it was bound after all), in which case the pod stays
//! counted until the watch shows where it is. Forgetting the assumption instead (as after
//! the refusal of a first bind) could hand the same capacity to another pod.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::algorithm;
use super::facts::{is_pending_for, is_terminal, pod_key, PodFacts};
use super::preemption::{self, Budgets, PostFilter, Preemption};
use super::snapshot::NodesSnapshot;

/// Timings of the queue.
#[derive(Debug, Clone)]
pub struct QueueTimings {
    /// First retry delay of an unschedulable pod; doubles per attempt up to `max_backoff`
    /// (kube-scheduler's podInitialBackoffSeconds / podMaxBackoffSeconds).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a successfully bound pod stays assumed while the watch has not shown it
    /// bound (kube-scheduler's assumed pod expiry), and how long a bind may stay in
    /// flight before it counts as unanswered. Bounds the damage of a lost event.
    pub assume_ttl: Duration,
}

impl Default for QueueTimings {
    fn default() -> Self {
        QueueTimings {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            assume_ttl: Duration::from_secs(30),
        }
    }
}

/// What the task should do.
#[derive(Debug, Clone)]
pub enum Decision {
    Bind {
        pod: Arc<Pod>,
        node: String,
    },
    /// Record the failure: an Event always, the PodScheduled condition when `update_status`
    /// (and then `status.nominatedNodeName` removed when `clear_nomination`).
    Unschedulable {
        pod: Arc<Pod>,
        message: String,
        update_status: bool,
        clear_nomination: bool,
    },
    /// Make room for `pod`: delete the victims, clear the demoted nominations, then record
    /// the failure with `status.nominatedNodeName` set to the preemption's node.
    Preempt {
        pod: Arc<Pod>,
        preemption: Preemption,
    },
}

struct Pending {
    pod: Arc<Pod>,
    facts: PodFacts,
    /// The sequence number of its live entry in `active` (the heap may hold stale ones).
    queued: Option<u64>,
    /// Unschedulable attempts in a row (the back-off exponent).
    attempts: u32,
    /// Refused binds in a row: the first is retried at once, later ones back off, so a
    /// watch that lags behind the API cannot make us re-bind the same pod in a tight loop.
    conflicts: u32,
}

struct Backoff {
    retry_at: Instant,
    attempted_at: Instant,
}

struct Assumed {
    uid: Option<String>,
    node: String,
    /// Set when the bind succeeded; until then the bind is in flight and never expires.
    expires: Option<Instant>,
    /// Set when the bind's outcome is unknown: when to send it again.
    resend_at: Option<Instant>,
    /// When the (last) bind was sent.
    sent_at: Instant,
    /// An earlier bind of this decision went unanswered, so it may have landed.
    uncertain: bool,
}

/// An entry of the active queue: the max-heap pops the highest priority, then the lowest
/// sequence number (queued earliest).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    priority: i32,
    seq: Reverse<u64>,
    key: String,
}

pub struct SchedulingQueue {
    scheduler: String,
    timings: QueueTimings,
    pub snapshot: NodesSnapshot,
    /// The PodDisruptionBudgets preemption weighs.
    pub budgets: Budgets,
    pending: HashMap<String, Pending>,
    active: BinaryHeap<Queued>,
    /// The next entry's sequence number.
    next_seq: u64,
    backoff: HashMap<String, Backoff>,
    assumed: HashMap<String, Assumed>,
    /// Assumed pods whose bind is due to be sent again.
    resend: VecDeque<String>,
    nodes_synced: bool,
    pods_synced: bool,
    /// Keys seen during a re-list (watch restarted): what is not seen again is gone.
    relisting_nodes: Option<HashSet<String>>,
    relisting_pods: Option<HashSet<String>>,
}

fn has_condition(pod: &Pod, message: &str) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
        cs.iter().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        })
    })
}

impl SchedulingQueue {
    pub fn new(scheduler: &str, timings: QueueTimings) -> SchedulingQueue {
        SchedulingQueue {
            scheduler: scheduler.into(),
            timings,
            snapshot: NodesSnapshot::new(),
            budgets: Budgets::default(),
            pending: HashMap::new(),
            active: BinaryHeap::new(),
            next_seq: 0,
            backoff: HashMap::new(),
            assumed: HashMap::new(),
            resend: VecDeque::new(),
            nodes_synced: false,
            pods_synced: false,
            relisting_nodes: None,
            relisting_pods: None,
        }
    }

    /// Decisions need both initial lists: before that a node's pods may be unknown and
    /// the node would look emptier than it is.
    pub fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }

    /// Whether [`next_batch`](Self::next_batch) may have something to do.
    pub fn has_work(&self) -> bool {
        self.synced() && !(self.active.is_empty() && self.resend.is_empty())
    }

    pub fn num_pending(&self) -> usize {
        self.pending.len()
    }

    pub fn num_assumed(&self) -> usize {
        self.assumed.len()
    }

    fn enqueue(&mut self, key: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            if p.queued.is_none() {
                self.next_seq += 1;
                p.queued = Some(self.next_seq);
                self.active.push(Queued {
                    priority: p.facts.priority,
                    seq: Reverse(self.next_seq),
                    key: key.to_string(),
                });
            }
        }
        self.backoff.remove(key);
    }

    /// Something changed that may make unschedulable pods fit (a node appeared or changed,
    /// a pod went away): retry them once their first back-off step has passed.
    fn cluster_changed(&mut self) {
        let step = self.timings.initial_backoff;
        for b in self.backoff.values_mut() {
            b.retry_at = b.retry_at.min(b.attempted_at + step);
        }
    }

    fn drop_pending(&mut self, key: &str) {
        self.pending.remove(key);
        self.backoff.remove(key);
        // Bound, gone or no longer ours: the room held for it is free.
        if self.snapshot.unnominate(key).is_some() {
            self.cluster_changed();
        }
    }

    /// Keeps the snapshot's nomination of a pending pod in step with its facts. With
    /// `adopt`, a nomination in its status (written before this scheduler started: by the
    /// previous leader's) is taken over when the snapshot has none. Only then: later
    /// versions of the pod may carry a nomination this scheduler has since cleared, and
    /// the snapshot's is the newer.
    fn sync_nomination(&mut self, key: &str, adopt: bool) {
        let Some(p) = self.pending.get(key) else { return };
        let from_status = || {
            let status = p.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
            status.filter(|n| adopt && !n.is_empty())
        };
        if let Some(node) = self.snapshot.nomination(key).or_else(from_status).map(str::to_string) {
            self.snapshot.nominate(&p.facts, &node);
        }
    }

    /// Stops counting `key` if it is counted with `uid` (a newer pod of the same name may
    /// be counted already).
    fn forget_if(&mut self, key: &str, uid: Option<&str>) -> bool {
        match self.snapshot.placement(key) {
            Some((_, counted)) if uid.is_none() || counted == uid => self.snapshot.forget(key).is_some(),
            _ => false,
        }
    }

    // ---- watch events ------------------------------------------------------------

    pub fn node_applied(&mut self, node: &Node) {
        if let Some(seen) = self.relisting_nodes.as_mut() {
            seen.insert(node.metadata.name.clone().unwrap_or_default());
        }
        if self.snapshot.upsert_node(node) {
            self.cluster_changed();
        }
    }

    pub fn node_deleted(&mut self, node: &Node) {
        self.snapshot.remove_node(node.metadata.name.as_deref().unwrap_or(""));
    }

    pub fn nodes_relist_started(&mut self) {
        self.relisting_nodes = Some(HashSet::new());
    }

    pub fn nodes_relist_done(&mut self) {
        if let Some(seen) = self.relisting_nodes.take() {
            let gone: Vec<String> = self
                .snapshot
                .slots()
                .iter()
                .filter(|n| n.facts.is_some() && !seen.contains(&n.name))
                .map(|n| n.name.clone())
                .collect();
            for name in gone {
                self.snapshot.remove_node(&name);
            }
        }
        self.nodes_synced = true;
    }

    pub fn pod_applied(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        if let Some(seen) = self.relisting_pods.as_mut() {
            seen.insert(key.clone());
        }
        let uid = pod.metadata.uid.clone();
        if is_terminal(&pod) {
            self.drop_pending(&key);
            self.assumed.remove(&key);
            if self.forget_if(&key, uid.as_deref()) {
                self.cluster_changed();
            }
            return;
        }
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            // Bound (by us or anyone): counted where the API says, no longer assumed.
            self.drop_pending(&key);
            self.assumed.remove(&key);
            self.snapshot.place(&PodFacts::of(&pod), node);
            return;
        }
        match self.assumed.get(&key) {
            // Our bind is in flight or not yet visible: this is an older view of the pod.
            Some(a) if a.uid == uid => {
                if !is_pending_for(&pod, &self.scheduler) {
                    // Being deleted meanwhile: never bind it again (the assumption is
                    // settled by the bind's outcome or the pod's deletion).
                    self.drop_pending(&key);
                } else if let Some(p) = self.pending.get_mut(&key) {
                    p.pod = Arc::new(pod);
                }
                return;
            }
            // Same name, different pod: the assumed one is gone.
            Some(_) => {
                self.assumed.remove(&key);
                self.snapshot.forget(&key);
            }
            None => {
                if self.snapshot.placement(&key).is_some_and(|(_, counted)| counted != uid.as_deref()) {
                    self.snapshot.forget(&key);
                    self.cluster_changed();
                }
            }
        }
        if !is_pending_for(&pod, &self.scheduler) {
            self.drop_pending(&key);
            return;
        }
        match self.pending.get_mut(&key) {
            Some(p) => {
                let changed = p.pod.metadata.uid != pod.metadata.uid
                    || p.pod.spec != pod.spec
                    || p.pod.metadata.labels != pod.metadata.labels;
                p.pod = Arc::new(pod);
                if changed {
                    // A changed pod may fit now (kube requeues on pod updates too);
                    // status-only updates (our own condition) must not cause a retry loop.
                    p.facts = PodFacts::of(&p.pod);
                    p.attempts = 0;
                    p.conflicts = 0;
                    // Queued again at its (possibly new) priority; an older entry is stale.
                    p.queued = None;
                    self.enqueue(&key);
                    self.sync_nomination(&key, false);
                }
            }
            None => {
                let facts = PodFacts::of(&pod);
                self.pending.insert(
                    key.clone(),
                    Pending { pod: Arc::new(pod), facts, queued: None, attempts: 0, conflicts: 0 },
                );
                self.enqueue(&key);
                self.sync_nomination(&key, true);
            }
        }
    }

    pub fn pod_deleted(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        let uid = pod.metadata.uid.as_deref();
        if self.pending.get(&key).is_some_and(|p| p.pod.metadata.uid.as_deref() == uid) {
            self.drop_pending(&key);
        }
        if self.assumed.get(&key).is_some_and(|a| a.uid.as_deref() == uid) {
            self.assumed.remove(&key);
        }
        if self.forget_if(&key, uid) {
            self.cluster_changed();
        }
    }

    pub fn pods_relist_started(&mut self) {
        self.relisting_pods = Some(HashSet::new());
    }

    pub fn pods_relist_done(&mut self) {
        if let Some(seen) = self.relisting_pods.take() {
            let gone: Vec<String> = self
                .snapshot
                .placed_keys()
                .chain(self.pending.keys())
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                self.drop_pending(&key);
                self.assumed.remove(&key);
                self.snapshot.forget(&key);
            }
            self.cluster_changed();
        }
        self.pods_synced = true;
    }

    // ---- PodDisruptionBudgets (preemption's preferences; decisions never wait for them) --

    pub fn budget_applied(&mut self, pdb: &PodDisruptionBudget) {
        self.budgets.applied(pdb);
    }

    pub fn budget_deleted(&mut self, pdb: &PodDisruptionBudget) {
        self.budgets.deleted(pdb);
    }

    pub fn budgets_relist_started(&mut self) {
        self.budgets.relist_started();
    }

    pub fn budgets_relist_done(&mut self) {
        self.budgets.relist_done();
    }

    // ---- decisions and their outcomes ------------------------------------------------

    /// Decides up to `max_binds` pods from the active queue (and at most twice as many
    /// attempts, so one batch of unschedulable pods cannot stall the loop). Every bind
    /// decision is assumed at once: later decisions in the batch see its resources taken.
    pub fn next_batch(&mut self, max_binds: usize, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        if !self.synced() {
            return out;
        }
        let mut binds = 0;
        let mut attempts = 0;
        while binds < max_binds {
            let Some(key) = self.resend.pop_front() else { break };
            let Some(a) = self.assumed.get_mut(&key) else { continue };
            let Some(p) = self.pending.get(&key).filter(|p| p.pod.metadata.uid == a.uid) else { continue };
            if a.resend_at.take().is_none() {
                continue;
            }
            a.sent_at = now;
            binds += 1;
            out.push(Decision::Bind { pod: p.pod.clone(), node: a.node.clone() });
        }
        while binds < max_binds && attempts < max_binds.max(1) * 2 {
            let Some(Queued { seq: Reverse(seq), key, .. }) = self.active.pop() else { break };
            let Some(p) = self.pending.get_mut(&key) else { continue };
            if p.queued != Some(seq) {
                continue;
            }
            p.queued = None;
            if self.assumed.contains_key(&key) {
                continue;
            }
            attempts += 1;
            let fit = algorithm::find_fit(&p.pod, &p.facts, &self.snapshot);
            let fit = match fit {
                Ok(node) => {
                    binds += 1;
                    p.attempts = 0;
                    let pod = p.pod.clone();
                    // Placed for real now: no longer held as a nomination as well.
                    self.snapshot.unnominate(&key);
                    self.snapshot.place(&p.facts, &node);
                    let assumed = Assumed {
                        uid: pod.metadata.uid.clone(),
                        node: node.clone(),
                        expires: None,
                        resend_at: None,
                        sent_at: now,
                        uncertain: false,
                    };
                    self.assumed.insert(key, assumed);
                    out.push(Decision::Bind { pod, node });
                    continue;
                }
                Err(fit) => fit,
            };
            p.attempts += 1;
            let exp = p.attempts.saturating_sub(1).min(16);
            let delay = (self.timings.initial_backoff * 2u32.pow(exp)).min(self.timings.max_backoff);
            self.backoff.insert(key.clone(), Backoff { retry_at: now + delay, attempted_at: now });
            let pod = p.pod.clone();
            match preemption::post_filter(&pod, &p.facts, &self.snapshot, &self.budgets, &fit) {
                PostFilter::Nominate(preemption) => {
                    tracing::info!(
                        pod = %key, node = %preemption.node, victims = preemption.victims.len(),
                        pdb_violations = preemption.pdb_violations, "preempting",
                    );
                    // Held from now on: lower-priority pods decided next must not take it.
                    self.snapshot.nominate(&p.facts, &preemption.node);
                    for demoted in &preemption.demoted {
                        let demoted = demoted.key();
                        self.snapshot.unnominate(&demoted);
                        self.enqueue(&demoted);
                    }
                    out.push(Decision::Preempt { pod, preemption });
                }
                PostFilter::Unschedulable { message, clear_nomination } => {
                    let mut held = false;
                    if clear_nomination && self.snapshot.unnominate(&key).is_some() {
                        // The room it held is free for the pods waiting behind it.
                        self.cluster_changed();
                        held = true;
                    }
                    let in_status = pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
                    let clear_nomination = clear_nomination && (held || in_status.is_some_and(|n| !n.is_empty()));
                    let update_status = clear_nomination || !has_condition(&pod, &message);
                    out.push(Decision::Unschedulable { pod, message, update_status, clear_nomination });
                }
            }
        }
        out
    }

    /// The bind of `pod` was committed: keep it assumed until the watch shows it, bounded.
    pub fn bind_succeeded(&mut self, pod: &Pod, now: Instant) {
        let key = pod_key(pod);
        if let Some(a) = self.assumed.get_mut(&key) {
            if a.uid == pod.metadata.uid {
                a.expires = Some(now + self.timings.assume_ttl);
            }
        }
    }

    /// The API refused the bind (4xx: the pod changed, is bound, is being deleted, is
    /// gone): un-count the assumption and look at the pod again — at once the first time
    /// (the cache will have, or soon have, the new version), after a back-off step when it
    /// happens again, so a watch lagging behind the API cannot cause a tight loop.
    pub fn bind_refused(&mut self, pod: &Pod, now: Instant) {
        let key = pod_key(pod);
        let uid = pod.metadata.uid.clone();
        match self.assumed.get_mut(&key) {
            // Refusing a bind sent again most likely means the first one landed ("already
            // assigned"): keep counting it, as after a success, until the watch tells.
            Some(a) if a.uid == uid && a.uncertain => {
                a.expires = Some(now + self.timings.assume_ttl);
                return;
            }
            Some(a) if a.uid == uid => {
                self.assumed.remove(&key);
                self.forget_if(&key, uid.as_deref());
            }
            _ => {}
        }
        let Some(p) = self.pending.get_mut(&key) else { return };
        p.conflicts += 1;
        if p.conflicts == 1 {
            self.enqueue(&key);
        } else {
            let retry_at = now + self.timings.initial_backoff;
            self.backoff.insert(key, Backoff { retry_at, attempted_at: now });
        }
    }

    /// The bind got no answer (see the module docs): keep the assumption, send it again
    /// after a back-off step.
    pub fn bind_unanswered(&mut self, pod: &Pod, now: Instant) {
        let key = pod_key(pod);
        if let Some(a) = self.assumed.get_mut(&key).filter(|a| a.uid == pod.metadata.uid) {
            a.resend_at = Some(now + self.timings.initial_backoff);
            a.uncertain = true;
        }
    }

    /// Timer work: expire stale assumptions, retry pods whose back-off has passed.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<String> =
            self.assumed.iter().filter(|(_, a)| a.expires.is_some_and(|e| e <= now)).map(|(k, _)| k.clone()).collect();
        for key in expired {
            if let Some(a) = self.assumed.remove(&key) {
                tracing::warn!(pod = %key, "bound pod not seen bound in time; re-examining it");
                self.forget_if(&key, a.uid.as_deref());
                self.enqueue(&key);
            }
        }
        for a in self.assumed.values_mut() {
            // A bind in flight for this long lost its outcome (its task died): treat it as
            // unanswered rather than keep the pod assumed forever.
            if a.expires.is_none() && a.resend_at.is_none() && a.sent_at + self.timings.assume_ttl <= now {
                a.resend_at = Some(now);
                a.uncertain = true;
            }
        }
        for (key, a) in &self.assumed {
            // Queued once: resend_at is cleared when the bind is sent again.
            if a.resend_at.is_some_and(|at| at <= now) && !self.resend.contains(key) {
                self.resend.push_back(key.clone());
            }
        }
        let due: Vec<String> = self.backoff.iter().filter(|(_, b)| b.retry_at <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            self.enqueue(&key);
        }
    }
}
