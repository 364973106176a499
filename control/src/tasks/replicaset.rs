//! The ReplicaSet controller: keeps `spec.replicas` pods matching each ReplicaSet's
//! selector, as Kubernetes' `ReplicaSetController` does.
//!
//! * [`reconcile_replicaset`] is the pure decision: given a ReplicaSet and the pods it may
//!   claim (its own and its namespace's orphans, from the informer's owner index) it claims
//!   pods (adopts matching orphans, releases owned pods that stopped matching), decides
//!   how many pods to create or which to delete (Kubernetes' `ActivePods` order) and
//!   computes the status.
//! * [`run`] is the leader task: one [`Controller`] of ReplicaSets owning pods, whose
//!   reconcile executes the plan through the API. Creations go out in slow-start batches
//!   (1, 2, 4, … like Kubernetes) so a failing admission costs one request, not five
//!   hundred, and are remembered in [`Expectations`] until the pod cache has seen them, so
//!   a reconcile running before its own writes came back through the watch never
//!   double-creates or double-deletes. Every write carries a precondition (resourceVersion
//!   or uid).

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use tokio_util::sync::CancellationToken;

use super::controller::{Action, Controller, Reconcile};
use super::events::Recorder;
use super::expectations::Expectations;
use super::owner_index::OwnerIndex;
use super::ownership::{self, OwnerChange};
use super::pod_control::PodControl;
pub use super::pod_control::PodRef;
use super::status::write_status_if_changed;
use super::sync_error::SyncError;
use super::workqueue::Key;
use crate::tasks::context::TaskContext;

/// Most pods created or deleted in one sync (Kubernetes' `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// ReplicaSets synced at once: with 2, ten 1,000-replica ReplicaSets were created at 232 pods/s;
/// with 8, 408 pods/s (berth-bench-control scheduling, release build, this 2-core machine).
const WORKERS: usize = 8;
/// Safety net for missed events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
const COMPONENT: &str = "replicaset-controller";

/// Everything one sync of a ReplicaSet does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaSetPlan {
    pub adopt: Vec<OwnerChange>,
    pub release: Vec<OwnerChange>,
    /// Pods to create from the template.
    pub create: usize,
    pub delete: Vec<PodRef>,
    pub status: ReplicaSetStatus,
    /// When to look again even without events (a pod reaching minReadySeconds).
    pub requeue_after: Option<Duration>,
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// Decides one sync of `rs` over the pods it may claim. `manage` is false while
/// earlier creations/deletions have not been observed yet (or the ReplicaSet is being
/// deleted): then only ownership and status are reconciled.
pub fn reconcile_replicaset(rs: &ReplicaSet, pods: &[&Pod], manage: bool, now: Timestamp) -> ReplicaSetPlan {
    let mut plan = ReplicaSetPlan::default();
    let spec = rs.spec.as_ref();
    let selector = ownership::selector(spec.map(|s| &s.selector)).ok().flatten();
    let reference = ownership::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    let claimed = ownership::claim_children(&rs.metadata, &reference, selector.as_ref(), pods.iter().copied());
    (plan.adopt, plan.release) = (claimed.adopt, claimed.release);
    let owned = claimed.owned;
    // Finished and deleting pods do not count: a deleting pod is already on its way out
    // and is replaced right away (Kubernetes' `FilterActivePods`).
    let mut active: Vec<&Pod> = owned.into_iter().filter(|p| ownership::pod_is_active(p)).collect();
    let want = replicas(rs).max(0) as usize;
    if manage && !ownership::is_deleting(&rs.metadata) {
        if active.len() < want {
            plan.create = (want - active.len()).min(BURST_REPLICAS);
        } else if active.len() > want {
            let extra = (active.len() - want).min(BURST_REPLICAS);
            active.sort_by(|a, b| deletion_order(a, b));
            plan.delete = active[..extra]
                .iter()
                .map(|p| PodRef { name: p.metadata.name.clone().unwrap_or_default(), uid: p.metadata.uid.clone() })
                .collect();
        }
    }
    plan.status = status(rs, &active, now);
    // A ready pod becomes available minReadySeconds later without any event: look again then.
    let min_ready = min_ready_seconds(rs);
    if min_ready > 0 {
        plan.requeue_after = active
            .iter()
            .filter(|p| !ownership::pod_is_available(p, min_ready, now))
            .filter_map(|p| ownership::pod_available_at(p, min_ready))
            .min()
            .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(100));
    }
    plan
}

/// Kubernetes' `calculateStatus`, over the active owned pods.
fn status(rs: &ReplicaSet, active: &[&Pod], now: Timestamp) -> ReplicaSetStatus {
    let template_labels = rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref());
    let template_labels = template_labels.map(ownership::labels);
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = ownership::labels(&p.metadata);
            template_labels.is_none_or(|t| t.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .count();
    let ready = active.iter().filter(|p| ownership::pod_is_ready(p)).count();
    let available = active.iter().filter(|p| ownership::pod_is_available(p, min_ready_seconds(rs), now)).count();
    let current = rs.status.clone().unwrap_or_default();
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: current.conditions,
        terminating_replicas: current.terminating_replicas,
    }
}

/// Kubernetes' `ActivePods` order: the pod to delete first sorts first. Unassigned before
/// assigned, Pending < Unknown < Running, not-ready before ready, ready more recently
/// before ready longer, more restarts before fewer, newer before older.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    };
    let ready = ownership::pod_is_ready;
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let ready_time = |p: &Pod| ownership::ready_since(p).flatten();
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase(a).cmp(&phase(b)))
        .then_with(|| ready(a).cmp(&ready(b)))
        // Both ready: the one ready for less time (later transition) goes first.
        .then_with(|| match (ready(a) && ready(b), ready_time(a), ready_time(b)) {
            (true, Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        // Newer first; a missing timestamp counts as newest.
        .then_with(|| match (created(a), created(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// The pod a ReplicaSet creates: its template, a generated name and a controller reference.
pub fn new_pod(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or_default())),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![ownership::controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Carries out the ReplicaSet decision through the API.
struct Reconciler {
    ctx: TaskContext,
    /// The pods each ReplicaSet may claim (its own and its namespace's orphans).
    pod_owners: Arc<OwnerIndex<Pod>>,
    expectations: Mutex<Expectations>,
    recorder: Recorder,
}

impl Reconcile<ReplicaSet> for Reconciler {
    type Error = SyncError;

    #[tracing::instrument(skip_all, fields(replicaset = %key))]
    async fn reconcile(&self, key: &Key, rs: Arc<ReplicaSet>) -> Result<Action, SyncError> {
        let pods = self.pod_owners.claimable(&key.namespace, rs.metadata.uid.as_deref().unwrap_or_default());
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let manage = self.expectations.lock().unwrap().satisfied(key, &pods);
        let plan = reconcile_replicaset(&rs, &pods, manage, Timestamp::now());
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);

        let control = PodControl::new(&self.ctx, &self.recorder, &*rs, &pod_api);
        control.patch_owners(&plan.adopt, &plan.release).await?;

        if plan.create > 0 {
            control.create_expected(&self.expectations, key, vec![new_pod(&rs); plan.create]).await?;
        }
        control.delete_expected(&self.expectations, key, &plan.delete).await?;

        write_status_if_changed(&self.ctx, &*rs, &plan.status).await?;
        Ok(plan.requeue_after.into())
    }

    fn forget(&self, key: &Key) {
        self.expectations.lock().unwrap().forget(key);
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let controller = Controller::<ReplicaSet>::new("replicaset", &ctx.informers)
        // Pod events enqueue their owners; the pods themselves are read through the index.
        .owns::<Pod>(|rs| rs.spec.as_ref().map(|s| &s.selector))
        .workers(WORKERS)
        .resync_every(RESYNC_EVERY);
    let reconciler = Reconciler {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        pod_owners: ctx.informers.owner_index::<Pod>(),
        ctx,
        expectations: Mutex::default(),
    };
    controller.run(Arc::new(reconciler), cancel).await;
}

#[cfg(test)]
mod tests;
