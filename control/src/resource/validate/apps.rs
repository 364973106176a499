//! apps/v1 workload rules: Deployment, ReplicaSet, DaemonSet, StatefulSet (selector vs
//! template, strategies, counters) and their update rules (apps/v1 selectors are immutable;
//! a StatefulSet spec only lets a few fields change).

use serde_json::Value;

use super::json::{self, child, get, int_at, obj_at, objects_at, q, render, str_at, string_or_empty};
use super::meta::{self, nonnegative, validate_label_selector};
use super::names::{self, NameRule};
use super::pod;
use super::{Errs, FieldError};

pub(crate) fn validate_deployment(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let Some(spec) = spec_of(obj, errs) else { return };
    counters(errs, spec, &["replicas", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"]);
    selector_and_template(errs, spec, "deployment", &[]);
    replica_template_rules(errs, spec, "ReplicaSet");
    validate_deployment_strategy(errs, spec);
    json::bool_at(errs, spec, "spec", "paused");
    let min_ready = get(spec, "minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
    if let Some(pds) = get(spec, "progressDeadlineSeconds").and_then(Value::as_i64) {
        if pds <= min_ready {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pds.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

pub(crate) fn validate_replicaset(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let Some(spec) = spec_of(obj, errs) else { return };
    counters(errs, spec, &["replicas", "minReadySeconds"]);
    selector_and_template(errs, spec, "deployment", &[]);
    replica_template_rules(errs, spec, "ReplicaSet");
}

pub(crate) fn validate_daemonset(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let Some(spec) = spec_of(obj, errs) else { return };
    counters(errs, spec, &["minReadySeconds", "revisionHistoryLimit", "templateGeneration"]);
    selector_and_template(errs, spec, "daemonset", &[]);
    restart_always(errs, spec);
    if get_template_spec(spec, "activeDeadlineSeconds").is_some() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    let path = "spec.updateStrategy";
    let Some(strategy) = obj_at(errs, spec, "spec", "updateStrategy") else {
        errs.push(FieldError::not_supported(path, q(""), &["RollingUpdate", "OnDelete"]));
        return;
    };
    match str_at(errs, strategy, path, "type").unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let ru_path = child(path, "rollingUpdate");
            let Some(ru) = obj_at(errs, strategy, path, "rollingUpdate") else {
                errs.push(FieldError::required(&ru_path, ""));
                return;
            };
            let unavailable = int_or_percent(errs, ru, &ru_path, "maxUnavailable");
            let surge = int_or_percent(errs, ru, &ru_path, "maxSurge");
            let has_unavailable = unavailable.as_ref().is_some_and(|v| v.value != 0);
            let has_surge = surge.as_ref().is_some_and(|v| v.value != 0);
            if has_unavailable && has_surge {
                errs.push(FieldError::invalid(
                    &child(&ru_path, "maxSurge"),
                    surge.map(|s| s.rendered).unwrap_or_default(),
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(&child(&ru_path, "maxUnavailable"), "cannot be 0 when maxSurge is 0"));
            }
        }
        _ => errs.push(FieldError::not_supported(path, render(strategy), &["RollingUpdate", "OnDelete"])),
    }
}

pub(crate) fn validate_statefulset(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let Some(spec) = spec_of(obj, errs) else { return };
    let p = "spec";
    match str_at(errs, spec, p, "podManagementPolicy").unwrap_or("") {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => {
            errs.push(FieldError::invalid("spec.podManagementPolicy", q(other), "must be 'OrderedReady' or 'Parallel'"))
        }
    }
    let strategy = obj_at(errs, spec, p, "updateStrategy");
    let strategy_type = strategy.and_then(|s| str_at(errs, s, "spec.updateStrategy", "type")).unwrap_or("");
    let rolling = strategy.and_then(|s| obj_at(errs, s, "spec.updateStrategy", "rollingUpdate"));
    match strategy_type {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = rolling {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    render(ru),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = rolling {
                let rp = "spec.updateStrategy.rollingUpdate";
                if let Some(partition) = int_at(errs, ru, rp, "partition") {
                    nonnegative(errs, "spec.updateStrategy.rollingUpdate.partition", partition);
                }
                if let Some(mu) = int_or_percent(errs, ru, rp, "maxUnavailable") {
                    if mu.value < 1 {
                        errs.push(FieldError::invalid(
                            "spec.updateStrategy.rollingUpdate.maxUnavailable",
                            mu.rendered,
                            "must be greater than 0",
                        ));
                    }
                }
            }
        }
        _ => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            render(strategy.unwrap_or(&Value::Null)),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    counters(errs, spec, &["replicas", "minReadySeconds", "revisionHistoryLimit"]);
    if let Some(policy) = obj_at(errs, spec, p, "persistentVolumeClaimRetentionPolicy") {
        let pp = "spec.persistentVolumeClaimRetentionPolicy";
        for f in ["whenDeleted", "whenScaled"] {
            match str_at(errs, policy, pp, f).unwrap_or("") {
                "Retain" | "Delete" => {}
                other => errs.push(FieldError::not_supported(&child(pp, f), q(other), &["Retain", "Delete"])),
            }
        }
    }
    let mut claim_names = Vec::new();
    let claims = objects_at(errs, spec, p, "volumeClaimTemplates");
    if !claims.is_empty() {
        // Berth has no PersistentVolumeClaims (nor volumes to bind them to): refusing the
        // set is better than running pods whose claim volumes silently do not exist.
        errs.push(FieldError::forbidden(
            "spec.volumeClaimTemplates",
            "persistent volume claims are not supported by Berth yet",
        ));
    }
    for (cp, claim) in claims {
        let cm = obj_at(errs, claim, &cp, "metadata");
        let name = cm.map(|m| string_or_empty(errs, m, &child(&cp, "metadata"), "name")).unwrap_or("");
        let np = child(&cp, "metadata.name");
        if name.is_empty() {
            errs.push(FieldError::required(&np, "name or generateName is required"));
        } else {
            names::push_all(errs, &np, name, names::is_dns1123_subdomain(name));
            claim_names.push(name);
        }
    }
    if get(spec, "serviceName").is_some() {
        str_at(errs, spec, p, "serviceName");
    }
    selector_and_template(errs, spec, "statefulset", &claim_names);
    restart_always(errs, spec);
    if let Some(ads) = get_template_spec(spec, "activeDeadlineSeconds") {
        errs.push(FieldError::invalid(
            "spec.template.spec.activeDeadlineSeconds",
            render(ads),
            "must not be specified",
        ));
    }
}

/// apps/v1 Deployment/ReplicaSet/DaemonSet: `spec.selector` is immutable.
pub(crate) fn validate_selector_immutable(old: &Value, new: &Value, errs: &mut Errs) {
    meta::immutable(
        errs,
        "spec.selector",
        json::dig(old, &["spec", "selector"]),
        json::dig(new, &["spec", "selector"]),
    );
}

/// A StatefulSet spec may change only in the fields Kubernetes lists.
pub(crate) fn validate_statefulset_update(old: &Value, new: &Value, errs: &mut Errs) {
    const MUTABLE: &[&str] = &[
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let strip = |v: &Value| -> Value {
        let mut s = get(v, "spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = s.as_object_mut() {
            for f in MUTABLE {
                m.remove(*f);
            }
        }
        s
    };
    if strip(old) != strip(new) {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

fn spec_of<'a>(obj: &'a Value, errs: &mut Errs) -> Option<&'a Value> {
    let spec = obj_at(errs, obj, "", "spec");
    if spec.is_none() && get(obj, "spec").is_none() {
        errs.push(FieldError::required("spec.selector", ""));
        errs.push(FieldError::required("spec.template.spec.containers", ""));
    }
    spec
}

fn get_template_spec<'a>(spec: &'a Value, k: &str) -> Option<&'a Value> {
    json::dig(spec, &["template", "spec", k])
}

/// Non-negative integer counters under `spec`.
fn counters(errs: &mut Errs, spec: &Value, fields: &[&str]) {
    for f in fields {
        if let Some(v) = int_at(errs, spec, "spec", f) {
            nonnegative(errs, &child("spec", f), v);
        }
    }
}

/// Selector present, valid and non-empty; template valid; template labels match selector.
fn selector_and_template(errs: &mut Errs, spec: &Value, what: &str, extra_volumes: &[&str]) {
    let selector = match obj_at(errs, spec, "spec", "selector") {
        None => {
            if get(spec, "selector").is_none() {
                errs.push(FieldError::required("spec.selector", ""));
            }
            None
        }
        Some(sel) => {
            let parsed = validate_label_selector(errs, sel, "spec.selector");
            if parsed.is_empty() {
                let msg = if what == "statefulset" {
                    "empty selector is not valid for statefulset.".to_string()
                } else {
                    format!("empty selector is invalid for {what}")
                };
                errs.push(FieldError::invalid("spec.selector", render(sel), &msg));
            }
            Some(parsed)
        }
    };
    pod::validate_pod_template(errs, spec, "spec", "template", extra_volumes);
    if let Some(sel) = selector.filter(|s| s.valid && !s.is_empty()) {
        pod::validate_template_matches(errs, spec, &sel);
    }
}

fn restart_always(errs: &mut Errs, spec: &Value) {
    let rp = get_template_spec(spec, "restartPolicy").and_then(Value::as_str).unwrap_or("");
    if rp != "Always" {
        errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", q(rp), &["Always"]));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet`'s extra rules (Deployments and ReplicaSets).
fn replica_template_rules(errs: &mut Errs, spec: &Value, what: &str) {
    restart_always(errs, spec);
    if get_template_spec(spec, "activeDeadlineSeconds").is_some() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {what} is not Supported"),
        ));
    }
}

fn validate_deployment_strategy(errs: &mut Errs, spec: &Value) {
    let path = "spec.strategy";
    let empty = Value::Object(Default::default());
    let strategy = obj_at(errs, spec, "spec", "strategy").unwrap_or(&empty);
    let rolling = obj_at(errs, strategy, path, "rollingUpdate");
    match str_at(errs, strategy, path, "type").unwrap_or("") {
        "Recreate" => {
            if rolling.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(ru) = rolling else {
                errs.push(FieldError::required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                ));
                return;
            };
            let rp = "spec.strategy.rollingUpdate";
            let unavailable = int_or_percent(errs, ru, rp, "maxUnavailable");
            let surge = int_or_percent(errs, ru, rp, "maxSurge");
            let zero = |v: &Option<IntOrPercent>| v.as_ref().is_none_or(|v| v.value == 0);
            if zero(&unavailable) && zero(&surge) {
                errs.push(FieldError::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    unavailable.map(|u| u.rendered).unwrap_or_else(|| "0".to_string()),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        other => errs.push(FieldError::not_supported("spec.strategy.type", q(other), &["Recreate", "RollingUpdate"])),
    }
}

/// An `intstr.IntOrString` that is a count or a percentage.
pub(crate) struct IntOrPercent {
    value: i64,
    /// As Kubernetes prints an IntOrString: bare, via its String() method.
    rendered: String,
}

/// `ValidatePositiveIntOrPercent` plus `IsNotMoreThan100Percent`; returns the parsed value.
pub(crate) fn int_or_percent(errs: &mut Errs, obj: &Value, path: &str, k: &str) -> Option<IntOrPercent> {
    let field = child(path, k);
    match get(obj, k)? {
        Value::String(s) => {
            let msgs = names::is_valid_percent(s);
            let valid = msgs.is_empty();
            for m in msgs {
                errs.push(FieldError::invalid(&field, s.clone(), &m));
            }
            let value = if valid { s.trim_end_matches('%').parse().unwrap_or(i64::MAX) } else { 0 };
            if valid && value > 100 {
                errs.push(FieldError::invalid(&field, s.clone(), "must not be greater than 100%"));
            }
            Some(IntOrPercent { value, rendered: s.clone() })
        }
        v => match v.as_i64() {
            Some(n) => {
                nonnegative(errs, &field, n);
                Some(IntOrPercent { value: n, rendered: n.to_string() })
            }
            None => {
                errs.push(FieldError::invalid(&field, render(v), "must be an integer or percentage (e.g '5%')"));
                None
            }
        },
    }
}
