//! `metadata` rules (ObjectMeta on create and update) and label selectors: their syntax
//! (`ValidateLabelSelector`) and their matching, used for selector-vs-template checks.

use serde_json::Value;

use super::json::{
    self, arr_at, child, index, int_at, obj_at, objects_at, q, str_list_at, str_map_at, string_or_empty,
};
use super::names::{self, name_errors, push_all, NameRule};
use super::{Errs, FieldError};

pub(crate) const IMMUTABLE: &str = "field is immutable";

/// `ValidateObjectMeta`: name or generateName per `rule`, namespace presence per scope,
/// labels, annotations, generation, ownerReferences and finalizers.
pub(crate) fn validate_object_meta(obj: &Value, namespaced: bool, rule: NameRule, errs: &mut Errs) {
    let Some(meta) = obj_at(errs, obj, "", "metadata") else {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        return;
    };
    let p = "metadata";
    let name = string_or_empty(errs, meta, p, "name");
    let generate_name = string_or_empty(errs, meta, p, "generateName");
    if !generate_name.is_empty() {
        push_all(errs, "metadata.generateName", generate_name, name_errors(rule, generate_name, true));
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        push_all(errs, "metadata.name", name, name_errors(rule, name, false));
    }
    let namespace = string_or_empty(errs, meta, p, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            push_all(errs, "metadata.namespace", namespace, names::is_dns1123_label(namespace));
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(g) = int_at(errs, meta, p, "generation") {
        nonnegative(errs, "metadata.generation", g);
    }
    validate_labels_at(errs, meta, p, "labels");
    validate_annotations_at(errs, meta, p, "annotations");
    validate_owner_references(errs, meta);
    for (fp, f) in str_list_at(errs, meta, p, "finalizers") {
        push_all(errs, &fp, f, names::is_qualified_name(f));
    }
}

pub(crate) fn validate_labels_at(errs: &mut Errs, obj: &Value, path: &str, k: &str) {
    let labels = str_map_at(errs, obj, path, k);
    names::validate_labels(errs, &child(path, k), &labels);
}

pub(crate) fn validate_annotations_at(errs: &mut Errs, obj: &Value, path: &str, k: &str) {
    let annotations = str_map_at(errs, obj, path, k);
    names::validate_annotations(errs, &child(path, k), &annotations);
}

fn validate_owner_references(errs: &mut Errs, meta: &Value) {
    let path = "metadata.ownerReferences";
    let mut controllers = 0;
    for (p, r) in objects_at(errs, meta, "metadata", "ownerReferences") {
        let api_version = string_or_empty(errs, r, &p, "apiVersion");
        if api_version.is_empty() {
            errs.push(FieldError::invalid(&child(&p, "apiVersion"), q(api_version), "version must not be empty"));
        }
        let kind = string_or_empty(errs, r, &p, "kind");
        if kind.is_empty() {
            errs.push(FieldError::invalid(&child(&p, "kind"), q(kind), "kind must not be empty"));
        }
        let name = string_or_empty(errs, r, &p, "name");
        if name.is_empty() {
            errs.push(FieldError::invalid(&child(&p, "name"), q(name), "name must not be empty"));
        }
        let uid = string_or_empty(errs, r, &p, "uid");
        if uid.is_empty() {
            errs.push(FieldError::invalid(&child(&p, "uid"), q(uid), "uid must not be empty"));
        }
        if json::bool_at(errs, r, &p, "controller") == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errs.push(FieldError::invalid(path, "[...]".to_string(), "Only one reference can have Controller set to true"));
    }
}

/// `ValidateObjectMetaUpdate`: identity fields cannot change.
pub(crate) fn validate_meta_update(old: &Value, new: &Value, errs: &mut Errs) {
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let o = json::dig(old, &["metadata", field]).unwrap_or(&Value::Null);
        let n = json::dig(new, &["metadata", field]).unwrap_or(&Value::Null);
        // An update that omits uid/creationTimestamp is filled in by the store; only an
        // explicit different value is a change.
        let omitted = n.is_null() && matches!(field, "uid" | "creationTimestamp");
        if o != n && !omitted {
            // Go prints the zero value of a string field as "".
            let shown = if n.is_null() { q("") } else { json::render(n) };
            errs.push(FieldError::invalid(&format!("metadata.{field}"), shown, IMMUTABLE));
        }
    }
}

pub(crate) fn nonnegative(errs: &mut Errs, field: &str, v: i64) {
    if v < 0 {
        errs.push(FieldError::invalid(field, v.to_string(), "must be greater than or equal to 0"));
    }
}

/// `ValidateImmutableField` for arbitrary JSON subtrees (absent and null are equal).
pub(crate) fn immutable(errs: &mut Errs, field: &str, old: Option<&Value>, new: Option<&Value>) {
    let o = old.unwrap_or(&Value::Null);
    let n = new.unwrap_or(&Value::Null);
    if o != n {
        errs.push(FieldError::invalid(field, json::render(n), IMMUTABLE));
    }
}

/// One parsed `matchExpressions` requirement.
pub(crate) struct Requirement<'a> {
    key: &'a str,
    operator: &'a str,
    values: Vec<&'a str>,
}

/// A parsed label selector; `None` fields mean the selector was malformed and matching
/// checks should be skipped (its syntax errors are reported separately).
pub(crate) struct Selector<'a> {
    match_labels: Vec<(&'a str, &'a str)>,
    expressions: Vec<Requirement<'a>>,
    pub(crate) valid: bool,
}

impl Selector<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.expressions.is_empty()
    }

    /// `labels.Selector.Matches` semantics.
    pub(crate) fn matches(&self, labels: &[(&str, &str)]) -> bool {
        let get = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
        self.match_labels.iter().all(|(k, v)| get(k) == Some(*v))
            && self.expressions.iter().all(|r| match r.operator {
                "In" => get(r.key).is_some_and(|v| r.values.contains(&v)),
                "NotIn" => get(r.key).is_none_or(|v| !r.values.contains(&v)),
                "Exists" => get(r.key).is_some(),
                "DoesNotExist" => get(r.key).is_none(),
                _ => false,
            })
    }
}

/// `ValidateLabelSelector` on `obj[k]` (a `metav1.LabelSelector`), returning the parsed
/// selector for matching.
pub(crate) fn validate_label_selector<'a>(errs: &mut Errs, sel: &'a Value, path: &str) -> Selector<'a> {
    let before = errs.len();
    let match_labels = str_map_at(errs, sel, path, "matchLabels");
    names::validate_labels(errs, &child(path, "matchLabels"), &match_labels);
    let mut expressions = Vec::new();
    for (p, e) in objects_at(errs, sel, path, "matchExpressions") {
        let operator = string_or_empty(errs, e, &p, "operator");
        let values: Vec<(String, &str)> = str_list_at(errs, e, &p, "values");
        let has_values = !arr_at(&mut Vec::new(), e, &p, "values").is_empty();
        match operator {
            "In" | "NotIn" => {
                if !has_values {
                    errs.push(FieldError::required(
                        &child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if has_values {
                    errs.push(FieldError::forbidden(
                        &child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(&child(&p, "operator"), q(operator), "not a valid selector operator")),
        }
        let key = string_or_empty(errs, e, &p, "key");
        push_all(errs, &child(&p, "key"), key, names::is_qualified_name(key));
        for (i, (_, v)) in values.iter().enumerate() {
            push_all(errs, &index(&child(&p, "values"), i), v, names::is_label_value(v));
        }
        expressions.push(Requirement { key, operator, values: values.iter().map(|(_, v)| *v).collect() });
    }
    let valid = errs.len() == before;
    Selector { match_labels, expressions, valid }
}

/// Reads a selector leniently (no error reporting) for cross-checks.
pub(crate) fn selector_of(sel: &Value) -> Selector<'_> {
    validate_label_selector(&mut Vec::new(), sel, "")
}

/// Reads `obj[k]` as a string map without reporting (already validated elsewhere).
pub(crate) fn peek_str_map<'a>(obj: &'a Value, k: &str) -> Vec<(&'a str, &'a str)> {
    str_map_at(&mut Vec::new(), obj, "", k)
}

/// Reads a top-level optional string from metadata leniently.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    json::dig(obj, &["metadata", field]).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_matching() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "old", "operator": "DoesNotExist"}]});
        let s = selector_of(&sel);
        assert!(s.valid);
        assert!(s.matches(&[("app", "web"), ("tier", "a")]));
        assert!(!s.matches(&[("app", "web"), ("tier", "c")]));
        assert!(!s.matches(&[("app", "web"), ("tier", "a"), ("old", "x")]));
        assert!(!s.matches(&[("tier", "a")]));
    }

    #[test]
    fn selector_operator_rules() {
        let sel = json!({"matchExpressions": [{"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]}, {"key": "c", "operator": "Gt"}]});
        let mut errs = Vec::new();
        let s = validate_label_selector(&mut errs, &sel, "spec.selector");
        assert!(!s.valid);
        let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(
            msgs,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator",
            ]
        );
    }
}
