//! Table-style tests of the pure sync decision.

use super::*;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn ctx(secs: i64) -> Context {
    Context { now: ts(secs), node_ip: "10.0.0.7".into(), pod_ip: Some("10.0.0.7".into()) }
}

fn pod(containers: &[&str], policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|n| Container { name: n.to_string(), image: Some(format!("{n}:1")), ..Default::default() })
                .collect(),
            restart_policy: Some(policy.into()),
            node_name: Some("n1".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some("BestEffort".into()),
            ..Default::default()
        }),
    }
}

fn record(name: &str, state: RunState, restarts: i32) -> ContainerRecord {
    ContainerRecord {
        id: format!("fake://{name}-{restarts}"),
        restart_count: restarts,
        ..ContainerRecord::new(name, &format!("{name}:1"), state)
    }
}

fn running(name: &str) -> ContainerRecord {
    record(name, RunState::Running { started_at: ts(0) }, 0)
}

fn exited(name: &str, code: i32, at: i64, restarts: i32) -> ContainerRecord {
    record(
        name,
        RunState::Exited(Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Some(ts(at - 1)),
            finished_at: ts(at),
            container_id: format!("fake://{name}"),
        }),
        restarts,
    )
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn new_pod_starts_every_container_and_is_pending() {
    let p = plan(&pod(&["a", "b"], "Always"), &[], &ctx(0));
    assert_eq!(p.actions, vec![Action::Start("a".into()), Action::Start("b".into())]);
    let s = p.status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Ready").status, "False");
    assert_eq!(s.host_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"), "fields the agent does not own are kept");
    assert_eq!(s.start_time, Some(Time(ts(0))));
    let cs = s.container_statuses.unwrap();
    assert_eq!(cs[0].state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("ContainerCreating"));
}

#[test]
fn all_running_and_ready_makes_the_pod_ready() {
    let p = plan(&pod(&["a", "b"], "Always"), &[running("a"), running("b")], &ctx(5));
    assert!(p.actions.is_empty());
    let s = p.status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(cond(&s, "PodScheduled").status, "True");
    let cs = s.container_statuses.unwrap();
    assert!(cs.iter().all(|c| c.ready && c.started == Some(true)));
    assert_eq!(cs[0].container_id.as_deref(), Some("fake://a-0"));
    assert_eq!(cs[0].image, "a:1");
}

#[test]
fn an_unready_container_keeps_the_pod_not_ready_with_a_reason() {
    let mut b = running("b");
    b.ready = false;
    let s = plan(&pod(&["a", "b"], "Always"), &[running("a"), b], &ctx(5)).status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let ready = cond(&s, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ContainersNotReady")));
    assert_eq!(ready.message.as_deref(), Some("containers with unready status: [b]"));
}

#[test]
fn transition_times_stay_while_a_condition_holds() {
    let mut p = pod(&["a"], "Always");
    let first = plan(&p, &[running("a")], &ctx(5)).status.unwrap();
    p.status = Some(first.clone());
    let second = plan(&p, &[running("a")], &ctx(50)).status.unwrap();
    assert_eq!(first, second, "nothing changed, so the status is identical and not written again");
    let mut unready = running("a");
    unready.ready = false;
    let third = plan(&p, &[unready], &ctx(60)).status.unwrap();
    assert_eq!(cond(&third, "Ready").last_transition_time, Some(Time(ts(60))));
    assert_eq!(cond(&third, "PodScheduled").last_transition_time, Some(Time(ts(5))));
    assert_eq!(third.start_time, Some(Time(ts(5))));
}

#[test]
fn restart_policy_decides_restarts() {
    // Always: restart even after success; the first restart is immediate.
    let p = plan(&pod(&["a"], "Always"), &[exited("a", 0, 10, 0)], &ctx(10));
    assert_eq!(p.actions, vec![Action::Start("a".into())]);
    // OnFailure: success is final (Succeeded), failure restarts.
    let p = plan(&pod(&["a"], "OnFailure"), &[exited("a", 0, 10, 0)], &ctx(10));
    assert!(p.actions.is_empty());
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Succeeded"));
    let p = plan(&pod(&["a"], "OnFailure"), &[exited("a", 1, 10, 0)], &ctx(10));
    assert_eq!(p.actions, vec![Action::Start("a".into())]);
    // Never: a failure is final (Failed), with the exit code in the state.
    let p = plan(&pod(&["a"], "Never"), &[exited("a", 2, 10, 0)], &ctx(10));
    assert!(p.actions.is_empty());
    let s = p.status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let t = s.container_statuses.clone().unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (2, Some("Error")));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
}

#[test]
fn mixed_never_pod_runs_until_all_stop() {
    let p = plan(&pod(&["a", "b"], "Never"), &[exited("a", 0, 10, 0), running("b")], &ctx(10));
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    let p = plan(&pod(&["a", "b"], "Never"), &[exited("a", 0, 10, 0), exited("b", 0, 11, 0)], &ctx(12));
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Succeeded"));
}

#[test]
fn crash_loop_backs_off_exponentially() {
    assert_eq!(backoff(0), Duration::ZERO);
    assert_eq!(backoff(1), Duration::from_secs(10));
    assert_eq!(backoff(2), Duration::from_secs(20));
    assert_eq!(backoff(5), Duration::from_secs(160));
    assert_eq!(backoff(6), Duration::from_secs(300));
    assert_eq!(backoff(1000), Duration::from_secs(300));

    let mut a = exited("a", 1, 100, 2);
    a.last_terminated = None;
    // 20 s back-off after the second restart: not yet at 110 s, wake at 120 s.
    let p = plan(&pod(&["a"], "Always"), std::slice::from_ref(&a), &ctx(110));
    assert!(p.actions.is_empty());
    assert_eq!(p.wake_at, Some(ts(120)));
    let s = p.status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Running"), "a restarting container keeps an Always pod Running");
    let c = &s.container_statuses.unwrap()[0];
    let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(w.message.as_deref().unwrap().starts_with("back-off 20s restarting failed container=a pod=web_ns(u1)"));
    assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert_eq!(c.restart_count, 2);
    // Due: restart.
    let p = plan(&pod(&["a"], "Always"), &[a], &ctx(120));
    assert_eq!(p.actions, vec![Action::Start("a".into())]);
}

#[test]
fn running_after_restart_shows_last_state() {
    let mut a = running("a");
    a.restart_count = 1;
    a.last_terminated = match exited("a", 7, 3, 0).state {
        RunState::Exited(t) => Some(t),
        _ => unreachable!(),
    };
    let s = plan(&pod(&["a"], "Always"), &[a], &ctx(5)).status.unwrap();
    let c = &s.container_statuses.unwrap()[0];
    assert_eq!(c.restart_count, 1);
    assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 7);
    assert!(c.state.as_ref().unwrap().running.is_some());
}

#[test]
fn create_errors_are_reported_and_not_retried() {
    let failed =
        record("a", RunState::CreateFailed { reason: "CreateContainerError".into(), message: "no command".into() }, 0);
    let p = plan(&pod(&["a"], "Always"), &[failed], &ctx(5));
    assert!(p.actions.is_empty());
    let s = p.status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let w = s.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!((w.reason.as_deref(), w.message.as_deref()), (Some("CreateContainerError"), Some("no command")));
}

#[test]
fn deletion_stops_with_the_grace_period_then_confirms() {
    let mut p = pod(&["a", "b"], "Always");
    p.metadata.deletion_timestamp = Some(Time(ts(0)));
    p.metadata.deletion_grace_period_seconds = Some(15);
    let plan1 = plan(&p, &[running("a"), exited("b", 0, 1, 0)], &ctx(1));
    assert_eq!(plan1.actions, vec![Action::Stop { container: "a".into(), grace: Duration::from_secs(15) }]);
    assert_eq!(plan1.status, None);
    // Already stopping: nothing more until it exits.
    let mut stopping = running("a");
    stopping.stopping = true;
    assert!(plan(&p, &[stopping], &ctx(2)).actions.is_empty());
    // Nothing active (or never started): confirm.
    assert_eq!(plan(&p, &[exited("a", 143, 3, 0)], &ctx(3)).actions, vec![Action::ConfirmDeletion]);
    assert_eq!(plan(&p, &[], &ctx(3)).actions, vec![Action::ConfirmDeletion]);
}

#[test]
fn stopped_containers_are_not_restarted() {
    let mut a = exited("a", 0, 3, 0);
    a.stopping = true;
    let p = plan(&pod(&["a"], "Always"), &[a], &ctx(4));
    assert!(p.actions.is_empty());
}

#[test]
fn terminal_pods_never_start_again() {
    let mut p = pod(&["a"], "OnFailure");
    p.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let plan1 = plan(&p, &[], &ctx(1));
    assert!(plan1.actions.is_empty());
    assert_eq!(plan1.status.unwrap().phase.as_deref(), Some("Succeeded"));
}

#[test]
fn orphans_are_stopped_then_forgotten() {
    let (actions, done) = plan_orphan(&[running("a"), exited("b", 0, 1, 0)]);
    assert_eq!(actions, vec![Action::Stop { container: "a".into(), grace: Duration::ZERO }]);
    assert!(!done);
    assert_eq!(plan_orphan(&[exited("a", 0, 1, 0)]), (vec![], true));
}

#[test]
fn a_long_run_resets_the_back_off() {
    let mut a = exited("a", 1, 1000, 5);
    if let RunState::Exited(t) = &mut a.state {
        t.started_at = Some(ts(300));
    }
    let p = plan(&pod(&["a"], "Always"), &[a], &ctx(1000));
    assert_eq!(p.actions, vec![Action::Start("a".into())]);
}

fn with_init(mut p: Pod, names: &[&str]) -> Pod {
    p.spec.as_mut().unwrap().init_containers = Some(
        names
            .iter()
            .map(|n| Container { name: n.to_string(), image: Some("init:1".into()), ..Default::default() })
            .collect(),
    );
    p
}

fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

#[test]
fn init_containers_run_in_order_before_app_containers() {
    let p = with_init(pod(&["app"], "Always"), &["i1", "i2"]);
    // Nothing yet: only the first init container starts.
    let pl = plan(&p, &[], &ctx(0));
    assert_eq!(pl.actions, vec![Action::Start("i1".into())]);
    let st = pl.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let init = cond(&st, "Initialized");
    assert_eq!((init.status.as_str(), init.reason.as_deref()), ("False", Some("ContainersNotInitialized")));
    assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [i1 i2]"));
    let app = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!(waiting_reason(app), Some("PodInitializing"));
    // i1 running: nothing else starts.
    let pl = plan(&p, &[running("i1")], &ctx(1));
    assert!(pl.actions.is_empty());
    // i1 done: i2 starts.
    let pl = plan(&p, &[exited("i1", 0, 2, 0)], &ctx(3));
    assert_eq!(pl.actions, vec![Action::Start("i2".into())]);
    let st = pl.status.unwrap();
    let i1 = &st.init_container_statuses.as_ref().unwrap()[0];
    assert!(i1.ready);
    assert_eq!(i1.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("Completed"));
    // Both done: the app container starts; Initialized.
    let pl = plan(&p, &[exited("i1", 0, 2, 0), exited("i2", 0, 4, 0)], &ctx(5));
    assert_eq!(pl.actions, vec![Action::Start("app".into())]);
    assert_eq!(cond(pl.status.as_ref().unwrap(), "Initialized").status, "True");
    let pl = plan(&p, &[exited("i1", 0, 2, 0), exited("i2", 0, 4, 0), running("app")], &ctx(6));
    assert!(pl.actions.is_empty());
    assert_eq!(pl.status.unwrap().phase.as_deref(), Some("Running"));
}

#[test]
fn failed_init_container_restarts_or_fails_the_pod() {
    // Always (and OnFailure): restarted after the back-off, even under Always.
    let p = with_init(pod(&["app"], "Always"), &["i1"]);
    let pl = plan(&p, &[exited("i1", 1, 10, 0)], &ctx(10));
    assert_eq!(pl.actions, vec![Action::Start("i1".into())]);
    let pl = plan(&p, &[exited("i1", 1, 10, 1)], &ctx(11));
    assert!(pl.actions.is_empty());
    assert_eq!(pl.wake_at, Some(ts(20)));
    let st = pl.status.unwrap();
    assert_eq!(waiting_reason(&st.init_container_statuses.as_ref().unwrap()[0]), Some("CrashLoopBackOff"));
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    // Never: the pod fails and the app container never starts.
    let p = with_init(pod(&["app"], "Never"), &["i1"]);
    let pl = plan(&p, &[exited("i1", 1, 10, 0)], &ctx(10));
    assert!(pl.actions.is_empty());
    assert_eq!(pl.status.unwrap().phase.as_deref(), Some("Failed"));
}

#[test]
fn probes_drive_ready_started_and_liveness_kills() {
    let mut p = pod(&["a"], "Always");
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(7);
    // Not started yet (startup probe pending): neither started nor ready.
    let mut r = running("a");
    r.started = false;
    let st = plan(&p, std::slice::from_ref(&r), &ctx(1)).status.unwrap();
    let cs = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!((cs.started, cs.ready), (Some(false), false));
    // Started but readiness failing.
    r.started = true;
    r.ready = false;
    let st = plan(&p, std::slice::from_ref(&r), &ctx(1)).status.unwrap();
    assert_eq!(cond(&st, "Ready").status, "False");
    assert_eq!(cond(&st, "ContainersReady").status, "False");
    // Ready.
    r.ready = true;
    let st = plan(&p, std::slice::from_ref(&r), &ctx(1)).status.unwrap();
    assert_eq!(cond(&st, "Ready").status, "True");
    // Liveness failed: killed with the pod's grace, once.
    r.unhealthy = Some("Liveness probe failed: boom".into());
    let pl = plan(&p, std::slice::from_ref(&r), &ctx(2));
    assert_eq!(pl.actions, vec![Action::Kill { container: "a".into(), grace: Duration::from_secs(7) }]);
    r.killing = true;
    assert!(plan(&p, std::slice::from_ref(&r), &ctx(3)).actions.is_empty());
    // The killed run exited: restarted per policy like any exit.
    let e = exited("a", 143, 4, 0);
    assert_eq!(plan(&p, &[e], &ctx(4)).actions, vec![Action::Start("a".into())]);
}

#[test]
fn config_errors_are_retried() {
    let p = pod(&["a"], "Always");
    let r = record("a", RunState::CreateFailed { reason: "CreateContainerConfigError".into(), message: "m".into() }, 0);
    let pl = plan(&p, &[r], &ctx(0));
    assert_eq!(pl.actions, vec![Action::Start("a".into())]);
    assert_eq!(pl.wake_at, Some(ts(10)));
}
