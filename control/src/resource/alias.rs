//! Resources served in one form and stored in another, and the conversion both ways:
//! * `extensions/v1beta1` Deployments are stored as `apps/v1` ones (the selector defaults
//!   to the template's labels, as v1beta1 allowed omitting it; fields apps/v1 dropped go);
//! * `events.k8s.io/v1` Events are stored as core `v1` Events, as in kube-apiserver (both
//!   groups read and write the same objects): `regarding` is `involvedObject`, `note` is
//!   `message`, `reportingController` is `source.component`/`reportingComponent`, the
//!   `deprecated*` fields are the core ones;
//! * a custom resource's other versions (conversion `None`) differ only in `apiVersion`.
//!
//! Pure; the API calls [`to_storage`] on request bodies and [`from_storage`] on what it
//! returns.

use serde_json::{json, Map, Value};

use super::ResourceInfo;

/// events.k8s.io field ↔ core field, for the fields that only change name.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io"
}

fn rename(obj: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = obj.remove(from) {
        obj.insert(to.into(), v);
    }
}

/// A request body for `info` in its storage form.
pub fn to_storage(info: &ResourceInfo, mut body: Value) -> Value {
    if !info.is_alias() {
        return body;
    }
    let storage = info.storage();
    if body.get("apiVersion").and_then(Value::as_str) == Some(&info.api_version()) {
        body["apiVersion"] = json!(storage.api_version());
    }
    if is_events_v1(info) {
        if let Some(map) = body.as_object_mut() {
            for (ours, core) in EVENT_FIELDS {
                rename(map, ours, core);
            }
            // Core events name their reporter twice; the newer field is authoritative.
            if let Some(component) = map.get("reportingComponent").cloned() {
                let source = map.entry("source").or_insert_with(|| json!({}));
                if source.get("component").is_none() {
                    source["component"] = component;
                }
            }
        }
        return body;
    }
    if !info.is_legacy_alias() {
        return body;
    }
    if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("rollbackTo");
        spec.remove("templateGeneration");
        if spec.get("selector").is_none_or(Value::is_null) {
            if let Some(labels) = spec.get("template").and_then(|t| t["metadata"]["labels"].as_object()).cloned() {
                spec.insert("selector".into(), json!({"matchLabels": labels}));
            }
        }
    }
    body
}

/// A stored object as `info` serves it.
pub fn from_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if !info.is_alias() {
        return obj;
    }
    let Some(map) = obj.as_object_mut() else { return obj };
    if map.get("kind").and_then(Value::as_str) != Some(info.kind) {
        return obj;
    }
    map.insert("apiVersion".into(), json!(info.api_version()));
    if is_events_v1(info) {
        for (ours, core) in EVENT_FIELDS {
            rename(map, core, ours);
        }
        // An event recorded only by a core client names its reporter in `source`.
        if !map.contains_key("reportingController") {
            if let Some(component) = map.get("deprecatedSource").and_then(|s| s.get("component")).cloned() {
                map.insert("reportingController".into(), component);
            }
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
        super::super::find(group, version, plural).unwrap()
    }

    #[test]
    fn events_v1_round_trips_through_core_events() {
        let events = info("events.k8s.io", "v1", "events");
        assert!(std::ptr::eq(events.storage(), info("", "v1", "events")));
        let sent = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled",
            "reportingController": "kubelet", "reportingInstance": "n1", "action": "Pull", "type": "Normal",
            "eventTime": "2026-01-01T00:00:00.000000Z"});
        let stored = to_storage(events, sent.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["source"]["component"], "kubelet");
        let served = from_storage(events, stored);
        for key in ["regarding", "note", "reason", "reportingController", "reportingInstance", "action", "eventTime"] {
            assert_eq!(served[key], sent[key], "{key}");
        }
        assert_eq!(served["apiVersion"], "events.k8s.io/v1");
    }

    #[test]
    fn legacy_deployments_get_their_selector() {
        let legacy = info("extensions", "v1beta1", "deployments");
        let body = json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "spec": {"rollbackTo": {}, "template": {"metadata": {"labels": {"app": "x"}}}}});
        let stored = to_storage(legacy, body);
        assert_eq!(stored["apiVersion"], "apps/v1");
        assert_eq!(stored["spec"]["selector"], json!({"matchLabels": {"app": "x"}}));
        assert!(stored["spec"].get("rollbackTo").is_none());
        assert_eq!(from_storage(legacy, stored)["apiVersion"], "extensions/v1beta1");
    }
}
