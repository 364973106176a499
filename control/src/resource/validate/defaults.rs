//! Defaulting, one function per kind (each kind's strategy names its own), as kube-apiserver
//! applies it before validation: the v1 `SetDefaults_*`
//! functions plus the registry-strategy steps that shape an object on create (Job selector
//! generation, Secret `stringData` merge, Namespace finalizer, Service IP-family fields and
//! the ServiceAccount admission default). Only fills fields that are absent; never
//! allocates cluster IPs or node ports. Malformed input is left alone for validation.

use berth_proto::model::well_known;
use serde_json::{json, Map, Value};

use super::batch::{CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL};
use super::json::{ensure_obj, for_each_obj_mut, get, set_default, set_default_str};

/// No defaults beyond the metadata every object gets.
pub(crate) fn default_nothing(_obj: &mut Value) {}

pub(crate) fn default_pod(obj: &mut Value) {
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_pod_spec(spec);
        default_pod_only(spec);
    }
}

pub(crate) fn default_replicaset(obj: &mut Value) {
    if let Some(spec) = ensure_obj(obj, "spec") {
        set_default(spec, "replicas", json!(1));
        default_template(spec);
    }
}

pub(crate) fn default_endpoints(obj: &mut Value) {
    for_each_obj_mut(obj, "subsets", |subset| {
        for_each_obj_mut(subset, "ports", |p| set_default_str(p, "protocol", "TCP"));
    });
}

/// discovery/v1 `SetDefaults_EndpointPort`: protocol TCP, name "".
pub(crate) fn default_endpoint_slice(obj: &mut Value) {
    for_each_obj_mut(obj, "ports", |p| {
        set_default_str(p, "protocol", "TCP");
        set_default_str(p, "name", "");
    });
}

pub(crate) fn default_node(obj: &mut Value) {
    if let Some(status) = obj.get_mut("status").filter(|s| s.is_object()) {
        if let Some(capacity) = status.get("capacity").cloned() {
            set_default(status, "allocatable", capacity);
        }
    }
}

/// `template.spec` defaults for controllers; creates the template if absent, as Go's zero
/// value would be defaulted too.
fn default_template(spec: &mut Value) {
    if let Some(template) = ensure_obj(spec, "template") {
        if let Some(pod_spec) = ensure_obj(template, "spec") {
            default_pod_spec(pod_spec);
        }
    }
}

/// `SetDefaults_PodSpec` and the nested container/volume/probe defaults.
fn default_pod_spec(spec: &mut Value) {
    set_default_str(spec, "dnsPolicy", "ClusterFirst");
    set_default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default_str(spec, "schedulerName", "default-scheduler");
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for_each_obj_mut(spec, list, default_container);
    }
    for_each_obj_mut(spec, "volumes", default_volume);
}

/// `SetDefaults_Pod` extras that do not apply to templates, plus the ServiceAccount
/// admission plugin's default account.
fn default_pod_only(spec: &mut Value) {
    set_default(spec, "enableServiceLinks", json!(true));
    // The deprecated `serviceAccount` mirrors `serviceAccountName` (conversion does this).
    let sa = get(spec, "serviceAccountName")
        .or_else(|| get(spec, "serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    set_default_str(spec, "serviceAccountName", &sa);
    set_default_str(spec, "serviceAccount", &sa);
    let host_network = get(spec, "hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers"] {
        for_each_obj_mut(spec, list, |c| {
            // Requests default to limits for resources with only a limit.
            if let Some(resources) = c.get_mut("resources").filter(|r| r.is_object()) {
                if let Some(limits) = get(resources, "limits").and_then(Value::as_object).cloned() {
                    if let Some(Value::Object(requests)) = ensure_obj(resources, "requests") {
                        for (k, v) in limits {
                            requests.entry(k).or_insert(v);
                        }
                    }
                }
            }
            if host_network {
                for_each_obj_mut(c, "ports", |p| {
                    if let Some(cp) = get(p, "containerPort").cloned() {
                        set_default(p, "hostPort", cp);
                    }
                });
            }
        });
    }
}

fn default_container(c: &mut Value) {
    let image = get(c, "image").and_then(Value::as_str).unwrap_or("");
    let policy = if pulls_always(image) { "Always" } else { "IfNotPresent" };
    set_default_str(c, "imagePullPolicy", policy);
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    set_default(c, "resources", json!({}));
    for_each_obj_mut(c, "ports", |p| set_default_str(p, "protocol", "TCP"));
    for_each_obj_mut(c, "env", |e| {
        if let Some(from) = e.get_mut("valueFrom") {
            if let Some(fr) = from.get_mut("fieldRef").filter(|f| f.is_object()) {
                set_default_str(fr, "apiVersion", "v1");
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            default_http_get(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).filter(|h| h.is_object()) {
                default_http_get(h);
            }
        }
    }
}

fn default_http_get(handler: &mut Value) {
    if let Some(hg) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        set_default_str(hg, "path", "/");
        set_default_str(hg, "scheme", "HTTP");
    }
}

/// `SetDefaults_Container`'s pull policy: `:latest` or an untagged, undigested image pulls
/// always. A registry port (`host:5000/app`) is not a tag.
fn pulls_always(image: &str) -> bool {
    if image.is_empty() {
        return false;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => !digest,
    }
}

fn default_volume(vol: &mut Value) {
    const SOURCES_WITH_MODE: &[&str] = &["secret", "configMap", "downwardAPI", "projected"];
    let has_source = vol.as_object().is_some_and(|m| m.iter().any(|(k, v)| k != "name" && !v.is_null()));
    if !has_source {
        set_default(vol, "emptyDir", json!({}));
    }
    for s in SOURCES_WITH_MODE {
        if let Some(src) = vol.get_mut(*s).filter(|v| v.is_object()) {
            set_default(src, "defaultMode", json!(420));
        }
    }
    if let Some(hp) = vol.get_mut("hostPath").filter(|v| v.is_object()) {
        set_default(hp, "type", json!(""));
    }
}

pub(crate) fn default_deployment(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        set_default_str(strategy, "type", "RollingUpdate");
        if get(strategy, "type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = ensure_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

pub(crate) fn default_daemonset(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        set_default_str(strategy, "type", "RollingUpdate");
        if get(strategy, "type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = ensure_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

pub(crate) fn default_statefulset(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    set_default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        let was_unset = get(strategy, "type").and_then(Value::as_str).is_none_or(str::is_empty);
        set_default_str(strategy, "type", "RollingUpdate");
        if was_unset {
            set_default(strategy, "rollingUpdate", json!({}));
        }
        if get(strategy, "type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = strategy.get_mut("rollingUpdate").filter(|r| r.is_object()) {
                set_default(ru, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default_str(policy, "whenDeleted", "Retain");
        set_default_str(policy, "whenScaled", "Retain");
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    for_each_obj_mut(spec, "volumeClaimTemplates", |claim| {
        if let Some(cs) = claim.get_mut("spec").filter(|s| s.is_object()) {
            set_default_str(cs, "volumeMode", "Filesystem");
        }
    });
    default_template(spec);
}

pub(crate) fn default_job(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    if get(spec, "completions").is_none() && get(spec, "parallelism").is_none() {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if get(spec, "backoffLimitPerIndex").is_some() { i32::MAX as i64 } else { 6 };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default_str(spec, "completionMode", "NonIndexed");
    set_default(spec, "suspend", json!(false));
    let replacement = if get(spec, "podFailurePolicy").is_some() { "Failed" } else { "TerminatingOrFailed" };
    set_default_str(spec, "podReplacementPolicy", replacement);
    default_template(spec);
    if get(spec, "manualSelector").and_then(Value::as_bool) != Some(true) {
        generate_job_selector(spec, &name, &uid);
    }
    set_default(spec, "manualSelector", json!(false));
    // SetDefaults_Job copies template labels to an unlabelled Job; kube-apiserver re-runs it
    // on read, after selector generation, so the copy includes the generated labels.
    let template_labels = spec.pointer("/template/metadata/labels").cloned();
    if let Some(Value::Object(labels)) = template_labels {
        if let Some(meta) = ensure_obj(obj, "metadata") {
            let empty = get(meta, "labels").and_then(Value::as_object).is_none_or(Map::is_empty);
            if empty && !labels.is_empty() {
                meta.as_object_mut().map(|m| m.insert("labels".to_string(), Value::Object(labels)));
            }
        }
    }
}

/// The Job strategy's `generateSelector`: label the template with the job's name and uid
/// (without overriding user labels) and select on the uid.
fn generate_job_selector(spec: &mut Value, name: &str, uid: &str) {
    if let Some(labels) = ensure_obj(spec, "template")
        .and_then(|t| ensure_obj(t, "metadata"))
        .and_then(|m| ensure_obj(m, "labels"))
        .and_then(Value::as_object_mut)
    {
        for (k, v) in [
            (LEGACY_JOB_NAME_LABEL, name),
            (JOB_NAME_LABEL, name),
            (LEGACY_CONTROLLER_UID_LABEL, uid),
            (CONTROLLER_UID_LABEL, uid),
        ] {
            labels.entry(k.to_string()).or_insert_with(|| Value::String(v.to_string()));
        }
    }
    if let Some(Value::Object(ml)) = ensure_obj(spec, "selector").and_then(|s| ensure_obj(s, "matchLabels")) {
        ml.entry(CONTROLLER_UID_LABEL.to_string()).or_insert_with(|| Value::String(uid.to_string()));
    }
}

pub(crate) fn default_cronjob(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    set_default_str(spec, "concurrencyPolicy", "Allow");
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    // JobSpec defaults (completions, backoffLimit...) belong to the Job type, not to the
    // embedded template, so only the pod template is defaulted here.
    if let Some(job_spec) = ensure_obj(spec, "jobTemplate").and_then(|jt| ensure_obj(jt, "spec")) {
        default_template(job_spec);
    }
}

pub(crate) fn default_service(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    set_default_str(spec, "type", "ClusterIP");
    set_default_str(spec, "sessionAffinity", "None");
    let affinity = get(spec, "sessionAffinity").and_then(Value::as_str).unwrap_or("").to_string();
    if affinity == "None" {
        spec.as_object_mut().map(|m| m.remove("sessionAffinityConfig"));
    } else if affinity == "ClientIP" {
        if let Some(client_ip) = ensure_obj(spec, "sessionAffinityConfig").and_then(|c| ensure_obj(c, "clientIP")) {
            set_default(client_ip, "timeoutSeconds", json!(10800));
        }
    }
    for_each_obj_mut(spec, "ports", |p| {
        set_default_str(p, "protocol", "TCP");
        let unset = match get(p, "targetPort") {
            None => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(v) => v.as_i64() == Some(0),
        };
        if unset {
            if let Some(port) = get(p, "port").cloned() {
                p.as_object_mut().map(|m| m.insert("targetPort".to_string(), port));
            }
        }
    });
    let svc_type = get(spec, "type").and_then(Value::as_str).unwrap_or("").to_string();
    let has_external_ips = get(spec, "externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let externally_accessible =
        matches!(svc_type.as_str(), "NodePort" | "LoadBalancer") || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if svc_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type == "ExternalName" {
        return;
    }
    // The service strategy keeps clusterIP and clusterIPs[0] in sync.
    let cluster_ip = get(spec, "clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let first = spec.pointer("/clusterIPs/0").and_then(Value::as_str).map(str::to_string);
    match (cluster_ip.is_empty(), first) {
        (false, None) => set_default(spec, "clusterIPs", json!([cluster_ip])),
        (true, Some(ip)) => set_default_str(spec, "clusterIP", &ip),
        _ => {}
    }
    let v6 = cluster_ip.contains(':');
    set_default_str(spec, "ipFamilyPolicy", "SingleStack");
    set_default(spec, "ipFamilies", json!([if v6 { "IPv6" } else { "IPv4" }]));
}

pub(crate) fn default_secret(obj: &mut Value) {
    set_default_str(obj, "type", well_known::SECRET_TYPE_OPAQUE);
    // v1 conversion merges stringData into data (stringData wins) and drops stringData.
    let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else { return };
    let Value::Object(entries) = string_data else {
        // Not a map: put it back so validation reports it.
        obj.as_object_mut().map(|m| m.insert("stringData".to_string(), string_data));
        return;
    };
    if let Some(Value::Object(data)) = ensure_obj(obj, "data") {
        for (k, v) in entries {
            let encoded = base64_encode(v.as_str().unwrap_or("").as_bytes());
            data.insert(k, Value::String(encoded));
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn default_namespace(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string);
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        if let Some(Value::Object(labels)) = ensure_obj(obj, "metadata").and_then(|m| ensure_obj(m, "labels")) {
            labels.insert(well_known::LABEL_METADATA_NAME.to_string(), Value::String(name));
        }
    }
    if let Some(spec) = ensure_obj(obj, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure_obj(obj, "status") {
        set_default_str(status, "phase", "Active");
    }
}

pub(crate) fn default_hpa(obj: &mut Value) {
    let v2 = obj.get("apiVersion").and_then(Value::as_str).is_none_or(|v| v != "autoscaling/v1");
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    set_default(spec, "minReplicas", json!(1));
    let no_metrics = get(spec, "metrics").and_then(Value::as_array).is_none_or(Vec::is_empty);
    if v2 && no_metrics {
        spec.as_object_mut().map(|m| {
            m.insert(
                "metrics".to_string(),
                json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_from_image() {
        for (image, always) in [
            ("nginx", true),
            ("nginx:latest", true),
            ("nginx:1.14.2", false),
            ("localhost:5000/app", true),
            ("localhost:5000/app:v1", false),
            ("nginx@sha256:abc", false),
            ("nginx:latest@sha256:abc", true),
            ("", false),
        ] {
            assert_eq!(pulls_always(image), always, "{image}");
        }
    }

    #[test]
    fn base64() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"admin"), "YWRtaW4=");
    }
}
