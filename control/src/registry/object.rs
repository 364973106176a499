//! Reading and stamping object metadata on JSON objects, and the per-resource fields that
//! field selectors may name.
//!
//! The API server works on `serde_json::Value` end to end (like kube-apiserver's
//! unstructured path): it must round-trip whatever a client sends, including fields of
//! newer Kubernetes versions, and the typed check happens once in [`super::typed`].

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{Map, Value};

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// `metadata`, created if missing (callers have checked `obj` is an object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"].as_object_mut().expect("just made it an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|n| !n.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|n| !n.is_empty())
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(meta(obj).and_then(|m| m.get("labels")))
}

pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

pub fn set_resource_version(obj: &mut Value, revision: i64) {
    if obj.is_object() {
        meta_mut(obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).and_then(|m| m.get("deletionTimestamp")).is_some_and(|v| !v.is_null())
}

/// RFC 3339 with seconds, as `metav1.Time` serializes.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 with microseconds, as `metav1.MicroTime` serializes.
pub fn micro_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `generateName` + five characters from apimachinery's alphabet (no vowels, no
/// look-alikes), so generated names read like Kubernetes ones.
pub fn generated_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = base.chars().take(63 - 5).collect();
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{base}{suffix}")
}

/// Follows a dotted path (`spec.nodeName`) into an object.
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, part| v.get(part))
}

fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The fields a field selector may name per resource (kube-apiserver's field label
/// conversion functions); everything supports `metadata.name` and `metadata.namespace`.
pub fn selectable_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "nodes" => &["spec.unschedulable"],
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "replicasets" => &["status.replicas"],
        "jobs" => &["status.successful"],
        _ => &[],
    }
}

/// Whether a field selector may name `field` on `resource`.
pub fn is_selectable(resource: &str, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace") || selectable_fields(resource).contains(&field)
}

/// The value of a selectable field, or an error naming an unsupported one.
pub fn field_value(resource: &str, obj: &Value, field: &str) -> Result<Option<String>, String> {
    match field {
        "metadata.name" => return Ok(name(obj).map(String::from)),
        "metadata.namespace" => return Ok(namespace(obj).map(String::from)),
        _ => {}
    }
    if !is_selectable(resource, field) {
        return Err(format!("field label not supported: {field}"));
    }
    if resource == "events" && field == "source" {
        return Ok(scalar(path(obj, "source.component")));
    }
    let value = scalar(path(obj, field));
    // Booleans and counts read as "false"/"0" when unset, as Kubernetes' conversions do.
    Ok(value.or_else(|| match field {
        "spec.unschedulable" | "spec.hostNetwork" => Some("false".into()),
        "status.replicas" | "status.successful" => Some("0".into()),
        _ => None,
    }))
}

/// The address of the agent on `node`: its InternalIP (else Hostname) and kubelet port.
pub fn agent_address(node: &Value) -> Option<(String, i64)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let pick = |t: &str| addresses.iter().find(|a| a["type"] == t).and_then(|a| a["address"].as_str());
    let host = pick("InternalIP").or_else(|| pick("Hostname"))?.to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64().unwrap_or(10250);
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_accessors() {
        let mut pod =
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        assert_eq!(name(&pod), Some("p"));
        assert_eq!(labels(&pod).get("app").map(String::as_str), Some("web"));
        set_resource_version(&mut pod, 42);
        assert_eq!(resource_version(&pod), Some("42"));
        assert_eq!(field_value("pods", &pod, "spec.nodeName").unwrap().as_deref(), Some("n1"));
        assert_eq!(field_value("pods", &pod, "status.phase").unwrap(), None);
        assert!(field_value("pods", &pod, "spec.bogus").unwrap_err().contains("not supported"));
        assert_eq!(field_value("nodes", &json!({}), "spec.unschedulable").unwrap().as_deref(), Some("false"));
    }

    #[test]
    fn generated_names_and_uids_have_kubernetes_shapes() {
        let n = generated_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uid(), u);
    }
}
