//! Black-box tests of the batch workloads and ResourceQuota on real processes: a
//! `berth-server` and a `berth-agent --runtime process`, so Job pods really run and exit.
//!
//! * Jobs: retries after a failure (with Kubernetes' 10 s back-off) until Complete;
//!   `backoffLimit` exceeded → Failed/BackoffLimitExceeded; an Indexed Job runs every
//!   index with `JOB_COMPLETION_INDEX`; `activeDeadlineSeconds` → DeadlineExceeded with
//!   the running pod deleted; `ttlSecondsAfterFinished` deletes the finished Job; a
//!   suspended Job starts no pod until resumed.
//! * CronJobs: a `* * * * *` schedule fires at the next minute (up to ~70 s: Kubernetes'
//!   cron is minute-granular and Berth adds no seconds field); `@every` (which Kubernetes
//!   accepts too) shows the history limit within seconds and Forbid at the next minute.
//! * ResourceQuota: 403 with kube-apiserver's messages; 20 concurrent creates against
//!   `pods: 5` → exactly 5 created and `status.used.pods` exactly 5; deleted and finished
//!   pods free the quota.

use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{Agent, CtlCluster};
use serde_json::Value;

fn get_json(c: &CtlCluster, args: &[&str]) -> Option<Value> {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&c.try_ok(&full).ok()?).ok()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Waits for a Job to have a True condition `type_` and returns the Job.
fn job_with_condition(c: &CtlCluster, name: &str, type_: &str, limit: Duration) -> Value {
    eventually(limit, &format!("job {name} {type_}"), || {
        let job = get_json(c, &["get", "job", name])?;
        condition(&job, type_).is_some().then_some(job)
    })
}

fn job_yaml(name: &str, extra_spec: &str, command: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", {command:?}]
"#
    )
}

fn pods_of(c: &CtlCluster, job: &str) -> Vec<Value> {
    get_json(c, &["get", "pods", "-l", &format!("job-name={job}")])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_retry_fail_index_deadline_and_ttl() {
    let c = CtlCluster::start(1, Agent::Process).await;
    let work = c.dir.join("job-work");
    std::fs::create_dir_all(&work).unwrap();
    let w = work.display();
    // Fails the first time (no marker yet), succeeds the second.
    let retry = format!("if [ -f {w}/retry-marker ]; then exit 0; fi; touch {w}/retry-marker; exit 1");
    let manifests = [
        job_yaml("retry", "  backoffLimit: 3", &retry),
        job_yaml("doomed", "  backoffLimit: 1", "exit 1"),
        job_yaml(
            "indexed",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            &format!("echo $JOB_COMPLETION_INDEX > {w}/index-$JOB_COMPLETION_INDEX"),
        ),
        job_yaml("slow", "  activeDeadlineSeconds: 3", "sleep 3600"),
        job_yaml("shortlived", "  ttlSecondsAfterFinished: 2", "exit 0"),
        job_yaml("paused", "  suspend: true", "exit 0"),
    ];
    for m in &manifests {
        c.ok_stdin(&["apply", "-f", "-"], m);
    }

    // Validation: a Job's pods must not restart Always (the default when omitted).
    let bad = job_yaml("bad", "", "exit 0").replace("      restartPolicy: Never\n", "");
    let out = c.run(&["apply", "-f", "-"], Some(&bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            r#"Job.batch "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
        ),
        "{stderr}"
    );

    // Indexed: every index ran once, with its index in env (and in the pod's hostname,
    // which the process runtime cannot apply: its containers share the host's).
    let job = job_with_condition(&c, "indexed", "Complete", Duration::from_secs(40));
    assert_eq!(job["status"]["completedIndexes"], "0-2");
    assert_eq!(job["status"]["succeeded"], 3);
    for i in 0..3 {
        let text = std::fs::read_to_string(work.join(format!("index-{i}"))).expect("index file");
        assert_eq!(text.trim(), i.to_string(), "index {i}");
    }
    for pod in pods_of(&c, "indexed") {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap();
        assert!(name.starts_with(&format!("indexed-{index}-")), "{name}");
        assert_eq!(pod["spec"]["hostname"], format!("indexed-{index}"));
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["controller"].as_bool()), (Some("Job"), Some(true)));
        assert_eq!(owner["blockOwnerDeletion"], true);
        assert_eq!(pod["metadata"]["labels"]["batch.kubernetes.io/job-name"], "indexed");
    }

    // Suspended: no pods until resumed, then it runs to completion.
    let job = job_with_condition(&c, "paused", "Suspended", Duration::from_secs(20));
    assert_eq!(condition(&job, "Suspended").unwrap()["reason"], "JobSuspended");
    assert!(pods_of(&c, "paused").is_empty() && job["status"]["startTime"].is_null());
    c.ok_stdin(&["apply", "-f", "-"], &job_yaml("paused", "  suspend: false", "exit 0"));
    let job = job_with_condition(&c, "paused", "Complete", Duration::from_secs(30));
    let resumed = job["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Suspended").unwrap();
    assert_eq!((resumed["status"].as_str(), resumed["reason"].as_str()), (Some("False"), Some("JobResumed")));

    // Deadline: failed, and its running pod deleted.
    let job = job_with_condition(&c, "slow", "Failed", Duration::from_secs(30));
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert_eq!(failed["message"], "Job was active longer than specified deadline");
    eventually(Duration::from_secs(30), "slow's pod deleted", || pods_of(&c, "slow").is_empty().then_some(()));

    // TTL: the finished Job goes away by itself.
    eventually(Duration::from_secs(40), "shortlived deleted after its TTL", || {
        c.try_ok(&["get", "job", "shortlived"]).is_err().then_some(())
    });

    // Retry: one failure, a 10 s back-off, then success.
    let job = job_with_condition(&c, "retry", "Complete", Duration::from_secs(60));
    assert_eq!((job["status"]["succeeded"].as_i64(), job["status"]["failed"].as_i64()), (Some(1), Some(1)));
    assert!(job["status"]["completionTime"].is_string() && job["status"]["startTime"].is_string());
    let retry_pods = pods_of(&c, "retry");
    assert_eq!(retry_pods.len(), 2);
    for pod in &retry_pods {
        assert!(pod["metadata"]["name"].as_str().unwrap().starts_with("retry-"));
    }

    // backoffLimit 1: two failures (10 s apart) fail the Job.
    let job = job_with_condition(&c, "doomed", "Failed", Duration::from_secs(60));
    assert_eq!(condition(&job, "Failed").unwrap()["reason"], "BackoffLimitExceeded");
    assert_eq!(job["status"]["failed"], 2);
    assert!(condition(&job, "Complete").is_none());
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=doomed"]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cronjobs_fire_on_schedule_with_policies_and_history() {
    let c = CtlCluster::start(1, Agent::Process).await;
    let cronjob = |name: &str, schedule: &str, extra: &str, command: &str| {
        format!(
            r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "{schedule}"
{extra}
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
            command: ["sh", "-c", {command:?}]
"#
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], &cronjob("minutely", "* * * * *", "  timeZone: Europe/Berlin", "exit 0"));
    c.ok_stdin(&["apply", "-f", "-"], &cronjob("forbid", "@every 8s", "  concurrencyPolicy: Forbid", "sleep 3600"));
    c.ok_stdin(&["apply", "-f", "-"], &cronjob("pruned", "@every 5s", "  successfulJobsHistoryLimit: 0", "exit 0"));

    let jobs_of = |cj: &str| -> Vec<Value> {
        get_json(&c, &["get", "jobs"])
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == cj)
            .collect()
    };

    // Forbid: the first Job keeps running, the next time is skipped with Kubernetes' Event.
    // Times within the first Job's minute map to its name (`NAME-<minutes>`) and are
    // skipped as already started, as in Kubernetes; the first time in the next minute is
    // the one Forbid refuses (and Allow would have started): up to ~70 s.
    eventually(Duration::from_secs(30), "forbid's first job", || (jobs_of("forbid").len() == 1).then_some(()));
    eventually(Duration::from_secs(80), "JobAlreadyActive event", || {
        let ev = c.try_ok(&["get", "events", "--field-selector", "involvedObject.name=forbid"]).ok()?;
        ev.contains("JobAlreadyActive").then_some(())
    });
    assert_eq!(jobs_of("forbid").len(), 1, "Forbid started a second job");
    let cj = get_json(&c, &["get", "cronjob", "forbid"]).unwrap();
    assert_eq!(cj["status"]["active"].as_array().map(Vec::len), Some(1));

    // History limit 0: the successful Job is deleted once it completed; lastSuccessfulTime stays.
    eventually(Duration::from_secs(40), "pruned: success recorded and pruned", || {
        let cj = get_json(&c, &["get", "cronjob", "pruned"])?;
        cj["status"]["lastSuccessfulTime"].is_string().then_some(())
    });
    eventually(Duration::from_secs(20), "no completed job of pruned kept", || {
        jobs_of("pruned").iter().all(|j| condition(j, "Complete").is_none()).then_some(())
    });

    // A standard schedule: the next minute boundary, named after it, annotated in its zone.
    let job = eventually(Duration::from_secs(75), "minutely's job", || jobs_of("minutely").into_iter().next());
    let name = job["metadata"]["name"].as_str().unwrap();
    let minutes: i64 = name.strip_prefix("minutely-").and_then(|m| m.parse().ok()).expect("NAME-<minutes>");
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(stamp).expect("RFC 3339");
    assert_eq!(at.timestamp(), minutes * 60);
    assert!(matches!(at.offset().local_minus_utc(), 3600 | 7200), "Berlin offset in {stamp}");
    let cj = eventually(Duration::from_secs(30), "minutely's lastSuccessfulTime", || {
        let cj = get_json(&c, &["get", "cronjob", "minutely"])?;
        cj["status"]["lastSuccessfulTime"].is_string().then_some(cj)
    });
    // The latest run: this one, or a later minute's if the test was slow to look.
    let last = chrono::DateTime::parse_from_rfc3339(cj["status"]["lastScheduleTime"].as_str().unwrap()).unwrap();
    assert!(last.timestamp() >= minutes * 60 && last.timestamp() % 60 == 0, "{last}");
}

fn pod_yaml(name: &str, command: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", {command:?}]
{resources}
"#
    )
}

fn used(c: &CtlCluster, ns: &str, quota: &str, resource: &str) -> Option<String> {
    let q = get_json(c, &["get", "resourcequota", quota, "-n", ns])?;
    q["status"]["used"][resource].as_str().map(String::from)
}

fn wait_used(c: &CtlCluster, ns: &str, quota: &str, resource: &str, want: &str) {
    eventually(Duration::from_secs(20), &format!("{quota} used {resource}={want}"), || {
        (used(c, ns, quota, resource).as_deref() == Some(want)).then_some(())
    });
}

fn create_in(c: &CtlCluster, ns: &str, yaml: &str) -> Result<(), String> {
    let out = c.run(&["create", "-n", ns, "-f", "-"], Some(yaml));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_quota_admission_is_exact() {
    let c = CtlCluster::start(1, Agent::Process).await;
    c.ok(&["create", "namespace", "counted"]);
    c.ok(&["create", "namespace", "compute"]);
    let quota =
        |hard: &str| format!("apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\nspec:\n  hard: {hard}\n");
    create_in(&c, "counted", &quota(r#"{"pods": "5", "count/deployments.apps": "1"}"#)).unwrap();
    create_in(&c, "compute", &quota(r#"{"requests.cpu": "1200m", "limits.cpu": "2"}"#)).unwrap();
    wait_used(&c, "counted", "q", "pods", "0");
    wait_used(&c, "compute", "q", "requests.cpu", "0");

    // 20 concurrent creates for 5 free slots.
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let c = &c;
                s.spawn(move || create_in(c, "counted", &pod_yaml(&format!("p{i}"), "sleep 3600", "")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 5, "{results:?}");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(e.contains("Forbidden"), "{e}");
        assert!(e.contains("is forbidden: exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"), "{e}");
    }
    // Exact at once (written with the pods), and the controller agrees.
    assert_eq!(used(&c, "counted", "q", "pods").as_deref(), Some("5"));
    let pods = get_json(&c, &["get", "pods", "-n", "counted"]).unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 5);
    // An observation window, not a wait: the quota controller recomputes every second,
    // and two of its sweeps must leave the figure as admission wrote it.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(used(&c, "counted", "q", "pods").as_deref(), Some("5"));

    // Object counts of other groups.
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers: [{{name: c, image: busybox, command: [sleep, '3600']}}]\n"
        )
    };
    create_in(&c, "counted", &deployment("d1")).unwrap();
    assert_eq!(used(&c, "counted", "q", "count/deployments.apps").as_deref(), Some("1"));
    let err = create_in(&c, "counted", &deployment("d2")).unwrap_err();
    assert!(
        err.contains(r#"deployments.apps "d2" is forbidden: exceeded quota: q, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"#),
        "{err}"
    );
    c.ok(&["delete", "deployment", "d1", "-n", "counted"]);

    // Deleting pods frees the quota (the controller recomputes).
    let name = get_json(&c, &["get", "pods", "-n", "counted"]).unwrap()["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&["delete", "pod", &name, "-n", "counted", "--grace-period=0", "--force"]);
    wait_used(&c, "counted", "q", "pods", "4");
    create_in(&c, "counted", &pod_yaml("again", "sleep 3600", "")).expect("a freed slot");

    // Compute resources, with kube-apiserver's messages.
    let res = |req: &str, lim: &str| {
        format!("    resources:\n      requests:\n        cpu: {req}\n      limits:\n        cpu: {lim}")
    };
    create_in(&c, "compute", &pod_yaml("big", "sleep 3600", &res("1", "1"))).expect("fits");
    let err = create_in(&c, "compute", &pod_yaml("more", "sleep 3600", &res("500m", "500m"))).unwrap_err();
    assert!(
        err.contains(r#"pods "more" is forbidden: exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=1, limited: requests.cpu=1200m"#),
        "{err}"
    );
    let no_limits = pod_yaml("nolimits", "sleep 3600", "    resources:\n      requests:\n        cpu: 100m");
    let err = create_in(&c, "compute", &no_limits).unwrap_err();
    assert!(err.contains(r#"pods "nolimits" is forbidden: failed quota: q: must specify limits.cpu for: c"#), "{err}");

    // A finished pod no longer counts: 200m that exits frees its cpu.
    create_in(&c, "compute", &pod_yaml("quick", "exit 0", &res("200m", "200m"))).expect("fits");
    assert_eq!(used(&c, "compute", "q", "requests.cpu").as_deref(), Some("1200m"));
    wait_used(&c, "compute", "q", "requests.cpu", "1");
}
