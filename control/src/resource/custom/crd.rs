//! The CustomResourceDefinition kind (`apiextensions.k8s.io/v1`): kube-apiserver's
//! defaulting, validation (`ValidateCustomResourceDefinition`: names, group, scope,
//! versions, structural schemas) and create-time status.
//!
//! kube-apiserver's naming and establishing controllers fill `status` a moment after the
//! create; here it is filled by the create itself (names are accepted — the CRD's name is
//! `plural.group`, so two definitions cannot claim the same resource — and the definition
//! is established), since every server starts serving it from the watch cache at once.
//! Conversion webhooks are refused: Berth serves several versions with `strategy: None`
//! only.

use serde_json::{json, Value};

use super::schema::Schema;
use super::CLEANUP_FINALIZER;
use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::json::{child, index, q};
use crate::resource::validate::meta::{immutable, validate_object_meta};
use crate::resource::validate::names::{is_dns1035_label, is_dns1123_subdomain, NameRule};
use crate::resource::validate::FieldError;

type CustomResourceDefinition =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub static CUSTOM_RESOURCE_DEFINITION: Strategy = Strategy {
    defaults: default_crd,
    validate_update: validate_crd_update,
    prepare_for_create: establish,
    ..Strategy::of(validate_crd, round_trip::<CustomResourceDefinition>, &printers::CUSTOM_RESOURCE_DEFINITION)
};

/// `SetDefaults_CustomResourceDefinition*`: conversion None, singular and listKind from the
/// kind.
fn default_crd(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) && !kind.is_empty() {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) && !kind.is_empty() {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
}

/// Status as the naming and establishing controllers would leave it, and the cleanup
/// finalizer (the definition outlives its objects).
fn establish(obj: &mut Value) {
    let names = obj["spec"]["names"].clone();
    let storage: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |ty: &str, reason: &str, message: &str| json!({"type": ty, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    obj["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": storage,
    });
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut() {
            if !list.iter().any(|f| f == CLEANUP_FINALIZER) {
                list.push(json!(CLEANUP_FINALIZER));
            }
        }
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn validate_crd(obj: &Value, errs: &mut Vec<FieldError>) {
    validate_object_meta(obj, false, NameRule::Subdomain, errs);
    let spec = &obj["spec"];
    let names = &spec["names"];
    let group = text(spec, "group");
    let plural = text(names, "plural");
    let name = text(&obj["metadata"], "name");
    if !name.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid("metadata.name", q(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        let problems = is_dns1123_subdomain(group);
        if !problems.is_empty() {
            errs.push(FieldError::invalid("spec.group", q(group), &problems.join("; ")));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid("spec.group", q(group), "should be a domain with at least one dot"));
        }
    }
    match spec.get("scope").and_then(Value::as_str) {
        Some("Cluster" | "Namespaced") => {}
        None | Some("") => errs.push(FieldError::required("spec.scope", "")),
        Some(other) => errs.push(FieldError::not_supported("spec.scope", q(other), &["Cluster", "Namespaced"])),
    }
    validate_names(names, errs);
    match spec["conversion"]["strategy"].as_str() {
        None | Some("None") => {}
        Some(other) => errs.push(FieldError::not_supported(
            "spec.conversion.strategy",
            q(other),
            // Berth has no conversion webhooks: only schema-compatible versions.
            &["None"],
        )),
    }
    validate_versions(spec, errs);
}

fn lowercase_label(errs: &mut Vec<FieldError>, field: &str, value: &str) {
    let mut problems = is_dns1035_label(value);
    if value != value.to_lowercase() && problems.is_empty() {
        problems.push("must be lowercase".into());
    }
    if !problems.is_empty() {
        errs.push(FieldError::invalid(field, q(value), &problems.join("; ")));
    }
}

fn validate_names(names: &Value, errs: &mut Vec<FieldError>) {
    let p = "spec.names";
    for key in ["plural", "singular"] {
        match names.get(key).and_then(Value::as_str) {
            None | Some("") if key == "plural" => errs.push(FieldError::required(&child(p, key), "")),
            None | Some("") => {}
            Some(v) => lowercase_label(errs, &child(p, key), v),
        }
    }
    for key in ["kind", "listKind"] {
        match names.get(key).and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(&child(p, key), "")),
            Some(v) => {
                let problems = is_dns1035_label(&v.to_lowercase());
                if !problems.is_empty() {
                    errs.push(FieldError::invalid(&child(p, key), q(v), &problems.join("; ")));
                }
            }
        }
    }
    if !text(names, "kind").is_empty() && text(names, "kind") == text(names, "listKind") {
        errs.push(FieldError::invalid(
            "spec.names.listKind",
            q(text(names, "listKind")),
            "kind and listKind may not be the same",
        ));
    }
    for key in ["shortNames", "categories"] {
        for (i, v) in names[key].as_array().into_iter().flatten().enumerate() {
            let field = index(&child(p, key), i);
            match v.as_str() {
                Some(s) => lowercase_label(errs, &field, s),
                None => errs.push(FieldError::invalid(&field, v.to_string(), "must be a string")),
            }
        }
    }
}

fn validate_versions(spec: &Value, errs: &mut Vec<FieldError>) {
    let Some(versions) = spec["versions"].as_array().filter(|v| !v.is_empty()) else {
        errs.push(FieldError::required("spec.versions", "must have exactly one version marked as storage version"));
        return;
    };
    let mut seen = Vec::new();
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            version_names(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.iter().any(|v| v["served"] == true) {
        errs.push(FieldError::invalid(
            "spec.versions",
            version_names(versions),
            "must have at least one version marked as served",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let p = index("spec.versions", i);
        let name = text(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&child(&p, "name"), ""));
        } else {
            let problems = is_dns1035_label(name);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(&child(&p, "name"), q(name), &problems.join("; ")));
            }
            if seen.contains(&name) {
                errs.push(FieldError::duplicate(&child(&p, "name"), q(name)));
            }
            seen.push(name);
        }
        let schema_path = format!("{p}.schema.openAPIV3Schema");
        match v["schema"].get("openAPIV3Schema") {
            None | Some(Value::Null) => errs.push(FieldError::required(&schema_path, "schemas are required")),
            Some(schema) => {
                if let Err(problems) = Schema::parse(schema, &schema_path) {
                    errs.extend(problems);
                }
            }
        }
        validate_subresources(&v["subresources"], &format!("{p}.subresources"), errs);
        for (j, c) in v["additionalPrinterColumns"].as_array().into_iter().flatten().enumerate() {
            let cp = index(&format!("{p}.additionalPrinterColumns"), j);
            if text(c, "name").is_empty() {
                errs.push(FieldError::required(&child(&cp, "name"), ""));
            }
            match c.get("type").and_then(Value::as_str) {
                Some("integer" | "number" | "string" | "boolean" | "date") => {}
                None => errs.push(FieldError::required(&child(&cp, "type"), "")),
                Some(t) => errs.push(FieldError::not_supported(
                    &child(&cp, "type"),
                    q(t),
                    &["boolean", "date", "integer", "number", "string"],
                )),
            }
            if text(c, "jsonPath").is_empty() {
                errs.push(FieldError::required(&child(&cp, "jsonPath"), ""));
            }
        }
    }
}

/// The versions as the message's value: their names, Go-quoted.
fn version_names(versions: &[Value]) -> String {
    let names: Vec<String> = versions.iter().map(|v| q(text(v, "name"))).collect();
    format!("[{}]", names.join(", "))
}

fn validate_subresources(sub: &Value, p: &str, errs: &mut Vec<FieldError>) {
    let Some(scale) = sub.get("scale").filter(|s| !s.is_null()) else { return };
    for key in ["specReplicasPath", "statusReplicasPath"] {
        let field = child(&child(p, "scale"), key);
        match scale.get(key).and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(&field, "")),
            Some(path) if !path.starts_with('.') || path.contains('[') => {
                errs.push(FieldError::invalid(&field, q(path), "should be a json path under .spec or .status"))
            }
            Some(_) => {}
        }
    }
}

fn validate_crd_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    immutable(errs, "spec.scope", old["spec"].get("scope"), new["spec"].get("scope"));
    immutable(errs, "spec.group", old["spec"].get("group"), new["spec"].get("group"));
    immutable(errs, "spec.names.plural", old["spec"]["names"].get("plural"), new["spec"]["names"].get("plural"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}],
            }
        })
    }

    fn errors(obj: &Value) -> Vec<String> {
        let mut obj = obj.clone();
        default_crd(&mut obj);
        let mut errs = Vec::new();
        validate_crd(&obj, &mut errs);
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn the_docs_example_is_valid_and_defaulted() {
        assert_eq!(errors(&crd()), Vec::<String>::new());
        let mut obj = crd();
        default_crd(&mut obj);
        assert_eq!(obj["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(obj["spec"]["names"]["singular"], "crontab");
        establish(&mut obj);
        assert_eq!(obj["status"]["conditions"][1]["type"], "Established");
        assert_eq!(obj["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(obj["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let mut wrong_name = crd();
        wrong_name["metadata"]["name"] = json!("tabs.stable.example.com");
        assert!(errors(&wrong_name)[0]
            .starts_with("metadata.name: Invalid value: \"tabs.stable.example.com\": must be spec.names.plural"));
        let mut no_dot = crd();
        no_dot["spec"]["group"] = json!("example");
        no_dot["metadata"]["name"] = json!("crontabs.example");
        assert!(errors(&no_dot).iter().any(|e| e.contains("should be a domain with at least one dot")));
        let mut two_storage = crd();
        two_storage["spec"]["versions"] = json!([
            {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
        ]);
        assert!(errors(&two_storage).iter().any(|e| e.contains("exactly one version marked as storage version")));
        let mut no_schema = crd();
        no_schema["spec"]["versions"][0]["schema"] = json!(null);
        assert!(errors(&no_schema)
            .iter()
            .any(|e| e == "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"));
        let mut upper = crd();
        upper["spec"]["names"]["plural"] = json!("CronTabs");
        assert!(errors(&upper).iter().any(|e| e.starts_with("spec.names.plural: Invalid value: \"CronTabs\"")));
        let mut webhook = crd();
        webhook["spec"]["conversion"] = json!({"strategy": "Webhook"});
        assert!(errors(&webhook)
            .iter()
            .any(|e| e.starts_with("spec.conversion.strategy: Unsupported value: \"Webhook\"")));
    }
}
