//! `metrics.k8s.io/v1beta1`: `NodeMetrics` and `PodMetrics`, answered from this server's
//! [`crate::usage::UsageCache`] exactly as metrics-server answers them (get and list,
//! namespaced or across namespaces, with label and field selectors), so `kubectl top` and
//! the HPA controller work unchanged. Objects come from the watch cache: a node or pod is
//! served only while it exists in the API (and, for pods, only the same uid that was
//! measured), carrying its labels, as metrics-server joins its scrapes with its informers.
//! Asked for a Table (`kubectl get nodemetrics`), it answers metrics-server's columns:
//! Name, cpu, memory, Window.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_proto::model::duration::go_duration;
use berth_proto::selectors::{FieldSelector, LabelSelector};
use serde_json::{json, Value};

use super::request::Query;
use super::{json_response, ApiState, Rendering};
use crate::cache::Filter;
use crate::registry::object;
use crate::resource;
use crate::resource::{ApiError, Subject};
use crate::usage::{quantity, NodePoint, PodPoint, Usage};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The group/version's `APIResourceList`.
pub fn resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]})
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::NotFound(Subject { group: GROUP.into(), kind: resource.into(), name: name.into() })
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": quantity::cpu(u.cpu_nanocores), "memory": quantity::memory(u.memory_bytes)})
}

fn time(t: &k8s_openapi::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn metadata(obj: &Value, now: &str) -> Value {
    let mut meta = json!({"name": object::name(obj), "creationTimestamp": now});
    if let Some(ns) = object::namespace(obj) {
        meta["namespace"] = json!(ns);
    }
    let labels = object::labels(obj);
    if !labels.is_empty() {
        meta["labels"] = json!(labels);
    }
    meta
}

/// A `NodeMetrics` object for `node` (the Node) from its point.
pub fn node_metrics(node: &Value, p: &NodePoint, now: &str) -> Value {
    json!({"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": metadata(node, now),
        "timestamp": time(&p.timestamp), "window": go_duration(p.window), "usage": usage_json(&p.usage)})
}

/// A `PodMetrics` object for `pod` (the Pod) from its point.
pub fn pod_metrics(pod: &Value, p: &PodPoint, now: &str) -> Value {
    let containers: Vec<Value> =
        p.containers.iter().map(|(name, u)| json!({"name": name, "usage": usage_json(u)})).collect();
    json!({"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": metadata(pod, now),
        "timestamp": time(&p.timestamp), "window": go_duration(p.window), "containers": containers})
}

/// What a metrics URL (after `/apis/metrics.k8s.io/v1beta1`) addresses.
#[derive(Debug, PartialEq, Eq)]
enum MetricsTarget {
    Nodes(Option<String>),
    Pods { namespace: Option<String>, name: Option<String> },
}

fn parse(segments: &[&str]) -> Option<MetricsTarget> {
    let s = |x: &&str| x.to_string();
    Some(match segments {
        ["nodes"] => MetricsTarget::Nodes(None),
        ["nodes", name] => MetricsTarget::Nodes(Some(s(name))),
        ["pods"] => MetricsTarget::Pods { namespace: None, name: None },
        ["namespaces", ns, "pods"] => MetricsTarget::Pods { namespace: Some(s(ns)), name: None },
        ["namespaces", ns, "pods", name] => MetricsTarget::Pods { namespace: Some(s(ns)), name: Some(s(name)) },
        _ => return None,
    })
}

fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("unable to parse labelSelector: {e}")))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("unable to parse fieldSelector: {e}")))?;
    Ok((labels, fields))
}

async fn objects(state: &ApiState, plural: &'static str, filter: Filter) -> Result<Vec<Arc<Value>>, ApiError> {
    let info = resource::find("", "v1", plural).expect("core resource is served");
    Ok(state.cache.get(info).list(&filter, 0).await?.0)
}

/// metrics-server's Table of NodeMetrics or PodMetrics (a pod's usage is its containers'
/// sum); rows carry the object as `includeObject` asks (metadata by default).
pub fn table(items: &[Value], include: &str) -> Value {
    let col = |name: &str, format: &str| json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0});
    let columns =
        vec![col("Name", "name"), col("cpu", "quantity"), col("memory", "quantity"), col("Window", "duration")];
    let rows: Vec<Value> = items
        .iter()
        .map(|m| {
            let (cpu, memory) = match m.get("containers").and_then(Value::as_array) {
                Some(cs) => cs.iter().fold((0u64, 0u64), |(c, mem), x| {
                    let q = |k: &str, scale: i32| {
                        x["usage"][k]
                            .as_str()
                            .and_then(|v| berth_proto::Quantity::parse(v).ok().map(|q| q.scaled_value(-scale)))
                    };
                    (c + q("cpu", 9).unwrap_or(0) as u64, mem + q("memory", 0).unwrap_or(0) as u64)
                }),
                None => {
                    let q = |k: &str, scale: i32| {
                        m["usage"][k]
                            .as_str()
                            .and_then(|v| berth_proto::Quantity::parse(v).ok().map(|q| q.scaled_value(-scale)))
                    };
                    (q("cpu", 9).unwrap_or(0) as u64, q("memory", 0).unwrap_or(0) as u64)
                }
            };
            let mut row =
                json!({"cells": [m["metadata"]["name"], quantity::cpu(cpu), quantity::memory(memory), m["window"]]});
            match include {
                "None" => {}
                "Object" => row["object"] = m.clone(),
                _ => row["object"] = super::render::metadata_only(m),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows})
}

/// Serves one request under `/apis/metrics.k8s.io/{version}/…`.
pub async fn handle(
    state: &ApiState,
    method: &Method,
    version: &str,
    segments: &[&str],
    query: Query,
    rendering: Rendering,
) -> Response {
    let include = query.get("includeObject").unwrap_or("Metadata").to_string();
    match serve(state, method, version, segments, query).await {
        Ok(v) if rendering == Rendering::Table => {
            let items = match v.get("items").and_then(Value::as_array) {
                Some(items) => items.clone(),
                None => vec![v],
            };
            json_response(StatusCode::OK, &table(&items, &include), &[])
        }
        Ok(v) => json_response(StatusCode::OK, &v, &[]),
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &ApiState,
    method: &Method,
    version: &str,
    segments: &[&str],
    query: Query,
) -> Result<Value, ApiError> {
    let target = parse(segments).filter(|_| version == VERSION).ok_or(ApiError::NotFound(Subject::default()))?;
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed(format!("{method} is not supported on {API_VERSION}")));
    }
    if query.is_watch() {
        return Err(ApiError::MethodNotAllowed("watch is not supported on metrics.k8s.io".into()));
    }
    let now = object::timestamp(chrono::Utc::now());
    let (labels, mut fields) = selectors(&query)?;
    match target {
        MetricsTarget::Nodes(name) => {
            tracing::debug!(?name, "node metrics");
            if let Some(n) = &name {
                fields.requirements.push(name_requirement(n));
            }
            let nodes = objects(state, "nodes", Filter { resource: "nodes", namespace: None, labels, fields }).await?;
            let points = state.usage.nodes();
            let items: Vec<Value> = nodes
                .iter()
                .filter_map(|n| {
                    let p = points.iter().find(|p| Some(p.name.as_str()) == object::name(n))?;
                    Some(node_metrics(n, p, &now))
                })
                .collect();
            match name {
                Some(n) => items.into_iter().next().ok_or_else(|| not_found("nodemetrics", &n)),
                None => {
                    Ok(json!({"kind": "NodeMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}))
                }
            }
        }
        MetricsTarget::Pods { namespace, name } => {
            tracing::debug!(?namespace, ?name, "pod metrics");
            if let Some(n) = &name {
                fields.requirements.push(name_requirement(n));
            }
            let filter = Filter { resource: "pods", namespace: namespace.clone(), labels, fields };
            let pods = objects(state, "pods", filter).await?;
            let points = state.usage.pods();
            let mut items: Vec<Value> = pods
                .iter()
                .filter_map(|pod| {
                    let uid = object::meta_str(pod, "uid").unwrap_or_default();
                    let p = points.iter().find(|p| {
                        Some(p.name.as_str()) == object::name(pod)
                            && Some(p.namespace.as_str()) == object::namespace(pod)
                            && (p.uid.is_empty() || p.uid == uid)
                    })?;
                    Some(pod_metrics(pod, p, &now))
                })
                .collect();
            match name {
                // metrics-server names the missing object "namespace/name".
                Some(n) => items.pop().ok_or_else(|| {
                    not_found("podmetrics", &format!("{}/{n}", namespace.as_deref().unwrap_or_default()))
                }),
                None => {
                    Ok(json!({"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}))
                }
            }
        }
    }
}

fn name_requirement(name: &str) -> berth_proto::selectors::FieldRequirement {
    berth_proto::selectors::FieldRequirement { field: "metadata.name".into(), value: name.into(), negated: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn urls() {
        assert_eq!(parse(&["nodes"]), Some(MetricsTarget::Nodes(None)));
        assert_eq!(parse(&["nodes", "n1"]), Some(MetricsTarget::Nodes(Some("n1".into()))));
        assert_eq!(parse(&["pods"]), Some(MetricsTarget::Pods { namespace: None, name: None }));
        assert_eq!(
            parse(&["namespaces", "default", "pods", "web"]),
            Some(MetricsTarget::Pods { namespace: Some("default".into()), name: Some("web".into()) })
        );
        assert_eq!(parse(&["pods", "web"]), None, "pods are namespaced");
        assert_eq!(parse(&["namespaces", "default", "nodes"]), None);
    }

    #[test]
    fn objects_look_like_metrics_server() {
        let at = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
        let p = PodPoint {
            namespace: "default".into(),
            name: "web".into(),
            uid: String::new(),
            timestamp: at,
            window: Duration::from_millis(15_002),
            containers: vec![("c".into(), Usage { cpu_nanocores: 2_403_929, memory_bytes: 7 * 1024 * 1024 })],
        };
        let m = pod_metrics(&pod, &p, "2023-11-14T22:13:20Z");
        assert_eq!(
            m,
            json!({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2023-11-14T22:13:20Z",
                    "labels": {"app": "web"}},
                "timestamp": "2023-11-14T22:13:20Z", "window": "15.002s",
                "containers": [{"name": "c", "usage": {"cpu": "2403929n", "memory": "7Mi"}}]})
        );
        assert_eq!(
            not_found("podmetrics", "default/x").to_string(),
            "podmetrics.metrics.k8s.io \"default/x\" not found"
        );
    }
}
