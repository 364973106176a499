//! ResourceQuota: what an object consumes, and the admission check of a create against the
//! quotas of its namespace (kube-apiserver's `ResourceQuota` admission plugin and the
//! quota evaluators of `pkg/quota/v1/evaluator/core`, with their messages).
//!
//! The arithmetic here is pure. [`Registry::create`](super::Registry::create) applies the
//! outcome — the quotas' new `status.used` — in the *same* store transaction as the
//! object, guarded on each quota's `mod_revision`: two concurrent creates can never both
//! take the last free unit, the loser re-reads the quota and is refused (or retries).
//! Usage is freed by the quota controller (`tasks::quota`), which recomputes `status.used`
//! from the stored objects.
//!
//! Not supported: quota scopes (`scopes`, `scopeSelector`); a quota that has them is
//! ignored by admission and by the controller, rather than applied wrongly.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::resource::ResourceInfo;
use berth_proto::model::quantity::{Format, Quantity};

/// Resource name → quantity (a `corev1.ResourceList`).
pub type ResourceList = BTreeMap<String, Quantity>;

fn one() -> Quantity {
    count(1)
}

/// A count of objects, as `resource.NewQuantity(n, DecimalSI)`.
fn count(n: i128) -> Quantity {
    Quantity::from_scaled(n, 0, Format::DecimalSI)
}

/// `count/<resource>.<group>` (core: `count/<resource>`) of a served resource.
pub fn object_count_name(info: &ResourceInfo) -> String {
    // Old extensions/v1beta1 deployments are apps deployments.
    let group = if info.is_legacy_alias() { "apps" } else { info.group };
    if group.is_empty() {
        format!("count/{}", info.plural)
    } else {
        format!("count/{}.{group}", info.plural)
    }
}

/// The legacy object-count name some core resources also answer to (`pods` is a compute
/// resource instead, tracked by [`pod_usage`]).
fn legacy_count_name(info: &ResourceInfo) -> Option<&'static str> {
    match (info.group, info.plural) {
        ("", "services") => Some("services"),
        ("", "configmaps") => Some("configmaps"),
        ("", "secrets") => Some("secrets"),
        ("", "resourcequotas") => Some("resourcequotas"),
        ("", "persistentvolumeclaims") => Some("persistentvolumeclaims"),
        ("", "replicationcontrollers") => Some("replicationcontrollers"),
        _ => None,
    }
}

/// Whether quota resource `name` is one the evaluator of `info`'s objects tracks
/// (`MatchingResources`).
pub fn tracks(info: &ResourceInfo, name: &str) -> bool {
    if name == object_count_name(info) || Some(name) == legacy_count_name(info) {
        return true;
    }
    match (info.group, info.plural) {
        ("", "pods") => {
            matches!(name, "pods" | "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("requests.")
                || name.starts_with("limits.")
        }
        ("", "services") => matches!(name, "services.loadbalancers" | "services.nodeports"),
        _ => false,
    }
}

/// Kubernetes' `QuotaV1Pod`: a pod counts toward compute quota until it is finished
/// (Succeeded/Failed) or its deletion grace period has passed.
pub fn pod_counts(pod: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return false;
    }
    let deleted_at = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    if let Some(at) = deleted_at {
        let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
        if now > at.with_timezone(&chrono::Utc) + chrono::Duration::seconds(grace) {
            return false;
        }
    }
    true
}

fn resource_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?)))
                .collect::<ResourceList>()
        })
        .unwrap_or_default()
}

/// `podComputeUsageHelper`: what one container's (or a whole pod's) requests and limits
/// count as.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for (name, q) in requests {
        out.insert(format!("requests.{name}"), *q);
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(name.clone(), *q);
        }
    }
    for (name, q) in limits {
        out.insert(format!("limits.{name}"), *q);
    }
    out
}

/// `quota.Add`.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone()).and_modify(|q| q.add(v)).or_insert(*v);
    }
    out
}

fn max(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|q| {
                // `quota.Max` replaces only a smaller value, so an equal one keeps its format.
                if v > q {
                    *q = *v;
                }
            })
            .or_insert(*v);
    }
    out
}

/// `quota.Mask`: only the names in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    let names: BTreeSet<&String> = names.into_iter().collect();
    list.iter().filter(|(k, _)| names.contains(k)).map(|(k, v)| (k.clone(), *v)).collect()
}

/// A pod's compute usage (`PodUsageFunc`): containers summed, init containers taken at
/// their maximum (they run one at a time), plus the overhead; `pods` counts the pod.
fn pod_usage(pod: &Value, now: chrono::DateTime<chrono::Utc>) -> ResourceList {
    if !pod_counts(pod, now) {
        return ResourceList::new();
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let container_usage = |c: &Value| {
        compute_usage(&resource_list(c.pointer("/resources/requests")), &resource_list(c.pointer("/resources/limits")))
    };
    let mut sum = ResourceList::new();
    for c in spec.get("containers").and_then(Value::as_array).into_iter().flatten() {
        sum = add(&sum, &container_usage(c));
    }
    for c in spec.get("initContainers").and_then(Value::as_array).into_iter().flatten() {
        sum = max(&sum, &container_usage(c));
    }
    let overhead = resource_list(spec.get("overhead"));
    if !overhead.is_empty() {
        sum = add(&sum, &compute_usage(&overhead, &overhead));
    }
    sum.insert("pods".into(), one());
    sum
}

/// Everything `obj` (of resource `info`) consumes, for every quota resource that tracks it.
pub fn usage(info: &ResourceInfo, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> ResourceList {
    let mut out = ResourceList::new();
    // Object counts cover every stored object, finished pods too.
    out.insert(object_count_name(info), one());
    if let Some(legacy) = legacy_count_name(info) {
        out.insert(legacy.into(), one());
    }
    match (info.group, info.plural) {
        ("", "pods") => out = add(&out, &pod_usage(obj, now)),
        ("", "services") => {
            let type_ = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len) as i128;
            let (lb, node_ports) = match type_ {
                "LoadBalancer" => (1, ports),
                "NodePort" => (0, ports),
                _ => (0, 0),
            };
            out.insert("services.loadbalancers".into(), count(lb));
            out.insert("services.nodeports".into(), count(node_ports));
        }
        _ => {}
    }
    out
}

/// `prettyPrint`: `name=value` sorted by name, comma-separated.
pub fn pretty_print(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={}", v.canonical())).collect::<Vec<_>>().join(",")
}

/// The pod evaluator's `Constraints`: when a quota tracks cpu or memory, every container
/// must declare it (a request, or a limit, as the quota names it).
pub fn pod_constraints(pod: &Value, tracked: &BTreeSet<String>) -> Result<(), String> {
    const VALIDATED: [&str; 6] = ["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
    let required: BTreeSet<&str> = tracked.iter().map(String::as_str).filter(|n| VALIDATED.contains(n)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    for key in ["containers", "initContainers"] {
        for c in spec.get(key).and_then(Value::as_array).into_iter().flatten() {
            let usage = compute_usage(
                &resource_list(c.pointer("/resources/requests")),
                &resource_list(c.pointer("/resources/limits")),
            );
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            for r in &required {
                if !usage.contains_key(*r) {
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// A quota as admission reads it.
#[derive(Debug, Clone)]
pub struct QuotaState {
    pub name: String,
    pub hard: ResourceList,
    pub used: ResourceList,
    /// Scoped quotas are not supported (see the module doc): they are skipped.
    pub scoped: bool,
}

impl QuotaState {
    pub fn from_object(obj: &Value) -> QuotaState {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let scoped = spec.get("scopes").and_then(Value::as_array).is_some_and(|s| !s.is_empty())
            || spec.get("scopeSelector").is_some_and(|s| !s.is_null());
        QuotaState {
            name: obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            hard: resource_list(obj.pointer("/status/hard")),
            used: resource_list(obj.pointer("/status/used")),
            scoped,
        }
    }
}

/// The admission outcome for one quota: its new `status.used`, when the object counts
/// against it.
pub type NewUsed = Option<ResourceList>;

/// `checkRequest` for one create of `obj` against one quota. `Err` is the message after
/// `<resource> "<name>" is forbidden: `.
pub fn admit(
    info: &ResourceInfo,
    obj: &Value,
    quota: &QuotaState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewUsed, String> {
    if quota.scoped {
        return Ok(None);
    }
    let tracked: BTreeSet<String> = quota.hard.keys().filter(|k| tracks(info, k)).cloned().collect();
    if tracked.is_empty() {
        return Ok(None);
    }
    if info.kind == "Pod" {
        pod_constraints(obj, &tracked).map_err(|e| format!("failed quota: {}: {e}", quota.name))?;
    }
    if tracked.iter().any(|r| !quota.used.contains_key(r)) {
        let names: Vec<&str> = tracked.iter().map(String::as_str).collect();
        return Err(format!("status unknown for quota: {}, resources: {}", quota.name, names.join(",")));
    }
    let requested = mask(&usage(info, obj, now), quota.hard.keys());
    let new_usage = add(&quota.used, &requested);
    let exceeded: Vec<String> = requested
        .keys()
        .filter(|k| match (new_usage.get(*k), quota.hard.get(*k)) {
            (Some(n), Some(h)) => n > h,
            _ => false,
        })
        .cloned()
        .collect();
    if !exceeded.is_empty() {
        return Err(format!(
            "exceeded quota: {}, requested: {}, used: {}, limited: {}",
            quota.name,
            pretty_print(&mask(&requested, &exceeded)),
            pretty_print(&mask(&quota.used, &exceeded)),
            pretty_print(&mask(&quota.hard, &exceeded)),
        ));
    }
    Ok(Some(new_usage))
}

/// A ResourceList as the JSON map stored in a quota's status.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, v)| (k.clone(), json!(v.canonical()))).collect())
}

/// The usage quota resource `name` measures over `objects` (all of one namespace, of the
/// resources [`tracks`] says count for it).
pub fn used_for(name: &str, objects: &[(&ResourceInfo, &Value)], now: chrono::DateTime<chrono::Utc>) -> Quantity {
    let mut total = Quantity::ZERO;
    for (info, obj) in objects.iter().filter(|(info, _)| tracks(info, name)) {
        if let Some(q) = usage(info, obj, now).get(name) {
            total.add(q);
        }
    }
    total
}

/// The served resources whose objects quota resource `name` counts.
pub fn resources_for(name: &str) -> Vec<&'static ResourceInfo> {
    crate::resource::RESOURCES.iter().filter(|r| r.namespaced && !r.is_alias() && tracks(r, name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap())).collect()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}, "status": {"phase": "Pending"}})
    }

    fn quota(hard: &[(&str, &str)], used: &[(&str, &str)]) -> QuotaState {
        QuotaState { name: "q".into(), hard: list(hard), used: list(used), scoped: false }
    }

    #[test]
    fn count_names() {
        assert_eq!(object_count_name(find("apps", "v1", "deployments").unwrap()), "count/deployments.apps");
        assert_eq!(object_count_name(find("", "v1", "pods").unwrap()), "count/pods");
        assert_eq!(object_count_name(find("extensions", "v1beta1", "deployments").unwrap()), "count/deployments.apps");
        let pods = find("", "v1", "pods").unwrap();
        assert!(tracks(pods, "requests.cpu") && tracks(pods, "cpu") && tracks(pods, "pods"));
        assert!(!tracks(pods, "services"));
        assert_eq!(resources_for("count/deployments.apps").len(), 1);
        assert_eq!(resources_for("configmaps")[0].plural, "configmaps");
    }

    #[test]
    fn pod_usage_sums_containers_and_maxes_init() {
        let pods = find("", "v1", "pods").unwrap();
        let mut p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        ]));
        p["spec"]["initContainers"] = json!([{"name": "i", "resources": {"requests": {"cpu": "2"}}}]);
        let u = usage(pods, &p, now());
        assert_eq!(u["requests.cpu"].canonical(), "2");
        assert_eq!(u["cpu"].canonical(), "2");
        assert_eq!(u["requests.memory"].canonical(), "128Mi");
        assert_eq!(u["limits.cpu"].canonical(), "500m");
        assert_eq!(u["pods"].canonical(), "1");
        assert_eq!(u["count/pods"].canonical(), "1");
        // A finished pod only counts as an object.
        p["status"]["phase"] = json!("Succeeded");
        let u = usage(pods, &p, now());
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/pods"]);
    }

    #[test]
    fn exceeded_message_is_kube_apiservers() {
        let pods = find("", "v1", "pods").unwrap();
        let p = pod(json!([{"name": "c", "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "500m"}}}]));
        let q = quota(&[("requests.cpu", "1200m"), ("pods", "10")], &[("requests.cpu", "1"), ("pods", "2")]);
        assert_eq!(
            admit(pods, &p, &q, now()).unwrap_err(),
            "exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=1, limited: requests.cpu=1200m"
        );
        let q = quota(&[("requests.cpu", "2"), ("pods", "2")], &[("requests.cpu", "1"), ("pods", "2")]);
        assert_eq!(
            admit(pods, &p, &q, now()).unwrap_err(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        // Fits: the new usage carries every resource of the quota.
        let q = quota(&[("requests.cpu", "2"), ("pods", "3")], &[("requests.cpu", "1"), ("pods", "2")]);
        let used = admit(pods, &p, &q, now()).unwrap().unwrap();
        assert_eq!(pretty_print(&used), "pods=3,requests.cpu=1500m");
        // Zero used takes the request's format.
        let p = pod(json!([{"name": "c", "resources": {"requests": {"memory": "64Mi"}}}]));
        let q = quota(&[("requests.memory", "1Gi")], &[("requests.memory", "0")]);
        assert_eq!(pretty_print(&admit(pods, &p, &q, now()).unwrap().unwrap()), "requests.memory=64Mi");
    }

    #[test]
    fn missing_requests_and_unknown_status() {
        let pods = find("", "v1", "pods").unwrap();
        let p = pod(json!([
            {"name": "c", "resources": {"requests": {"cpu": "1"}}},
            {"name": "a"},
        ]));
        let q = quota(&[("limits.cpu", "4"), ("requests.cpu", "4"), ("memory", "1Gi")], &[]);
        // (checked before the usage stats: a quota without status still names the containers)
        assert_eq!(
            admit(pods, &p, &q, now()).unwrap_err(),
            "failed quota: q: must specify limits.cpu for: a,c; memory for: a,c; requests.cpu for: a"
        );
        let p = pod(json!([{"name": "c"}]));
        let q = quota(&[("pods", "4"), ("configmaps", "1")], &[("configmaps", "0")]);
        assert_eq!(admit(pods, &p, &q, now()).unwrap_err(), "status unknown for quota: q, resources: pods");
    }

    #[test]
    fn untracked_and_object_counts() {
        let cms = find("", "v1", "configmaps").unwrap();
        let cm = json!({"metadata": {"name": "c"}});
        let q = quota(&[("pods", "1")], &[("pods", "1")]);
        assert!(admit(cms, &cm, &q, now()).unwrap().is_none(), "a pods quota does not see configmaps");
        let q =
            quota(&[("configmaps", "1"), ("count/configmaps", "5")], &[("configmaps", "1"), ("count/configmaps", "1")]);
        assert_eq!(
            admit(cms, &cm, &q, now()).unwrap_err(),
            "exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
        );
        let deploys = find("apps", "v1", "deployments").unwrap();
        let q = quota(&[("count/deployments.apps", "2")], &[("count/deployments.apps", "1")]);
        let used = admit(deploys, &json!({}), &q, now()).unwrap().unwrap();
        assert_eq!(pretty_print(&used), "count/deployments.apps=2");
        let mut scoped = q.clone();
        scoped.scoped = true;
        assert!(admit(deploys, &json!({}), &scoped, now()).unwrap().is_none());
    }

    #[test]
    fn recomputed_usage() {
        let pods = find("", "v1", "pods").unwrap();
        let a = pod(json!([{"name": "c", "resources": {"requests": {"memory": "512Mi"}}}]));
        let mut b = a.clone();
        b["status"]["phase"] = json!("Failed");
        let c = a.clone();
        let objects = vec![(pods, &a), (pods, &b), (pods, &c)];
        assert_eq!(used_for("requests.memory", &objects, now()).canonical(), "1Gi");
        assert_eq!(used_for("pods", &objects, now()).canonical(), "2");
        assert_eq!(used_for("count/pods", &objects, now()).canonical(), "3");
        assert_eq!(used_for("requests.cpu", &objects, now()).canonical(), "0");
    }
}
