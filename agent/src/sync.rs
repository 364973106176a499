//! The pod sync decision, as a pure function: from a pod (desired state, as the API has
//! it) and the runtime's records of its containers (actual state), [`plan`] says what to
//! start and stop, whether the pod's deletion can be confirmed, what its status is, and
//! when to look again. No I/O; the node worker ([`crate::worker`]) executes the plan.
//!
//! Rules (the kubelet's, minus init containers and probes):
//! - a container with no record is started; an exited one is restarted per
//!   `restartPolicy` (Always; OnFailure when the exit code is not 0; Never) after a
//!   back-off of 0 s for the first restart, then 10 s doubling to 5 min (reset by a run of
//!   10 min), shown meanwhile as `CrashLoopBackOff`;
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
    /// The node's IP, reported as hostIP and podIP.
    pub node_ip: String,
}

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
    if !is_terminal(current_phase) {
        for c in spec_containers {
            match by_name.get(c.name.as_str()).map(|r| (&r.state, r)) {
                None => actions.push(Action::Start(c.name.clone())),
                Some((RunState::Exited(t), r)) if !r.stopping && should_restart(policy, t) => {
                    let due = restart_due(t, r.restart_count);
                    if due <= ctx.now {
                        actions.push(Action::Start(c.name.clone()));
                    } else {
                        wake_at = Some(wake_at.map_or(due, |w| w.min(due)));
                    }
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

fn container_status(
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    r: Option<&ContainerRecord>,
) -> (ContainerStatus, Count) {
    let policy = restart_policy(pod);
    let image = c.image.clone().unwrap_or_default();
    let Some(r) = r else {
        let s = ContainerStatus {
            name: c.name.clone(),
            image,
            state: Some(waiting("ContainerCreating", None)),
            ready: false,
            started: Some(false),
            ..Default::default()
        };
        return (s, Count::Waiting);
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
            r.ready,
            true,
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
            let s = ContainerStatus {
                name: c.name.clone(),
                image,
                image_id: String::new(),
                container_id: Some(r.id.clone()).filter(|i| !i.is_empty()),
                state: Some(state),
                last_state: Some(ContainerState { terminated: Some(terminated_state(t)), ..Default::default() }),
                ready: false,
                started: Some(false),
                restart_count: r.restart_count,
                ..Default::default()
            };
            return (s, Count::Stopped(t.exit_code == 0));
        }
        RunState::Exited(t) => (
            ContainerState { terminated: Some(terminated_state(t)), ..Default::default() },
            Count::Stopped(t.exit_code == 0),
            false,
            false,
        ),
    };
    let s = ContainerStatus {
        name: c.name.clone(),
        image,
        image_id: String::new(),
        container_id: Some(r.id.clone()).filter(|i| !i.is_empty()),
        state: Some(state),
        last_state,
        ready,
        started: Some(started),
        restart_count: r.restart_count.max(0),
        ..Default::default()
    };
    (s, count)
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
    let mut statuses = Vec::new();
    let mut counts = Vec::new();
    for c in spec_containers {
        let (s, n) = container_status(pod, c, by_name.get(c.name.as_str()).copied());
        statuses.push(s);
        counts.push(n);
    }
    let current_phase = previous.and_then(|s| s.phase.as_deref());
    let phase = if is_terminal(current_phase) { current_phase.unwrap() } else { phase(restart_policy(pod), &counts) };
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
        condition(previous, "Initialized", true, None, None, ctx.now),
        condition(previous, "Ready", ready, reason, message.clone(), ctx.now),
        condition(previous, "ContainersReady", ready, reason, message, ctx.now),
        condition(previous, "PodScheduled", true, None, None, ctx.now),
    ];
    let mut s = previous.cloned().unwrap_or_default();
    s.phase = Some(phase.into());
    s.conditions = Some(conditions);
    s.host_ip = Some(ctx.node_ip.clone());
    s.host_ips = Some(vec![HostIP { ip: ctx.node_ip.clone() }]);
    s.pod_ip = Some(ctx.node_ip.clone());
    s.pod_ips = Some(vec![PodIP { ip: ctx.node_ip.clone() }]);
    s.start_time = s.start_time.or(Some(Time(ctx.now)));
    s.container_statuses = Some(statuses);
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
