//! The CronJob controller's pure decision (Kubernetes' `syncCronJob`): given a CronJob,
//! the Jobs it owns and the time, which Job to start (at most one — the most recent
//! missed time, never a burst), which to replace or prune, the status and the Events.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cron::{time_zone, Schedule};
use crate::tasks::job::plan::{condition, is_finished};

/// Annotation on a CronJob's Job: the scheduled time it runs for (RFC 3339, in the
/// CronJob's time zone).
pub use berth_proto::model::well_known::ANNOTATION_CRONJOB_SCHEDULED_TIMESTAMP as SCHEDULED_TIMESTAMP;
/// Missed start times above this get Kubernetes' `TooManyMissedTimes` warning.
const TOO_MANY_MISSED: i64 = 100;

/// An Event the sync records on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Everything one sync of a CronJob does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CronPlan {
    /// Start a Job for this scheduled time.
    pub start: Option<Timestamp>,
    /// Active Jobs to delete first (concurrencyPolicy Replace).
    pub replace: Vec<String>,
    /// Finished Jobs beyond the history limits (oldest first).
    pub prune: Vec<String>,
    pub status: CronJobStatus,
    pub events: Vec<CronEvent>,
    /// When to look again (the next scheduled time).
    pub requeue_after: Option<Duration>,
}

/// Kubernetes' Job name for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn succeeded(job: &Job) -> bool {
    condition(job.status.as_ref(), "Complete").is_some_and(|c| c.status == "True")
}

/// Kubernetes' `mostRecentScheduleTime`: the latest scheduled time in `(earliest, now]`
/// and how many were missed. The count is the rough estimate Kubernetes makes (interval
/// between the first two times), which only decides the warning.
pub fn most_recent_schedule_time(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> Result<(Option<Timestamp>, i64), String> {
    let Some(t1) = schedule.next(earliest, tz) else { return Ok((None, 0)) };
    if t1 > now {
        return Ok((None, 0));
    }
    let Some(t2) = schedule.next(t1, tz) else { return Ok((Some(t1), 1)) };
    if t2 > now {
        return Ok((Some(t1), 1));
    }
    let between = t2.duration_since(t1).as_secs();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let missed = now.duration_since(t1).as_secs() / between + 1;
    // Jump close to `now`, then let the schedule find the exact latest time (irregular
    // schedules such as `30 6-16/4 * * 1-5` are not evenly spaced).
    let from = t1 + SignedDuration::from_secs((missed - 2).max(0) * between);
    let mut latest = None;
    let mut t = schedule.next(from, tz);
    while let Some(x) = t.filter(|x| *x <= now) {
        latest = Some(x);
        t = schedule.next(x, tz);
    }
    Ok((latest.or(Some(t1)), missed))
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or_default()
}

/// Decides one sync of `cj` given the Jobs it controls.
pub fn plan_cronjob(cj: &CronJob, jobs: &[&Job], now: Timestamp) -> CronPlan {
    let mut plan = CronPlan::default();
    let spec = cj.spec.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();
    let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();

    // Reconcile `active` with the Jobs that exist.
    for job in jobs {
        let uid = job.metadata.uid.as_deref();
        let listed = active.iter().any(|r| r.uid.as_deref() == uid);
        if is_finished(job) {
            if listed {
                active.retain(|r| r.uid.as_deref() != uid);
                let cond = if succeeded(job) { "Complete" } else { "Failed" };
                plan.events.push(CronEvent {
                    warning: false,
                    reason: "SawCompletedJob",
                    message: format!(
                        "Saw completed job: {}, condition: {cond}",
                        job.metadata.name.as_deref().unwrap_or_default()
                    ),
                });
            }
            if succeeded(job) {
                let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                if let Some(done) = done {
                    if status.last_successful_time.as_ref().is_none_or(|t| t.0 < done.0) {
                        status.last_successful_time = Some(done);
                    }
                }
            }
        } else if !listed && job.metadata.deletion_timestamp.is_none() {
            active.push(job_reference(job));
        }
    }
    active.retain(|r| {
        let exists = jobs.iter().any(|j| j.metadata.uid == r.uid);
        if !exists {
            plan.events.push(CronEvent {
                warning: false,
                reason: "MissingJob",
                message: format!("Active job went missing: {}", r.name.as_deref().unwrap_or_default()),
            });
        }
        exists
    });

    plan.prune = history_to_prune(jobs, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit);
    let finish = |mut plan: CronPlan, mut status: CronJobStatus, active: Vec<ObjectReference>| {
        status.active = (!active.is_empty()).then_some(active);
        plan.status = status;
        plan
    };

    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return finish(plan, status, active);
    }
    let tz = match time_zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            let tz = spec.time_zone.clone().unwrap_or_default();
            plan.events.push(CronEvent {
                warning: true,
                reason: "UnknownTimeZone",
                message: format!("invalid timeZone: {tz:?}: {e}"),
            });
            return finish(plan, status, active);
        }
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            plan.events.push(CronEvent {
                warning: true,
                reason: "UnparseableSchedule",
                message: format!("unparseable schedule: {:?} : {e}", spec.schedule),
            });
            return finish(plan, status, active);
        }
    };

    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - SignedDuration::from_secs(deadline));
    }
    let next_after_now = schedule.next(now, &tz);
    plan.requeue_after = next_after_now.map(|t| until(t, now) + Duration::from_millis(100));
    let scheduled = if earliest > now {
        None
    } else {
        match most_recent_schedule_time(&schedule, &tz, earliest, now) {
            Ok((t, missed)) => {
                if missed > TOO_MANY_MISSED {
                    plan.events.push(CronEvent {
                        warning: true,
                        reason: "TooManyMissedTimes",
                        message: format!(
                            "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                        ),
                    });
                }
                t
            }
            Err(e) => {
                plan.events.push(CronEvent {
                    warning: true,
                    reason: "InvalidSchedule",
                    message: format!("invalid schedule: {} : {e}", spec.schedule),
                });
                None
            }
        }
    };
    let Some(scheduled) = scheduled else { return finish(plan, status, active) };

    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled + SignedDuration::from_secs(deadline) < now {
            plan.events.push(CronEvent {
                warning: true,
                reason: "MissSchedule",
                message: format!("Missed scheduled time to start a job: {}", rfc1123z(scheduled)),
            });
            return finish(plan, status, active);
        }
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
    let already = active.iter().any(|r| r.name.as_deref() == Some(&name))
        || status.last_schedule_time.as_ref().is_some_and(|t| t.0 == scheduled);
    if already {
        return finish(plan, status, active);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            plan.events.push(CronEvent {
                warning: false,
                reason: "JobAlreadyActive",
                message: "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            });
            return finish(plan, status, active);
        }
        Some("Replace") => {
            plan.replace = active.drain(..).filter_map(|r| r.name).collect();
        }
        _ => {}
    }
    plan.start = Some(scheduled);
    status.last_schedule_time = Some(Time(scheduled));
    finish(plan, status, active)
}

/// Go's `time.RFC1123Z` in UTC, as Kubernetes formats missed times.
fn rfc1123z(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, oldest
/// (by start time, then creation) first.
fn history_to_prune(jobs: &[&Job], successful: Option<i32>, failed: Option<i32>) -> Vec<String> {
    let started = |j: &&Job| {
        j.status.as_ref().and_then(|s| s.start_time.as_ref()).or(j.metadata.creation_timestamp.as_ref()).map(|t| t.0)
    };
    let mut out = Vec::new();
    for (want_success, limit) in [(true, successful), (false, failed)] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| is_finished(j) && succeeded(j) == want_success && j.metadata.deletion_timestamp.is_none())
            .collect();
        finished.sort_by_key(|j| (started(j), j.metadata.name.clone()));
        let extra = finished.len().saturating_sub(limit.max(0) as usize);
        out.extend(finished[..extra].iter().filter_map(|j| j.metadata.name.clone()));
    }
    out
}

/// The Job a CronJob starts for `scheduled`: its template, the Kubernetes name, the
/// scheduled-timestamp annotation and a controller reference.
pub fn new_job(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().replace("+00:00", "Z"),
    );
    Job {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![crate::tasks::ownership::controller_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}
