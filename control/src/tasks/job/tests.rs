//! Unit tests of the Job decision: counts, back-off, deadline, Indexed, suspend, TTL.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use super::plan::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn labels() -> std::collections::BTreeMap<String, String> {
    [("batch.kubernetes.io/controller-uid".to_string(), "job-uid".to_string())].into()
}

fn job(completions: Option<i32>, parallelism: i32, indexed: bool) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
            selector: Some(LabelSelector { match_labels: Some(labels()), ..Default::default() }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels()), ..Default::default() }),
                spec: Some(PodSpec { restart_policy: Some("Never".into()), ..Default::default() }),
            },
            ..Default::default()
        }),
        status: Some(JobStatus { start_time: Some(Time(t(0))), ..Default::default() }),
    }
}

/// An owned pod in `phase`, finished at `finished` (for Succeeded/Failed), with `index`.
fn pod(name: &str, phase: &str, finished: Option<i64>, index: Option<i32>) -> Pod {
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(i) = index {
        annotations.insert(COMPLETION_INDEX.to_string(), i.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels()),
            annotations: Some(annotations),
            creation_timestamp: Some(Time(t(0))),
            owner_references: Some(vec![OwnerReference {
                uid: "job-uid".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: finished.map(|f| {
                vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(Time(t(f))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn plan(job: &Job, pods: &[Pod], now: i64) -> JobPlan {
    let refs: Vec<&Pod> = pods.iter().collect();
    plan_job(job, &refs, true, Backoff::default(), t(now))
}

fn cond<'a>(p: &'a JobPlan, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    condition(Some(&p.status), type_)
}

#[test]
fn backoff_doubles_and_caps() {
    let b = Backoff::default();
    assert_eq!(b.delay(0), Duration::ZERO);
    assert_eq!(b.delay(1), Duration::from_secs(10));
    assert_eq!(b.delay(2), Duration::from_secs(20));
    assert_eq!(b.delay(4), Duration::from_secs(80));
    assert_eq!(b.delay(6), Duration::from_secs(320));
    assert_eq!(b.delay(7), Duration::from_secs(360));
    assert_eq!(b.delay(1000), Duration::from_secs(360));
}

#[test]
fn creates_up_to_parallelism_and_completions_left() {
    let j = job(Some(5), 2, false);
    let p = plan(&j, &[], 1);
    assert_eq!(p.create, vec![None, None]);
    assert_eq!(p.status.active, None, "zero counts are omitted");
    assert_eq!(p.status.ready, Some(0));
    // 4 succeeded, 0 active: only one more is needed.
    let pods: Vec<Pod> = (0..4).map(|i| pod(&format!("s{i}"), "Succeeded", Some(1), None)).collect();
    let p = plan(&j, &pods, 2);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.status.succeeded, Some(4));
}

#[test]
fn completes_with_conditions_and_completion_time() {
    let j = job(Some(2), 1, false);
    let pods = vec![pod("a", "Succeeded", Some(1), None), pod("b", "Succeeded", Some(2), None)];
    let p = plan(&j, &pods, 3);
    assert!(p.create.is_empty());
    let c = cond(&p, "Complete").expect("Complete");
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("True", Some("CompletionsReached")));
    assert!(cond(&p, "SuccessCriteriaMet").is_some());
    assert_eq!(p.status.completion_time, Some(Time(t(3))));
    assert_eq!(p.events[0].reason, "Completed");
    assert_eq!(p.status.start_time, Some(Time(t(0))), "startTime is kept");
}

#[test]
fn failed_pod_waits_for_backoff_then_is_replaced() {
    let j = job(Some(1), 1, false);
    let pods = vec![pod("a", "Failed", Some(10), None)];
    // 5 s after the failure: still backing off (10 s), requeued for the rest.
    let p = plan(&j, &pods, 15);
    assert!(p.create.is_empty());
    let after = p.requeue_after.unwrap();
    assert!(after >= Duration::from_secs(5) && after < Duration::from_secs(6), "{after:?}");
    assert_eq!(p.status.failed, Some(1));
    // After the back-off: a replacement.
    let p = plan(&j, &pods, 21);
    assert_eq!(p.create, vec![None]);
    // Two failures: 20 s from the last one.
    let pods = vec![pod("a", "Failed", Some(10), None), pod("b", "Failed", Some(30), None)];
    assert!(plan(&j, &pods, 45).create.is_empty());
    assert_eq!(plan(&j, &pods, 51).create.len(), 1);
    // A success resets the back-off.
    let j = job(Some(2), 1, false);
    let pods = vec![pod("a", "Failed", Some(10), None), pod("b", "Succeeded", Some(30), None)];
    assert_eq!(plan(&j, &pods, 31).create.len(), 1);
}

#[test]
fn backoff_limit_exceeded_fails_and_deletes_active() {
    let mut j = job(Some(1), 2, false);
    j.spec.as_mut().unwrap().backoff_limit = Some(1);
    let pods =
        vec![pod("a", "Failed", Some(1), None), pod("b", "Failed", Some(2), None), pod("c", "Running", None, None)];
    let p = plan(&j, &pods, 100);
    let c = cond(&p, "Failed").expect("Failed");
    assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(c.message.as_deref(), Some("Job has reached the specified backoff limit"));
    assert!(cond(&p, "FailureTarget").is_some());
    assert_eq!(p.delete, vec![crate::tasks::pod_control::PodRef { name: "c".into(), uid: Some("uid-c".into()) }]);
    assert!(p.create.is_empty());
    assert_eq!(p.events[0].reason, "BackoffLimitExceeded");
    assert!(p.events[0].warning);
    // Exactly at the limit it is not failed yet.
    let p = plan(&j, &pods[..1], 100);
    assert!(cond(&p, "Failed").is_none());
}

#[test]
fn on_failure_counts_restarts() {
    let mut j = job(Some(1), 1, false);
    j.spec.as_mut().unwrap().backoff_limit = Some(2);
    j.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    let mut running = pod("a", "Running", None, None);
    running.status.as_mut().unwrap().container_statuses =
        Some(vec![ContainerStatus { restart_count: 3, ..Default::default() }]);
    let p = plan(&j, &[running], 50);
    assert_eq!(cond(&p, "Failed").and_then(|c| c.reason.as_deref()), Some("BackoffLimitExceeded"));
}

#[test]
fn deadline_exceeded() {
    let mut j = job(Some(3), 1, false);
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let pods = vec![pod("a", "Running", None, None)];
    let p = plan(&j, &pods, 10);
    assert!(cond(&p, "Failed").is_none());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(20)), "requeued for the deadline");
    let p = plan(&j, &pods, 30);
    let c = cond(&p, "Failed").expect("Failed");
    assert_eq!(c.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(c.message.as_deref(), Some("Job was active longer than specified deadline"));
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn indexed_creates_missing_indexes_and_reports_completed() {
    let j = job(Some(5), 2, true);
    let pods = vec![
        pod("a", "Succeeded", Some(1), Some(0)),
        pod("b", "Running", None, Some(1)),
        pod("c", "Succeeded", Some(1), Some(3)),
        pod("d", "Failed", Some(0), Some(2)),
    ];
    let p = plan(&j, &pods, 100);
    assert_eq!(p.create, vec![Some(2)], "one free slot, lowest pending index");
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!(p.status.succeeded, Some(2));
    let all: Vec<Pod> = (0..5).map(|i| pod(&format!("p{i}"), "Succeeded", Some(1), Some(i))).collect();
    let p = plan(&j, &all, 100);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0-4"));
    assert!(cond(&p, "Complete").is_some());
}

#[test]
fn indexed_pod_template() {
    let j = job(Some(3), 1, true);
    let pod = new_pod(&j, Some(2));
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
    assert_eq!(pod.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX], "2");
    assert_eq!(pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
    let owner = &pod.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller, owner.block_owner_deletion), ("Job", Some(true), Some(true)));
    let plain = new_pod(&j, None);
    assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
}

#[test]
fn format_indexes_as_intervals() {
    let set = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
    assert_eq!(format_indexes(&set(&[])), "");
    assert_eq!(format_indexes(&set(&[1, 3, 4, 5, 7])), "1,3-5,7");
    assert_eq!(format_indexes(&set(&[0, 1])), "0-1");
}

#[test]
fn suspend_deletes_active_and_resume_restarts_clock() {
    let mut j = job(Some(1), 1, false);
    j.spec.as_mut().unwrap().suspend = Some(true);
    let pods = vec![pod("a", "Running", None, None)];
    let p = plan(&j, &pods, 5);
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
    let c = cond(&p, "Suspended").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("True", Some("JobSuspended")));
    // Resume.
    j.status = Some(p.status.clone());
    j.spec.as_mut().unwrap().suspend = Some(false);
    let p = plan(&j, &[], 50);
    let c = cond(&p, "Suspended").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("JobResumed")));
    assert_eq!(p.status.start_time, Some(Time(t(50))));
    assert_eq!(p.create.len(), 1);
}

#[test]
fn ttl_after_finished() {
    let mut j = job(Some(1), 1, false);
    j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(10);
    let done = plan(&j, &[pod("a", "Succeeded", Some(1), None)], 2);
    assert_eq!(done.requeue_after, Some(Duration::from_millis(10_100)));
    j.status = Some(done.status);
    let p = plan(&j, &[], 5);
    assert!(!p.expired);
    assert!(p.requeue_after.unwrap() <= Duration::from_secs(8));
    assert!(plan(&j, &[], 12).expired);
    // A finished job's status is final.
    assert_eq!(plan(&j, &[], 5).status, j.status.clone().unwrap());
}

#[test]
fn no_management_before_expectations() {
    let j = job(Some(3), 3, false);
    let refs: Vec<&Pod> = vec![];
    let p = plan_job(&j, &refs, false, Backoff::default(), t(1));
    assert!(p.create.is_empty());
}
