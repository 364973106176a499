//! The Job controller's pure decision: given a Job, the pods it owns and the time, what to
//! create, what to delete and what the status becomes (Kubernetes' `syncJob`).
//!
//! Counting follows the pods that exist: `succeeded`/`failed` are the owned pods in those
//! phases (with `restartPolicy: OnFailure`, container restarts of live pods count as
//! failures towards `backoffLimit`, as Kubernetes does). Kubernetes keeps exact counts
//! across pod deletion with the `batch.kubernetes.io/job-tracking` finalizer; Berth does
//! not add that finalizer, so a finished pod deleted by hand before its Job finishes is
//! forgotten (see the README).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::tasks::ownership;
use crate::tasks::pod_control::PodRef;

/// Annotation and label naming an Indexed Job pod's completion index.
pub use berth_proto::model::well_known::JOB_COMPLETION_INDEX as COMPLETION_INDEX;
/// The env var an Indexed Job's containers get their index in.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Back-off between failed-pod retries: `base · 2^(failures-1)`, capped at `max`
/// (Kubernetes' `DefaultJobPodFailureBackOff` 10 s and `MaxJobPodFailureBackOff` 6 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { base: Duration::from_secs(10), max: Duration::from_secs(360) }
    }
}

impl Backoff {
    /// The delay before the next pod after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }
}

/// Why a Job failed (condition reason, Event reason, message), as Kubernetes words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BackoffLimitExceeded,
    DeadlineExceeded,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "BackoffLimitExceeded",
            Failure::DeadlineExceeded => "DeadlineExceeded",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "Job has reached the specified backoff limit",
            Failure::DeadlineExceeded => "Job was active longer than specified deadline",
        }
    }
}

/// An Event the sync records on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Everything one sync of a Job does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPlan {
    /// Pods to create: `None` for a NonIndexed pod, `Some(i)` for completion index `i`.
    pub create: Vec<Option<i32>>,
    pub delete: Vec<PodRef>,
    pub status: JobStatus,
    pub events: Vec<JobEvent>,
    /// Look again then even without events (back-off over, deadline, TTL).
    pub requeue_after: Option<Duration>,
    /// The TTL after finishing has passed: delete the Job (and, through the GC, its pods).
    pub expired: bool,
}

/// A condition of the Job, if present.
pub fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn condition_true(status: Option<&JobStatus>, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

/// Whether the Job has finished (Complete or Failed is True).
pub fn is_finished(job: &Job) -> bool {
    let s = job.status.as_ref();
    condition_true(s, "Complete") || condition_true(s, "Failed")
}

/// When the Job finished (the Complete/Failed condition's transition), if it has.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let s = job.status.as_ref();
    ["Complete", "Failed"]
        .iter()
        .filter_map(|t| condition(s, t).filter(|c| c.status == "True"))
        .find_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// The completion index of an Indexed Job's pod (annotation, then label).
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let m = &pod.metadata;
    let from = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.and_then(|m| m.get(COMPLETION_INDEX)).and_then(|v| v.parse::<i32>().ok())
    };
    from(m.annotations.as_ref()).or_else(|| from(m.labels.as_ref())).filter(|i| *i >= 0)
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// When a finished pod finished: its containers' latest termination, else its Ready
/// condition's last change, else its creation.
fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    terminated
        .or_else(|| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        })
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// Compresses sorted indexes into Kubernetes' interval format: `1,3-5,7`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let new = JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {
            c.reason = new.reason;
            c.message = new.message;
            c.last_probe_time = new.last_probe_time;
        }
        Some(c) => *c = new,
        None => conds.push(new),
    }
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn duration_until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or_default()
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Decides one sync of `job` over the pods it may claim (its own and its namespace's
/// orphans). `manage` is false while earlier creations/deletions are not visible in the
/// cache yet: then no pods are created or deleted, only status is reconciled.
pub fn plan_job(job: &Job, pods: &[&Pod], manage: bool, backoff: Backoff, now: Timestamp) -> JobPlan {
    let mut plan = JobPlan::default();
    let current = job.status.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();

    if is_finished(job) {
        // Finished: status is final; only the TTL-after-finished clock runs.
        plan.status = current;
        if let (Some(ttl), Some(at)) = (spec.ttl_seconds_after_finished, finished_at(job)) {
            let expires = at + SignedDuration::from_secs(ttl.max(0).into());
            if expires <= now {
                plan.expired = true;
            } else {
                plan.requeue_after = Some(duration_until(expires, now) + Duration::from_millis(100));
            }
        }
        return plan;
    }

    let selector = ownership::selector(spec.selector.as_ref()).ok().flatten();
    let owned: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| ownership::claim(&job.metadata, selector.as_ref(), &p.metadata) == ownership::Claim::Owned)
        .collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");

    let active: Vec<&Pod> = owned.iter().copied().filter(|p| ownership::pod_is_active(p)).collect();
    let succeeded_pods: Vec<&Pod> = owned.iter().copied().filter(|p| phase(p) == "Succeeded").collect();
    let failed_pods: Vec<&Pod> = owned.iter().copied().filter(|p| phase(p) == "Failed").collect();

    // Indexed: an index is complete when one of its pods succeeded.
    let mut completed: BTreeSet<i32> = BTreeSet::new();
    if indexed {
        let n = completions.unwrap_or(0);
        completed = succeeded_pods.iter().filter_map(|p| pod_index(p)).filter(|i| *i < n).collect();
    }
    let succeeded = if indexed { completed.len() as i32 } else { succeeded_pods.len() as i32 };
    let failed = failed_pods.len() as i32;
    let failures_for_limit = failed + if on_failure { active.iter().map(|p| restarts(p)).sum::<i32>() } else { 0 };

    let mut status = JobStatus {
        // `omitempty` counters in Kubernetes' JobStatus; `ready`/`terminating` are pointers.
        active: nonzero(active.len() as i32),
        succeeded: nonzero(succeeded),
        failed: nonzero(failed),
        ready: Some(active.iter().filter(|p| ownership::pod_is_ready(p)).count() as i32),
        terminating: Some(owned.iter().filter(|p| ownership::is_deleting(&p.metadata)).count() as i32),
        completed_indexes: indexed.then(|| format_indexes(&completed)),
        start_time: current.start_time.clone(),
        completion_time: None,
        conditions: current.conditions.clone(),
        ..Default::default()
    };
    let mut conds = status.conditions.take().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let was_suspended = condition_true(Some(&current), "Suspended");
    let delete_active = |plan: &mut JobPlan| {
        if manage {
            plan.delete = active
                .iter()
                .map(|p| PodRef { name: p.metadata.name.clone().unwrap_or_default(), uid: p.metadata.uid.clone() })
                .collect();
        }
    };

    if suspended {
        delete_active(&mut plan);
        if !was_suspended {
            set_condition(&mut conds, "Suspended", "True", "JobSuspended", "Job suspended", now);
            plan.events.push(JobEvent { warning: false, reason: "Suspended", message: "Job suspended".into() });
        }
        status.conditions = (!conds.is_empty()).then_some(conds);
        plan.status = status;
        return plan;
    }
    if was_suspended {
        set_condition(&mut conds, "Suspended", "False", "JobResumed", "Job resumed", now);
        plan.events.push(JobEvent { warning: false, reason: "Resumed", message: "Job resumed".into() });
        // A resumed Job's activeDeadlineSeconds counts from the resumption.
        status.start_time = Some(Time(now));
    }
    let start = status.start_time.get_or_insert(Time(now)).0;

    // Finished by success?
    let complete = match (indexed, completions) {
        (_, Some(n)) => succeeded >= n,
        // No completions: done once any pod succeeded and none is left running.
        (false, None) => succeeded > 0 && active.is_empty(),
        (true, None) => false,
    };
    // Finished by failure?
    let deadline = spec.active_deadline_seconds.map(|s| start + SignedDuration::from_secs(s.max(0)));
    let failure = if complete {
        None
    } else if failures_for_limit > spec.backoff_limit.unwrap_or(6) {
        Some(Failure::BackoffLimitExceeded)
    } else if deadline.is_some_and(|d| d <= now) {
        Some(Failure::DeadlineExceeded)
    } else {
        None
    };

    if complete {
        // Extra pods still running once the completions are reached go (Kubernetes deletes them).
        delete_active(&mut plan);
        let msg = "Reached expected number of succeeded pods";
        set_condition(&mut conds, "SuccessCriteriaMet", "True", "CompletionsReached", msg, now);
        set_condition(&mut conds, "Complete", "True", "CompletionsReached", msg, now);
        status.completion_time = Some(Time(now));
        plan.events.push(JobEvent { warning: false, reason: "Completed", message: "Job completed".into() });
    } else if let Some(f) = failure {
        delete_active(&mut plan);
        set_condition(&mut conds, "FailureTarget", "True", f.reason(), f.message(), now);
        set_condition(&mut conds, "Failed", "True", f.reason(), f.message(), now);
        plan.events.push(JobEvent { warning: true, reason: f.reason(), message: f.message().into() });
    } else if manage {
        let last_success = succeeded_pods.iter().filter_map(|p| finish_time(p)).max();
        let counts = Counts { succeeded, last_success };
        plan_creations(&mut plan, &spec, indexed, parallelism, &active, &completed, counts, &failed_pods, backoff, now);
        plan.requeue_after = earliest(plan.requeue_after, deadline.map(|d| duration_until(d, now)));
    } else {
        plan.requeue_after = deadline.map(|d| duration_until(d, now));
    }
    if complete || failure.is_some() {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            plan.requeue_after = Some(Duration::from_secs(ttl.max(0) as u64) + Duration::from_millis(100));
        }
    }
    status.conditions = (!conds.is_empty()).then_some(conds);
    plan.status = status;
    plan
}

/// What the creation decision needs of the successes so far.
#[derive(Debug, Clone, Copy)]
struct Counts {
    succeeded: i32,
    last_success: Option<Timestamp>,
}

/// Which pods to add: up to `parallelism` active, never more than the completions left,
/// after the failure back-off has passed.
#[allow(clippy::too_many_arguments)]
fn plan_creations(
    plan: &mut JobPlan,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    indexed: bool,
    parallelism: i32,
    active: &[&Pod],
    completed: &BTreeSet<i32>,
    counts: Counts,
    failed_pods: &[&Pod],
    backoff: Backoff,
    now: Timestamp,
) {
    // Back-off counts failures since the last success (Kubernetes' backoffRecord).
    let Counts { succeeded, last_success } = counts;
    let recent_failures: Vec<Timestamp> =
        failed_pods.iter().filter_map(|p| finish_time(p)).filter(|t| last_success.is_none_or(|s| *t > s)).collect();
    if let Some(last) = recent_failures.iter().max() {
        let ready_at =
            *last + SignedDuration::try_from(backoff.delay(recent_failures.len() as u32)).unwrap_or_default();
        if ready_at > now {
            plan.requeue_after = Some(duration_until(ready_at, now) + Duration::from_millis(100));
            return;
        }
    }
    let active_n = active.len() as i32;
    if indexed {
        let n = spec.completions.unwrap_or(0);
        let running: BTreeSet<i32> = active.iter().filter_map(|p| pod_index(p)).collect();
        let room = (parallelism - active_n).max(0) as usize;
        plan.create = (0..n).filter(|i| !completed.contains(i) && !running.contains(i)).take(room).map(Some).collect();
    } else {
        let want = match spec.completions {
            Some(n) => parallelism.min(n - succeeded),
            // Without completions, once one pod succeeded no new pods start.
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        plan.create = vec![None; (want - active_n).max(0) as usize];
    }
}

/// The pod a Job creates for `index` (None: NonIndexed): its template, a generated name,
/// the controller reference, and for Indexed Jobs the index annotation/label, env var and
/// hostname.
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                let env = c.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.name != COMPLETION_INDEX_ENV);
                env.push(k8s_openapi::api::core::v1::EnvVar {
                    name: COMPLETION_INDEX_ENV.into(),
                    value: None,
                    value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                        field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        }),
                        ..Default::default()
                    }),
                });
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_ref("batch/v1", "Job", &job.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
