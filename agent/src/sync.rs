//! The pod sync decision, as a pure function: from a pod (desired state, as the API has
//! it) and the runtime's records of its containers (actual state), [`plan`] says what to
//! start and stop, whether the pod's deletion can be confirmed, what its status is, and
//! when to look again. No I/O; the node worker ([`crate::worker`]) executes the plan.
//!
//! Rules (the kubelet's):
//! - init containers run one at a time in order, each only after the previous one
//!   succeeded; a failed one is restarted (back-off as below) unless `restartPolicy` is
//!   Never, which fails the pod; app containers start once all succeeded (`Initialized`);
//! - an app container with no record is started; an exited one is restarted per
//!   `restartPolicy` (Always; OnFailure when the exit code is not 0; Never) after a
//!   back-off of 0 s for the first restart, then 10 s doubling to 5 min (reset by a run of
//!   10 min), shown meanwhile as `CrashLoopBackOff`;
//! - a running container whose liveness or startup probe failed (`unhealthy`, set by the
//!   worker from the prober) is killed with the probe's or the pod's grace period, then
//!   restarted per `restartPolicy`; readiness and startup probes drive `ready`/`started`;
//! - a container that failed with `CreateContainerConfigError` (a missing ConfigMap…) is
//!   retried every [`CONFIG_RETRY`];
//! - a pod with a `deletionTimestamp` has its active containers stopped with the pod's
//!   `deletionGracePeriodSeconds`; once none is active, its deletion is confirmed;
//! - a pod whose phase is Succeeded or Failed never starts anything again;
//! - status: phase from container states, conditions keep their `lastTransitionTime`
//!   while their status stays, `startTime` is kept once set.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::runtime::{ContainerRecord, RunState, Terminated};

/// Something the worker must do for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or restart) the named container.
    Start(String),
    /// Stop the named container with this grace period.
    Stop { container: String, grace: Duration },
    /// Kill the named container's run so it is restarted (a failed liveness probe).
    Kill { container: String, grace: Duration },
    /// Every container has stopped: delete the pod with grace 0 (uid precondition).
    ConfirmDeletion,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The pod's status as it should be, or None when no status should be written (the pod
    /// is being deleted).
    pub status: Option<PodStatus>,
    /// Sync again at this time even without events (a back-off ends).
    pub wake_at: Option<Timestamp>,
}

/// Facts the plan needs besides the pod and its containers.
#[derive(Debug, Clone)]
pub struct Context {
    pub now: Timestamp,
    /// The node's IP, reported as hostIP.
    pub node_ip: String,
    /// The pod's IP: the node's, its sandbox's, or None while its sandbox has none yet.
    pub pod_ip: Option<String>,
}

/// How often a `CreateContainerConfigError` is retried.
pub const CONFIG_RETRY: Duration = Duration::from_secs(10);
const CONFIG_ERROR: &str = "CreateContainerConfigError";

const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long to wait before restarting a container that has restarted `restart_count`
/// times: none before the first restart, then 10 s, 20 s, … up to 5 min.
pub fn backoff(restart_count: i32) -> Duration {
    if restart_count <= 0 {
        return Duration::ZERO;
    }
    let doublings = (restart_count - 1).min(16) as u32;
    BACKOFF_INITIAL.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

fn should_restart(policy: &str, t: &Terminated) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => t.exit_code != 0,
        _ => true,
    }
}

/// The restart policy that applies to init containers: they are rerun on failure unless
/// the pod's policy is Never.
fn init_policy(policy: &str) -> &'static str {
    if policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    }
}

fn init_containers(pod: &Pod) -> &[k8s_openapi::api::core::v1::Container] {
    pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or_default()
}

/// How long a liveness-failed container gets to stop: the probe's
/// `terminationGracePeriodSeconds`, else the pod's (default 30 s).
fn kill_grace(pod: &Pod, c: &k8s_openapi::api::core::v1::Container) -> Duration {
    let probe = c.liveness_probe.as_ref().and_then(|p| p.termination_grace_period_seconds);
    probe.map_or_else(|| pod_grace(pod), |s| Duration::from_secs(s.max(0) as u64))
}

/// The pod's `terminationGracePeriodSeconds` (default 30 s).
pub fn pod_grace(pod: &Pod) -> Duration {
    let seconds = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
    Duration::from_secs(seconds.unwrap_or(30).max(0) as u64)
}

fn earliest(wake_at: &mut Option<Timestamp>, t: Timestamp) {
    *wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
}

fn config_retry(ctx: &Context) -> Timestamp {
    ctx.now.checked_add(SignedDuration::try_from(CONFIG_RETRY).unwrap_or_default()).unwrap_or(ctx.now)
}

/// Where the init sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Init {
    /// Every init container succeeded (or there are none).
    Done,
    Running,
    /// An init container failed and will not be restarted (restartPolicy Never).
    Failed,
}

/// Plans the init containers (see the module docs).
fn plan_init(
    pod: &Pod,
    by_name: &HashMap<&str, &ContainerRecord>,
    ctx: &Context,
    actions: &mut Vec<Action>,
    wake_at: &mut Option<Timestamp>,
) -> Init {
    let policy = init_policy(restart_policy(pod));
    for c in init_containers(pod) {
        let Some(r) = by_name.get(c.name.as_str()) else {
            actions.push(Action::Start(c.name.clone()));
            return Init::Running;
        };
        match &r.state {
            RunState::Exited(t) if t.exit_code == 0 => continue,
            RunState::Exited(t) if !r.stopping && should_restart(policy, t) => {
                let due = restart_due(t, r.restart_count);
                if due <= ctx.now {
                    actions.push(Action::Start(c.name.clone()));
                } else {
                    earliest(wake_at, due);
                }
                return Init::Running;
            }
            RunState::Exited(_) => return Init::Failed,
            RunState::CreateFailed { reason, .. } if reason == CONFIG_ERROR => {
                actions.push(Action::Start(c.name.clone()));
                earliest(wake_at, config_retry(ctx));
                return Init::Running;
            }
            _ => return Init::Running,
        }
    }
    Init::Done
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The plan for one pod. `observed` holds the runtime's records for the pod's containers.
pub fn plan(pod: &Pod, observed: &[ContainerRecord], ctx: &Context) -> Plan {
    let spec_containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let by_name: HashMap<&str, &ContainerRecord> = observed.iter().map(|r| (r.name.as_str(), r)).collect();
    let current_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let policy = restart_policy(pod);
    let mut actions = Vec::new();

    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64;
        let active: Vec<&ContainerRecord> = observed.iter().filter(|r| r.is_active()).collect();
        for r in &active {
            if !r.stopping {
                actions.push(Action::Stop { container: r.name.clone(), grace: Duration::from_secs(grace) });
            }
        }
        if active.is_empty() {
            actions.push(Action::ConfirmDeletion);
        }
        return Plan { actions, status: None, wake_at: None };
    }

    let mut wake_at: Option<Timestamp> = None;
    if !is_terminal(current_phase) && plan_init(pod, &by_name, ctx, &mut actions, &mut wake_at) == Init::Done {
        for c in spec_containers {
            match by_name.get(c.name.as_str()).map(|r| (&r.state, r)) {
                None => actions.push(Action::Start(c.name.clone())),
                Some((RunState::Exited(t), r)) if !r.stopping && should_restart(policy, t) => {
                    let due = restart_due(t, r.restart_count);
                    if due <= ctx.now {
                        actions.push(Action::Start(c.name.clone()));
                    } else {
                        earliest(&mut wake_at, due);
                    }
                }
                Some((RunState::Running { .. }, r)) if r.unhealthy.is_some() && !r.killing && !r.stopping => {
                    actions.push(Action::Kill { container: c.name.clone(), grace: kill_grace(pod, c) });
                }
                Some((RunState::CreateFailed { reason, .. }, _)) if reason == CONFIG_ERROR => {
                    actions.push(Action::Start(c.name.clone()));
                    earliest(&mut wake_at, config_retry(ctx));
                }
                _ => {}
            }
        }
    }
    Plan { actions, status: Some(status(pod, observed, ctx)), wake_at }
}

/// A run at least this long resets the back-off (the kubelet: twice the maximum).
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The back-off before restarting after run `t`: [`backoff`] of the restart count, or none
/// when the run lasted [`BACKOFF_RESET`] or more.
fn restart_wait(t: &Terminated, restart_count: i32) -> Duration {
    let ran = t.started_at.map(|s| t.finished_at.duration_since(s)).unwrap_or_default();
    if Duration::try_from(ran).is_ok_and(|r| r >= BACKOFF_RESET) {
        Duration::ZERO
    } else {
        backoff(restart_count)
    }
}

fn restart_due(t: &Terminated, restart_count: i32) -> Timestamp {
    let wait = SignedDuration::try_from(restart_wait(t, restart_count)).unwrap_or(SignedDuration::MAX);
    t.finished_at.checked_add(wait).unwrap_or(Timestamp::MAX)
}

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(Time),
        finished_at: Some(Time(t.finished_at)),
        container_id: (!t.container_id.is_empty()).then(|| t.container_id.clone()),
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..Default::default()
    }
}

/// How a container counts toward the pod phase (kubelet's `getPhase`).
enum Count {
    Waiting,
    Running,
    /// Exited (or waiting to restart after an exit): whether it succeeded.
    Stopped(bool),
}

/// A container's status. `policy` is the restart policy that applies to it; `pending` the
/// waiting reason before it has a record (`ContainerCreating`, `PodInitializing`).
fn container_status(
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    r: Option<&ContainerRecord>,
    policy: &str,
    pending: &str,
) -> (ContainerStatus, Count) {
    let image = c.image.clone().unwrap_or_default();
    let Some(r) = r else {
        let s = ContainerStatus {
            name: c.name.clone(),
            image,
            state: Some(waiting(pending, None)),
            ready: false,
            started: Some(false),
            ..Default::default()
        };
        return (s, Count::Waiting);
    };
    // The status of a container the runtime knows.
    let status = |state, last_state, ready, started, restart_count| ContainerStatus {
        name: c.name.clone(),
        image,
        image_id: r.image_id.clone(),
        container_id: Some(r.id.clone()).filter(|i| !i.is_empty()),
        state: Some(state),
        last_state,
        ready,
        started: Some(started),
        restart_count,
        ..Default::default()
    };
    let last_state = r
        .last_terminated
        .as_ref()
        .map(|t| ContainerState { terminated: Some(terminated_state(t)), ..Default::default() });
    let (state, count, ready, started) = match &r.state {
        RunState::Starting => (waiting("ContainerCreating", None), Count::Waiting, false, false),
        RunState::CreateFailed { reason, message } => {
            (waiting(reason, Some(message.clone())), Count::Waiting, false, false)
        }
        RunState::Running { started_at } => (
            ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }),
                ..Default::default()
            },
            Count::Running,
            r.ready && r.started,
            r.started,
        ),
        RunState::Exited(t) if !r.stopping && should_restart(policy, t) => {
            // Waiting for its restart: kubelet shows the exit as lastState.
            let wait = restart_wait(t, r.restart_count);
            let state = if wait.is_zero() {
                waiting("ContainerCreating", None)
            } else {
                let (ns, name, uid) = (
                    pod.metadata.namespace.as_deref().unwrap_or("default"),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default(),
                );
                waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {}s restarting failed container={} pod={name}_{ns}({uid})",
                        wait.as_secs(),
                        c.name
                    )),
                )
            };
            let last = ContainerState { terminated: Some(terminated_state(t)), ..Default::default() };
            return (status(state, Some(last), false, false, r.restart_count), Count::Stopped(t.exit_code == 0));
        }
        RunState::Exited(t) => (
            ContainerState { terminated: Some(terminated_state(t)), ..Default::default() },
            Count::Stopped(t.exit_code == 0),
            false,
            false,
        ),
    };
    (status(state, last_state, ready, started, r.restart_count.max(0)), count)
}

fn phase(policy: &str, counts: &[Count]) -> &'static str {
    let waiting = counts.iter().filter(|c| matches!(c, Count::Waiting)).count();
    let running = counts.iter().filter(|c| matches!(c, Count::Running)).count();
    let stopped = counts.iter().filter(|c| matches!(c, Count::Stopped(_))).count();
    let succeeded = counts.iter().filter(|c| matches!(c, Count::Stopped(true))).count();
    if counts.is_empty() || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn condition(
    previous: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let prev = previous.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let since = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(since),
        reason: reason.map(String::from),
        message,
        ..Default::default()
    }
}

/// The pod's status from its containers' records; fields the agent does not own
/// (`qosClass`, `nominatedNodeName`…) are kept from the current status.
pub fn status(pod: &Pod, observed: &[ContainerRecord], ctx: &Context) -> PodStatus {
    let previous = pod.status.as_ref();
    let by_name: HashMap<&str, &ContainerRecord> = observed.iter().map(|r| (r.name.as_str(), r)).collect();
    let spec_containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let policy = restart_policy(pod);
    let init = init_containers(pod);
    let mut init_statuses = Vec::new();
    let mut incomplete = Vec::new();
    let mut init_failed = false;
    for c in init {
        let r = by_name.get(c.name.as_str()).copied();
        let (mut s, n) = container_status(pod, c, r, init_policy(policy), "PodInitializing");
        match n {
            Count::Stopped(true) if matches!(r.map(|r| &r.state), Some(RunState::Exited(_))) => s.ready = true,
            Count::Stopped(false) if policy == "Never" => {
                init_failed = true;
                incomplete.push(c.name.clone());
            }
            _ => incomplete.push(c.name.clone()),
        }
        init_statuses.push(s);
    }
    let initialized = incomplete.is_empty();
    let mut statuses = Vec::new();
    let mut counts = Vec::new();
    for c in spec_containers {
        let pending = if initialized { "ContainerCreating" } else { "PodInitializing" };
        let (s, n) = container_status(pod, c, by_name.get(c.name.as_str()).copied(), policy, pending);
        statuses.push(s);
        counts.push(n);
    }
    let current_phase = previous.and_then(|s| s.phase.as_deref());
    let phase = if is_terminal(current_phase) {
        current_phase.unwrap()
    } else if init_failed {
        "Failed"
    } else if !initialized {
        "Pending"
    } else {
        phase(policy, &counts)
    };
    let unready: Vec<&str> = statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let all_ready = unready.is_empty() && !statuses.is_empty();
    let (reason, message) = if is_terminal(Some(phase)) {
        (Some("PodCompleted"), None)
    } else if all_ready {
        (None, None)
    } else {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", unready.join(" "))))
    };
    let ready = all_ready && !is_terminal(Some(phase));
    let conditions = vec![
        condition(previous, "PodReadyToStartContainers", true, None, None, ctx.now),
        if initialized {
            condition(previous, "Initialized", true, None, None, ctx.now)
        } else {
            let message = format!("containers with incomplete status: [{}]", incomplete.join(" "));
            condition(previous, "Initialized", false, Some("ContainersNotInitialized"), Some(message), ctx.now)
        },
        condition(previous, "Ready", ready, reason, message.clone(), ctx.now),
        condition(previous, "ContainersReady", ready, reason, message, ctx.now),
        condition(previous, "PodScheduled", true, None, None, ctx.now),
    ];
    let mut s = previous.cloned().unwrap_or_default();
    s.phase = Some(phase.into());
    s.conditions = Some(conditions);
    s.host_ip = Some(ctx.node_ip.clone());
    s.host_ips = Some(vec![HostIP { ip: ctx.node_ip.clone() }]);
    s.pod_ip = ctx.pod_ip.clone();
    s.pod_ips = ctx.pod_ip.clone().map(|ip| vec![PodIP { ip }]);
    s.start_time = s.start_time.or(Some(Time(ctx.now)));
    s.container_statuses = Some(statuses);
    s.init_container_statuses = (!init_statuses.is_empty()).then_some(init_statuses);
    s
}

/// What to do with a pod the API no longer has (force-deleted, or gone while the agent was
/// away): stop its active containers at once; `true` when none is left and the runtime can
/// forget it.
pub fn plan_orphan(observed: &[ContainerRecord]) -> (Vec<Action>, bool) {
    let active: Vec<&ContainerRecord> = observed.iter().filter(|r| r.is_active()).collect();
    let actions = active
        .iter()
        .filter(|r| !r.stopping)
        .map(|r| Action::Stop { container: r.name.clone(), grace: Duration::ZERO })
        .collect();
    (actions, active.is_empty())
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
