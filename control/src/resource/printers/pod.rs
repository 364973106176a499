//! Printers of Pods.

use berth_proto::model::duration::human_duration;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static POD: Printer = Printer { columns: POD_COLS, row: pod_row };

static POD_COLS: &[Col] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod \
         has restarted.",
    ),
    AGE,
    wide("IP", "string", D_POD_IP),
    wide("Node", "string", D_POD_NODE_NAME),
    wide("Nominated Node", "string", D_POD_NOMINATED_NODE),
    wide("Readiness Gates", "string", D_POD_READINESS_GATES),
];

const D_POD_IP: &str =
    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";

const D_POD_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a \
                               candidate for scheduling by the scheduler defined in schedulerName. Once this field is \
                               set, the kubelet for this node becomes responsible for the lifecycle of this pod. This \
                               field should not be used to express a desire for the pod to be scheduled on a specific \
                               node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";

const D_POD_NOMINATED_NODE: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but \
                                    it cannot be scheduled right away as preemption victims receive their graceful \
                                    termination periods. This field does not guarantee that the pod will be \
                                    scheduled on this node. Scheduler may decide to place the pod elsewhere if other \
                                    nodes become available sooner. Scheduler may also decide to give the resources on \
                                    this node to a higher priority pod that is created after preemption. As a result, \
                                    this field may be different than PodSpec.nodeName when the pod is scheduled.";

const D_POD_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is \
                                     ready when all its containers are ready AND all conditions specified in the \
                                     readiness gates have status equal to \"True\" More info: \
                                     https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

fn pod_row(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let init_specs = list(pod, &["spec", "initContainers"]);
    let conditions = list(pod, &["status", "conditions"]);
    // Sidecars (restartPolicy: Always init containers) count as regular containers once started.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| text(c, &["name"]) == name)
            .is_some_and(|c| text(c, &["restartPolicy"]) == "Always")
    };
    let mut total = list(pod, &["spec", "containers"]).len();
    total += init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();

    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut ready = 0usize;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let phase = match text(pod, &["status", "phase"]) {
        "" => "Pending",
        p => p,
    };
    let mut reason = match text(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if conditions.iter().any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated") {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, cs) in list(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        restarts += int(cs, &["restartCount"]);
        let finished = time(cs, &["lastState", "terminated", "finishedAt"]);
        last_restart = last_restart.max(finished);
        let sidecar = is_sidecar(text(cs, &["name"]));
        if sidecar {
            sidecar_restarts += int(cs, &["restartCount"]);
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = at(cs, &["state", "terminated"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && flag(cs, &["started"]) {
            if flag(cs, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        let waiting_reason = text(cs, &["state", "waiting", "reason"]);
        reason = if let Some(t) = terminated {
            match text(t, &["reason"]) {
                "" if int(t, &["signal"]) != 0 => format!("Init:Signal:{}", int(t, &["signal"])),
                "" => format!("Init:ExitCode:{}", int(t, &["exitCode"])),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || first_condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in list(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(cs, &["restartCount"]);
            last_restart = last_restart.max(time(cs, &["lastState", "terminated", "finishedAt"]));
            let waiting_reason = text(cs, &["state", "waiting", "reason"]);
            let terminated = at(cs, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match text(t, &["reason"]) {
                    "" if int(t, &["signal"]) != 0 => format!("Signal:{}", int(t, &["signal"])),
                    "" => format!("ExitCode:{}", int(t, &["exitCode"])),
                    r => r.to_string(),
                };
            } else if flag(cs, &["ready"]) && at(cs, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another is still running is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| text(c, &["type"]) == "Ready" && text(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if deleting(pod) && text(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    // v1 conversion keeps podIPs[0] == podIP; fall back to podIP for objects that only set it.
    let pod_ip = list(pod, &["status", "podIPs"])
        .first()
        .map(|ip| text(ip, &["ip"]))
        .unwrap_or_else(|| text(pod, &["status", "podIP"]));
    let gates = list(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates.iter().filter(|g| first_condition_true(conditions, text(g, &["conditionType"]))).count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        name(pod),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_cell),
        age(pod, now),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(text(pod, &["spec", "nodeName"]))),
        Value::from(or_none(text(pod, &["status", "nominatedNodeName"]))),
        Value::from(readiness_gates),
    ]
}

// ---------------------------------------------------------------------------------------------
