//! core/v1 Event validation (events.k8s.io field names as fallbacks), with its update rules.

use serde_json::Value;

use super::json::{self, get, q, string_or_empty};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::{Errs, FieldError};

fn is_events_api(obj: &Value) -> bool {
    json::peek_str(obj, "apiVersion").starts_with("events.k8s.io/")
}

/// (internal field name used in messages, core/v1 JSON name, events.k8s.io JSON name).
/// Kubernetes validates the internal type, so paths use the internal names whichever API
/// the event came through.
const EVENT_FIELDS: &[(&str, &str, &str)] = &[
    ("involvedObject", "involvedObject", "regarding"),
    ("reason", "reason", "reason"),
    ("message", "message", "note"),
    ("source", "source", "deprecatedSource"),
    ("firstTimestamp", "firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "count", "deprecatedCount"),
    ("type", "type", "type"),
    ("eventTime", "eventTime", "eventTime"),
    ("action", "action", "action"),
    ("related", "related", "related"),
    ("reportingController", "reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance", "reportingInstance"),
];

/// The JSON member holding the internal field `internal`, for this event's API group.
fn event_field<'a>(obj: &'a Value, internal: &str) -> Option<&'a Value> {
    let events_api = is_events_api(obj);
    let (_, core_name, events_name) = EVENT_FIELDS.iter().find(|(i, _, _)| *i == internal)?;
    get(obj, if events_api { events_name } else { core_name })
}

fn event_str<'a>(errs: &mut Errs, obj: &'a Value, internal: &str) -> &'a str {
    match event_field(obj, internal) {
        None => "",
        Some(Value::String(s)) => s,
        Some(v) => {
            errs.push(json::type_error(internal, v, "string"));
            ""
        }
    }
}

/// `ValidateEventCreate`: core/v1 events only get the legacy checks (no ObjectMeta
/// validation at all, for backwards compatibility); events.k8s.io adds strict rules.
pub(crate) fn validate_event(obj: &Value, errs: &mut Errs) {
    let namespace = meta::meta_str(obj, "namespace");
    let involved_ns = match event_field(obj, "involvedObject") {
        Some(o) if o.is_object() => string_or_empty(errs, o, "involvedObject", "namespace"),
        Some(o) => {
            errs.push(json::type_error("involvedObject", o, "object"));
            ""
        }
        None => "",
    };
    let mismatch = || FieldError::invalid("involvedObject.namespace", q(involved_ns), "does not match event.namespace");
    let event_time = event_str(errs, obj, "eventTime");
    if event_time.is_empty() {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(mismatch());
            }
        } else if namespace != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = event_str(errs, obj, "reportingController");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        push_all(errs, "reportingController", controller, names::is_qualified_name(controller));
        for (f, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = event_str(errs, obj, f);
            if v.is_empty() {
                errs.push(FieldError::required(f, ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(f, q(""), &format!("can have at most {limit} characters")));
            }
        }
        if event_str(errs, obj, "message").len() > 1024 {
            errs.push(FieldError::invalid("message", q(""), "can have at most 1024 characters"));
        }
    }
    push_all(errs, "namespace", namespace, names::is_dns1123_subdomain(namespace));
    if !is_events_api(obj) {
        for f in ["reason", "message", "type"] {
            event_str(errs, obj, f);
        }
        // kube-apiserver's generic registry still checks ObjectMeta, with path-segment names.
        meta::validate_object_meta(obj, true, NameRule::PathSegment, errs);
        return;
    }
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    if event_time.is_empty() {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = event_str(errs, obj, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid("type", q(""), &format!("has invalid value: {ty}")));
    }
    for f in ["firstTimestamp", "lastTimestamp", "count", "source"] {
        let set = match event_field(obj, f) {
            None => false,
            Some(Value::Object(m)) => m.values().any(|v| v.as_str().is_some_and(|s| !s.is_empty())),
            Some(v) => v.as_i64() != Some(0),
        };
        if set {
            errs.push(FieldError::invalid(f, q(""), "needs to be unset"));
        }
    }
}

/// `ValidateEventUpdate`: core/v1 events stay mutable (kubelets bump count and timestamps);
/// events.k8s.io events are immutable apart from their series.
pub(crate) fn validate_event_update(old: &Value, new: &Value, errs: &mut Errs) {
    if !is_events_api(new) {
        return;
    }
    for (internal, _, _) in EVENT_FIELDS {
        meta::immutable(errs, internal, event_field(old, internal), event_field(new, internal));
    }
}
