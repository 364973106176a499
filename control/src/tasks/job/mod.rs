//! The Job controller: runs each Job's pods to completion, as Kubernetes' `JobController`
//! does, and deletes finished Jobs whose `ttlSecondsAfterFinished` has passed (the work of
//! Kubernetes' separate TTL-after-finished controller, done here because the Job cache
//! and its requeue timer are already at hand).
//!
//! * [`plan::plan_job`] is the pure decision (pods to create or delete, status, Events);
//! * [`run`] is the leader task: a [`Controller`] of Jobs owning pods, whose reconcile
//!   executes the plan through the API. Pods are created in slow-start batches and
//!   remembered in [`Expectations`] until the pod cache shows them, so no sync
//!   double-creates.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use tokio_util::sync::CancellationToken;

use super::controller::{Action, Controller, Reconcile};
use super::events::{reference, EventType, Recorder};
use super::expectations::Expectations;
use super::owner_index::OwnerIndex;
use super::pod_control::PodControl;
use super::status::write_status_if_changed;
use super::sync_error::{api_err, is_status, SyncError};
use super::workqueue::Key;
use crate::tasks::context::TaskContext;
use plan::{plan_job, Backoff};

const WORKERS: usize = 4;
/// Safety net for missed events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
const COMPONENT: &str = "job-controller";

/// Carries out the Job decision through the API.
struct Reconciler {
    ctx: TaskContext,
    /// The pods each owner may claim (its own and its namespace's orphans).
    pod_owners: Arc<OwnerIndex<Pod>>,
    expectations: Mutex<Expectations>,
    recorder: Recorder,
    backoff: Backoff,
}

impl Reconcile<Job> for Reconciler {
    type Error = SyncError;

    #[tracing::instrument(skip_all, fields(job = %key))]
    async fn reconcile(&self, key: &Key, job: Arc<Job>) -> Result<Action, SyncError> {
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Action::done());
        }
        let owner_uid = job.metadata.uid.as_deref().unwrap_or_default();
        let pods = self.pod_owners.claimable(&key.namespace, owner_uid);
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let manage = self.expectations.lock().unwrap().satisfied(key, &pods);
        let plan = plan_job(&job, &pods, manage, self.backoff, Timestamp::now());
        let jobs: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);

        if plan.expired {
            tracing::info!("ttlSecondsAfterFinished passed; deleting the job");
            // As the TTL-after-finished controller: foreground, pinned to the Job we read.
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: job.metadata.uid.clone(),
                    resource_version: job.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            let result = jobs.delete(&key.name, &params).await;
            self.ctx.status.record(result.is_ok());
            return match result {
                Ok(_) => Ok(Action::done()),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Action::done()),
                Err(e) => Err(api_err("deleting expired job")(e)),
            };
        }

        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        if !plan.delete.is_empty() || !plan.create.is_empty() {
            let control = PodControl::new(&self.ctx, &self.recorder, &*job, &pod_api);
            control.delete_expected(&self.expectations, key, &plan.delete).await?;
            let pods = plan.create.iter().map(|index| plan::new_pod(&job, *index)).collect();
            control.create_expected(&self.expectations, key, pods).await?;
        }
        // Pinned to the resourceVersion the plan was made from: a newer Job means a new plan.
        if !write_status_if_changed(&self.ctx, &*job, &plan.status).await? {
            return Ok(Action::done());
        }
        // Events only once the status that carries the same news is written.
        for e in &plan.events {
            let kind = if e.warning { EventType::Warning } else { EventType::Normal };
            self.recorder.publish(&reference(job.as_ref()), kind, e.reason, &e.message).await;
        }
        Ok(plan.requeue_after.into())
    }

    fn forget(&self, key: &Key) {
        self.expectations.lock().unwrap().forget(key);
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let controller = Controller::<Job>::new("job", &ctx.informers)
        // Pod events enqueue their owners; the pods themselves are read through the index.
        .owns::<Pod>(|job| job.spec.as_ref().and_then(|s| s.selector.as_ref()))
        .workers(WORKERS)
        .resync_every(RESYNC_EVERY);
    let reconciler = Reconciler {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        backoff: Backoff::default(),
        pod_owners: ctx.informers.owner_index::<Pod>(),
        ctx,
        expectations: Mutex::default(),
    };
    controller.run(Arc::new(reconciler), cancel).await;
}
