//! Table-driven tests for the table printers. Expected cells follow kube-apiserver's printers
//! (pkg/printers/internalversion/printers.go).

use super::other::{quantity, quantity_ptr};
use super::*;

/// The printer a request for `resource` (a plural, possibly group-qualified) gets: the served
/// kind's, or the default one for anything else.
fn printer_of(resource: &str) -> &'static Printer {
    let plural = resource.split('.').next().unwrap_or_default();
    crate::resource::RESOURCES.iter().find(|r| r.plural == plural).map_or(&DEFAULT, |r| r.strategy.printer)
}

fn columns(resource: &str) -> Vec<Value> {
    super::columns(printer_of(resource))
}

fn cells(resource: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    super::cells(printer_of(resource), obj, now)
}
use chrono::{Duration, TimeZone};
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

/// RFC3339 timestamp `secs` seconds before `now()`.
fn ago(secs: i64) -> String {
    (now() - Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86400;

fn meta(name: &str, created_ago: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(created_ago)})
}

fn check(resource: &str, cases: &[(&str, Value, Value)]) {
    let cols = columns(resource);
    for (label, obj, want) in cases {
        let got = cells(resource, obj, now());
        assert_eq!(Value::Array(got.clone()), *want, "{resource}: {label}");
        assert_eq!(got.len(), cols.len(), "{resource}: {label}: cell count");
    }
}

fn column_names(resource: &str) -> Vec<(String, i64)> {
    columns(resource)
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["priority"].as_i64().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------------------------

#[test]
fn column_sets_match_the_apiserver() {
    let p = |names: &[&str], wide_from: usize| -> Vec<(String, i64)> {
        names.iter().enumerate().map(|(i, n)| (n.to_string(), i64::from(i >= wide_from))).collect()
    };
    let cases: Vec<(&str, Vec<(String, i64)>)> = vec![
        (
            "pods",
            p(&["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"], 5),
        ),
        ("deployments", p(&["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"], 5)),
        ("replicasets", p(&["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"], 5)),
        (
            "daemonsets",
            p(
                &[
                    "Name",
                    "Desired",
                    "Current",
                    "Ready",
                    "Up-to-date",
                    "Available",
                    "Node Selector",
                    "Age",
                    "Containers",
                    "Images",
                    "Selector",
                ],
                8,
            ),
        ),
        ("statefulsets", p(&["Name", "Ready", "Age", "Containers", "Images"], 3)),
        ("jobs", p(&["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"], 5)),
        (
            "cronjobs",
            p(
                &[
                    "Name",
                    "Schedule",
                    "Timezone",
                    "Suspend",
                    "Active",
                    "Last Schedule",
                    "Age",
                    "Containers",
                    "Images",
                    "Selector",
                ],
                7,
            ),
        ),
        ("services", p(&["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"], 6)),
        ("endpoints", p(&["Name", "Endpoints", "Age"], 3)),
        (
            "nodes",
            p(
                &[
                    "Name",
                    "Status",
                    "Roles",
                    "Age",
                    "Version",
                    "Internal-IP",
                    "External-IP",
                    "OS-Image",
                    "Kernel-Version",
                    "Container-Runtime",
                ],
                5,
            ),
        ),
        ("namespaces", p(&["Name", "Status", "Age"], 3)),
        ("configmaps", p(&["Name", "Data", "Age"], 3)),
        ("secrets", p(&["Name", "Type", "Data", "Age"], 4)),
        ("serviceaccounts", p(&["Name", "Secrets", "Age"], 3)),
        ("leases", p(&["Name", "Holder", "Age"], 3)),
        ("horizontalpodautoscalers", p(&["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"], 7)),
        ("resourcequotas", p(&["Name", "Request", "Limit", "Age"], 4)),
        ("widgets", p(&["Name", "Age"], 2)),
    ];
    for (resource, want) in cases {
        assert_eq!(column_names(resource), want, "{resource}");
    }
    // Events interleave priorities.
    let events: Vec<(String, i64)> = [
        ("Last Seen", 0),
        ("Type", 0),
        ("Reason", 0),
        ("Object", 0),
        ("Subobject", 1),
        ("Source", 1),
        ("Message", 0),
        ("First Seen", 1),
        ("Count", 1),
        ("Name", 1),
    ]
    .iter()
    .map(|(n, p)| (n.to_string(), *p))
    .collect();
    assert_eq!(column_names("events"), events);
    // Group-qualified names resolve to the same printer.
    assert_eq!(column_names("deployments.apps"), column_names("deployments"));
    assert_eq!(column_names("events.events.k8s.io"), column_names("events"));
}

#[test]
fn column_json_shape() {
    let pods = columns("pods");
    assert_eq!(
        pods[0],
        json!({"name": "Name", "type": "string", "format": "name", "description": D_NAME, "priority": 0})
    );
    assert_eq!(pods[3]["type"], "string", "RESTARTS carries \"3 (2m ago)\" so it is a string column");
    assert_eq!(pods[4]["description"], D_CREATED);
    assert_eq!(pods[5]["format"], "");
    assert_eq!(columns("replicasets")[1]["type"], "integer");
    assert_eq!(columns("cronjobs")[3]["type"], "boolean");
    assert_eq!(columns("widgets")[1]["type"], "date");
    for resource in ["pods", "events", "nodes", "horizontalpodautoscalers", "widgets"] {
        for c in columns(resource) {
            let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 5, "{resource}: {c}");
            assert!(!c["description"].as_str().unwrap().is_empty(), "{resource}: {c}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

fn pod(status: Value) -> Value {
    json!({
        "metadata": meta("web", 5 * MIN),
        "spec": {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-1"},
        "status": status,
    })
}

fn running(name: &str, ready: bool, restarts: i64) -> Value {
    json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": ago(MIN)}}})
}

fn pod_cells(obj: &Value) -> Vec<Value> {
    cells("pods", obj, now())
}

/// (READY, STATUS, RESTARTS) of a pod.
fn pod_summary(obj: &Value) -> (String, String, String) {
    let c = pod_cells(obj);
    (c[1].as_str().unwrap().into(), c[2].as_str().unwrap().into(), c[3].as_str().unwrap().into())
}

#[test]
fn pod_full_row() {
    let obj = json!({
        "metadata": meta("web-7d4", 34 * MIN),
        "spec": {
            "containers": [{"name": "app", "image": "nginx"}],
            "nodeName": "node-1",
            "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.15.103",
            "podIPs": [{"ip": "10.0.15.103"}, {"ip": "fd00::3"}],
            "nominatedNodeName": "node-2",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "example.com/lb", "status": "True"},
                {"type": "example.com/dns", "status": "False"},
            ],
            "containerStatuses": [running("app", true, 0)],
        },
    });
    check(
        "pods",
        &[
            (
                "running with readiness gates",
                obj,
                json!(["web-7d4", "1/1", "Running", "0", "34m", "10.0.15.103", "node-1", "node-2", "1/2"]),
            ),
            (
                "pending, unscheduled",
                json!({
                    "metadata": meta("p", 10),
                    "spec": {"containers": [{"name": "a"}]},
                    "status": {"phase": "Pending"},
                }),
                json!(["p", "0/1", "Pending", "0", "10s", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "podIP without podIPs",
                json!({"metadata": meta("p", 10), "status": {"phase": "Running", "podIP": "10.1.1.1"}}),
                json!(["p", "0/0", "Running", "0", "10s", "10.1.1.1", "<none>", "<none>", "<none>"]),
            ),
            (
                "empty object",
                json!({}),
                json!(["", "0/0", "Pending", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]),
            ),
        ],
    );
}

#[test]
fn pod_status_edge_cases() {
    let cases: Vec<(&str, Value, (&str, &str, &str))> = vec![
        (
            "running and ready",
            pod(json!({"phase": "Running", "containerStatuses": [running("app", true, 0)]})),
            ("1/1", "Running", "0"),
        ),
        (
            "crash loop with last restart 2m ago",
            pod(json!({"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(2 * MIN)}},
            }]})),
            ("0/1", "CrashLoopBackOff", "3 (2m ago)"),
        ),
        (
            "restarts without a termination time print bare",
            pod(json!({"phase": "Running", "containerStatuses": [running("app", true, 4)]})),
            ("1/1", "Running", "4"),
        ),
        (
            "image pull backoff",
            pod(json!({"phase": "Pending", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}},
            }]})),
            ("0/1", "ImagePullBackOff", "0"),
        ),
        (
            "completed",
            pod(json!({"phase": "Succeeded", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }]})),
            ("0/1", "Completed", "0"),
        ),
        (
            "terminated without reason: exit code",
            pod(json!({"phase": "Failed", "containerStatuses": [{
                "name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 137}},
            }]})),
            ("0/1", "ExitCode:137", "0"),
        ),
        (
            "terminated without reason: signal",
            pod(json!({"phase": "Failed", "containerStatuses": [{
                "name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "signal": 9}},
            }]})),
            ("0/1", "Signal:9", "0"),
        ),
        (
            "one container completed, another still running and pod ready",
            json!({
                "metadata": meta("p", MIN),
                "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        running("a", true, 0),
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    ],
                },
            }),
            ("1/2", "Running", "0"),
        ),
        (
            "one container completed, another running but pod not ready",
            json!({
                "metadata": meta("p", MIN),
                "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        running("a", true, 0),
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    ],
                },
            }),
            ("1/2", "NotReady", "0"),
        ),
        (
            "evicted",
            pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"})),
            ("0/1", "Evicted", "0"),
        ),
        (
            "scheduling gated",
            pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
            ]})),
            ("0/1", "SchedulingGated", "0"),
        ),
        (
            "deleting a running pod",
            json!({
                "metadata": {"name": "p", "creationTimestamp": ago(MIN), "deletionTimestamp": ago(0)},
                "spec": {"containers": [{"name": "app"}]},
                "status": {"phase": "Running", "containerStatuses": [running("app", true, 0)]},
            }),
            ("1/1", "Terminating", "0"),
        ),
        (
            "deleting a succeeded pod keeps its terminal status",
            json!({
                "metadata": {"name": "p", "creationTimestamp": ago(MIN), "deletionTimestamp": ago(0)},
                "spec": {"containers": [{"name": "app"}]},
                "status": {"phase": "Succeeded", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                ]},
            }),
            ("0/1", "Completed", "0"),
        ),
        (
            "node lost",
            json!({
                "metadata": {"name": "p", "creationTimestamp": ago(MIN), "deletionTimestamp": ago(0)},
                "spec": {"containers": [{"name": "app"}]},
                "status": {"phase": "Running", "reason": "NodeLost", "containerStatuses": [running("app", true, 0)]},
            }),
            ("1/1", "Unknown", "0"),
        ),
    ];
    for (label, obj, (ready, status, restarts)) in cases {
        assert_eq!(pod_summary(&obj), (ready.into(), status.into(), restarts.into()), "{label}");
    }
}

fn init_pod(init: Value, init_statuses: Value, extra_status: Value) -> Value {
    let mut status = json!({"phase": "Pending", "initContainerStatuses": init_statuses});
    for (k, v) in extra_status.as_object().unwrap() {
        status[k] = v.clone();
    }
    json!({
        "metadata": meta("p", MIN),
        "spec": {"initContainers": init, "containers": [{"name": "app"}]},
        "status": status,
    })
}

#[test]
fn pod_init_container_status() {
    let two_inits = json!([{"name": "i1"}, {"name": "i2"}]);
    let done =
        json!({"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let cases: Vec<(&str, Value, (&str, &str, &str))> = vec![
        (
            "first init container running",
            init_pod(two_inits.clone(), json!([{"name": "i1", "state": {"running": {}}}, {"name": "i2"}]), json!({})),
            ("0/1", "Init:0/2", "0"),
        ),
        (
            "second init container running",
            init_pod(two_inits.clone(), json!([done, {"name": "i2", "state": {"running": {}}}]), json!({})),
            ("0/1", "Init:1/2", "0"),
        ),
        (
            "waiting PodInitializing counts as progress",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}]),
                json!({}),
            ),
            ("0/1", "Init:0/1", "0"),
        ),
        (
            "init image pull backoff",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{"name": "i1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]),
                json!({}),
            ),
            ("0/1", "Init:ImagePullBackOff", "0"),
        ),
        (
            "init crash loop counts init restarts",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{
                    "name": "i1", "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
                }]),
                json!({}),
            ),
            ("0/1", "Init:CrashLoopBackOff", "5 (30s ago)"),
        ),
        (
            "init failed with reason",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
                json!({}),
            ),
            ("0/1", "Init:Error", "0"),
        ),
        (
            "init failed without reason",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{"name": "i1", "state": {"terminated": {"exitCode": 2}}}]),
                json!({}),
            ),
            ("0/1", "Init:ExitCode:2", "0"),
        ),
        (
            "init killed by signal",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{"name": "i1", "state": {"terminated": {"exitCode": 1, "signal": 15}}}]),
                json!({}),
            ),
            ("0/1", "Init:Signal:15", "0"),
        ),
        (
            "init done, app running",
            init_pod(
                json!([{"name": "i1"}]),
                json!([done]),
                json!({"phase": "Running", "containerStatuses": [running("app", true, 1)]}),
            ),
            ("1/1", "Running", "1"),
        ),
        (
            "sidecar started and ready counts towards READY and the total",
            init_pod(
                json!([{"name": "i1", "restartPolicy": "Always"}]),
                json!([{
                    "name": "i1", "started": true, "ready": true, "restartCount": 2,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3 * MIN)}},
                }]),
                json!({
                    "phase": "Running",
                    "conditions": [{"type": "Initialized", "status": "True"}],
                    "containerStatuses": [running("app", true, 0)],
                }),
            ),
            ("2/2", "Running", "2 (3m ago)"),
        ),
        (
            "sidecar not yet started blocks initialization",
            init_pod(
                json!([{"name": "i1", "restartPolicy": "Always"}]),
                json!([{"name": "i1", "started": false, "state": {"running": {}}}]),
                json!({}),
            ),
            ("0/2", "Init:0/1", "0"),
        ),
        (
            "Initialized=True counts app containers but keeps the init reason",
            init_pod(
                json!([{"name": "i1"}]),
                json!([{"name": "i1", "restartCount": 1, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
                json!({
                    "phase": "Running",
                    "conditions": [{"type": "Initialized", "status": "True"}],
                    "containerStatuses": [running("app", true, 0)],
                }),
            ),
            ("1/1", "Init:Error", "0"),
        ),
    ];
    for (label, obj, (ready, status, restarts)) in cases {
        assert_eq!(pod_summary(&obj), (ready.into(), status.into(), restarts.into()), "{label}");
    }
}

#[test]
fn malformed_objects_never_panic() {
    let junk = [
        json!(null),
        json!("pod"),
        json!(42),
        json!([]),
        json!({"metadata": "x", "spec": 5, "status": []}),
        json!({"metadata": {"name": 7, "creationTimestamp": "yesterday"}}),
        json!({"spec": {"containers": "x", "initContainers": [1, null, "a"], "readinessGates": [null]},
               "status": {"containerStatuses": [null, 3, {"state": "x"}],
                          "initContainerStatuses": [{"state": {"terminated": 1}}],
                          "conditions": "x", "podIPs": [7]}}),
        json!({"spec": {"ports": [{"port": "80"}],
                        "selector": {"matchLabels": 3, "matchExpressions": [{"operator": "Bogus"}]},
                        "metrics": [{"type": "Resource"}, {"type": "External", "external": {}}, {}]},
               "status": {"hard": {"cpu": 5, "memory": "bogus"}, "used": {"cpu": []}, "conditions": [null]},
               "subsets": [{"addresses": [{"ip": 1}], "ports": [{}]}]}),
    ];
    let resources = [
        "pods",
        "deployments",
        "replicasets",
        "daemonsets",
        "statefulsets",
        "jobs",
        "cronjobs",
        "services",
        "endpoints",
        "nodes",
        "namespaces",
        "configmaps",
        "secrets",
        "events",
        "serviceaccounts",
        "leases",
        "horizontalpodautoscalers",
        "resourcequotas",
        "widgets",
    ];
    for resource in resources {
        for obj in &junk {
            assert_eq!(cells(resource, obj, now()).len(), columns(resource).len(), "{resource}: {obj}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn template(containers: Value) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
}

#[test]
fn deployments() {
    let two = json!([{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "fluent-bit"}]);
    check(
        "deployments",
        &[
            (
                "rolling",
                json!({
                    "metadata": meta("web", 3 * DAY),
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                                     "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                                          {"key": "canary", "operator": "DoesNotExist"}]},
                        "template": template(two),
                    },
                    "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
                }),
                json!([
                    "web",
                    "2/3",
                    3,
                    2,
                    "3d",
                    "web,log",
                    "nginx:1.27,fluent-bit",
                    "app=web,!canary,env in (dev,prod),tier=fe"
                ]),
            ),
            (
                "fresh object without status or replicas (defaulted to 1), nil selector prints empty",
                json!({
                    "metadata": meta("api", 20),
                    "spec": {"template": template(json!([{"name": "api", "image": "api:1"}]))},
                }),
                json!(["api", "0/1", 0, 0, "20s", "api", "api:1", ""]),
            ),
            (
                "scaled to zero; invalid selector",
                json!({"metadata": meta("z", 20), "spec": {"replicas": 0,
                       "selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}}}),
                json!(["z", "0/0", 0, 0, "20s", "", "", "<invalid>"]),
            ),
        ],
    );
}

#[test]
fn replicasets_daemonsets_statefulsets() {
    let one = json!([{"name": "web", "image": "nginx"}]);
    check(
        "replicasets",
        &[
            (
                "steady",
                json!({
                    "metadata": meta("web-5d8f", 3 * HOUR),
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}},
                             "template": template(one.clone())},
                    "status": {"replicas": 2, "readyReplicas": 1},
                }),
                json!(["web-5d8f", 2, 2, 1, "3h", "web", "nginx", "app=web,pod-template-hash=5d8f"]),
            ),
            ("no selector", json!({"metadata": meta("rs", 5)}), json!(["rs", 1, 0, 0, "5s", "", "", "<none>"])),
        ],
    );
    check(
        "daemonsets",
        &[
            (
                "node selector",
                json!({
                    "metadata": meta("agent", 9 * DAY),
                    "spec": {
                        "selector": {"matchLabels": {"name": "agent"}},
                        "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"},
                                              "containers": [{"name": "agent", "image": "agent:2"}]}},
                    },
                    "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                               "updatedNumberScheduled": 3, "numberAvailable": 2},
                }),
                json!([
                    "agent",
                    3,
                    3,
                    2,
                    3,
                    2,
                    "disk=ssd,kubernetes.io/os=linux",
                    "9d",
                    "agent",
                    "agent:2",
                    "name=agent"
                ]),
            ),
            (
                "bare",
                json!({"metadata": meta("ds", 1)}),
                json!(["ds", 0, 0, 0, 0, 0, "<none>", "1s", "", "", "<none>"]),
            ),
        ],
    );
    check(
        "statefulsets",
        &[
            (
                "partially ready",
                json!({
                    "metadata": meta("db", 100 * MIN),
                    "spec": {"replicas": 3, "template": template(json!([{"name": "pg", "image": "postgres:17"}]))},
                    "status": {"replicas": 3, "readyReplicas": 1},
                }),
                json!(["db", "1/3", "100m", "pg", "postgres:17"]),
            ),
            ("unset replicas default to 1", json!({"metadata": meta("s", 1)}), json!(["s", "0/1", "1s", "", ""])),
        ],
    );
}

fn job(spec: Value, status: Value, extra_meta: Value) -> Value {
    let mut m = meta("pi", 10 * MIN);
    for (k, v) in extra_meta.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"metadata": m, "spec": spec, "status": status})
}

#[test]
fn jobs() {
    let spec = json!({
        "completions": 1, "parallelism": 1,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
        "template": template(json!([{"name": "pi", "image": "perl:5.34"}])),
    });
    let cond = |ty: &str| json!([{"type": ty, "status": "True"}]);
    check(
        "jobs",
        &[
            (
                "complete",
                job(
                    spec.clone(),
                    json!({"succeeded": 1, "startTime": ago(10 * MIN), "completionTime": ago(10 * MIN - 37),
                           "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                          {"type": "Complete", "status": "True"}]}),
                    json!({}),
                ),
                json!([
                    "pi",
                    "Complete",
                    "1/1",
                    "37s",
                    "10m",
                    "pi",
                    "perl:5.34",
                    "batch.kubernetes.io/controller-uid=abc"
                ]),
            ),
            (
                "running without completions, parallel",
                job(json!({"parallelism": 3}), json!({"active": 3, "startTime": ago(5 * MIN + 12)}), json!({})),
                json!(["pi", "Running", "0/1 of 3", "5m12s", "10m", "", "", "<none>"]),
            ),
            (
                "not started",
                job(json!({}), json!({}), json!({})),
                json!(["pi", "Running", "0/1", "", "10m", "", "", "<none>"]),
            ),
            (
                "failed",
                job(
                    json!({"completions": 4}),
                    json!({"failed": 2, "succeeded": 1, "conditions": cond("Failed")}),
                    json!({}),
                ),
                json!(["pi", "Failed", "1/4", "", "10m", "", "", "<none>"]),
            ),
            (
                "suspended",
                job(json!({"completions": 2}), json!({"conditions": cond("Suspended")}), json!({})),
                json!(["pi", "Suspended", "0/2", "", "10m", "", "", "<none>"]),
            ),
            (
                "failure target",
                job(json!({"completions": 2}), json!({"conditions": cond("FailureTarget")}), json!({})),
                json!(["pi", "FailureTarget", "0/2", "", "10m", "", "", "<none>"]),
            ),
            (
                "terminating beats suspended, not complete",
                job(
                    json!({"completions": 2}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                    json!({"deletionTimestamp": ago(0)}),
                ),
                json!(["pi", "Terminating", "0/2", "", "10m", "", "", "<none>"]),
            ),
            (
                "a False condition does not count",
                job(
                    json!({"completions": 2}),
                    json!({"conditions": [{"type": "Complete", "status": "False"}]}),
                    json!({}),
                ),
                json!(["pi", "Running", "0/2", "", "10m", "", "", "<none>"]),
            ),
        ],
    );
}

#[test]
fn cronjobs() {
    check(
        "cronjobs",
        &[
            (
                "scheduled with time zone",
                json!({
                    "metadata": meta("backup", 3 * DAY),
                    "spec": {
                        "schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "suspend": false,
                        "jobTemplate": {"spec": {"template": template(json!([{"name": "b", "image": "busybox"}]))}},
                    },
                    "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(4 * MIN + 1)},
                }),
                json!(["backup", "*/5 * * * *", "Etc/UTC", "False", 1, "4m1s", "3d", "b", "busybox", "<none>"]),
            ),
            (
                "suspended, never scheduled",
                json!({"metadata": meta("c", 30), "spec": {"schedule": "@daily", "suspend": true}}),
                json!(["c", "@daily", "<none>", "True", 0, "<none>", "30s", "", "", "<none>"]),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------------------------

fn svc(spec: Value, status: Value) -> Value {
    json!({"metadata": meta("web", HOUR), "spec": spec, "status": status})
}

#[test]
fn services() {
    check(
        "services",
        &[
            (
                "cluster ip",
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                           "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                           "selector": {"k8s-app": "kube-dns"}}),
                    json!({}),
                ),
                json!(["web", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "60m", "k8s-app=kube-dns"]),
            ),
            (
                "node port with external ips",
                svc(
                    json!({"type": "NodePort", "clusterIPs": ["10.96.1.2"], "externalIPs": ["1.2.3.4", "5.6.7.8"],
                           "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
                    json!({}),
                ),
                json!(["web", "NodePort", "10.96.1.2", "1.2.3.4,5.6.7.8", "80:30080/TCP", "60m", "<none>"]),
            ),
            (
                "pending load balancer",
                svc(
                    json!({"type": "LoadBalancer", "clusterIP": "10.96.1.3",
                           "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
                    json!({"loadBalancer": {}}),
                ),
                json!(["web", "LoadBalancer", "10.96.1.3", "<pending>", "443:31443/TCP", "60m", "<none>"]),
            ),
            (
                "provisioned load balancer: ingress sorted and deduped, then external ips",
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.4"], "externalIPs": ["9.9.9.9"],
                           "ports": [{"port": 80, "nodePort": 30001}]}),
                    json!({"loadBalancer": {"ingress": [
                        {"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"},
                        {"ip": "198.51.100.1", "hostname": "ignored"}, {},
                    ]}}),
                ),
                json!([
                    "web",
                    "LoadBalancer",
                    "10.96.1.4",
                    "198.51.100.1,203.0.113.9,lb.example.com,9.9.9.9",
                    "80:30001/TCP",
                    "60m",
                    "<none>"
                ]),
            ),
            (
                "external name",
                svc(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({})),
                json!(["web", "ExternalName", "<none>", "db.example.com", "<none>", "60m", "<none>"]),
            ),
            (
                "headless, type defaulted",
                svc(json!({"clusterIP": "None", "selector": {"app": "db"}}), json!({})),
                json!(["web", "ClusterIP", "None", "<none>", "<none>", "60m", "app=db"]),
            ),
        ],
    );
}

#[test]
fn endpoint_slices() {
    check(
        "endpointslices",
        &[
            (
                "more than three",
                json!({"metadata": meta("web-abcde", MIN), "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 80}, {"name": "metrics"}],
                    "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
                                  {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]}),
                json!(["web-abcde", "IPv4", "80,metrics", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...", "60s"]),
            ),
            (
                "empty",
                json!({"metadata": meta("e-x", MIN), "addressType": "IPv4", "endpoints": []}),
                json!(["e-x", "IPv4", "<unset>", "<unset>", "60s"]),
            ),
        ],
    );
}

#[test]
fn endpoints() {
    check(
        "endpoints",
        &[
            (
                "more than three",
                json!({"metadata": meta("web", MIN), "subsets": [
                    {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                     "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
                ]}),
                json!(["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...", "60s"]),
            ),
            (
                "ipv6 and headless without ports",
                json!({"metadata": meta("h", MIN), "subsets": [
                    {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
                    {"addresses": [{"ip": "10.0.0.9"}]},
                ]}),
                json!(["h", "[fd00::1]:8080,10.0.0.9", "60s"]),
            ),
            ("no subsets", json!({"metadata": meta("e", MIN)}), json!(["e", "<none>", "60s"])),
            (
                "not-ready addresses only",
                json!({
                    "metadata": meta("n", MIN),
                    "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 80}]}],
                }),
                json!(["n", "", "60s"]),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster objects
// ---------------------------------------------------------------------------------------------

#[test]
fn nodes() {
    check(
        "nodes",
        &[
            (
                "cordoned control plane",
                json!({
                    "metadata": {"name": "cp-1", "creationTimestamp": ago(40 * DAY), "labels": {
                        "node-role.kubernetes.io/control-plane": "",
                        "node-role.kubernetes.io/etcd": "true",
                        "node-role.kubernetes.io/": "",
                        "kubernetes.io/role": "master",
                        "kubernetes.io/hostname": "cp-1",
                    }},
                    "spec": {"unschedulable": true},
                    "status": {
                        "conditions": [
                            {"type": "MemoryPressure", "status": "False"},
                            {"type": "Ready", "status": "True"},
                        ],
                        "addresses": [
                            {"type": "Hostname", "address": "cp-1"},
                            {"type": "InternalIP", "address": "192.168.1.10"},
                        ],
                        "nodeInfo": {
                            "kubeletVersion": "v1.33.1",
                            "osImage": "Ubuntu 24.04.2 LTS",
                            "kernelVersion": "6.8.0-60-generic",
                            "containerRuntimeVersion": "containerd://2.0.5",
                        },
                    },
                }),
                json!([
                    "cp-1",
                    "Ready,SchedulingDisabled",
                    "control-plane,etcd,master",
                    "40d",
                    "v1.33.1",
                    "192.168.1.10",
                    "<none>",
                    "Ubuntu 24.04.2 LTS",
                    "6.8.0-60-generic",
                    "containerd://2.0.5"
                ]),
            ),
            (
                "not ready worker",
                json!({
                    "metadata": meta("w-1", 3 * HOUR),
                    "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                               "addresses": [{"type": "ExternalIP", "address": "203.0.113.5"}]},
                }),
                json!([
                    "w-1",
                    "NotReady",
                    "<none>",
                    "3h",
                    "",
                    "<none>",
                    "203.0.113.5",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            ),
            (
                "no conditions",
                json!({"metadata": meta("n", 1)}),
                json!(["n", "Unknown", "<none>", "1s", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]),
            ),
        ],
    );
}

#[test]
fn namespaces_configmaps_secrets_serviceaccounts_leases() {
    check(
        "namespaces",
        &[
            (
                "active",
                json!({"metadata": meta("default", 400 * DAY), "status": {"phase": "Active"}}),
                json!(["default", "Active", "400d"]),
            ),
            (
                "terminating",
                json!({"metadata": meta("old", 2 * MIN), "status": {"phase": "Terminating"}}),
                json!(["old", "Terminating", "2m"]),
            ),
            ("phase defaulted", json!({"metadata": meta("new", 0)}), json!(["new", "Active", "0s"])),
        ],
    );
    check(
        "configmaps",
        &[
            (
                "data and binaryData",
                json!({"metadata": meta("cfg", MIN), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
                json!(["cfg", 3, "60s"]),
            ),
            ("empty", json!({"metadata": meta("kube-root-ca.crt", MIN)}), json!(["kube-root-ca.crt", 0, "60s"])),
        ],
    );
    check(
        "secrets",
        &[
            (
                "tls",
                json!({
                    "metadata": meta("tls", MIN),
                    "type": "kubernetes.io/tls",
                    "data": {"tls.crt": "", "tls.key": ""},
                }),
                json!(["tls", "kubernetes.io/tls", 2, "60s"]),
            ),
            (
                "stringData merges into data; type defaulted",
                json!({"metadata": meta("s", MIN), "data": {"a": "eA=="}, "stringData": {"a": "x", "b": "y"}}),
                json!(["s", "Opaque", 2, "60s"]),
            ),
        ],
    );
    check(
        "serviceaccounts",
        &[
            ("default", json!({"metadata": meta("default", DAY)}), json!(["default", 0, "24h"])),
            (
                "with secrets",
                json!({"metadata": meta("builder", DAY), "secrets": [{"name": "a"}, {"name": "b"}]}),
                json!(["builder", 2, "24h"]),
            ),
        ],
    );
    check(
        "leases",
        &[
            (
                "held",
                json!({"metadata": meta("kube-scheduler", 2 * DAY), "spec": {"holderIdentity": "cp-1_3f2a"}}),
                json!(["kube-scheduler", "cp-1_3f2a", "2d"]),
            ),
            ("unheld", json!({"metadata": meta("l", 2 * DAY), "spec": {}}), json!(["l", "", "2d"])),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[test]
fn events() {
    check(
        "events",
        &[
            (
                "repeated core event",
                json!({
                    "metadata": meta("web.17f3a", 10 * MIN),
                    "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
                    "reason": "BackOff",
                    "message": "  Back-off restarting failed container\n",
                    "source": {"component": "kubelet", "host": "node-1"},
                    "firstTimestamp": ago(10 * MIN),
                    "lastTimestamp": ago(30),
                    "count": 12,
                    "type": "Warning",
                }),
                json!([
                    "30s",
                    "Warning",
                    "BackOff",
                    "pod/web",
                    "spec.containers{app}",
                    "kubelet, node-1",
                    "Back-off restarting failed container",
                    "10m",
                    12,
                    "web.17f3a"
                ]),
            ),
            (
                "new-style event: eventTime, series, reporting controller",
                json!({
                    "metadata": meta("ev2", 5 * MIN),
                    "involvedObject": {"kind": "Deployment", "name": "web"},
                    "reason": "ScalingReplicaSet",
                    "message": "Scaled up replica set web-5d8f to 3",
                    "eventTime": ago(5 * MIN),
                    "series": {"count": 4, "lastObservedTime": ago(61)},
                    "reportingController": "deployment-controller",
                    "type": "Normal",
                }),
                json!([
                    "61s",
                    "Normal",
                    "ScalingReplicaSet",
                    "deployment/web",
                    "",
                    "deployment-controller",
                    "Scaled up replica set web-5d8f to 3",
                    "5m",
                    4,
                    "ev2"
                ]),
            ),
            (
                "singleton without timestamps",
                json!({"metadata": meta("e", 0), "involvedObject": {"kind": "Node"}, "type": "Normal"}),
                json!(["<unknown>", "Normal", "", "node", "", "", "", "<unknown>", 1, "e"]),
            ),
            (
                "events.k8s.io/v1 field names",
                json!({
                    "metadata": meta("e3", 0),
                    "regarding": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"},
                    "note": "pulled",
                    "reason": "Pulled",
                    "type": "Normal",
                    "eventTime": ago(90),
                    "reportingController": "kubelet",
                    "reportingInstance": "node-2",
                }),
                json!([
                    "90s",
                    "Normal",
                    "Pulled",
                    "pod/p",
                    "spec.containers{c}",
                    "kubelet, node-2",
                    "pulled",
                    "90s",
                    1,
                    "e3"
                ]),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// HorizontalPodAutoscalers and ResourceQuotas (quantities)
// ---------------------------------------------------------------------------------------------

fn hpa(spec: Value, status: Value) -> Value {
    let mut s =
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"metadata": meta("web", 3 * HOUR), "spec": s, "status": status})
}

#[test]
fn horizontal_pod_autoscalers() {
    let cpu = |pct: i64| {
        json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": pct}},
        })
    };
    check(
        "horizontalpodautoscalers",
        &[
            (
                "v2 cpu utilization",
                hpa(
                    json!({"minReplicas": 2, "metrics": [cpu(80)]}),
                    json!({"currentReplicas": 3, "currentMetrics": [
                        {"type": "Resource",
                         "resource": {"name": "cpu", "current": {"averageUtilization": 52, "averageValue": "105m"}}},
                    ]}),
                ),
                json!(["web", "Deployment/web", "cpu: 52%/80%", "2", 10, 3, "3h"]),
            ),
            (
                "v2 defaults: no metrics means cpu 80%, minReplicas 1",
                hpa(json!({}), json!({})),
                json!(["web", "Deployment/web", "cpu: <unknown>/80%", "1", 10, 0, "3h"]),
            ),
            (
                "autoscaling/v1 shape",
                hpa(
                    json!({"targetCPUUtilizationPercentage": 50}),
                    json!({"currentReplicas": 1, "currentCPUUtilizationPercentage": 12}),
                ),
                json!(["web", "Deployment/web", "cpu: 12%/50%", "1", 10, 1, "3h"]),
            ),
            (
                "several metric kinds, first two shown",
                hpa(
                    json!({"metrics": [
                        {"type": "Resource",
                         "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
                        {"type": "Pods",
                         "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                        {"type": "External",
                         "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
                    ]}),
                    json!({"currentMetrics": [
                        {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "524288Ki"}}},
                        {"type": "Pods", "pods": {"current": {"averageValue": "1500m"}}},
                    ]}),
                ),
                json!(["web", "Deployment/web", "memory: 512Mi/1Gi, 1500m/1k + 1 more...", "1", 10, 0, "3h"]),
            ),
            (
                "external and object average values, container resource",
                hpa(
                    json!({"metrics": [
                        {"type": "External", "external": {"target": {"type": "AverageValue", "averageValue": "0.5"}}},
                        {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                                                                             "target": {"type": "Utilization"}}},
                    ]}),
                    json!({"currentMetrics": [
                        {"type": "External", "external": {"current": {"averageValue": "250m"}}},
                    ]}),
                ),
                json!(["web", "Deployment/web", "250m/500m (avg), cpu: <unknown>/<auto>", "1", 10, 0, "3h"]),
            ),
            (
                "unknown metric type",
                hpa(json!({"metrics": [{"type": "Custom"}]}), json!({})),
                json!(["web", "Deployment/web", "<unknown type>", "1", 10, 0, "3h"]),
            ),
        ],
    );
}

#[test]
fn resource_quotas() {
    check(
        "resourcequotas",
        &[
            (
                "requests and limits",
                json!({
                    "metadata": meta("compute", 7 * DAY),
                    "spec": {"hard": {"requests.cpu": "1"}},
                    "status": {
                        "hard": {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2",
                                 "limits.memory": "2048Mi", "pods": "10", "count/deployments.apps": "5"},
                        "used": {"requests.cpu": "500m", "requests.memory": "268435456", "limits.cpu": "1000m",
                                 "limits.memory": "1Gi", "pods": "2"},
                    },
                }),
                json!([
                    "compute",
                    "count/deployments.apps: 0/5, pods: 2/10, requests.cpu: 500m/1, requests.memory: 268435456/1Gi",
                    "limits.cpu: 1/2, limits.memory: 1Gi/2Gi",
                    "7d"
                ]),
            ),
            ("no status yet", json!({"metadata": meta("q", 1)}), json!(["q", "", "", "1s"])),
        ],
    );
}

#[test]
fn quantity_canonical_form() {
    let cases = [
        ("0", "0"),
        ("0.0", "0"),
        ("1", "1"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("2000", "2k"),
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("0.1", "100m"),
        ("1.5", "1500m"),
        ("100m", "100m"),
        ("1k", "1k"),
        ("1M", "1M"),
        ("1E", "1E"),
        ("1n", "1n"),
        ("0.0000000001", "1n"),
        ("1Ki", "1Ki"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Ki", "512"),
        ("1023Ki", "1023Ki"),
        ("100Mi", "100Mi"),
        ("1e3", "1e3"),
        ("12e6", "12e6"),
        ("1E3", "1e3"),
        ("-500m", "-500m"),
        ("+2", "2"),
        ("bogus", "bogus"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(quantity(Some(&json!(input))), want, "{input:?}");
    }
    assert_eq!(quantity(Some(&json!(3))), "3");
    assert_eq!(quantity(Some(&json!(0.25))), "250m");
    assert_eq!(quantity(None), "0");
    assert_eq!(quantity_ptr(None), "<nil>");
}

// ---------------------------------------------------------------------------------------------
// Unknown resources
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_resources_print_name_and_age() {
    check(
        "widgets.example.com",
        &[
            ("named", json!({"metadata": meta("w", 49 * HOUR)}), json!(["w", "2d1h"])),
            ("future timestamp beyond skew", json!({"metadata": meta("w", -MIN)}), json!(["w", "<invalid>"])),
            (
                "zero timestamp",
                json!({"metadata": {"name": "w", "creationTimestamp": "0001-01-01T00:00:00Z"}}),
                json!(["w", "<unknown>"]),
            ),
        ],
    );
}
