//! The scheduler: places pending pods on nodes through `pods/binding`, highest priority
//! first, and preempts lower-priority pods when a pod fits nowhere.
//!
//! ```text
//!  watch nodes ─┐                    ┌─▶ bind (≤ max_binds_in_flight concurrent POSTs)
//!  watch pods ──┼─▶ SchedulingQueue ─┤       └─ outcome ─▶ queue (assume confirmed / undone)
//!  watch PDBs ──┘   (snapshot +      └─▶ side effects (bounded, best effort):
//!                    queue, no I/O)        PodScheduled=False status, Events,
//!                                          preemption: delete victims, nominatedNodeName
//! ```
//!
//! * [`facts`]: numbers out of API objects (quantities through `berth_proto::Quantity`); [`snapshot`]: nodes with what
//!   is placed on them and nominated to them; [`algorithm`]: the pure `schedule(pod, snapshot)`;
//!   [`preemption`]: the pure choice of a node and victims when nothing fits ([`budgets`]:
//!   the PodDisruptionBudgets it weighs); [`queue`]: the bookkeeping (priority-ordered active
//!   queue / back-off / assumed) without I/O; this module: the I/O loop.
//!
//! Throughput comes from never re-reading the cluster (the watches feed an incremental
//! snapshot), deciding a batch at a time against it (each decision assumed at once, so
//! the batch cannot over-commit), and keeping many binds in flight so the store commits
//! them in few Raft entries. Binds carry the pod's uid, and the API refuses to bind a pod
//! that is bound or being deleted, so a late bind from a deposed leader cannot move a pod.

pub mod algorithm;
pub mod budgets;
pub mod facts;
pub mod preemption;
pub mod queue;
pub mod snapshot;

#[cfg(test)]
mod preemption_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use algorithm::{schedule, Unschedulable};
pub use preemption::{PodRef, Preemption};
pub use queue::{Decision, QueueTimings, SchedulingQueue};
pub use snapshot::NodesSnapshot;

use crate::tasks::context::{SupervisorStatus, TaskContext};
use crate::tasks::events::{reference, EventType, Recorder};

/// The scheduler pods get when `spec.schedulerName` is empty.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// How often back-offs and assumptions are checked.
const TICK: Duration = Duration::from_millis(200);
/// Status updates and Events waiting to be written; beyond this they are dropped (they
/// are informational, and a dropped failure is reported again on the next attempt; a
/// dropped preemption leaves no pod terminating on the nomination, so the next attempt
/// preempts again).
const SIDE_EFFECT_BACKLOG: usize = 8192;
/// Victims of one preemption deleted at once.
const VICTIM_CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `schedulerName` served (and the Events' reporting component).
    pub name: String,
    /// Bind requests in flight at once: enough for the store to batch many binds into
    /// one Raft entry, few enough not to swamp the API. Measured with
    /// `berth-bench-control scheduling --bare-pods --create-concurrency 1024` (3 servers,
    /// 1,000 hollow nodes, 2 cores): 128 in flight bound 1,516–1,652 pods/s, 512 bound
    /// 1,829–2,253 pods/s.
    pub max_binds_in_flight: usize,
    /// Concurrent status/Event writes.
    pub side_effect_concurrency: usize,
    /// Whether a `Scheduled` Event is written per bound pod (kube-scheduler does; it
    /// doubles the writes, so throughput benchmarks may turn it off).
    pub scheduled_events: bool,
    pub timings: QueueTimings,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            name: DEFAULT_SCHEDULER.into(),
            max_binds_in_flight: 512,
            side_effect_concurrency: 16,
            scheduled_events: true,
            timings: QueueTimings::default(),
        }
    }
}

/// Counters (tests, benchmarks, metrics).
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub bound: AtomicU64,
    /// Binds the API refused (4xx: conflict, gone, invalid).
    pub bind_conflicts: AtomicU64,
    /// Binds without a definite answer (timeouts, 5xx, transport), sent again.
    pub bind_errors: AtomicU64,
    pub unschedulable_attempts: AtomicU64,
    /// Preemptions decided, and the victims they chose.
    pub preemptions: AtomicU64,
    pub preemption_victims: AtomicU64,
    /// Sum of bind request latencies: with `bound`, the mean latency; over wall time, how
    /// many binds were in flight on average (is the API or the decision loop the limit?).
    pub bind_micros: AtomicU64,
}

/// The leader task.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let stats = Arc::new(SchedulerStats::default());
    run_with(ctx.client, SchedulerConfig::default(), stats, Some(ctx.status), cancel).await
}

enum SideEffect {
    Scheduled { pod: ObjectReference, node: String },
    Unschedulable { pod: Arc<Pod>, message: String, update_status: bool, clear_nomination: bool },
    Preempt { pod: Arc<Pod>, preemption: Preemption },
}

struct BindOutcome {
    pod: Arc<Pod>,
    node: String,
    result: Result<(), kube::Error>,
    took: Duration,
}

/// Runs a scheduler named `config.name` over `client` until `cancel`.
pub async fn run_with(
    client: kube::Client,
    config: SchedulerConfig,
    stats: Arc<SchedulerStats>,
    writes: Option<Arc<SupervisorStatus>>,
    cancel: CancellationToken,
) {
    // Consistent (quorum) lists, not the watch cache's: a stale initial list could miss a
    // pod the previous leader bound a moment ago, and its node would look emptier than it is.
    let lists = watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
    let mut nodes = watcher(Api::<Node>::all(client.clone()), lists.clone()).default_backoff().boxed();
    let mut pods = watcher(Api::<Pod>::all(client.clone()), lists).default_backoff().boxed();
    // Budgets only weigh victims, so the watch cache's view is good enough.
    let mut budgets =
        watcher(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let (side_tx, side_rx) = mpsc::channel(SIDE_EFFECT_BACKLOG);
    let side = tokio::spawn(side_effects(client.clone(), config.clone(), side_rx, writes.clone(), cancel.clone()));
    let mut queue = SchedulingQueue::new(&config.name, config.timings.clone());
    // Dropping the set (on cancel) aborts binds not yet sent; sent ones complete or not,
    // and either way the API keeps the pod consistent.
    let mut binds: JoinSet<BindOutcome> = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(scheduler = %config.name, "scheduler started");
    loop {
        let room = config.max_binds_in_flight.saturating_sub(binds.len());
        let can_decide = room > 0 && queue.has_work();
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(event) = nodes.next() => on_node_event(&mut queue, event),
            Some(event) = pods.next() => on_pod_event(&mut queue, event),
            Some(event) = budgets.next() => on_budget_event(&mut queue, event),
            Some(done) = binds.join_next(), if !binds.is_empty() => {
                // A bind task that panicked leaves its pod assumed and in flight; the
                // queue's in-flight limit (assume_ttl) sends it again.
                let Ok(done) = done else { continue };
                on_bind_outcome(&mut queue, &config, &stats, writes.as_deref(), &side_tx, done);
            }
            _ = tick.tick() => queue.tick(Instant::now()),
            _ = std::future::ready(()), if can_decide => {
                let batch = queue.next_batch(room, Instant::now());
                tracing::trace!(decisions = batch.len(), in_flight = binds.len(), pending = queue.num_pending(), "batch");
                dispatch(batch, &client, &mut binds, &stats, &side_tx);
            }
        }
    }
    binds.abort_all();
    drop(side_tx);
    let _ = side.await;
    tracing::info!(scheduler = %config.name, "scheduler stopped");
}

/// Starts the binds of a batch and hands failures to the side-effect writer.
fn dispatch(
    batch: Vec<Decision>,
    client: &kube::Client,
    binds: &mut JoinSet<BindOutcome>,
    stats: &SchedulerStats,
    side_tx: &mpsc::Sender<SideEffect>,
) {
    for decision in batch {
        match decision {
            Decision::Bind { pod, node } => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
                binds.spawn(async move {
                    let started = Instant::now();
                    let result = bind(&api, &pod, &node).await;
                    BindOutcome { pod, node, result, took: started.elapsed() }
                });
            }
            Decision::Unschedulable { pod, message, update_status, clear_nomination } => {
                stats.unschedulable_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pod = %facts::pod_key(&pod), %message, "unschedulable");
                let _ = side_tx.try_send(SideEffect::Unschedulable { pod, message, update_status, clear_nomination });
            }
            Decision::Preempt { pod, preemption } => {
                stats.unschedulable_attempts.fetch_add(1, Ordering::Relaxed);
                stats.preemptions.fetch_add(1, Ordering::Relaxed);
                stats.preemption_victims.fetch_add(preemption.victims.len() as u64, Ordering::Relaxed);
                if side_tx.try_send(SideEffect::Preempt { pod, preemption }).is_err() {
                    tracing::warn!("side-effect backlog full: preemption dropped (the pod will preempt again)");
                }
            }
        }
    }
}

fn on_node_event(queue: &mut SchedulingQueue, event: Result<watcher::Event<Node>, watcher::Error>) {
    match event {
        Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => queue.node_applied(&n),
        Ok(watcher::Event::Delete(n)) => queue.node_deleted(&n),
        Ok(watcher::Event::Init) => queue.nodes_relist_started(),
        Ok(watcher::Event::InitDone) => queue.nodes_relist_done(),
        Err(e) => tracing::warn!(error = %e, "node watch failed; retrying"),
    }
}

fn on_pod_event(queue: &mut SchedulingQueue, event: Result<watcher::Event<Pod>, watcher::Error>) {
    match event {
        Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => queue.pod_applied(p),
        Ok(watcher::Event::Delete(p)) => queue.pod_deleted(&p),
        Ok(watcher::Event::Init) => queue.pods_relist_started(),
        Ok(watcher::Event::InitDone) => queue.pods_relist_done(),
        Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
    }
}

fn on_budget_event(queue: &mut SchedulingQueue, event: Result<watcher::Event<PodDisruptionBudget>, watcher::Error>) {
    match event {
        Ok(watcher::Event::Apply(b) | watcher::Event::InitApply(b)) => queue.budget_applied(&b),
        Ok(watcher::Event::Delete(b)) => queue.budget_deleted(&b),
        Ok(watcher::Event::Init) => queue.budgets_relist_started(),
        Ok(watcher::Event::InitDone) => queue.budgets_relist_done(),
        Err(e) => tracing::warn!(error = %e, "PodDisruptionBudget watch failed; retrying"),
    }
}

fn on_bind_outcome(
    queue: &mut SchedulingQueue,
    config: &SchedulerConfig,
    stats: &SchedulerStats,
    writes: Option<&SupervisorStatus>,
    side_tx: &mpsc::Sender<SideEffect>,
    done: BindOutcome,
) {
    let now = Instant::now();
    stats.bind_micros.fetch_add(done.took.as_micros() as u64, Ordering::Relaxed);
    if let Some(w) = writes {
        w.record(done.result.is_ok());
    }
    match done.result {
        Ok(()) => {
            stats.bound.fetch_add(1, Ordering::Relaxed);
            queue.bind_succeeded(&done.pod, now);
            if config.scheduled_events {
                let _ = side_tx.try_send(SideEffect::Scheduled { pod: reference(done.pod.as_ref()), node: done.node });
            }
        }
        Err(e) => {
            tracing::debug!(pod = %facts::pod_key(&done.pod), node = %done.node, error = %e, "bind failed");
            // A definite refusal means the bind did not happen; anything else (timeouts,
            // 5xx, transport errors) may have been committed anyway.
            if matches!(&e, kube::Error::Api(s) if (400..500).contains(&s.code)) {
                stats.bind_conflicts.fetch_add(1, Ordering::Relaxed);
                queue.bind_refused(&done.pod, now);
            } else {
                stats.bind_errors.fetch_add(1, Ordering::Relaxed);
                queue.bind_unanswered(&done.pod, now);
            }
        }
    }
}

/// POST pods/{name}/binding, guarded by the pod's uid (a recreated pod of the same name
/// is not bound by a decision made for its predecessor).
#[tracing::instrument(level = "debug", skip_all, fields(pod = %facts::pod_key(pod), node = %node))]
async fn bind(api: &Api<Pod>, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    };
    api.create_subresource::<Binding, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await?;
    Ok(())
}

/// Writes the PodScheduled=False condition (kube-scheduler's), pinned to the version the
/// decision saw: if the pod changed since, the write fails and the pod is looked at again.
#[tracing::instrument(level = "debug", skip_all, fields(pod = %facts::pod_key(pod)))]
async fn record_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
    clear_nomination: bool,
) -> Result<(), kube::Error> {
    let mut patch = unschedulable_patch(message);
    patch["metadata"] = json!({"resourceVersion": pod.metadata.resource_version});
    if clear_nomination {
        patch["status"]["nominatedNodeName"] = json!(null);
    }
    patch_pod_status(client, pod, &patch).await
}

/// The PodScheduled=False condition kube-scheduler writes.
fn unschedulable_patch(message: &str) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now();
    json!({
        "status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": now.to_string(),
        }]},
    })
}

async fn patch_pod_status(client: &kube::Client, pod: &Pod, patch: &serde_json::Value) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let name = pod.metadata.name.as_deref().unwrap_or("");
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)).await?;
    Ok(())
}

/// Status updates and Events, with bounded concurrency, off the decision loop.
async fn side_effects(
    client: kube::Client,
    config: SchedulerConfig,
    rx: mpsc::Receiver<SideEffect>,
    writes: Option<Arc<SupervisorStatus>>,
    cancel: CancellationToken,
) {
    let recorder = Recorder::new(client.clone(), &config.name);
    let work = tokio_stream::wrappers::ReceiverStream::new(rx).for_each_concurrent(
        config.side_effect_concurrency,
        |effect| {
            let (client, recorder, writes) = (client.clone(), recorder.clone(), writes.clone());
            let scheduler = config.name.clone();
            async move {
                match effect {
                    SideEffect::Scheduled { pod, node } => {
                        let message = format!(
                            "Successfully assigned {}/{} to {node}",
                            pod.namespace.as_deref().unwrap_or(""),
                            pod.name.as_deref().unwrap_or("")
                        );
                        recorder.publish(&pod, EventType::Normal, "Scheduled", &message).await;
                    }
                    SideEffect::Unschedulable { pod, message, update_status, clear_nomination } => {
                        if update_status {
                            let result = record_unschedulable(&client, &pod, &message, clear_nomination).await;
                            if let Err(e) = &result {
                                tracing::debug!(pod = %facts::pod_key(&pod), error = %e, "recording PodScheduled=False");
                            }
                            if let Some(w) = &writes {
                                w.record(result.is_ok());
                            }
                        }
                        recorder.publish(&reference(pod.as_ref()), EventType::Warning, "FailedScheduling", &message).await;
                    }
                    SideEffect::Preempt { pod, preemption } => {
                        preempt(&client, &recorder, writes.as_deref(), &scheduler, &pod, &preemption).await;
                    }
                }
            }
        },
    );
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = work => {}
    }
}

/// Carries out a preemption as kube-scheduler's `prepareCandidate` and failure handler
/// do: each victim gets the DisruptionTarget condition, a graceful DELETE (pinned to its
/// uid) and a `Preempted` Event; lower-priority pods nominated to the node lose their
/// nomination; then the preemptor's status gets PodScheduled=False and
/// `nominatedNodeName`. Every write is best effort: if a victim survives, the next attempt
/// of the preemptor (no victim terminating on its node) preempts again.
#[tracing::instrument(level = "debug", skip_all, fields(pod = %facts::pod_key(pod), node = %preemption.node))]
async fn preempt(
    client: &kube::Client,
    recorder: &Recorder,
    writes: Option<&SupervisorStatus>,
    scheduler: &str,
    pod: &Pod,
    preemption: &Preemption,
) {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let note = format!("Preempted by pod {uid} on node {}", preemption.node);
    let reason = format!("{scheduler}: preempting to accommodate a higher priority pod");
    futures::stream::iter(&preemption.victims)
        .for_each_concurrent(VICTIM_CONCURRENCY, |victim| {
            let (note, reason) = (&note, &reason);
            async move {
                let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
                // Tells the victim's controllers (a Job's podFailurePolicy) why it goes.
                let condition = json!({
                    "metadata": uid_guard(victim.uid.as_deref()),
                    "status": {"conditions": [{
                        "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                        "message": reason, "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                    }]},
                });
                if let Err(e) =
                    api.patch_status(&victim.name, &PatchParams::default(), &Patch::Strategic(&condition)).await
                {
                    tracing::debug!(victim = %victim.key(), error = %e, "recording DisruptionTarget");
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: victim.uid.clone(), resource_version: None }),
                    ..Default::default()
                };
                let result = match api.delete(&victim.name, &params).await {
                    Ok(_) => Ok(()),
                    // Already gone (or replaced by a pod of the same name): nothing to do.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                    Err(e) => Err(e),
                };
                if let Some(w) = writes {
                    w.record(result.is_ok());
                }
                match result {
                    Ok(()) => {
                        tracing::info!(victim = %victim.key(), priority = victim.priority, "preempted");
                        let target = victim_reference(victim);
                        recorder.publish(&target, EventType::Normal, "Preempted", note).await;
                    }
                    Err(e) => tracing::warn!(victim = %victim.key(), error = %e, "deleting a preemption victim"),
                }
            }
        })
        .await;
    for demoted in &preemption.demoted {
        let api: Api<Pod> = Api::namespaced(client.clone(), &demoted.namespace);
        let patch = json!({"metadata": uid_guard(demoted.uid.as_deref()), "status": {"nominatedNodeName": null}});
        if let Err(e) = api.patch_status(&demoted.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            tracing::debug!(pod = %demoted.key(), error = %e, "clearing a nomination");
        }
    }
    // Pinned to the uid, not the version: the nomination must land even if the pod
    // changed meanwhile (kube-scheduler does not pin it either).
    let mut patch = unschedulable_patch(&preemption.message);
    patch["metadata"] = uid_guard(pod.metadata.uid.as_deref());
    patch["status"]["nominatedNodeName"] = json!(preemption.node);
    let result = patch_pod_status(client, pod, &patch).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, "recording the nomination");
    }
    if let Some(w) = writes {
        w.record(result.is_ok());
    }
    recorder.publish(&reference(pod), EventType::Warning, "FailedScheduling", &preemption.message).await;
}

/// `metadata` for a patch that must only apply to the pod with this uid: a different uid
/// is an immutable-field error, so a recreated pod of the same name is left alone.
fn uid_guard(uid: Option<&str>) -> serde_json::Value {
    match uid {
        Some(uid) => json!({"uid": uid}),
        None => json!({}),
    }
}

fn victim_reference(victim: &PodRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(victim.namespace.clone()),
        name: Some(victim.name.clone()),
        uid: victim.uid.clone(),
        ..Default::default()
    }
}
