//! Printers of the policy kinds: PodDisruptionBudgets, PriorityClasses, LimitRanges,
//! NetworkPolicies and ControllerRevisions (kube-apiserver's columns).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static POD_DISRUPTION_BUDGET: Printer = Printer { columns: PDB_COLS, row: pdb_row };
pub static PRIORITY_CLASS: Printer = Printer { columns: PRIORITY_CLASS_COLS, row: priority_class_row };
pub static LIMIT_RANGE: Printer = Printer { columns: LIMIT_RANGE_COLS, row: limit_range_row };
pub static NETWORK_POLICY: Printer = Printer { columns: NETWORK_POLICY_COLS, row: network_policy_row };
pub static CONTROLLER_REVISION: Printer = Printer { columns: CONTROLLER_REVISION_COLS, row: controller_revision_row };

static PDB_COLS: &[Col] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
    col("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
    AGE,
];

/// An IntOrString as kubectl prints it, `N/A` when unset.
fn int_or_string(obj: &Value, path: &[&str]) -> Value {
    match at(obj, path) {
        Some(Value::String(s)) => Value::from(s.as_str()),
        Some(v) if v.is_i64() => Value::from(int_of(v).to_string()),
        _ => Value::from("N/A"),
    }
}

fn pdb_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        int_or_string(obj, &["spec", "minAvailable"]),
        int_or_string(obj, &["spec", "maxUnavailable"]),
        Value::from(int(obj, &["status", "disruptionsAllowed"])),
        age(obj, now),
    ]
}

static PRIORITY_CLASS_COLS: &[Col] = &[
    NAME,
    col("Value", "integer", "The value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

fn priority_class_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(int(obj, &["value"])),
        Value::from(flag(obj, &["globalDefault"])),
        age(obj, now),
        Value::from(text(obj, &["preemptionPolicy"])),
    ]
}

static LIMIT_RANGE_COLS: &[Col] = &[NAME, col("Created At", "date", D_CREATED)];

fn limit_range_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = time(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![name(obj), Value::from(created)]
}

static NETWORK_POLICY_COLS: &[Col] = &[
    NAME,
    col("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies. The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace."),
    AGE,
];

fn network_policy_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let selector = at(obj, &["spec", "podSelector"]).map(selector_text).unwrap_or_default();
    vec![name(obj), Value::from(if selector.is_empty() { "<none>".to_string() } else { selector }), age(obj, now)]
}

/// `metav1.FormatLabelSelector`: `app=web,tier in (a,b)`; empty for an empty selector.
fn selector_text(selector: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        parts.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for e in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = text(e, &["key"]);
        let values: Vec<&str> = list(e, &["values"]).iter().filter_map(Value::as_str).collect();
        parts.push(match text(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    parts.join(",")
}

static CONTROLLER_REVISION_COLS: &[Col] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "integer", "Revision indicates the revision of the state represented by Data."),
    AGE,
];

fn controller_revision_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let controller = list(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let group = text(o, &["apiVersion"]).split_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = text(o, &["kind"]).to_lowercase();
            let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
            format!("{kind}/{}", text(o, &["name"]))
        })
        .unwrap_or_else(|| "<none>".into());
    vec![name(obj), Value::from(controller), Value::from(int(obj, &["revision"])), age(obj, now)]
}
