//! Server-side table printing: the `meta.k8s.io/v1` `Table` columns and row cells that kube-apiserver
//! returns when kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! kubectl prints whatever columns the server sends, so this module owns an exact port of the built-in
//! printers in kubernetes `pkg/printers/internalversion/printers.go` (v1.32/v1.33 semantics) for the
//! resources Berth serves (AGE-style cells use `berth_proto::model::duration::human_duration`). It is pure: a
//! kind's [`Printer`] (from its strategy) and an object in JSON form go in, column definitions and
//! cells come out. Wiring it into a `Table` response (rows, `object`, list metadata) is the
//! caller's job.
//!
//! This file holds [`Printer`], the shared column constants and the tolerant JSON and label
//! helpers; each kind's columns and row live in its own file (`pod`, `workloads`, `batch`,
//! `service`, `cluster`, `config`, `event`, `other`).
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

use berth_proto::model::duration::human_duration;
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

// The printers of the built-in kinds, one file per kind or small group of kinds.
mod batch;
mod cluster;
mod config;
mod event;
mod other;
mod pod;
mod policy;
mod rbac;
mod service;
mod workloads;

pub use batch::{CRON_JOB, JOB};
pub use cluster::{NAMESPACE, NODE};
pub use config::{CONFIG_MAP, SECRET, SERVICE_ACCOUNT};
pub use event::EVENT;
pub use other::{CERTIFICATE_SIGNING_REQUEST, CUSTOM_RESOURCE_DEFINITION, HPA, LEASE, RESOURCE_QUOTA};
pub use pod::POD;
pub use policy::{CONTROLLER_REVISION, LIMIT_RANGE, NETWORK_POLICY, POD_DISRUPTION_BUDGET, PRIORITY_CLASS};
pub use rbac::{ROLE, ROLE_BINDING};
pub use service::{ENDPOINTS, ENDPOINT_SLICE, INGRESS, INGRESS_CLASS, SERVICE};
pub use workloads::{DAEMON_SET, DEPLOYMENT, REPLICA_SET, STATEFUL_SET};

/// NAME + AGE, as the apiserver prints a resource that has no dedicated printer.
pub static DEFAULT: Printer = Printer { columns: DEFAULT_COLS, row: default_row };
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

const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
                      resources may allow a client to request the generation of an appropriate name automatically. \
                      Name is primarily intended for creation idempotence and configuration definition. Cannot be \
                      updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

const D_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. \
                         It is not guaranteed to be set in happens-before order across separate operations. Clients \
                         may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the \
                         system. Read-only. Null for lists. More info: \
                         https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

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

#[cfg(test)]
mod tests;
