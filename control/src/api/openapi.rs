//! The OpenAPI documents: `/openapi/v3` (the index), `/openapi/v3/{api/v1 | apis/g/v}` (one
//! group/version each) and `/openapi/v2` (everything, Swagger 2.0), with real schemas —
//! what `kubectl explain` reads and what kubectl's apply and validation consult.
//!
//! Built-in kinds' schemas are generated from their k8s-openapi types (the `schemars`
//! implementations generated from Kubernetes' own OpenAPI spec, so names and descriptions
//! are kube-apiserver's), then decorated with the strategic-merge extensions
//! (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`) from the one patch type
//! graph the server itself merges with (`resource::patch_schema`), and tagged with their
//! group/version/kind. A custom resource's schema is its CRD version's `openAPIV3Schema`
//! with the standard `apiVersion`, `kind` and `metadata` added, as the apiextensions server
//! publishes it.
//!
//! The paths list each resource's operations with their query parameters (notably
//! `fieldValidation`, which tells kubectl the server validates fields itself).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use super::discovery::KUBE_MINOR;
use crate::resource::builtin_types::{self, BuiltinKind, KindVisitor};
use crate::resource::patch_schema::{self, ListStrategy, Ty};
use crate::resource::{self, ResourceInfo};

const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";

/// "api/v1" or "apis/apps/v1" with its group and version, for every served group/version
/// with a table or custom resource.
fn group_versions(custom: &[&'static ResourceInfo]) -> Vec<(String, &'static str, &'static str)> {
    let mut out = vec![("api/v1".to_string(), "", "v1")];
    let custom_gvs = custom.iter().map(|r| (r.group, r.version));
    for (g, v) in resource::groups().into_iter().chain(custom_gvs) {
        let path = format!("apis/{g}/{v}");
        if !out.iter().any(|(p, _, _)| *p == path) {
            out.push((path, g, v));
        }
    }
    out
}

/// The resources of one group/version: built-in, then custom.
fn resources_in(group: &str, version: &str, custom: &[&'static ResourceInfo]) -> Vec<&'static ResourceInfo> {
    let custom_here = custom.iter().copied().filter(|r| r.group == group && r.version == version);
    resource::in_group_version(group, version).chain(custom_here).collect()
}

/// Adds a kind's schema (and everything it references) to the generator's definitions;
/// returns the kind's definition name.
struct Define<'a>(&'a mut SchemaGenerator);

impl KindVisitor for Define<'_> {
    type Output = String;
    fn visit<K: BuiltinKind>(self) -> String {
        self.0.subschema_for::<K>();
        K::schema_name().into_owned()
    }
}

/// `io.k8s.api.apps.v1` style prefix of a custom group's definitions: the group reversed.
fn custom_definition_name(r: &ResourceInfo) -> String {
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

/// A custom resource's published schema: its `openAPIV3Schema` with the standard fields.
fn custom_schema(r: &ResourceInfo, object_meta: &str) -> Value {
    let mut schema = r.custom.and_then(|c| c.openapi.clone()).unwrap_or_else(|| json!({"type": "object"}));
    if let Some(map) = schema.as_object_mut() {
        let props = map.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
            props.insert("metadata".into(), json!({"allOf": [{"$ref": format!("{V3_REF}{object_meta}")}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
    }
    schema
}

/// The definition a property schema refers to (directly, through `allOf`, or as its
/// array's items).
fn referenced(schema: &Value) -> Option<&str> {
    fn direct(s: &Value) -> Option<&str> {
        s.get("$ref")?.as_str()?.strip_prefix(V3_REF)
    }
    direct(schema)
        .or_else(|| schema.get("allOf")?.as_array()?.iter().find_map(direct))
        .or_else(|| referenced(schema.get("items")?))
}

/// Adds the strategic-merge extensions of `ty`'s fields to definition `name`, and of
/// everything below it that the patch graph types.
fn decorate(defs: &mut Map<String, Value>, name: &str, ty: Ty, seen: &mut HashSet<(String, Ty)>) {
    if ty == Ty::Unknown || !seen.insert((name.to_string(), ty)) {
        return;
    }
    let mut below = Vec::new();
    if let Some(props) = defs.get_mut(name).and_then(|d| d.get_mut("properties")).and_then(Value::as_object_mut) {
        for (field, schema) in props.iter_mut() {
            let meta = patch_schema::field(ty, field);
            let strategy = match (meta.list, meta.retain_keys) {
                (ListStrategy::Merge { .. }, true) => Some("merge,retainKeys"),
                (ListStrategy::Merge { .. }, false) => Some("merge"),
                (ListStrategy::Atomic, true) => Some("retainKeys"),
                (ListStrategy::Atomic, false) => None,
            };
            if let (Some(strategy), Some(map)) = (strategy, schema.as_object_mut()) {
                map.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
                if let Some(key) = meta.merge_key() {
                    map.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                }
            }
            if let Some(target) = referenced(schema) {
                below.push((target.to_string(), meta.ty));
            }
        }
    }
    for (target, ty) in below {
        decorate(defs, &target, ty, seen);
    }
}

/// The schemas of `resources` (and what they reference), keyed by definition name, with
/// refs in the v3 form.
fn definitions(resources: &[&'static ResourceInfo]) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let object_meta = {
        generator.subschema_for::<ObjectMeta>();
        ObjectMeta::schema_name().into_owned()
    };
    let mut kinds: Vec<(String, &ResourceInfo)> = Vec::new();
    for r in resources {
        let storage = r.storage();
        if storage.custom.is_some() {
            continue;
        }
        if let Some(name) = builtin_types::visit(storage.group, storage.kind, Define(&mut generator)) {
            kinds.push((name, r));
        }
    }
    let mut defs = generator.take_definitions(true);
    let mut seen = HashSet::new();
    for (name, r) in &kinds {
        decorate(&mut defs, name, r.strategy.patch_schema, &mut seen);
    }
    for r in resources.iter().filter(|r| r.custom.is_some()) {
        let name = custom_definition_name(r);
        defs.insert(name.clone(), custom_schema(r, &object_meta));
        kinds.push((name, r));
    }
    // Each kind's definition names the group/version/kinds it is served as.
    let mut gvks: HashMap<String, Vec<Value>> = HashMap::new();
    for (name, r) in &kinds {
        gvks.entry(name.clone()).or_default().push(json!({"group": r.group, "version": r.version, "kind": r.kind}));
    }
    for (name, list) in gvks {
        if let Some(def) = defs.get_mut(&name).and_then(Value::as_object_mut) {
            def.insert("x-kubernetes-group-version-kind".into(), json!(list));
        }
    }
    defs
}

fn query_param(name: &str, v2: bool) -> Value {
    if v2 {
        json!({"name": name, "in": "query", "type": "string", "uniqueItems": true})
    } else {
        json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
    }
}

/// The operations of `resources` under `prefix` ("/api/v1", "/apis/apps/v1").
fn paths(prefix: &str, resources: &[&'static ResourceInfo], v2: bool) -> Map<String, Value> {
    let mut paths = Map::new();
    for r in resources {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let write_params: Vec<Value> =
            ["dryRun", "fieldManager", "fieldValidation"].iter().map(|p| query_param(p, v2)).collect();
        let ok = json!({"200": {"description": "OK"}});
        let mut patch_params = write_params.clone();
        patch_params.push(query_param("force", v2));
        let op =
            |params: &[Value]| json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok});
        let mut patch = op(&patch_params);
        let mut patch_types =
            vec!["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];
        if r.custom.is_none() {
            patch_types.push("application/strategic-merge-patch+json");
        }
        if v2 {
            patch["consumes"] = json!(patch_types);
        } else {
            let content: Map<String, Value> = patch_types.iter().map(|t| (t.to_string(), json!({}))).collect();
            patch["requestBody"] = json!({"content": content});
        }
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op(&[]), "put": op(&write_params), "patch": patch, "delete": op(&[])}),
        );
        paths.insert(base, json!({"get": op(&[]), "post": op(&write_params), "delete": op(&[])}));
    }
    paths
}

/// The built-in part of each group/version's document never changes: built once.
fn builtin_document(path: &str, group: &str, version: &str) -> Arc<Value> {
    static MEMO: OnceLock<Mutex<HashMap<String, Arc<Value>>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(doc) = memo.lock().expect("openapi memo").get(path) {
        return doc.clone();
    }
    let doc = Arc::new(document(path, &resources_in(group, version, &[])));
    memo.lock().expect("openapi memo").insert(path.to_string(), doc.clone());
    doc
}

fn document(path: &str, resources: &[&'static ResourceInfo]) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": paths(&format!("/{path}"), resources, false),
        "components": {"schemas": definitions(resources)},
    })
}

/// The OpenAPI v3 document of one group/version (`api/v1`, `apis/apps/v1`).
pub fn v3(path: &str, custom: &[&'static ResourceInfo]) -> Option<Arc<Value>> {
    let (path, group, version) = group_versions(custom).into_iter().find(|(p, _, _)| p == path)?;
    if !custom.iter().any(|r| r.group == group && r.version == version) {
        return Some(builtin_document(&path, group, version));
    }
    Some(Arc::new(document(&path, &resources_in(group, version, custom))))
}

/// `/openapi/v3`: where each group/version's document is, with a hash of its content (kubectl
/// caches documents by it).
pub fn v3_root(custom: &[&'static ResourceInfo]) -> Value {
    let paths: Map<String, Value> = group_versions(custom)
        .into_iter()
        .filter_map(|(path, _, _)| {
            let doc = v3(&path, custom)?;
            let hash = super::discovery::etag(doc.to_string().as_bytes()).trim_matches('"').to_uppercase();
            let url = format!("/openapi/v3/{path}?hash={hash}");
            Some((path, json!({"serverRelativeURL": url})))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v2`: every served resource in one Swagger 2.0 document.
pub fn v2(custom: &[&'static ResourceInfo]) -> Value {
    let mut all_paths = Map::new();
    let mut all_resources = Vec::new();
    for (path, group, version) in group_versions(custom) {
        let resources = resources_in(group, version, custom);
        all_paths.extend(paths(&format!("/{path}"), &resources, true));
        all_resources.extend(resources);
    }
    let defs = Value::Object(definitions(&all_resources)).to_string().replace(V3_REF, V2_REF);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": all_paths,
        "definitions": serde_json::from_str::<Value>(&defs).expect("re-parsing our own JSON"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_schemas_patch_extensions_and_kinds() {
        let doc = v3("apis/apps/v1", &[]).unwrap();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(p["parameters"].as_array().unwrap().iter().any(|q| q["name"] == "fieldValidation"));
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deployment["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert!(deployment["properties"]["spec"]["allOf"][0]["$ref"].as_str().unwrap().ends_with("DeploymentSpec"));
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let env = &schemas["io.k8s.api.core.v1.Container"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        assert!(v3_root(&[])["paths"]["apis/batch/v1"]["serverRelativeURL"].as_str().unwrap().contains("?hash="));
        let v2 = v2(&[]);
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["allOf"][0]["$ref"]
            .as_str()
            .unwrap()
            .starts_with(V2_REF));
    }
}
