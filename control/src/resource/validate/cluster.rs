//! Namespace and Node validation, with the Node update rules (podCIDRs, providerID).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::json::{self, child, go_string_slice, index, obj_at, objects_at, q, render, str_list_at, string_or_empty};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::pod;
use super::{Errs, FieldError};

pub(crate) fn validate_namespace(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Label, errs);
    let Some(spec) = obj_at(errs, obj, "", "spec") else { return };
    for (_, f) in str_list_at(errs, spec, "spec", "finalizers") {
        let msgs = names::is_qualified_name(f);
        let ok = msgs.is_empty();
        push_all(errs, "spec.finalizers", f, msgs);
        if ok && !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
            errs.push(FieldError::invalid(
                "spec.finalizers",
                q(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

pub(crate) fn validate_node(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    // Kubernetes reports taint errors under `metadata.taints` (a long-standing quirk kept for
    // message compatibility).
    let mut unique = BTreeSet::new();
    for (i, (tp, taint)) in objects_at(errs, spec, "spec", "taints").into_iter().enumerate() {
        let ip = index("metadata.taints", i);
        let k = string_or_empty(errs, taint, &tp, "key");
        push_all(errs, &child(&ip, "key"), k, names::is_qualified_name(k));
        let v = string_or_empty(errs, taint, &tp, "value");
        let msgs = names::is_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&child(&ip, "value"), q(v), &msgs.join(";")));
        }
        let effect = string_or_empty(errs, taint, &tp, "effect");
        if effect.is_empty() {
            errs.push(FieldError::required(&child(&ip, "effect"), ""));
        } else if !pod::TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(&child(&ip, "effect"), q(effect), pod::TAINT_EFFECTS));
        }
        if !unique.insert((effect, k)) {
            let mut dup = FieldError::duplicate(&ip, render(taint));
            dup.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(dup);
        }
    }
    let cidrs = str_list_at(errs, spec, "spec", "podCIDRs");
    for (cp, cidr) in &cidrs {
        if !is_cidr(cidr) {
            errs.push(FieldError::invalid(
                cp,
                q(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (cp, cidr) in &cidrs {
        if cidrs.len() > 1 && !seen.insert(*cidr) {
            errs.push(FieldError::duplicate(cp, q(cidr)));
        }
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.podCIDRs",
            go_string_slice(&cidrs),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    if let Some(status) = obj_at(errs, obj, "", "status") {
        for list in ["capacity", "allocatable"] {
            for (name, qty) in pod::resource_list(errs, status, "status", list) {
                pod::validate_quantity_value(errs, &format!("status.{list}.{name}"), name, &qty);
            }
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Ok(addr) = ip.parse::<IpAddr>() else { return false };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
}

/// `ValidateNodeUpdate`: podCIDRs and providerID may only go from unset to set.
pub(crate) fn validate_node_update(old: &Value, new: &Value, errs: &mut Errs) {
    let list = |v: &Value| json::dig(v, &["spec", "podCIDRs"]).cloned().unwrap_or(Value::Array(Vec::new()));
    let old_cidrs = list(old);
    if old_cidrs.as_array().is_some_and(|a| !a.is_empty()) && old_cidrs != list(new) {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let provider = |v: &Value| json::dig(v, &["spec", "providerID"]).and_then(Value::as_str).unwrap_or("").to_string();
    if !provider(old).is_empty() && provider(old) != provider(new) {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    let mut seen = BTreeSet::new();
    let addrs = json::dig(new, &["status", "addresses"]).and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, a) in addrs.iter().enumerate() {
        if !seen.insert(a.to_string()) {
            errs.push(FieldError::duplicate(&index("status.addresses", i), render(a)));
        }
    }
}
