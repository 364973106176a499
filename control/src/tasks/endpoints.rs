//! The Endpoints controller: for every Service with a selector, an `Endpoints` object of
//! the same name lists the matching pods' addresses — ready ones under `addresses`, the
//! rest under `notReadyAddresses` — with the Service's ports resolved against each pod
//! (a named `targetPort` is looked up in the pod's container ports).
//!
//! It follows pod and service changes through this server's watch cache (no extra store
//! watches), recomputes the Endpoints of the namespaces that changed, and writes only what
//! differs, pinned to the resourceVersion it read. Endpoints it manages carry the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation, as Kubernetes'; those
//! whose Service is gone are deleted.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use berth_proto::model::well_known;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::resources::{self, ResourceInfo};
use crate::cache::{Filter, WatchItem};
use crate::registry::{object, DeleteOptions, WriteOptions};
use crate::tasks::context::TaskContext;

pub const TRIGGER_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Changes arriving within this window are handled together.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Full recomputation, in case a notification was lost (a dropped slow watcher).
const RESYNC_EVERY: Duration = Duration::from_secs(10);

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The container port a Service's `targetPort` means for this pod.
fn resolve_target_port(pod: &Value, svc_port: &Value) -> Option<i64> {
    match &svc_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => match name.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"] == name.as_str() && p["protocol"].as_str().unwrap_or("TCP") == protocol(svc_port))
                .and_then(|p| p["containerPort"].as_i64()),
        },
        _ => svc_port["port"].as_i64(),
    }
}

fn protocol(port: &Value) -> &str {
    port["protocol"].as_str().unwrap_or("TCP")
}

/// The `subsets` the Service's Endpoints should have (pure). `None`: not managed here
/// (a Service without a selector has hand-written Endpoints).
pub fn desired_subsets(svc: &Value, pods: &[&Value]) -> Option<Vec<Value>> {
    let selector = object::string_map(svc["spec"].get("selector"));
    if selector.is_empty() {
        return None;
    }
    let publish_not_ready = svc["spec"]["publishNotReadyAddresses"] == true;
    let svc_ports: Vec<&Value> = svc["spec"]["ports"].as_array().into_iter().flatten().collect();
    // Subsets group addresses by their exact port list, as Kubernetes repacks them.
    type PortKey = Vec<(String, i64, String)>;
    let mut groups: BTreeMap<PortKey, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for pod in pods {
        let labels = object::labels(pod);
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) || object::is_deleting(pod) {
            continue;
        }
        if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(ip) = pod["status"]["podIP"].as_str().filter(|ip| !ip.is_empty()) else { continue };
        let ports: PortKey = svc_ports
            .iter()
            .filter_map(|p| {
                let port = resolve_target_port(pod, p)?;
                Some((p["name"].as_str().unwrap_or_default().to_string(), port, protocol(p).to_string()))
            })
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue; // none of the Service's ports exist on this pod
        }
        let mut address = json!({
            "ip": ip,
            "targetRef": {"kind": "Pod", "namespace": object::namespace(pod), "name": object::name(pod),
                          "uid": object::meta_str(pod, "uid")},
        });
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            address["nodeName"] = json!(node);
        }
        let svc_name = object::name(svc).unwrap_or_default();
        if let Some(host) = pod["spec"]["hostname"].as_str() {
            if pod["spec"]["subdomain"] == svc_name {
                address["hostname"] = json!(host);
            }
        }
        let group = groups.entry(ports).or_default();
        if is_ready(pod) || publish_not_ready {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    let sort = |v: &mut Vec<Value>| {
        v.sort_by(|a, b| {
            (a["ip"].as_str(), a["targetRef"]["name"].as_str())
                .cmp(&(b["ip"].as_str(), b["targetRef"]["name"].as_str()))
        })
    };
    Some(
        groups
            .into_iter()
            .map(|(ports, (mut ready, mut not_ready))| {
                sort(&mut ready);
                sort(&mut not_ready);
                let mut subset = Map::new();
                if !ready.is_empty() {
                    subset.insert("addresses".into(), json!(ready));
                }
                if !not_ready.is_empty() {
                    subset.insert("notReadyAddresses".into(), json!(not_ready));
                }
                let ports: Vec<Value> = ports
                    .into_iter()
                    .map(|(name, port, protocol)| {
                        let mut p = json!({"port": port, "protocol": protocol});
                        if !name.is_empty() {
                            p["name"] = json!(name);
                        }
                        p
                    })
                    .collect();
                if !ports.is_empty() {
                    subset.insert("ports".into(), json!(ports));
                }
                Value::Object(subset)
            })
            .collect(),
    )
}

/// The labels an Endpoints object gets from its Service.
pub fn desired_labels(svc: &Value) -> BTreeMap<String, String> {
    let mut labels = object::labels(svc);
    if svc["spec"]["clusterIP"] == "None" {
        labels.insert(well_known::LABEL_SERVICE_HEADLESS.into(), String::new());
    }
    labels
}

fn info(plural: &str) -> &'static ResourceInfo {
    resources::find("", "v1", plural).expect("served")
}

async fn list(
    ctx: &TaskContext,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Vec<std::sync::Arc<Value>>, ApiError> {
    let info = info(plural);
    let filter = Filter { resource: info.plural, namespace: namespace.map(String::from), ..Default::default() };
    Ok(ctx.cache.get(info).list(&filter, 0).await?.0)
}

/// Brings one namespace's Endpoints in line with its Services and pods.
async fn sync_namespace(ctx: &TaskContext, ns: &str) -> Result<(), ApiError> {
    let services = list(ctx, "services", Some(ns)).await?;
    let existing = list(ctx, "endpoints", Some(ns)).await?;
    let managed = |e: &Value| object::string_map(e["metadata"].get("annotations")).contains_key(TRIGGER_ANNOTATION);
    let with_selector: Vec<_> =
        services.iter().filter(|s| !object::string_map(s["spec"].get("selector")).is_empty()).collect();
    let pods = if with_selector.is_empty() { Vec::new() } else { list(ctx, "pods", Some(ns)).await? };
    let pod_refs: Vec<&Value> = pods.iter().map(|p| p.as_ref()).collect();
    let mut wanted = HashSet::new();
    for svc in with_selector {
        let name = object::name(svc).unwrap_or_default().to_string();
        wanted.insert(name.clone());
        let Some(subsets) = desired_subsets(svc, &pod_refs) else { continue };
        let labels = desired_labels(svc);
        let current = existing.iter().find(|e| object::name(e) == Some(name.as_str()));
        let up_to_date = current.is_some_and(|e| {
            let have = e["subsets"].as_array().cloned().unwrap_or_default();
            have == subsets && object::labels(e) == labels && managed(e)
        });
        if up_to_date {
            continue;
        }
        let now = object::timestamp(chrono::Utc::now());
        let mut desired = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "annotations": {TRIGGER_ANNOTATION: now}},
            "subsets": subsets,
        });
        let result = match current {
            Some(cur) => {
                // Keep what others put there; pinned to the version read.
                if let Some(a) = cur["metadata"]["annotations"].as_object() {
                    for (k, v) in a {
                        desired["metadata"]["annotations"]
                            .as_object_mut()
                            .unwrap()
                            .entry(k.clone())
                            .or_insert(v.clone());
                    }
                    desired["metadata"]["annotations"][TRIGGER_ANNOTATION] = json!(now);
                }
                desired["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                ctx.registry
                    .update(
                        info("endpoints"),
                        Some(ns),
                        &name,
                        desired,
                        crate::registry::Part::Main,
                        &WriteOptions::default(),
                    )
                    .await
                    .map(|_| ())
            }
            None => {
                ctx.registry.create(info("endpoints"), Some(ns), desired, &WriteOptions::default()).await.map(|_| ())
            }
        };
        record(ctx, result);
    }
    for stale in existing.iter().filter(|e| managed(e) && !wanted.contains(object::name(e).unwrap_or_default())) {
        let opts =
            DeleteOptions { precondition_uid: object::meta_str(stale, "uid").map(String::from), ..Default::default() };
        let name = object::name(stale).unwrap_or_default();
        record(ctx, ctx.registry.delete(info("endpoints"), Some(ns), name, &opts).await.map(|_| ()));
    }
    Ok(())
}

fn record(ctx: &TaskContext, result: Result<(), ApiError>) {
    match result {
        Ok(()) => ctx.status.record(true),
        Err(ApiError::Conflict { .. } | ApiError::AlreadyExists(_) | ApiError::NotFound(_)) => {}
        Err(e) => {
            ctx.status.record(false);
            tracing::debug!(error = %e, "endpoints write failed");
        }
    }
}

/// Namespaces an event touches.
fn namespace_of(item: &WatchItem) -> Option<String> {
    match item {
        WatchItem::Event(_, obj) => object::namespace(obj).map(String::from),
        WatchItem::Bookmark(_) => None,
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    'subscribe: loop {
        let mut subs = Vec::new();
        for plural in ["pods", "services", "endpoints"] {
            let cacher = ctx.cache.get(info(plural));
            let filter = Filter { resource: info(plural).plural, ..Default::default() };
            match tokio::select! { _ = cancel.cancelled() => return, s = cacher.watch(filter, Some(cacher.revision()), false) => s }
            {
                Ok(s) => subs.push(s),
                Err(e) => {
                    tracing::debug!(error = %e, "endpoints controller subscribing");
                    tokio::select! { _ = cancel.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                    continue 'subscribe;
                }
            }
        }
        let mut all = true;
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.tick().await;
        loop {
            if all {
                dirty.extend(
                    list(&ctx, "services", None)
                        .await
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|s| object::namespace(s).map(String::from)),
                );
                dirty.extend(
                    list(&ctx, "endpoints", None)
                        .await
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|s| object::namespace(s).map(String::from)),
                );
                all = false;
            }
            for ns in std::mem::take(&mut dirty) {
                if let Err(e) = sync_namespace(&ctx, &ns).await {
                    tracing::debug!(namespace = ns, error = %e, "endpoints sync");
                    dirty.insert(ns);
                }
            }
            // Wait for the next change (or the resync), then gather what else arrives.
            let [pods, services, endpoints] = &mut subs[..] else { unreachable!("three subscriptions") };
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = resync.tick() => { all = true; continue }
                e = pods.events.recv() => e,
                e = services.events.recv() => e,
                e = endpoints.events.recv() => e,
            };
            let Some(first) = first else { continue 'subscribe };
            dirty.extend(namespace_of(&first));
            let deadline = tokio::time::Instant::now() + DEBOUNCE;
            while let Ok(Some(item)) = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    e = pods.events.recv() => e,
                    e = services.events.recv() => e,
                    e = endpoints.events.recv() => e,
                }
            })
            .await
            {
                dirty.extend(namespace_of(&item));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn svc(target: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": target}]}})
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_ports() {
        let a = pod("a", "10.0.0.2", true, "web", 8080);
        let b = pod("b", "10.0.0.1", false, "web", 8080);
        let c = pod("c", "10.0.0.3", true, "web", 9090);
        let subsets = desired_subsets(&svc(json!("web")), &[&a, &b, &c]).unwrap();
        assert_eq!(subsets.len(), 2, "two port sets: {subsets:?}");
        let s8080 = subsets.iter().find(|s| s["ports"][0]["port"] == 8080).unwrap();
        assert_eq!(s8080["addresses"][0]["ip"], "10.0.0.2");
        assert_eq!(s8080["notReadyAddresses"][0]["ip"], "10.0.0.1");
        assert_eq!(s8080["ports"][0], json!({"name": "http", "port": 8080, "protocol": "TCP"}));
        assert_eq!(s8080["addresses"][0]["targetRef"]["name"], "a");
        let s9090 = subsets.iter().find(|s| s["ports"][0]["port"] == 9090).unwrap();
        assert_eq!(s9090["addresses"][0]["nodeName"], "n1");
    }

    #[test]
    fn unmatched_terminating_ipless_and_finished_pods_are_left_out() {
        let mut other = pod("o", "10.0.0.4", true, "web", 8080);
        other["metadata"]["labels"]["app"] = json!("db");
        let mut gone = pod("g", "10.0.0.5", true, "web", 8080);
        gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut pending = pod("p", "", false, "web", 8080);
        pending["status"]["podIP"] = Value::Null;
        let mut done = pod("d", "10.0.0.6", true, "web", 8080);
        done["status"]["phase"] = json!("Succeeded");
        let missing_port = pod("m", "10.0.0.7", true, "metrics", 9100);
        let subsets = desired_subsets(&svc(json!("web")), &[&other, &gone, &pending, &done, &missing_port]).unwrap();
        assert!(subsets.is_empty(), "{subsets:?}");
    }

    #[test]
    fn numeric_and_default_target_ports_and_selectorless_services() {
        let a = pod("a", "10.0.0.2", true, "x", 1);
        let s = desired_subsets(&svc(json!(8443)), &[&a]).unwrap();
        assert_eq!(s[0]["ports"][0]["port"], 8443);
        let mut no_target = svc(json!(null));
        no_target["spec"]["ports"][0].as_object_mut().unwrap().remove("targetPort");
        assert_eq!(desired_subsets(&no_target, &[&a]).unwrap()[0]["ports"][0]["port"], 80);
        let mut manual = svc(json!(80));
        manual["spec"].as_object_mut().unwrap().remove("selector");
        assert!(desired_subsets(&manual, &[&a]).is_none());
        let mut headless = svc(json!(80));
        headless["spec"]["clusterIP"] = json!("None");
        assert_eq!(desired_labels(&headless).get("service.kubernetes.io/headless").map(String::as_str), Some(""));
    }
}
