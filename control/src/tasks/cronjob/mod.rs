//! The CronJob controller (Kubernetes' `cronjob-controller` v2): starts a Job for each
//! scheduled time of every CronJob, honouring `concurrencyPolicy`, `suspend`,
//! `startingDeadlineSeconds` and the history limits.
//!
//! * [`crate::cron`] parses cron specs and finds next times in a time zone;
//! * [`plan::plan_cronjob`] is the pure decision;
//! * [`run`] is the leader task: a [`Controller`] of CronJobs owning Jobs, each CronJob
//!   requeued for its next scheduled time. Job names are deterministic
//!   (`<name>-<minutes since the epoch>`), so a sync repeated after a crash or a leader
//!   change finds the Job already there (409) instead of starting a second one.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use super::controller::{Action, Controller, Reconcile};
use super::events::{reference, EventType, Recorder};
use super::ownership;
use super::status::write_status;
use super::sync_error::{api_err, is_status, SyncError};
use super::workqueue::Key;
use crate::tasks::context::TaskContext;
use plan::plan_cronjob;

const WORKERS: usize = 2;
/// Safety net for missed events (and late timers).
const RESYNC_EVERY: Duration = Duration::from_secs(10);
const COMPONENT: &str = "cronjob-controller";

/// Carries out the CronJob decision through the API.
struct Reconciler {
    ctx: TaskContext,
    jobs: Store<Job>,
    recorder: Recorder,
}

impl Reconcile<CronJob> for Reconciler {
    type Error = SyncError;

    #[tracing::instrument(skip_all, fields(cronjob = %key))]
    async fn reconcile(&self, key: &Key, cj: Arc<CronJob>) -> Result<Action, SyncError> {
        let uid = cj.metadata.uid.clone();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(&key.namespace))
            .filter(|j| ownership::controller_of(&j.metadata).is_some_and(|r| Some(&r.uid) == uid.as_ref()))
            .collect();
        let jobs: Vec<&Job> = jobs.iter().map(|j| j.as_ref()).collect();
        let plan = plan_cronjob(&cj, &jobs, Timestamp::now());
        let job_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let me = reference(cj.as_ref());

        for name in plan.replace.iter().chain(&plan.prune) {
            let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
            let result = job_api.delete(name, &params).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(_) => {
                    let msg = format!("Deleted job {name}");
                    self.recorder.publish(&me, EventType::Normal, "SuccessfulDelete", &msg).await;
                }
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    let msg = format!("Deleted job: {e}");
                    self.recorder.publish(&me, EventType::Warning, "FailedDelete", &msg).await;
                    return Err(api_err(format!("deleting job {name}"))(e));
                }
            }
        }

        let mut status = plan.status.clone();
        if let Some(scheduled) = plan.start {
            let tz = crate::cron::time_zone(cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()))
                .unwrap_or(jiff::tz::TimeZone::UTC);
            let job = plan::new_job(&cj, scheduled, &tz);
            let name = job.metadata.name.clone().unwrap_or_default();
            let result = job_api.create(&PostParams::default(), &job).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(created) => {
                    tracing::info!(job = %name, "started job");
                    let msg = format!("Created job {name}");
                    self.recorder.publish(&me, EventType::Normal, "SuccessfulCreate", &msg).await;
                    let active = status.active.get_or_insert_with(Vec::new);
                    active.push(k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some("batch/v1".into()),
                        kind: Some("Job".into()),
                        name: created.metadata.name.clone(),
                        namespace: created.metadata.namespace.clone(),
                        uid: created.metadata.uid.clone(),
                        resource_version: created.metadata.resource_version.clone(),
                        ..Default::default()
                    });
                }
                // Started already (an earlier sync whose status write was lost): the Job
                // informer brings it into `active`; lastScheduleTime records the time.
                Err(e) if is_status(&e, 409) => tracing::debug!(job = %name, "job already exists"),
                Err(e) => {
                    let msg = format!("Error creating job: {e}");
                    self.recorder.publish(&me, EventType::Warning, "FailedCreate", &msg).await;
                    return Err(api_err(format!("creating job {name}"))(e));
                }
            }
        }
        if cj.status.as_ref() != Some(&status) && !(cj.status.is_none() && status == Default::default()) {
            let mut updated = (*cj).clone();
            updated.status = Some(status);
            if !write_status(&self.ctx, &updated).await? {
                return Ok(Action::done());
            }
        }
        for e in &plan.events {
            let kind = if e.warning { EventType::Warning } else { EventType::Normal };
            self.recorder.publish(&me, kind, e.reason, &e.message).await;
        }
        Ok(plan.requeue_after.into())
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let controller = Controller::<CronJob>::new("cronjob", &ctx.informers)
        // Jobs map to their controlling CronJob; CronJobs have no selector to adopt orphans by.
        .owns::<Job>(|_| None)
        .workers(WORKERS)
        .resync_every(RESYNC_EVERY);
    let reconciler =
        Reconciler { recorder: Recorder::new(ctx.client.clone(), COMPONENT), jobs: ctx.informers.store::<Job>(), ctx };
    controller.run(Arc::new(reconciler), cancel).await;
}
