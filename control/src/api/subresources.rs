//! Subresources other than `status`: `scale` (Deployments, ReplicaSets, StatefulSets),
//! `pods/binding` (the scheduler's write) and `pods/log` (proxied to
//! the agent running the pod).
//!
//! The agent contract for logs is the kubelet's: `GET http://{node InternalIP}:{node
//! status.daemonEndpoints.kubeletEndpoint.Port}/containerLogs/{ns}/{pod}/{container}` with
//! `follow`, `tailLines`, `previous`, `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes`.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use berth_proto::model::well_known;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::body::{
    apply_patch, decode_body, decode_options_body, decode_patch, patch_kind, patch_sets_resource_version, PatchKind,
};
use super::encoding::respond;
use super::{body_response, json_response, ApiRequest, ApiState};
use crate::registry::{object, Part, WriteOptions};
use crate::resource;
use crate::resource::patch_schema::Ty;
use crate::resource::{ApiError, Cause, Subject};

/// The value at a dotted path (`["spec", "replicas"]`), if there is one.
fn at_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k.as_str()))
}

/// Sets the value at a dotted path, creating the objects on the way.
fn set_path(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for k in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur.as_object_mut().expect("just made an object").entry(k.clone()).or_insert(Value::Null);
    }
    *cur = value;
}

/// The `autoscaling/v1` Scale view of a scalable object: a custom resource's from its
/// CRD's `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath` (a string).
fn scale_of(info: &resource::ResourceInfo, obj: &Value) -> Value {
    let (replicas, status_replicas, selector_text) = match info.custom.and_then(|c| c.scale.as_ref()) {
        Some(paths) => (
            at_path(obj, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0),
            at_path(obj, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            paths
                .label_selector
                .as_ref()
                .and_then(|p| at_path(obj, p))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        None => (
            obj["spec"]["replicas"].as_i64().unwrap_or(1),
            obj["status"]["replicas"].as_i64().unwrap_or(0),
            selector_string(&obj["spec"]["selector"]),
        ),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": status_replicas, "selector": selector_text},
    })
}

/// A structured label selector as its query-string form ("app=web,tier in (a,b)").
fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> =
        object::string_map(selector.get("matchLabels")).iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn invalid_scale(name: &str, replicas: i64) -> ApiError {
    ApiError::Invalid {
        qualified_kind: "Scale.autoscaling".into(),
        name: name.into(),
        group: "autoscaling".into(),
        kind: "Scale".into(),
        causes: vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
            field: "spec.replicas".into(),
        }],
    }
}

pub async fn scale(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let info = req.target.info.storage();
    let ns = req.target.namespace.as_deref();
    let name = req.target.name.clone().expect("routed with a name");
    if req.method == Method::GET {
        let obj = state.registry.get(info, ns, &name, true).await?;
        return Ok(respond(&req, StatusCode::OK, &scale_of(info, &obj), &[]));
    }
    let opts = req.query.write_options()?;
    let (patch, desired_scale) = match req.method {
        Method::PUT => (None, Some(decode_body_raw(&req)?)),
        Method::PATCH => {
            let kind = patch_kind(&req)?;
            if kind == PatchKind::Apply {
                return Err(ApiError::UnsupportedMediaType("apply is not supported on the scale subresource".into()));
            }
            (Some((kind, decode_patch(&req, kind).await?)), None)
        }
        _ => return Err(ApiError::MethodNotAllowed("scale supports get, update and patch".into())),
    };
    let written = state
        .registry
        .modify(info, ns, &name, Part::Main, &opts, |current| {
            let view = scale_of(info, current);
            let new_view = match (&patch, &desired_scale) {
                // Scale has no patch schema: plain merge semantics.
                (Some((kind, body)), _) => apply_patch(*kind, Ty::Unknown, &view, body)?,
                (None, Some(body)) => body.clone(),
                _ => unreachable!("PUT or PATCH"),
            };
            let replicas = new_view["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Err(invalid_scale(&name, replicas));
            }
            let mut next = current.clone();
            match info.custom.and_then(|c| c.scale.as_ref()) {
                Some(paths) => set_path(&mut next, &paths.spec_replicas, json!(replicas)),
                None => next["spec"]["replicas"] = json!(replicas),
            }
            // A resourceVersion in the Scale pins the write, as on the object itself — but
            // only one the client sent, not the one a patch inherits from the live object.
            let pinned = match &patch {
                Some((kind, body)) => patch_sets_resource_version(*kind, body),
                None => true,
            };
            match object::resource_version(&new_view).filter(|_| pinned) {
                Some(rv) => object::meta_mut(&mut next).insert("resourceVersion".into(), json!(rv)),
                None => object::meta_mut(&mut next).remove("resourceVersion"),
            };
            Ok(next)
        })
        .await?;
    Ok(respond(&req, StatusCode::OK, &scale_of(info, &written.object), &written.warnings))
}

/// PUT bodies of the scale subresource are Scale objects, not the parent kind.
fn decode_body_raw(req: &ApiRequest) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    decode_options_body(req, "Scale")
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

/// POST pods/{name}/binding: sets `spec.nodeName` once.
pub async fn binding(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let body = decode_body(&req).await?;
    let name = req.target.name.clone().expect("routed with a name");
    let invalid_binding = |reason: &str, message: String| ApiError::Invalid {
        qualified_kind: "Binding".into(),
        name: name.clone(),
        group: String::new(),
        kind: "Binding".into(),
        causes: vec![Cause { reason: reason.into(), message, field: "target.name".into() }],
    };
    let node = body["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(String::from)
        .ok_or_else(|| invalid_binding("FieldValueRequired", "target.name: Required value".into()))?;
    // The pod is written without re-validating it (below), so the one field the binding
    // brings is checked here.
    if let Some(problem) = crate::resource::validate::dns1123_subdomain_errors(&node).into_iter().next() {
        return Err(invalid_binding("FieldValueInvalid", format!("target.name: Invalid value: {node:?}: {problem}")));
    }
    let info = req.target.info.storage();
    let opts = WriteOptions { trusted: true, ..req.query.write_options()? };
    let now = object::timestamp(chrono::Utc::now());
    state
        .registry
        .modify(info, req.target.namespace.as_deref(), &name, Part::Whole, &opts, |current| {
            if let Some(uid) = body["metadata"]["uid"].as_str() {
                if object::meta_str(current, "uid") != Some(uid) {
                    return Err(ApiError::Conflict {
                        subject: Subject { group: String::new(), kind: "pods".into(), name: name.clone() },
                        message: "the UID in the binding does not match the pod's".into(),
                    });
                }
            }
            if object::is_deleting(current) {
                return Err(ApiError::Conflict {
                    subject: Subject { group: String::new(), kind: "pods".into(), name: name.clone() },
                    message: "pod is being deleted, cannot be assigned to a host".into(),
                });
            }
            if let Some(bound) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::Conflict {
                    subject: Subject { group: String::new(), kind: "pods".into(), name: name.clone() },
                    message: format!("pod {name} is already assigned to node \"{bound}\""),
                });
            }
            let mut next = current.clone();
            // Not pinned to the version read: a concurrent write (a status update, an
            // Event-driven patch) must make `modify` re-run these checks on the new
            // version, not fail the bind with 409 as kube-apiserver's binding never does.
            object::meta_mut(&mut next).remove("resourceVersion");
            next["spec"]["nodeName"] = json!(node);
            let conditions = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
            );
            next["status"]["conditions"] = json!(conditions);
            Ok(next)
        })
        .await?;
    Ok(json_response(StatusCode::CREATED, &success(201), &[]))
}

/// The container a log, exec or attach request means: the named one, the default-container annotation,
/// or the only one.
pub(super) fn pod_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = object::name(pod).unwrap_or_default();
    let names: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    if let Some(c) = requested.filter(|c| !c.is_empty()) {
        return if names.contains(&c) {
            Ok(c.to_string())
        } else {
            Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}")))
        };
    }
    if let Some(d) =
        object::string_map(pod["metadata"].get("annotations")).get(well_known::ANNOTATION_DEFAULT_CONTAINER)
    {
        return Ok(d.clone());
    }
    let regular: Vec<&str> =
        pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    match regular.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            regular.join(" ")
        ))),
    }
}

/// The address of the agent running `pod` (`unscheduled`: the error when it has no node).
pub(super) async fn pod_agent(state: &ApiState, pod: &Value, unscheduled: &str) -> Result<(String, i64), ApiError> {
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(unscheduled.to_string()));
    };
    let nodes = resource::find("", "v1", "nodes").expect("served");
    let node = state.registry.get(nodes, None, node_name, false).await?;
    let (host, port) = object::agent_address(&node)
        .ok_or_else(|| ApiError::BadRequest(format!("node {node_name} has no address to reach its agent")))?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok((host, port))
}

/// GET pods/{name}/log, proxied to the pod's agent.
pub async fn log(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let name = req.target.name.clone().expect("routed with a name");
    let ns = req.target.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = state.registry.get(req.target.info.storage(), Some(&ns), &name, true).await?;
    let container = pod_container(&pod, req.query.get("container"))?;
    let (host, port) = pod_agent(
        state,
        &pod,
        &format!("container \"{container}\" in pod \"{name}\" is waiting to start: pod is not scheduled"),
    )
    .await?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    let query = {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        for p in ["follow", "tailLines", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes"] {
            if let Some(v) = req.query.get(p) {
                params.append_pair(p, v);
            }
        }
        params.finish()
    };
    let path = format!("/containerLogs/{ns}/{name}/{container}?{query}");
    let url = format!("{}://{host}:{port}{path}", state.agents.scheme());
    let mut sender = state.agents.connect(&host, port).await.map_err(ApiError::Internal)?;
    let request = axum::http::Request::get(&path)
        .header(axum::http::header::HOST, format!("{host}:{port}"))
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(format!("agent request: {e}")))?;
    let upstream = sender.send_request(request).await.map_err(|e| ApiError::Internal(format!("Get \"{url}\": {e}")))?;
    let status = upstream.status();
    if !status.is_success() {
        let text = upstream.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&text).trim().to_string();
        return Err(if status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST {
            ApiError::BadRequest(message)
        } else {
            ApiError::Internal(format!("agent on {node_name} answered {status}: {message}"))
        });
    }
    let body = Body::new(upstream.into_body().map_err(std::io::Error::other));
    Ok(body_response(StatusCode::OK, "text/plain", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_views_and_selectors() {
        let d = json!({"metadata": {"name": "web", "resourceVersion": "5"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}});
        let s = scale_of(resource::find("apps", "v1", "deployments").unwrap(), &d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
    }

    #[test]
    fn log_container_choice() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert!(pod_container(&pod, None).unwrap_err().to_string().contains("choose one of: [a b]"));
        assert_eq!(pod_container(&pod, Some("b")).unwrap(), "b");
        assert!(pod_container(&pod, Some("zz")).is_err());
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10333}}}});
        assert_eq!(object::agent_address(&node), Some(("127.0.0.5".into(), 10333)));
    }
}
