//! Server-side table printing: the `meta.k8s.io/v1` `Table` columns and row cells that kube-apiserver
//! returns when kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! kubectl prints whatever columns the server sends, so this module owns an exact port of the built-in
//! printers in kubernetes `pkg/printers/internalversion/printers.go` (v1.32/v1.33 semantics) for the
//! resources Berth serves (AGE-style cells use `berth_proto::model::duration::human_duration`). It is pure: a
//! kind's [`Printer`] (from its strategy) and an object in JSON form go in, column definitions and
//! cells come out. Wiring
//! it into a `Table` response (rows, `object`, list metadata) is the caller's job.
//!
//! The apiserver always prints with `Wide: true` and lets kubectl hide priority-1 columns, so `cells`
//! always returns every column, wide ones included.
//!
//! Objects may be partial or malformed; a missing field reads as zero, empty or absent and never
//! panics. Where the real apiserver would never store an object without a field (because v1
//! defaulting or the create strategy always fills it) the printer here applies that same default,
//! so an un-defaulted object in Berth still prints like the stored object would in Kubernetes:
//! `spec.replicas` = 1 (deployments, replicasets, statefulsets), service `type` = ClusterIP, port
//! `protocol` = TCP, pod `phase` = Pending, namespace `phase` = Active, secret `type` = Opaque,
//! cronjob `suspend` = false, HPA `minReplicas` = 1 and HPA `metrics` = cpu at 80% utilization.

use std::collections::BTreeSet;

use berth_proto::model::duration::human_duration;
use berth_proto::model::well_known;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// One kind's printer: its column definitions and the function computing a row's cells
/// (always as many as there are columns). Reached from the kind's strategy
/// (`resource::strategy::Strategy::printer`), so printing a row costs no lookup by name.
pub struct Printer {
    columns: &'static [Col],
    row: fn(&Value, DateTime<Utc>) -> Vec<Value>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").field("columns", &self.columns.iter().map(|c| c.name).collect::<Vec<_>>()).finish()
    }
}

/// Column definitions (meta.k8s.io/v1 TableColumnDefinition JSON objects: name, type, format,
/// description, priority) of `printer`.
pub fn columns(printer: &Printer) -> Vec<Value> {
    printer
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.desc,
                "priority": c.priority,
            })
        })
        .collect()
}

/// Cells of one row for `obj` (a full object in JSON form), evaluated at `now`. Same length as
/// `columns(printer)`.
pub fn cells(printer: &Printer, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let row = (printer.row)(obj, now);
    debug_assert_eq!(row.len(), printer.columns.len(), "row/column mismatch");
    row
}

// ---------------------------------------------------------------------------------------------
// The printers of the built-in kinds
// ---------------------------------------------------------------------------------------------

/// NAME + AGE, as the apiserver prints a resource that has no dedicated printer.
pub static DEFAULT: Printer = Printer { columns: DEFAULT_COLS, row: default_row };
pub static POD: Printer = Printer { columns: POD_COLS, row: pod_row };
pub static DEPLOYMENT: Printer = Printer { columns: DEPLOYMENT_COLS, row: deployment_row };
pub static REPLICA_SET: Printer = Printer { columns: REPLICA_SET_COLS, row: replica_set_row };
pub static DAEMON_SET: Printer = Printer { columns: DAEMON_SET_COLS, row: daemon_set_row };
pub static STATEFUL_SET: Printer = Printer { columns: STATEFUL_SET_COLS, row: stateful_set_row };
pub static JOB: Printer = Printer { columns: JOB_COLS, row: job_row };
pub static CRON_JOB: Printer = Printer { columns: CRON_JOB_COLS, row: cron_job_row };
pub static SERVICE: Printer = Printer { columns: SERVICE_COLS, row: service_row };
pub static ENDPOINTS: Printer = Printer { columns: ENDPOINTS_COLS, row: endpoints_row };
pub static NODE: Printer = Printer { columns: NODE_COLS, row: node_row };
pub static NAMESPACE: Printer = Printer { columns: NAMESPACE_COLS, row: namespace_row };
pub static CONFIG_MAP: Printer = Printer { columns: CONFIG_MAP_COLS, row: config_map_row };
pub static SECRET: Printer = Printer { columns: SECRET_COLS, row: secret_row };
pub static EVENT: Printer = Printer { columns: EVENT_COLS, row: event_row };
pub static SERVICE_ACCOUNT: Printer = Printer { columns: SERVICE_ACCOUNT_COLS, row: service_account_row };
pub static LEASE: Printer = Printer { columns: LEASE_COLS, row: lease_row };
pub static HPA: Printer = Printer { columns: HPA_COLS, row: hpa_row };
pub static RESOURCE_QUOTA: Printer = Printer { columns: RESOURCE_QUOTA_COLS, row: resource_quota_row };

fn default_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------------------------

struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    desc: &'static str,
    priority: i32,
}

const fn col(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col { name, ty, format: "", desc, priority: 0 }
}

const fn wide(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col { name, ty, format: "", desc, priority: 1 }
}

const NAME: Col = Col { name: "Name", ty: "string", format: "name", desc: D_NAME, priority: 0 };
const AGE: Col = col("Age", "string", D_CREATED);
const CONTAINERS: Col = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Col = wide("Images", "string", "Images referenced by each container in the template.");

// What the apiextensions server prints for a resource without printer columns: the name and an
// "Age" date column rendered as a human duration.
static DEFAULT_COLS: &[Col] = &[NAME, col("Age", "date", D_CREATED)];

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

const D_JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this \
                              field for you. More info: \
                              https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

static JOB_COLS: &[Col] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. \
         However, it may decrease in reaction to scale down of elastic indexed jobs.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", D_JOB_SELECTOR),
];

static CRON_JOB_COLS: &[Col] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see \
         https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the \
         time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset \
         is loaded from the system-wide time zone database by the API server during CronJob validation and the \
         controller manager during execution. If no system-wide time zone database can be found a bundled version of \
         the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due \
         to a change in host configuration, the controller will stop creating new new Jobs and will create a system \
         event with the reason UnknownTimeZone. More information can be found in \
         https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started \
         executions. Defaults to false.",
    ),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", D_JOB_SELECTOR),
];

static SERVICE_COLS: &[Col] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, \
         ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for \
         load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by \
         manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual \
         IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \
         \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as \
         the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in \
         the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this \
         service to the specified externalName. Several other fields do not apply to ExternalName services. More \
         info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified \
         manually, is in-range (as per system configuration), and is not in use, it will be allocated to the \
         service; otherwise creation of the service will fail. This field may not be changed through updates unless \
         the type field is also being changed to ExternalName (which requires this field to be blank) or the type \
         field is being changed from ExternalName (in which case this field may optionally be specified, as \
         describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \
         \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections \
         are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. \
         If this field is specified when creating a Service of type ExternalName, creation will fail. This field \
         will be wiped when updating a Service to type ExternalName. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this \
         service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic \
         arrives at a node with this IP.  A common example is external load-balancers that are not part of the \
         Kubernetes system.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector. If empty or not present, \
         the service is assumed to have an external process managing its endpoints, which Kubernetes will not \
         modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More \
         info: https://kubernetes.io/docs/concepts/services-networking/service/",
    ),
];

static ENDPOINTS_COLS: &[Col] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the \
         IPs they share. A single address with multiple ports, some of which are ready and some of which are not \
         (because they come from different containers) will result in the address being displayed in different \
         subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same \
         subset. Sets of addresses and ports that comprise a service.",
    ),
    AGE,
];

const D_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. \
                                More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field \
                                is declared as mergeable, but the merge key is not sufficiently unique, which can \
                                cause data corruption when it is merged. Callers should instead use a \
                                full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should \
                                assume that addresses can change during the lifetime of a Node. However, there are \
                                some exceptions where this may not be possible, such as Pods that inherit a Node's \
                                address in its own status or consumers of the downward API (status.hostIP).";

static NODE_COLS: &[Col] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", D_NODE_ADDRESSES),
    wide("External-IP", "string", D_NODE_ADDRESSES),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

static EVENT_COLS: &[Col] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the \
         object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid \
         JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object \
         reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" \
         (where \"name\" refers to the name of the container that triggered the event) or if no container name is \
         specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have \
         some well-defined way of referencing a part of an object.",
    ),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "string", "The number of times this event has occurred."),
    Col { name: "Name", ty: "string", format: "name", desc: D_NAME, priority: 1 },
];

static NAMESPACE_COLS: &[Col] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

static SECRET_COLS: &[Col] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data. More info: \
         https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The \
         serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly \
         non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

static SERVICE_ACCOUNT_COLS: &[Col] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are \
         allowed to use. Pods are only limited to this list if this service account has a \
         \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \
         \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces \
         to isolate access to mounted secrets. This field should not be used to find auto-generated service account \
         token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest \
         API, or service account token secrets can be manually created. More info: \
         https://kubernetes.io/docs/concepts/configuration/secret",
    ),
    AGE,
];

static CONFIG_MAP_COLS: &[Col] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. \
         Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap \
         with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

static LEASE_COLS: &[Col] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is \
         used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
    ),
    AGE,
];

static HPA_COLS: &[Col] = &[
    NAME,
    col(
        "Reference",
        "string",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be \
         collected, as well as to actually change the replica count.",
    ),
    col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum \
         replica count across all metrics will be used).  The desired replica count is calculated multiplying the \
         ratio between the target value and the current value by the current number of pods.  Ergo, metrics used \
         must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for \
         more information about how each type of metric must respond.",
    ),
    col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It \
         defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and \
         at least one Object or External metric is configured.  Scaling is active as long as at least one metric \
         value is available.",
    ),
    col(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot \
         be less that minReplicas.",
    ),
    col(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the \
         autoscaler.",
    ),
    AGE,
];

static RESOURCE_QUOTA_COLS: &[Col] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the \
         node.",
    ),
    AGE,
];

const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
                      resources may allow a client to request the generation of an appropriate name automatically. \
                      Name is primarily intended for creation idempotence and configuration definition. Cannot be \
                      updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

const D_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. \
                         It is not guaranteed to be set in happens-before order across separate operations. Clients \
                         may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the \
                         system. Read-only. Null for lists. More info: \
                         https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

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
// Tolerant JSON access: every accessor treats missing, null and wrongly-typed values as absent.
// ---------------------------------------------------------------------------------------------

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    // A JSON null is Go's nil pointer / zero value.
    (!cur.is_null()).then_some(cur)
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or_default()
}

fn int_of(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        .or_else(|| v.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

fn int(v: &Value, path: &[&str]) -> i64 {
    at(v, path).map(int_of).unwrap_or(0)
}

fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).map(int_of)
}

fn flag(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn map_len(v: &Value, path: &[&str]) -> usize {
    at(v, path).and_then(Value::as_object).map_or(0, |m| m.len())
}

/// A metav1.Time / MicroTime; None is Go's zero time (missing, null, unparseable or year 1).
fn time(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    // Go's zero time, 0001-01-01T00:00:00Z, is how an unset timestamp round-trips.
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    let t = DateTime::parse_from_rfc3339(at(v, path)?.as_str()?).ok()?.with_timezone(&Utc);
    (t.timestamp() != GO_ZERO_TIME).then_some(t)
}

/// translateTimestampSince: "<unknown>" for the zero time.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "<unknown>".to_string(), |t| human_duration(now - t))
}

fn name(obj: &Value) -> Value {
    Value::from(text(obj, &["metadata", "name"]))
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::from(since(time(obj, &["metadata", "creationTimestamp"]), now))
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

fn deleting(obj: &Value) -> bool {
    at(obj, &["metadata", "deletionTimestamp"]).is_some()
}

/// layoutContainerCells: container names and images, each comma-joined.
fn container_cells(pod_spec: Option<&Value>) -> [Value; 2] {
    let containers = pod_spec.map(|s| list(s, &["containers"])).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    [Value::from(names.join(",")), Value::from(images.join(","))]
}

/// Whether the first condition of type `ty` has status "True" (hasJobCondition, isPodInitializedConditionTrue).
fn first_condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions.iter().find(|c| text(c, &["type"]) == ty).is_some_and(|c| text(c, &["status"]) == "True")
}

// ---------------------------------------------------------------------------------------------
// Label formatting (labels.FormatLabels, metav1.FormatLabelSelector, LabelSelectorAsSelector)
// ---------------------------------------------------------------------------------------------

/// labels.FormatLabels: sorted `k=v` pairs, "<none>" when empty.
fn format_labels(v: Option<&Value>) -> String {
    let Some(map) = v.and_then(Value::as_object) else { return "<none>".to_string() };
    let mut pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// `LabelSelectorAsSelector(sel).String()`: a nil or empty selector prints as "", an unusable one is
/// an error.
fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel else { return Ok(String::new()) };
    let sel = sel.as_object().ok_or(())?;
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").filter(|v| !v.is_null()) {
        for (k, v) in labels.as_object().ok_or(())? {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().ok_or(())?)));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").filter(|v| !v.is_null()) {
        for e in exprs.as_array().ok_or(())? {
            let key = text(e, &["key"]);
            let mut values: Vec<&str> = list(e, &["values"]).iter().map(|v| v.as_str().unwrap_or_default()).collect();
            values.sort_unstable();
            let rendered = match text(e, &["operator"]) {
                "In" | "NotIn" if values.is_empty() => return Err(()),
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => return Err(()),
            };
            reqs.push((key.to_string(), rendered));
        }
    }
    // labels.NewSelector().Add sorts requirements by key.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// metav1.FormatLabelSelector: "<none>" for nil/empty, "<error>" for an unusable selector.
fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

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
// Workloads
// ---------------------------------------------------------------------------------------------

/// spec.replicas of apps/v1 workloads; v1 defaulting makes a missing value 1.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn deployment_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    let selector = selector_string(at(obj, &["spec", "selector"])).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(obj),
        Value::from(format!("{}/{}", int(obj, &["status", "readyReplicas"]), desired_replicas(obj))),
        Value::from(int(obj, &["status", "updatedReplicas"])),
        Value::from(int(obj, &["status", "availableReplicas"])),
        age(obj, now),
        containers,
        images,
        Value::from(selector),
    ]
}

fn replica_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        name(obj),
        Value::from(desired_replicas(obj)),
        Value::from(int(obj, &["status", "replicas"])),
        Value::from(int(obj, &["status", "readyReplicas"])),
        age(obj, now),
        containers,
        images,
        Value::from(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

fn daemon_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        name(obj),
        Value::from(int(obj, &["status", "desiredNumberScheduled"])),
        Value::from(int(obj, &["status", "currentNumberScheduled"])),
        Value::from(int(obj, &["status", "numberReady"])),
        Value::from(int(obj, &["status", "updatedNumberScheduled"])),
        Value::from(int(obj, &["status", "numberAvailable"])),
        Value::from(format_labels(at(obj, &["spec", "template", "spec", "nodeSelector"]))),
        age(obj, now),
        containers,
        images,
        Value::from(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

fn stateful_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        name(obj),
        Value::from(format!("{}/{}", int(obj, &["status", "readyReplicas"]), desired_replicas(obj))),
        age(obj, now),
        containers,
        images,
    ]
}

fn job_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(obj, &["status", "succeeded"]);
    let completions = match opt_int(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(obj, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time(obj, &["status", "startTime"]), time(obj, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(done)) => human_duration(done - start),
    };
    let conditions = list(obj, &["status", "conditions"]);
    let status = if first_condition_true(conditions, "Complete") {
        "Complete"
    } else if first_condition_true(conditions, "Failed") {
        "Failed"
    } else if deleting(obj) {
        "Terminating"
    } else if first_condition_true(conditions, "Suspended") {
        "Suspended"
    } else if first_condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        name(obj),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(obj, now),
        containers,
        images,
        Value::from(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

fn cron_job_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match time(obj, &["status", "lastScheduleTime"]) {
        Some(t) => human_duration(now - t),
        None => "<none>".to_string(),
    };
    let time_zone = at(obj, &["spec", "timeZone"]).and_then(Value::as_str).unwrap_or("<none>");
    // printBoolPtr; v1 defaulting sets suspend=false, so the stored object never shows "<unset>".
    let suspend = if flag(obj, &["spec", "suspend"]) { "True" } else { "False" };
    let job_spec = at(obj, &["spec", "jobTemplate", "spec"]);
    let [containers, images] = container_cells(job_spec.and_then(|s| at(s, &["template", "spec"])));
    vec![
        name(obj),
        Value::from(text(obj, &["spec", "schedule"])),
        Value::from(time_zone),
        Value::from(suspend),
        Value::from(list(obj, &["status", "active"]).len()),
        Value::from(last_schedule),
        age(obj, now),
        containers,
        images,
        Value::from(format_label_selector(job_spec.and_then(|s| at(s, &["selector"])))),
    ]
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------------------------

fn service_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let svc_type = match text(obj, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    };
    // v1 conversion keeps clusterIPs[0] == clusterIP; fall back for objects that only set clusterIP.
    let cluster_ip = list(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(obj, &["spec", "clusterIP"]));
    let ports: Vec<String> = list(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = match text(p, &["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int(p, &["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(p, &["port"])),
                _ => format!("{}/{protocol}", int(p, &["port"])),
            }
        })
        .collect();
    vec![
        name(obj),
        Value::from(svc_type),
        Value::from(or_none(cluster_ip)),
        Value::from(service_external_ip(obj, svc_type)),
        Value::from(or_none(&ports.join(","))),
        age(obj, now),
        Value::from(format_labels(at(obj, &["spec", "selector"]))),
    ]
}

/// getServiceExternalIP with wide=true (the apiserver never clips load-balancer addresses).
fn service_external_ip(obj: &Value, svc_type: &str) -> String {
    let external_ips: Vec<&str> = list(obj, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match svc_type {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = list(obj, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| match (text(i, &["ip"]), text(i, &["hostname"])) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            let mut all: Vec<&str> = lb.into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// formatEndpoints: the first three addresses (host:port per port), then "+ N more...".
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list(ss, &["addresses"]);
        let ports = list(ss, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports at all.
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(a, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn endpoints_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(format_endpoints(obj)), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------
// Cluster objects
// ---------------------------------------------------------------------------------------------

fn node_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Only the Ready condition is reported; the last entry of a type wins, as Go's map does.
    let ready = list(obj, &["status", "conditions"]).iter().rev().find(|c| text(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(obj, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let roles: BTreeSet<&str> = at(obj, &["metadata", "labels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix(well_known::LABEL_NODE_ROLE_PREFIX) {
                (!role.is_empty()).then_some(role)
            } else if k == well_known::LABEL_ROLE {
                v.as_str().filter(|r| !r.is_empty())
            } else {
                None
            }
        })
        .collect();
    let roles = or_none(&roles.into_iter().collect::<Vec<_>>().join(","));

    let address = |ty: &str| {
        list(obj, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == ty)
            .map_or_else(|| "<none>".to_string(), |a| text(a, &["address"]).to_string())
    };
    let info = |field: &str| match text(obj, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(obj),
        Value::from(status.join(",")),
        Value::from(roles),
        age(obj, now),
        Value::from(text(obj, &["status", "nodeInfo", "kubeletVersion"])),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(info("osImage")),
        Value::from(info("kernelVersion")),
        Value::from(info("containerRuntimeVersion")),
    ]
}

fn namespace_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = match text(obj, &["status", "phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name(obj), Value::from(phase), age(obj, now)]
}

fn config_map_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let data = map_len(obj, &["data"]) + map_len(obj, &["binaryData"]);
    vec![name(obj), Value::from(data), age(obj, now)]
}

fn secret_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = match text(obj, &["type"]) {
        "" => "Opaque",
        t => t,
    };
    // v1 conversion merges stringData into data, so the stored secret counts their union.
    let keys: BTreeSet<&str> = ["data", "stringData"]
        .iter()
        .filter_map(|field| at(obj, &[*field]).and_then(Value::as_object))
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    vec![name(obj), Value::from(ty), Value::from(keys.len()), age(obj, now)]
}

fn service_account_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(list(obj, &["secrets"]).len()), age(obj, now)]
}

fn lease_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(text(obj, &["spec", "holderIdentity"])), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------
// Events (core/v1 field names, with events.k8s.io/v1 names as fallbacks: both share one printer)
// ---------------------------------------------------------------------------------------------

fn first_present<'a>(obj: &'a Value, paths: &[&[&str]]) -> Option<&'a Value> {
    paths.iter().find_map(|p| at(obj, p))
}

fn first_text<'a>(obj: &'a Value, paths: &[&[&str]]) -> &'a str {
    paths.iter().map(|p| text(obj, p)).find(|s| !s.is_empty()).unwrap_or_default()
}

fn event_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first_ts = time(obj, &["firstTimestamp"]).or_else(|| time(obj, &["deprecatedFirstTimestamp"]));
    let first = match first_ts {
        Some(t) => human_duration(now - t),
        None => since(time(obj, &["eventTime"]), now),
    };
    let last_ts = time(obj, &["lastTimestamp"]).or_else(|| time(obj, &["deprecatedLastTimestamp"]));
    let mut last = match last_ts {
        Some(t) => human_duration(now - t),
        None => first.clone(),
    };
    let mut count = first_present(obj, &[&["count"], &["deprecatedCount"]]).map_or(0, int_of);
    if let Some(series) = at(obj, &["series"]) {
        last = since(time(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }

    let involved = first_present(obj, &[&["involvedObject"], &["regarding"]]);
    let kind = involved.map(|o| text(o, &["kind"])).unwrap_or_default().to_lowercase();
    let target = match involved.map(|o| text(o, &["name"])).unwrap_or_default() {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let field_path = involved.map(|o| text(o, &["fieldPath"])).unwrap_or_default();

    let component =
        first_text(obj, &[&["source", "component"], &["deprecatedSource", "component"], &["reportingController"]]);
    let host = first_text(obj, &[&["source", "host"], &["deprecatedSource", "host"], &["reportingInstance"]]);
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    let message = first_text(obj, &[&["message"], &["note"]]).trim();

    vec![
        Value::from(last),
        Value::from(text(obj, &["type"])),
        Value::from(text(obj, &["reason"])),
        Value::from(target),
        Value::from(field_path),
        Value::from(source),
        Value::from(message),
        Value::from(first),
        Value::from(count),
        name(obj),
    ]
}

// ---------------------------------------------------------------------------------------------
// HorizontalPodAutoscalers (autoscaling/v2 shape, autoscaling/v1 shape converted like the apiserver)
// ---------------------------------------------------------------------------------------------

fn hpa_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(obj, &["spec", "scaleTargetRef", "kind"]),
        text(obj, &["spec", "scaleTargetRef", "name"])
    );
    let (specs, statuses) = hpa_metrics(obj);
    vec![
        name(obj),
        Value::from(reference),
        Value::from(format_hpa_metrics(&specs, &statuses)),
        Value::from(opt_int(obj, &["spec", "minReplicas"]).unwrap_or(1).to_string()),
        Value::from(int(obj, &["spec", "maxReplicas"])),
        Value::from(int(obj, &["status", "currentReplicas"])),
        age(obj, now),
    ]
}

/// Spec metrics and status metrics in autoscaling/v2 form. An autoscaling/v1 object's
/// targetCPUUtilizationPercentage becomes a cpu Resource metric, and a spec with no metrics gets
/// the v2 default of cpu at 80% average utilization.
fn hpa_metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let cpu_spec = |pct: i64| {
        json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": pct}},
        })
    };
    let mut specs = list(obj, &["spec", "metrics"]).to_vec();
    if specs.is_empty() {
        specs.push(cpu_spec(opt_int(obj, &["spec", "targetCPUUtilizationPercentage"]).unwrap_or(80)));
    }
    let mut statuses = list(obj, &["status", "currentMetrics"]).to_vec();
    if statuses.is_empty() {
        if let Some(pct) = opt_int(obj, &["status", "currentCPUUtilizationPercentage"]) {
            statuses
                .push(json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": pct}}}));
        }
    }
    (specs, statuses)
}

/// formatHPAMetrics: "current/target" per metric, the first two shown, then "+ N more...".
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        // Go pairs spec i with status i positionally, whatever their types.
        let status = |source: &str| statuses.get(i).and_then(|s| at(s, &[source]));
        let entry = match text(spec, &["type"]) {
            ty @ ("External" | "Object") => {
                let source = if ty == "External" { "external" } else { "object" };
                let target = at(spec, &[source, "target"]);
                if let Some(avg) = target.and_then(|t| at(t, &["averageValue"])) {
                    let current = status(source)
                        .and_then(|s| at(s, &["current", "averageValue"]))
                        .map_or_else(|| "<unknown>".to_string(), |q| quantity(Some(q)));
                    format!("{current}/{} (avg)", quantity(Some(avg)))
                } else {
                    let current = status(source)
                        .map_or_else(|| "<unknown>".to_string(), |s| quantity_ptr(at(s, &["current", "value"])));
                    format!("{current}/{}", quantity_ptr(target.and_then(|t| at(t, &["value"]))))
                }
            }
            "Pods" => {
                let current = status("pods")
                    .map_or_else(|| "<unknown>".to_string(), |s| quantity_ptr(at(s, &["current", "averageValue"])));
                format!("{current}/{}", quantity_ptr(at(spec, &["pods", "target", "averageValue"])))
            }
            ty @ ("Resource" | "ContainerResource") => {
                let source = if ty == "Resource" { "resource" } else { "containerResource" };
                let resource = text(spec, &[source, "name"]);
                if let Some(avg) = at(spec, &[source, "target", "averageValue"]) {
                    let current = status(source)
                        .map_or_else(|| "<unknown>".to_string(), |s| quantity_ptr(at(s, &["current", "averageValue"])));
                    format!("{resource}: {current}/{}", quantity(Some(avg)))
                } else {
                    let current = status(source)
                        .and_then(|s| opt_int(s, &["current", "averageUtilization"]))
                        .map_or_else(|| "<unknown>".to_string(), |u| format!("{u}%"));
                    let target = opt_int(spec, &[source, "target", "averageUtilization"])
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{resource}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        shown.push(entry);
    }
    let count = shown.len();
    if count > MAX {
        shown.truncate(MAX);
        return format!("{} + {} more...", shown.join(", "), count - MAX);
    }
    shown.join(", ")
}

// ---------------------------------------------------------------------------------------------
// ResourceQuotas
// ---------------------------------------------------------------------------------------------

fn resource_quota_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut resources: Vec<(&String, &Value)> =
        at(obj, &["status", "hard"]).and_then(Value::as_object).into_iter().flatten().collect();
    resources.sort_by(|a, b| a.0.cmp(b.0));
    let mut requests: Vec<String> = Vec::new();
    let mut limits: Vec<String> = Vec::new();
    for (resource, hard) in resources {
        let used = quantity(at(obj, &["status", "used", resource.as_str()]));
        let entry = format!("{resource}: {used}/{}", quantity(Some(hard)));
        // "limits.cpu" and friends go to the LIMIT column, everything else to REQUEST.
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![name(obj), Value::from(requests.join(", ")), Value::from(limits.join(", ")), age(obj, now)]
}

/// Quantity.String() of a non-pointer quantity: missing is the zero quantity, "0". Unparseable
/// input is echoed, since the apiserver would have rejected it and there is nothing better to show.
fn quantity(v: Option<&Value>) -> String {
    let raw = match v {
        None => return "0".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    berth_proto::model::quantity::canonical_or_verbatim(&raw)
}

/// (*Quantity).String() of a pointer quantity: nil prints "<nil>".
fn quantity_ptr(v: Option<&Value>) -> String {
    if v.is_none() {
        "<nil>".to_string()
    } else {
        quantity(v)
    }
}

#[cfg(test)]
#[path = "printers_tests.rs"]
mod tests;
