//! Printers of apps/v1 workloads: Deployments, ReplicaSets, DaemonSets, StatefulSets.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static DEPLOYMENT: Printer = Printer { columns: DEPLOYMENT_COLS, row: deployment_row };
pub static REPLICA_SET: Printer = Printer { columns: REPLICA_SET_COLS, row: replica_set_row };
pub static DAEMON_SET: Printer = Printer { columns: DAEMON_SET_COLS, row: daemon_set_row };
pub static STATEFUL_SET: Printer = Printer { columns: STATEFUL_SET_COLS, row: stateful_set_row };

static DEPLOYMENT_COLS: &[Col] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by \
         this deployment.",
    ),
];

static REPLICA_SET_COLS: &[Col] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and \
         unspecified. Defaults to 1. More info: \
         https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas. More info: \
         https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    col("Ready", "integer", "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count. If the selector is empty, it is \
         defaulted to the labels present on the pod template. Label keys and values that must match in order to be \
         controlled by this replica set. More info: \
         https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

static DAEMON_SET_COLS: &[Col] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the \
         daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More \
         info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    ),
    col(
        "Ready",
        "integer",
        "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon \
         pod running with a Ready Condition.",
    ),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running \
         and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a \
         node's labels for the pod to be scheduled on that node. More info: \
         https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, \
         defaulted to labels on Pod template. More info: \
         https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

static STATEFUL_SET_COLS: &[Col] =
    &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES];

// Workloads
// ---------------------------------------------------------------------------------------------

/// spec.replicas of apps/v1 workloads; v1 defaulting makes a missing value 1.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn deployment_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let selector = selector_string(at(obj, &["spec", "selector"])).unwrap_or_else(|()| "<invalid>".to_string());
    let cells = [
        Value::from(format!("{}/{}", int(obj, &["status", "readyReplicas"]), desired_replicas(obj))),
        Value::from(int(obj, &["status", "updatedReplicas"])),
        Value::from(int(obj, &["status", "availableReplicas"])),
    ];
    workload_row(obj, now, cells, Some(Value::from(selector)))
}

fn replica_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cells = [
        Value::from(desired_replicas(obj)),
        Value::from(int(obj, &["status", "replicas"])),
        Value::from(int(obj, &["status", "readyReplicas"])),
    ];
    workload_row(obj, now, cells, Some(label_selector(obj)))
}

fn daemon_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cells = [
        Value::from(int(obj, &["status", "desiredNumberScheduled"])),
        Value::from(int(obj, &["status", "currentNumberScheduled"])),
        Value::from(int(obj, &["status", "numberReady"])),
        Value::from(int(obj, &["status", "updatedNumberScheduled"])),
        Value::from(int(obj, &["status", "numberAvailable"])),
        Value::from(format_labels(at(obj, &["spec", "template", "spec", "nodeSelector"]))),
    ];
    workload_row(obj, now, cells, Some(label_selector(obj)))
}

fn stateful_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = Value::from(format!("{}/{}", int(obj, &["status", "readyReplicas"]), desired_replicas(obj)));
    workload_row(obj, now, [ready], None)
}

fn label_selector(obj: &Value) -> Value {
    Value::from(format_label_selector(at(obj, &["spec", "selector"])))
}

/// kubectl's columns for a workload: the name, the kind's own cells, the age, the pod
/// template's containers and images, and the selector where the kind shows one.
fn workload_row<const N: usize>(
    obj: &Value,
    now: DateTime<Utc>,
    cells: [Value; N],
    selector: Option<Value>,
) -> Vec<Value> {
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    let mut row = Vec::with_capacity(N + 5);
    row.push(name(obj));
    row.extend(cells);
    row.extend([age(obj, now), containers, images]);
    row.extend(selector);
    row
}
