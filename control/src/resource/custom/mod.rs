//! Custom resources: what a CustomResourceDefinition makes the server serve.
//!
//! A CRD (`apiextensions.k8s.io/v1`, a built-in kind whose rules are in [`crd`]) becomes one
//! [`ResourceInfo`] per served version, built here by the pure [`resources_of`]. Everything
//! downstream (routing, the registry, the watch cache, discovery) holds resources as
//! `&'static ResourceInfo`, so these are leaked — but interned by the CRD's content
//! ([`intern`]): the same definition seen again (by another server in the process, after a
//! re-list, or unchanged on an update of its status) reuses the entries it leaked first,
//! so memory grows only with distinct definitions, never with events.
//!
//! * [`schema`] — structural schemas: validation, pruning, defaulting; [`cel`] — their
//!   CEL validation rules;
//! * [`columns`] — `additionalPrinterColumns` (server-side table cells by JSONPath);
//! * [`crd`] — the CustomResourceDefinition kind itself: defaults, validation, status.

pub mod cel;
pub mod columns;
pub mod crd;
pub mod schema;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::printers;
use super::strategy::Strategy;
use super::table::ResourceInfo;
use super::typed::Normalized;
use super::validate::meta::validate_object_meta;
use super::validate::names::NameRule;
use super::validate::FieldError;
use columns::PrinterColumn;
use schema::Schema;

/// The finalizer kube-apiserver puts on every CRD: its objects are deleted before it goes.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Where a custom resource's `scale` subresource reads and writes (`.spec.replicas` …),
/// as JSONPath-like dotted paths without the leading dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: Vec<String>,
    pub status_replicas: Vec<String>,
    pub label_selector: Option<Vec<String>>,
}

/// One served version of a CRD: what its objects must look like and how they print.
#[derive(Debug)]
pub struct CustomVersion {
    /// The CRD's name (`crontabs.stable.example.com`).
    pub crd_name: String,
    /// `openAPIV3Schema` of this version (`None`: none given, everything is kept).
    pub schema: Option<Schema>,
    /// The same schema as given, for the OpenAPI documents.
    pub openapi: Option<Value>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: its objects can be read and deleted, not created.
    pub terminating: bool,
    /// `deprecationWarning` of a deprecated version, sent with every request to it.
    pub deprecation: Option<String>,
    is_storage: bool,
    /// The storage version's entry (this version's own when it is the storage version).
    storage: OnceLock<&'static ResourceInfo>,
}

impl CustomVersion {
    pub fn is_storage_version(&self) -> bool {
        self.is_storage
    }

    pub fn storage_version(&self) -> &'static ResourceInfo {
        self.storage.get().expect("set when the definition is built")
    }

    /// Fills schema defaults (kube-apiserver defaults on decode, before admission).
    pub fn apply_defaults(&self, obj: &mut Value) {
        if let Some(schema) = &self.schema {
            schema.apply_defaults(obj);
        }
    }

    /// Prunes fields the schema does not specify; they are the "unknown fields" the
    /// request's `fieldValidation` decides about.
    pub fn normalize(&self, obj: &Value) -> Normalized {
        let mut object = obj.clone();
        let unknown_fields = match &self.schema {
            Some(schema) => schema.prune(&mut object),
            None => Vec::new(),
        };
        Normalized { object, unknown_fields }
    }

    /// Metadata rules (names are DNS subdomains) plus the schema.
    pub fn validate(&self, info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_object_meta(obj, info.namespaced, NameRule::Subdomain, &mut errs);
        if let Some(schema) = &self.schema {
            errs.extend(schema.validate(obj));
        }
        errs
    }
}

/// The strategy every custom resource shares: its per-CRD rules (schema, columns) are in
/// [`CustomVersion`], which `validate`, `typed` and the printers consult through
/// `ResourceInfo::custom`.
pub static CUSTOM_RESOURCE: Strategy = Strategy::of(no_rules, keep, &printers::DEFAULT);

fn no_rules(_obj: &Value, _errs: &mut Vec<FieldError>) {}

fn keep(obj: &Value) -> Result<Value, String> {
    Ok(obj.clone())
}

/// Entries leaked so far, by the definition they were built from.
static INTERNED: OnceLock<Mutex<HashMap<String, Vec<&'static ResourceInfo>>>> = OnceLock::new();

/// The served versions of `crd` (a stored, valid CustomResourceDefinition), storage
/// version first. Empty for a definition that cannot be served (validation keeps those
/// out of the store; one written some other way is skipped, not a crash).
pub fn resources_of(crd: &Value) -> Vec<&'static ResourceInfo> {
    let terminating = crd["metadata"]["deletionTimestamp"].is_string();
    let identity = serde_json::json!([crd["metadata"]["uid"], crd["spec"], terminating]).to_string();
    intern(identity, || build(crd, terminating))
}

fn intern(identity: String, build: impl FnOnce() -> Vec<&'static ResourceInfo>) -> Vec<&'static ResourceInfo> {
    let interned = INTERNED.get_or_init(Default::default);
    let mut interned = interned.lock().expect("intern lock");
    interned.entry(identity).or_insert_with(build).clone()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(v: &Value) -> &'static [&'static str] {
    let items: Vec<&'static str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).map(leak).collect();
    Box::leak(items.into_boxed_slice())
}

/// `.spec.replicas` → ["spec", "replicas"].
fn dotted(path: &str) -> Vec<String> {
    path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).map(String::from).collect()
}

fn build(crd: &Value, terminating: bool) -> Vec<&'static ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), names["plural"].as_str(), names["kind"].as_str())
    else {
        return Vec::new();
    };
    let singular =
        names["singular"].as_str().filter(|s| !s.is_empty()).map_or_else(|| kind.to_lowercase(), String::from);
    let (group, plural, kind, singular) = (leak(group), leak(plural), leak(kind), leak(&singular));
    let short_names = leak_list(&names["shortNames"]);
    let categories = leak_list(&names["categories"]);
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let crd_name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut versions: Vec<&Value> =
        spec["versions"].as_array().into_iter().flatten().filter(|v| v["served"] == true).collect();
    // The storage version first: the others point at it.
    versions.sort_by_key(|v| v["storage"] != true);
    if versions.first().is_none_or(|v| v["storage"] != true) {
        return Vec::new();
    }
    let mut out: Vec<&'static ResourceInfo> = Vec::new();
    for v in versions {
        let Some(version) = v["name"].as_str() else { continue };
        let schema = v["schema"]["openAPIV3Schema"]
            .as_object()
            .and_then(|_| Schema::parse(&v["schema"]["openAPIV3Schema"], "").ok());
        let subresources = &v["subresources"];
        let scale = subresources["scale"].as_object().map(|s| ScalePaths {
            spec_replicas: dotted(s.get("specReplicasPath").and_then(Value::as_str).unwrap_or(".spec.replicas")),
            status_replicas: dotted(s.get("statusReplicasPath").and_then(Value::as_str).unwrap_or(".status.replicas")),
            label_selector: s.get("labelSelectorPath").and_then(Value::as_str).map(dotted),
        });
        let custom: &'static CustomVersion = Box::leak(Box::new(CustomVersion {
            crd_name: crd_name.clone(),
            schema,
            openapi: v["schema"].get("openAPIV3Schema").filter(|s| s.is_object()).cloned(),
            columns: columns::of_version(v),
            scale,
            terminating,
            deprecation: (v["deprecated"] == true).then(|| {
                v["deprecationWarning"]
                    .as_str()
                    .map_or_else(|| format!("{group}/{version} {kind} is deprecated"), String::from)
            }),
            is_storage: out.is_empty(),
            storage: OnceLock::new(),
        }));
        let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
            group,
            version: leak(version),
            plural,
            singular,
            kind,
            namespaced,
            short_names,
            categories,
            has_status: subresources["status"].is_object(),
            has_scale: custom.scale.is_some(),
            has_pod_subresources: false,
            has_approval: false,
            strategy: &CUSTOM_RESOURCE,
            custom: Some(custom),
        }));
        let storage = out.first().copied().unwrap_or(info);
        let _ = custom.storage.set(storage);
        out.push(info);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crontab_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com", "uid": "u1"},
            "spec": {
                "group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}},
                    {"name": "v0", "served": false, "storage": false},
                ]
            }
        })
    }

    #[test]
    fn served_versions_point_at_the_storage_version_and_are_interned() {
        let crd = crontab_crd();
        let infos = resources_of(&crd);
        assert_eq!(infos.iter().map(|i| i.version).collect::<Vec<_>>(), ["v1", "v1beta1"]);
        let (v1, beta) = (infos[0], infos[1]);
        assert!(v1.has_status && v1.has_scale && !beta.has_status);
        assert!(std::ptr::eq(beta.storage(), v1) && std::ptr::eq(v1.storage(), v1));
        assert!(beta.is_alias() && !v1.is_alias());
        assert_eq!(v1.key_root(), "stable.example.com/crontabs");
        assert_eq!(v1.short_names, ["ct"]);
        // The same definition again: the same entries, nothing new leaked.
        assert!(std::ptr::eq(resources_of(&crd)[0], v1));
        // Terminating is a different definition.
        let mut deleting = crd.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(resources_of(&deleting)[0].custom.unwrap().terminating);
    }
}
