//! ResourceQuota validation.

use serde_json::Value;

use super::json::{child, go_string_slice, key, obj_at, q, str_list_at};
use super::meta;
use super::names::NameRule;
use super::pod;
use super::{Errs, FieldError};

pub(crate) fn validate_resource_quota(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    quota_list(errs, spec, "spec", "hard");
    const SCOPES: &[&str] = &[
        "BestEffort",
        "CrossNamespacePodAffinity",
        "NotBestEffort",
        "NotTerminating",
        "PriorityClass",
        "Terminating",
        "VolumeAttributesClass",
    ];
    let scopes = str_list_at(errs, spec, "spec", "scopes");
    let names_only: Vec<&str> = scopes.iter().map(|(_, s)| *s).collect();
    let rendered = go_string_slice(&scopes);
    for s in &names_only {
        if !SCOPES.contains(s) {
            errs.push(FieldError::invalid("spec.scopes", rendered.clone(), "unsupported scope"));
        }
    }
    let has = |s: &str| names_only.contains(&s);
    if (has("Terminating") && has("NotTerminating")) || (has("BestEffort") && has("NotBestEffort")) {
        errs.push(FieldError::invalid("spec.scopes", rendered, "conflicting scopes"));
    }
    if let Some(status) = obj_at(errs, obj, "", "status") {
        quota_list(errs, status, "status", "hard");
        quota_list(errs, status, "status", "used");
    }
}

fn quota_list(errs: &mut Errs, obj: &Value, path: &str, k: &str) {
    let list_path = child(path, k);
    for (name, qty) in pod::resource_list(errs, obj, path, k) {
        let field = key(&list_path, name);
        if pod::validate_resource_name(errs, &field, name)
            && !name.contains('/')
            && !pod::is_standard_quota_resource(name)
        {
            errs.push(FieldError::invalid(&field, q(name), "must be a standard resource for quota"));
        }
        pod::validate_quantity_value(errs, &field, name, &qty);
    }
}
