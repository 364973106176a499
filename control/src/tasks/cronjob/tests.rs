//! Unit tests of the CronJob decision: scheduling, missed times, policies, history.

use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use super::plan::*;
use crate::cron::Schedule;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(schedule: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("default".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Allow".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec { metadata: None, spec: Some(JobSpec::default()) },
            ..Default::default()
        }),
        status: None,
    }
}

fn job(name: &str, started: &str, finished: Option<(&str, bool)>) -> Job {
    let conditions = finished.map(|(at, ok)| {
        vec![JobCondition {
            type_: if ok { "Complete" } else { "Failed" }.into(),
            status: "True".into(),
            last_transition_time: Some(Time(ts(at))),
            ..Default::default()
        }]
    });
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(ts(started))),
            owner_references: Some(vec![OwnerReference {
                uid: "cj-uid".into(),
                kind: "CronJob".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(JobSpec::default()),
        status: Some(JobStatus {
            start_time: Some(Time(ts(started))),
            completion_time: finished.filter(|f| f.1).map(|f| Time(ts(f.0))),
            conditions,
            ..Default::default()
        }),
    }
}

#[test]
fn job_names_are_minutes_since_epoch() {
    assert_eq!(job_name("hello", ts("2024-01-01T00:01:00Z")), "hello-28401121");
}

#[test]
fn starts_the_due_time_once() {
    let cj = cronjob("*/5 * * * *", "2024-01-01T00:00:30Z");
    // Nothing due yet.
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T00:03:00Z"));
    assert_eq!(p.start, None);
    assert_eq!(p.requeue_after.map(|d| d.as_secs()), Some(120));
    // Due.
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T00:05:10Z"));
    assert_eq!(p.start, Some(ts("2024-01-01T00:05:00Z")));
    assert_eq!(p.status.last_schedule_time, Some(Time(ts("2024-01-01T00:05:00Z"))));
    // Already done: lastScheduleTime equals the due time.
    let mut cj2 = cj.clone();
    cj2.status = Some(p.status.clone());
    assert_eq!(plan_cronjob(&cj2, &[], ts("2024-01-01T00:06:00Z")).start, None);
}

#[test]
fn missed_times_start_only_the_most_recent() {
    let mut cj = cronjob("* * * * *", "2024-01-01T00:00:00Z");
    cj.status =
        Some(CronJobStatus { last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))), ..Default::default() });
    // An outage of 30 minutes: one run, for 00:30, no burst, no warning.
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T00:30:20Z"));
    assert_eq!(p.start, Some(ts("2024-01-01T00:30:00Z")));
    assert!(p.events.is_empty());
    // More than 100 missed: still one run, and Kubernetes' warning.
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T03:00:20Z"));
    assert_eq!(p.start, Some(ts("2024-01-01T03:00:00Z")));
    let e = &p.events[0];
    assert_eq!(e.reason, "TooManyMissedTimes");
    assert!(e.message.starts_with("too many missed start times: 180. Set or decrease .spec.startingDeadlineSeconds"));
    // Within startingDeadlineSeconds the missed count is bounded by the deadline: no warning.
    cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(200);
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T03:00:20Z"));
    assert_eq!(p.start, Some(ts("2024-01-01T03:00:00Z")));
    assert!(p.events.is_empty());
}

#[test]
fn starting_deadline_missed() {
    let mut cj = cronjob("0 * * * *", "2024-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(60);
    cj.status =
        Some(CronJobStatus { last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))), ..Default::default() });
    // 01:00 was missed by 10 minutes: past the 60 s deadline, the window starts after it.
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T01:10:00Z"));
    assert_eq!(p.start, None);
    // Within the deadline it runs.
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T01:00:30Z"));
    assert_eq!(p.start, Some(ts("2024-01-01T01:00:00Z")));
}

#[test]
fn most_recent_time_on_irregular_schedule() {
    let s = Schedule::parse("30 6-16/4 * * 1-5").unwrap();
    let (t, missed) =
        most_recent_schedule_time(&s, &jiff::tz::TimeZone::UTC, ts("2024-01-01T00:00:00Z"), ts("2024-01-03T12:00:00Z"))
            .unwrap();
    assert_eq!(t, Some(ts("2024-01-03T10:30:00Z")));
    assert!(missed >= 1);
}

#[test]
fn forbid_and_replace() {
    let mut cj = cronjob("* * * * *", "2024-01-01T00:00:00Z");
    let running = job("hello-28401120", "2024-01-01T00:00:00Z", None);
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
    let p = plan_cronjob(&cj, &[&running], ts("2024-01-01T00:01:05Z"));
    assert_eq!(p.start, None);
    assert_eq!(p.events.last().unwrap().reason, "JobAlreadyActive");
    assert_eq!(p.status.active.as_ref().unwrap().len(), 1, "the running job is listed as active");
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
    let p = plan_cronjob(&cj, &[&running], ts("2024-01-01T00:01:05Z"));
    assert_eq!(p.replace, vec!["hello-28401120".to_string()]);
    assert_eq!(p.start, Some(ts("2024-01-01T00:01:00Z")));
    assert!(p.status.active.is_none());
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Allow".into());
    let p = plan_cronjob(&cj, &[&running], ts("2024-01-01T00:01:05Z"));
    assert!(p.replace.is_empty());
    assert_eq!(p.start, Some(ts("2024-01-01T00:01:00Z")));
}

#[test]
fn suspended_starts_nothing() {
    let mut cj = cronjob("* * * * *", "2024-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().suspend = Some(true);
    assert_eq!(plan_cronjob(&cj, &[], ts("2024-01-01T00:10:00Z")).start, None);
}

#[test]
fn finished_jobs_leave_active_and_history_is_pruned() {
    let mut cj = cronjob("* * * * *", "2024-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().successful_jobs_history_limit = Some(2);
    let jobs: Vec<Job> = (1..=4)
        .map(|i| job(&format!("hello-{i}"), &format!("2024-01-01T00:0{i}:00Z"), Some(("2024-01-01T00:09:00Z", true))))
        .chain([
            job("hello-f1", "2024-01-01T00:01:30Z", Some(("2024-01-01T00:02:00Z", false))),
            job("hello-f2", "2024-01-01T00:02:30Z", Some(("2024-01-01T00:03:00Z", false))),
        ])
        .collect();
    cj.status = Some(CronJobStatus {
        active: Some(vec![k8s_openapi::api::core::v1::ObjectReference {
            name: Some("hello-4".into()),
            uid: Some("uid-hello-4".into()),
            ..Default::default()
        }]),
        last_schedule_time: Some(Time(ts("2024-01-01T00:10:00Z"))),
        ..Default::default()
    });
    let refs: Vec<&Job> = jobs.iter().collect();
    let p = plan_cronjob(&cj, &refs, ts("2024-01-01T00:10:30Z"));
    assert_eq!(p.prune, vec!["hello-1", "hello-2", "hello-f1"]);
    assert!(p.status.active.is_none());
    assert_eq!(p.events[0].reason, "SawCompletedJob");
    assert_eq!(p.events[0].message, "Saw completed job: hello-4, condition: Complete");
    assert_eq!(p.status.last_successful_time, Some(Time(ts("2024-01-01T00:09:00Z"))));
}

#[test]
fn new_job_from_template() {
    let mut cj = cronjob("* * * * *", "2024-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().time_zone = Some("Europe/Berlin".into());
    let tz = crate::cron::time_zone(Some("Europe/Berlin")).unwrap();
    let j = new_job(&cj, ts("2024-01-01T00:01:00Z"), &tz);
    assert_eq!(j.metadata.name.as_deref(), Some("hello-28401121"));
    assert_eq!(j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP], "2024-01-01T01:01:00+01:00");
    let utc = new_job(&cj, ts("2024-01-01T00:01:00Z"), &jiff::tz::TimeZone::UTC);
    assert_eq!(utc.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP], "2024-01-01T00:01:00Z");
    let owner = &j.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("CronJob", Some(true)));
}

#[test]
fn bad_time_zone_is_an_event() {
    let mut cj = cronjob("* * * * *", "2024-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().time_zone = Some("Mars/Olympus".into());
    let p = plan_cronjob(&cj, &[], ts("2024-01-01T00:10:00Z"));
    assert_eq!(p.start, None);
    assert_eq!(p.events[0].reason, "UnknownTimeZone");
}
