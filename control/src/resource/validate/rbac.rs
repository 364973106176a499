//! `rbac.authorization.k8s.io/v1`: Roles and ClusterRoles (rules: verbs plus API groups and
//! resources, or non-resource URLs — never both), RoleBindings and ClusterRoleBindings
//! (a `roleRef` that cannot change, subjects of kind User, Group or ServiceAccount), as
//! kube-apiserver's `rbac/validation` checks them. Names are path segments
//! (`system:node` is valid).

use serde_json::Value;

use super::json::{arr_at, child, get, obj_at, objects_at, q, str_at};
use super::meta;
use super::names::NameRule;
use super::{Errs, FieldError};

pub const GROUP: &str = "rbac.authorization.k8s.io";

fn strings(errs: &mut Errs, obj: &Value, path: &str, k: &str) -> Vec<String> {
    arr_at(errs, obj, path, k).iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

fn validate_rule(errs: &mut Errs, rule: &Value, path: &str, namespaced: bool) {
    if strings(errs, rule, path, "verbs").is_empty() {
        errs.push(FieldError::required(&child(path, "verbs"), "verbs must contain at least one value"));
    }
    let urls = strings(errs, rule, path, "nonResourceURLs");
    if !urls.is_empty() {
        if namespaced {
            errs.push(FieldError::invalid(
                &child(path, "nonResourceURLs"),
                format!("[{}]", urls.iter().map(|u| q(u)).collect::<Vec<_>>().join(", ")),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        let mixed =
            !strings(errs, rule, path, "apiGroups").is_empty() || !strings(errs, rule, path, "resources").is_empty();
        if mixed {
            errs.push(FieldError::invalid(
                &child(path, "nonResourceURLs"),
                format!("[{}]", urls.iter().map(|u| q(u)).collect::<Vec<_>>().join(", ")),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if get(rule, "apiGroups").and_then(Value::as_array).is_none_or(|a| a.is_empty()) {
        errs.push(FieldError::required(&child(path, "apiGroups"), "resource rules must supply at least one api group"));
    }
    if strings(errs, rule, path, "resources").is_empty() {
        errs.push(FieldError::required(&child(path, "resources"), "resource rules must supply at least one resource"));
    }
}

fn validate_role(obj: &Value, errs: &mut Errs, namespaced: bool) {
    meta::validate_object_meta(obj, namespaced, NameRule::PathSegment, errs);
    for (path, rule) in objects_at(errs, obj, "", "rules") {
        validate_rule(errs, rule, &path, namespaced);
    }
}

pub(crate) fn validate_role_ns(obj: &Value, errs: &mut Errs) {
    validate_role(obj, errs, true)
}

pub(crate) fn validate_cluster_role(obj: &Value, errs: &mut Errs) {
    validate_role(obj, errs, false)
}

fn validate_binding(obj: &Value, errs: &mut Errs, namespaced: bool) {
    meta::validate_object_meta(obj, namespaced, NameRule::PathSegment, errs);
    match obj_at(errs, obj, "", "roleRef") {
        None => errs.push(FieldError::required("roleRef", "")),
        Some(role_ref) => {
            match str_at(errs, role_ref, "roleRef", "apiGroup") {
                Some(GROUP) => {}
                other => errs.push(FieldError::not_supported("roleRef.apiGroup", q(other.unwrap_or("")), &[GROUP])),
            }
            let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
            match str_at(errs, role_ref, "roleRef", "kind") {
                Some(k) if kinds.contains(&k) => {}
                other => errs.push(FieldError::not_supported("roleRef.kind", q(other.unwrap_or("")), kinds)),
            }
            if str_at(errs, role_ref, "roleRef", "name").is_none_or(str::is_empty) {
                errs.push(FieldError::required("roleRef.name", ""));
            }
        }
    }
    for (path, subject) in objects_at(errs, obj, "", "subjects") {
        let name = str_at(errs, subject, &path, "name").unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&child(&path, "name"), ""));
        }
        match str_at(errs, subject, &path, "kind") {
            Some("ServiceAccount") => {
                if str_at(errs, subject, &path, "apiGroup").is_some_and(|g| !g.is_empty()) {
                    errs.push(FieldError::not_supported(&child(&path, "apiGroup"), q(""), &[""]));
                }
                if !namespaced && str_at(errs, subject, &path, "namespace").is_none_or(str::is_empty) {
                    errs.push(FieldError::required(&child(&path, "namespace"), ""));
                }
            }
            Some("User") | Some("Group") => match str_at(errs, subject, &path, "apiGroup") {
                Some(GROUP) => {}
                other => {
                    errs.push(FieldError::not_supported(&child(&path, "apiGroup"), q(other.unwrap_or("")), &[GROUP]))
                }
            },
            other => errs.push(FieldError::not_supported(
                &child(&path, "kind"),
                q(other.unwrap_or("")),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

pub(crate) fn validate_role_binding(obj: &Value, errs: &mut Errs) {
    validate_binding(obj, errs, true)
}

pub(crate) fn validate_cluster_role_binding(obj: &Value, errs: &mut Errs) {
    validate_binding(obj, errs, false)
}

/// A binding's `roleRef` cannot change (delete and recreate the binding instead).
pub(crate) fn validate_binding_update(old: &Value, new: &Value, errs: &mut Errs) {
    if old.get("roleRef") != new.get("roleRef") {
        errs.push(FieldError::invalid(
            "roleRef",
            crate::resource::validate::json::render(&new["roleRef"]),
            "cannot change roleRef",
        ));
    }
}
