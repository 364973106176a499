//! The StatefulSet controller: pods with stable identities (`NAME-0 … NAME-N-1`), created,
//! scaled and updated in order, as Kubernetes' `StatefulSetController` does.
//!
//! * [`plan`] is the pure decision (ordering, partitioned rolling update, status).
//! * [`run`] is the leader task: a [`Controller`] of StatefulSets owning pods, whose
//!   reconcile carries a plan out through the API.
//! * Each sync first brings the set's ControllerRevision history up to date
//!   ([`crate::tasks::revisions`], Kubernetes' `getStatefulSetRevisions`): the update
//!   revision (the set's template) exists and is the newest, and the current revision's
//!   template is read from its ControllerRevision; at the end, old revisions beyond
//!   `revisionHistoryLimit` go, never the current or update one or one a pod still has
//!   (`truncateHistory`).
//!
//! No expectations are needed: every pod is created under its stable name, so a sync that
//! runs before its own creation is visible only gets `409 AlreadyExists`, and a pod that
//! still exists in any state — terminating, or stuck on an unreachable node — blocks its
//! own replacement. That is the "at most one pod per identity" guarantee; it relies on
//! pods of unreachable nodes being deleted *gracefully* (they stay Terminating until their
//! agent confirms or their Node object is deleted; see `node_lifecycle`).

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio_util::sync::CancellationToken;

use super::controller::{Action, Controller, Reconcile};
use super::events::{reference, EventType, Recorder};
use super::owner_index::OwnerIndex;
use super::ownership;
use super::pod_control::{slow_start_batches, PodControl};
use super::revisions::control::{raise_collision_count, Ensured, RevisionControl};
use super::revisions::{expired, plan_history, template_of, HistoryPlan, Limit, Owner};
use super::status::write_status_if_changed;
use super::sync_error::{api_err, is_status, SyncError};
use super::workqueue::Key;
use crate::tasks::context::TaskContext;
use plan::{plan_statefulset, template_hash, Revisions};

const WORKERS: usize = 2;
/// Safety net for missed events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
const COMPONENT: &str = "statefulset-controller";

/// Carries out the StatefulSet decision through the API.
struct Reconciler {
    ctx: TaskContext,
    /// The pods each StatefulSet may claim (its own and its namespace's orphans).
    pod_owners: Arc<OwnerIndex<Pod>>,
    /// The revisions each StatefulSet may claim, likewise.
    revision_owners: Arc<OwnerIndex<ControllerRevision>>,
    recorder: Recorder,
}

impl Reconciler {
    /// Kubernetes' `getStatefulSetRevisions` carried out: adopts and releases revisions,
    /// makes the update revision exist as the newest, and reads the current revision's
    /// template. On a hash collision the set's `status.collisionCount` goes up (pinned to
    /// the resourceVersion the hash was computed from) and the sync starts over.
    async fn revisions(
        &self,
        set: &StatefulSet,
        control: &RevisionControl<'_>,
        history: &HistoryPlan<'_>,
        hash: &str,
    ) -> Result<Revisions, SyncError> {
        control.patch_owners(&history.adopt, &history.release).await?;
        let update = match control.ensure_current(&history.current, hash).await? {
            Ensured::Revision { name, .. } => name,
            Ensured::Collision(e) => {
                let count: fn(&mut StatefulSet) -> &mut Option<i32> =
                    |s| &mut s.status.get_or_insert_with(Default::default).collision_count;
                return Err(raise_collision_count(&self.ctx, set, count, e).await);
            }
        };
        let current = set.status.as_ref().and_then(|s| s.current_revision.clone()).filter(|r| !r.is_empty());
        let current = current.unwrap_or_else(|| update.clone());
        let current_template = (current != update)
            .then(|| history.old.iter().find(|r| r.metadata.name.as_deref() == Some(current.as_str())))
            .flatten()
            .and_then(|r| template_of(r));
        Ok(Revisions { update, current, current_template })
    }
}

impl Reconcile<StatefulSet> for Reconciler {
    type Error = SyncError;

    #[tracing::instrument(skip_all, fields(statefulset = %key))]
    async fn reconcile(&self, key: &Key, set: Arc<StatefulSet>) -> Result<Action, SyncError> {
        let owner_uid = set.metadata.uid.as_deref().unwrap_or_default();
        let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let hash = template_hash(&set);
        let owner = Owner {
            kind: "StatefulSet",
            meta: &set.metadata,
            selector: set.spec.as_ref().map(|s| &s.selector),
            template: &template,
            hash: &hash,
        };
        let candidates = self.revision_owners.claimable(&key.namespace, owner_uid);
        let candidates: Vec<&ControllerRevision> = candidates.iter().map(|r| r.as_ref()).collect();
        let revision_control = RevisionControl::new(&self.ctx, &key.namespace);
        // A set being deleted keeps no history: the garbage collector removes it.
        let history = (!ownership::is_deleting(&set.metadata)).then(|| plan_history(&owner, &candidates));
        let revisions = match &history {
            None => Revisions::from_status(&set),
            Some(history) => self.revisions(&set, &revision_control, history, &hash).await?,
        };

        let pods = self.pod_owners.claimable(&key.namespace, owner_uid);
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let plan = plan_statefulset(&set, &revisions, &pods, Timestamp::now());
        if let Some(wait) = &plan.wait {
            tracing::debug!(?wait, "waiting");
        }
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let set_ref = reference(&*set);

        let pod_control =
            PodControl { ctx: &self.ctx, recorder: &self.recorder, owner: set_ref.clone(), api: pod_api.clone() };
        pod_control.patch_owners(&plan.adopt, &plan.release).await?;

        for pod in &plan.delete {
            if plan.recreate.contains(&pod.name) {
                let message = format!("StatefulSet {key} is recreating failed Pod {}", pod.name);
                self.recorder.publish(&set_ref, EventType::Warning, "RecreatingFailedPod", &message).await;
            }
            let params = DeleteParams {
                // Only the pod decided about: a same-named successor is never touched.
                preconditions: Some(Preconditions { uid: pod.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            let result = pod_api.delete(&pod.name, &params).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(_) => {
                    let message = format!("delete Pod {} in StatefulSet {} successful", pod.name, key.name);
                    self.recorder.publish(&set_ref, EventType::Normal, "SuccessfulDelete", &message).await;
                }
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    let message = format!("delete Pod {} in StatefulSet {} failed error: {e}", pod.name, key.name);
                    self.recorder.publish(&set_ref, EventType::Warning, "FailedDelete", &message).await;
                    return Err(api_err(format!("deleting pod {}", pod.name))(e));
                }
            }
        }

        let params = PostParams::default();
        let mut queued = plan.create.as_slice();
        for batch in slow_start_batches(plan.create.len()) {
            let (now, rest) = queued.split_at(batch);
            queued = rest;
            let results = join_all(now.iter().map(|pod| {
                let (api, params) = (&pod_api, &params);
                async move { (pod, api.create(params, pod).await) }
            }))
            .await;
            let mut failure = None;
            for (pod, result) in results {
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                match result {
                    Ok(_) => {
                        self.ctx.status.record(true);
                        let message = format!("create Pod {name} in StatefulSet {} successful", key.name);
                        self.recorder.publish(&set_ref, EventType::Normal, "SuccessfulCreate", &message).await;
                    }
                    // Created by an earlier sync the cache has not shown yet.
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => {
                        self.ctx.status.record(false);
                        let message = format!("create Pod {name} in StatefulSet {} failed error: {e}", key.name);
                        self.recorder.publish(&set_ref, EventType::Warning, "FailedCreate", &message).await;
                        failure = Some(api_err(format!("creating pod {name}"))(e));
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }

        write_status_if_changed(&self.ctx, &*set, &plan.status).await?;
        // `truncateHistory`: the current and update revisions (as read and as just
        // written) and every revision a pod still has stay.
        if let Some(history) = history {
            let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit);
            let live = [Some(&revisions.current), Some(&revisions.update), plan.status.current_revision.as_ref()];
            let is_live = |r: &ControllerRevision| {
                let name = r.metadata.name.as_deref().unwrap_or_default();
                live.iter().flatten().any(|l| l.as_str() == name) || plan.live_revisions.contains(name)
            };
            revision_control.delete(&expired(&history.old, limit, Limit::BesidesLive, is_live)).await?;
        }
        Ok(plan.requeue_after.into())
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let controller = Controller::<StatefulSet>::new("statefulset", &ctx.informers)
        // Pod events enqueue their owners; the pods themselves are read through the index.
        .owns::<Pod>(|set| set.spec.as_ref().map(|s| &s.selector))
        // A revision changed or deleted by hand is put right (or adopted) at once.
        .owns::<ControllerRevision>(|set| set.spec.as_ref().map(|s| &s.selector))
        .workers(WORKERS)
        .resync_every(RESYNC_EVERY);
    let reconciler = Reconciler {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        pod_owners: ctx.informers.owner_index::<Pod>(),
        revision_owners: ctx.informers.owner_index::<ControllerRevision>(),
        ctx,
    };
    controller.run(Arc::new(reconciler), cancel).await;
}
