//! Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`),
//! `/version`, and the OpenAPI v3 documents clients probe.
//!
//! Discovery is served in the legacy (non-aggregated) format: clients that ask for
//! aggregated discovery fall back to it when the response's content type says so.
//!
//! The OpenAPI v3 documents list, per resource path, the operations and query parameters
//! (notably `fieldValidation` on PATCH, which tells kubectl the server validates fields
//! itself so it needs no client-side schema). They carry no schemas: kubectl then computes
//! apply patches from its compiled-in types, as it does against any server without them.

use serde_json::{json, Map, Value};

use crate::resource::{self, ResourceInfo};

/// The Kubernetes version Berth's API corresponds to (k8s-openapi's `v1_33` types).
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-berth.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "berth",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// Every served group/version: the stored ones, then `metrics.k8s.io` (computed from
/// scraped usage, listed last as kube-aggregator lists metrics-server's APIService).
fn all_groups() -> Vec<(&'static str, &'static str)> {
    let mut groups = resource::groups();
    groups.extend(super::reviews::groups());
    groups.push((super::resource_metrics::GROUP, super::resource_metrics::VERSION));
    groups
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = all_groups().into_iter().map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    let (g, v) = all_groups().into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn resource_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": ALL_VERBS,
        "shortNames": r.short_names,
        "categories": r.categories,
    })];
    if r.short_names.is_empty() {
        out[0].as_object_mut().expect("object").remove("shortNames");
    }
    if r.categories.is_empty() {
        out[0].as_object_mut().expect("object").remove("categories");
    }
    let sub = |name: &str, kind: &str, group: Option<(&str, &str)>, verbs: &[&str]| {
        let mut v = json!({"name": format!("{}/{name}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
        if let Some((g, ver)) = group {
            v["group"] = json!(g);
            v["version"] = json!(ver);
        }
        v
    };
    if r.has_status {
        out.push(sub("status", r.kind, None, &["get", "patch", "update"]));
    }
    if r.has_approval {
        out.push(sub("approval", r.kind, None, &["get", "patch", "update"]));
    }
    if r.has_scale {
        out.push(sub("scale", "Scale", Some(("autoscaling", "v1")), &["get", "patch", "update"]));
    }
    if r.has_pod_subresources {
        out.push(sub("binding", "Binding", None, &["create"]));
        out.push(sub("eviction", "Eviction", Some(("policy", "v1")), &["create"]));
        out.push(sub("log", "Pod", None, &["get"]));
        out.push(sub("exec", "PodExecOptions", None, &["create", "get"]));
        out.push(sub("attach", "PodAttachOptions", None, &["create", "get"]));
        out.push(sub("portforward", "PodPortForwardOptions", None, &["create", "get"]));
    }
    out
}

/// `APIResourceList` of one group/version; `None` if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (super::resource_metrics::GROUP, super::resource_metrics::VERSION) {
        return Some(super::resource_metrics::resource_list());
    }
    if let Some(list) = super::reviews::resource_list(group, version) {
        return Some(list);
    }
    let entries: Vec<Value> = resource::in_group_version(group, version).flat_map(resource_entries).collect();
    if entries.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}))
}

/// "api/v1" or "apis/apps/v1" for every served group/version.
fn openapi_group_versions() -> Vec<(String, &'static str, &'static str)> {
    let mut out = vec![("api/v1".to_string(), "", "v1")];
    for (g, v) in resource::groups() {
        out.push((format!("apis/{g}/{v}"), g, v));
    }
    out
}

pub fn openapi_v3_root() -> Value {
    let paths: Map<String, Value> = openapi_group_versions()
        .into_iter()
        .map(|(path, _, _)| {
            let url = format!("/openapi/v3/{path}?hash={}", env!("CARGO_PKG_VERSION").replace('.', ""));
            (path, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

fn query_param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// The OpenAPI v3 document of one group/version (`api/v1`, `apis/apps/v1`).
pub fn openapi_v3(path: &str) -> Option<Value> {
    let (_, group, version) = openapi_group_versions().into_iter().find(|(p, _, _)| p == path)?;
    let mut paths = Map::new();
    for r in resource::in_group_version(group, version) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = if r.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("/{path}/{}", r.plural)
        };
        let write_params: Vec<Value> =
            ["dryRun", "fieldManager", "fieldValidation"].iter().map(|p| query_param(p)).collect();
        let ok = json!({"200": {"description": "OK"}});
        let mut patch_params = write_params.clone();
        patch_params.push(query_param("force"));
        let patch_body = json!({"content": {
            "application/json-patch+json": {},
            "application/merge-patch+json": {},
            "application/apply-patch+yaml": {},
        }});
        let op =
            |params: &[Value]| json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok});
        let mut patch = op(&patch_params);
        patch["requestBody"] = patch_body;
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op(&[]), "put": op(&write_params), "patch": patch, "delete": op(&[])}),
        );
        paths.insert(base, json!({"get": op(&[]), "post": op(&write_params), "delete": op(&[])}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Berth", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_resources_and_subresources() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> =
            core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        for n in ["pods", "pods/status", "pods/binding", "pods/eviction", "pods/log", "services", "namespaces"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let apps = resource_list("apps", "v1").unwrap();
        let deploy = &apps["resources"][0];
        assert_eq!(deploy["shortNames"][0], "deploy");
        assert!(resource_list("apps", "v2").is_none());
        assert!(group("batch").is_some());
        assert!(group_list()["groups"].as_array().unwrap().iter().any(|g| g["name"] == "extensions"));
        let doc = openapi_v3("apis/apps/v1").unwrap();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(p["parameters"].as_array().unwrap().iter().any(|q| q["name"] == "fieldValidation"));
        assert!(openapi_v3_root()["paths"]["apis/batch/v1"].is_object());
    }
}
