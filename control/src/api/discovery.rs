//! Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`), legacy
//! and aggregated, and `/version`.
//!
//! Discovery is served in the legacy (non-aggregated) format: clients that ask for
//! aggregated discovery fall back to it when the response's content type says so.
//!
//! The OpenAPI v3 documents list, per resource path, the operations and query parameters
//! (notably `fieldValidation` on PATCH, which tells kubectl the server validates fields
//! itself so it needs no client-side schema). They carry no schemas: kubectl then computes
//! apply patches from its compiled-in types, as it does against any server without them.

use serde_json::{json, Value};

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

/// A group with its versions, the preferred one first.
fn group_doc(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first, then
/// names that are none of these alphabetically (how a custom group's versions are ordered).
pub fn version_priority(version: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String) {
    use std::cmp::Reverse;
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        match &rest[digits..] {
            "" => Some((0, major, 0)),
            tail => {
                let (level, n) =
                    tail.strip_prefix("beta").map(|n| (1, n)).or_else(|| tail.strip_prefix("alpha").map(|n| (2, n)))?;
                Some((level, major, n.parse().ok()?))
            }
        }
    });
    match parsed {
        Some((level, major, minor)) => (level, Reverse(major), Reverse(minor), String::new()),
        None => (3, Reverse(0), Reverse(0), version.to_string()),
    }
}

/// Every served group with its versions: the built-in ones, then the custom ones (in the
/// order their definitions were created), then `metrics.k8s.io` (computed from scraped
/// usage, listed last as kube-aggregator lists metrics-server's APIService).
fn all_groups(custom: &[&'static ResourceInfo]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> =
        resource::groups().into_iter().map(|(g, v)| (g, vec![v])).collect();
    groups.extend(super::reviews::groups().into_iter().map(|(g, v)| (g, vec![v])));
    let mut custom_groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in custom {
        match custom_groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => custom_groups.push((r.group, vec![r.version])),
        }
    }
    for (_, versions) in &mut custom_groups {
        versions.sort_by_key(|v| version_priority(v));
    }
    groups.extend(custom_groups);
    groups.push((super::resource_metrics::GROUP, vec![super::resource_metrics::VERSION]));
    groups
}

pub fn group_list(custom: &[&'static ResourceInfo]) -> Value {
    let groups: Vec<Value> = all_groups(custom).iter().map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str, custom: &[&'static ResourceInfo]) -> Option<Value> {
    let (g, v) = all_groups(custom).into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_doc(g, &v);
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
pub fn resource_list(group: &str, version: &str, custom: &[&'static ResourceInfo]) -> Option<Value> {
    if (group, version) == (super::resource_metrics::GROUP, super::resource_metrics::VERSION) {
        return Some(super::resource_metrics::resource_list());
    }
    if let Some(list) = super::reviews::resource_list(group, version) {
        return Some(list);
    }
    let custom_here = custom.iter().copied().filter(|r| r.group == group && r.version == version);
    let entries: Vec<Value> =
        resource::in_group_version(group, version).chain(custom_here).flat_map(resource_entries).collect();
    if entries.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}))
}

/// The content type of an aggregated discovery response.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery in a form served here (JSON,
/// `apidiscovery.k8s.io/v2`); clients list it first and the legacy form after.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        let params: Vec<&str> = params.collect();
        matches!(media, "application/json" | "*/*")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// A strong ETag of a discovery body (its SHA-256), as kube-apiserver tags discovery.
pub fn etag(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The aggregated discovery document kubectl 1.30+ asks for first
/// (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`): every
/// group with every version and resource in one response — `/api` (`core`) or `/apis`.
pub fn aggregated(core: bool, custom: &[&'static ResourceInfo]) -> Value {
    let group_item = |name: Option<&str>, versions: Vec<Value>| {
        let mut metadata = json!({"creationTimestamp": null});
        if let Some(n) = name {
            metadata["name"] = json!(n);
        }
        json!({"metadata": metadata, "versions": versions})
    };
    let version_item = |version: &str, resources: Vec<Value>| json!({"version": version, "resources": resources, "freshness": "Current"});
    let items: Vec<Value> = if core {
        let resources = resource_list("", "v1", &[]).map(|list| fold_entries(&list)).unwrap_or_default();
        vec![group_item(None, vec![version_item("v1", resources)])]
    } else {
        all_groups(custom)
            .into_iter()
            .map(|(group, versions)| {
                let versions = versions
                    .iter()
                    .map(|v| {
                        let resources = match resource_list(group, v, custom) {
                            Some(list) => fold_entries(&list),
                            None => Vec::new(),
                        };
                        version_item(v, resources)
                    })
                    .collect();
                group_item(Some(group), versions)
            })
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// A legacy APIResourceList's entries as aggregated resources (APIResourceDiscovery): each
/// resource with its subresources folded in.
fn fold_entries(list: &Value) -> Vec<Value> {
    let entries = list["resources"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for e in &entries {
        let name = e["name"].as_str().unwrap_or_default();
        match name.split_once('/') {
            None => {
                let mut r = json!({
                    "resource": name,
                    "responseKind": {"group": "", "version": "", "kind": e["kind"]},
                    "scope": if e["namespaced"] == true { "Namespaced" } else { "Cluster" },
                    "singularResource": e["singularName"],
                    "verbs": e["verbs"],
                });
                for key in ["shortNames", "categories"] {
                    if let Some(v) = e.get(key) {
                        r[key] = v.clone();
                    }
                }
                out.push(r);
            }
            Some((parent, sub)) => {
                if let Some(p) = out.iter_mut().find(|r| r["resource"] == parent) {
                    let entry = json!({
                        "subresource": sub,
                        "responseKind": {"group": e.get("group").unwrap_or(&json!("")), "version": e.get("version").unwrap_or(&json!("")), "kind": e["kind"]},
                        "verbs": e["verbs"],
                    });
                    match p.get_mut("subresources").and_then(Value::as_array_mut) {
                        Some(list) => list.push(entry),
                        None => p["subresources"] = json!([entry]),
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_folds_subresources_and_is_asked_for_by_kubectl() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(kubectl));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"));
        let core = aggregated(true, &[]);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert!(pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "eviction" && s["responseKind"]["group"] == "policy"));
        let groups = aggregated(false, &[]);
        let apps = groups["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        assert_eq!(apps["versions"][0]["version"], "v1");
        assert_eq!(etag(b"x"), etag(b"x"));
        assert_ne!(etag(b"x"), etag(b"y"));
    }

    #[test]
    fn versions_in_kubernetes_priority_order() {
        let mut v = vec!["v1alpha1", "foo", "v2beta1", "v1", "v1beta2", "v2", "v1beta1", "bar"];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"]);
    }

    #[test]
    fn documents_list_resources_and_subresources() {
        let core = resource_list("", "v1", &[]).unwrap();
        let names: Vec<&str> =
            core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        for n in ["pods", "pods/status", "pods/binding", "pods/eviction", "pods/log", "services", "namespaces"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let apps = resource_list("apps", "v1", &[]).unwrap();
        let deploy = &apps["resources"][0];
        assert_eq!(deploy["shortNames"][0], "deploy");
        assert!(resource_list("apps", "v2", &[]).is_none());
        assert!(group("batch", &[]).is_some());
        assert!(group_list(&[])["groups"].as_array().unwrap().iter().any(|g| g["name"] == "extensions"));
    }
}
