//! Printers of The small groups' kinds and quotas: Leases, HorizontalPodAutoscalers, ResourceQuotas.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;

pub static LEASE: Printer = Printer { columns: LEASE_COLS, row: lease_row };
pub static HPA: Printer = Printer { columns: HPA_COLS, row: hpa_row };
pub static RESOURCE_QUOTA: Printer = Printer { columns: RESOURCE_QUOTA_COLS, row: resource_quota_row };
pub static CERTIFICATE_SIGNING_REQUEST: Printer = Printer { columns: CSR_COLS, row: csr_row };
pub static CUSTOM_RESOURCE_DEFINITION: Printer = Printer { columns: CRD_COLS, row: crd_row };

// kube-apiserver prints a CRD's creation time itself, not its age.
static CRD_COLS: &[Col] = &[NAME, col("Created At", "date", D_CREATED)];

fn crd_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), json!(text(obj, &["metadata", "creationTimestamp"]))]
}

static CSR_COLS: &[Col] = &[
    NAME,
    AGE,
    col("SignerName", "string", "signerName indicates the requested signer, and is a qualified name."),
    col("Requestor", "string", "username contains the name of the user that created the CertificateSigningRequest."),
    col(
        "RequestedDuration",
        "string",
        "expirationSeconds is the requested duration of validity of the issued certificate.",
    ),
    col(
        "Condition",
        "string",
        "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".",
    ),
];

/// kubectl's CSR row: the conditions joined (Approved,Issued), Pending without any.
fn csr_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut conditions: Vec<String> =
        list(obj, &["status", "conditions"]).iter().map(|c| text(c, &["type"]).to_string()).collect();
    if conditions.is_empty() {
        conditions.push("Pending".into());
    }
    if at(obj, &["status", "certificate"]).and_then(Value::as_str).is_some_and(|c| !c.is_empty()) {
        conditions.push("Issued".into());
    }
    let duration = opt_int(obj, &["spec", "expirationSeconds"])
        .map(|s| berth_proto::model::duration::human_duration(chrono::Duration::seconds(s)))
        .unwrap_or_else(|| "<none>".into());
    vec![
        name(obj),
        age(obj, now),
        Value::from(text(obj, &["spec", "signerName"])),
        Value::from(text(obj, &["spec", "username"])),
        Value::from(duration),
        Value::from(conditions.join(",")),
    ]
}

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

fn lease_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(text(obj, &["spec", "holderIdentity"])), age(obj, now)]
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
pub(super) fn quantity(v: Option<&Value>) -> String {
    let raw = match v {
        None => return "0".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    berth_proto::model::quantity::canonical_or_verbatim(&raw)
}

/// (*Quantity).String() of a pointer quantity: nil prints "<nil>".
pub(super) fn quantity_ptr(v: Option<&Value>) -> String {
    if v.is_none() {
        "<nil>".to_string()
    } else {
        quantity(v)
    }
}
