//! The Endpoints controller (and, through [`super::endpointslices`], the EndpointSlice
//! controller's work): for every Service with a selector, an `Endpoints` object of
//! the same name lists the matching pods' addresses — ready ones under `addresses`, the
//! rest under `notReadyAddresses` — with the Service's ports resolved against each pod
//! (a named `targetPort` is looked up in the pod's container ports).
//!
//! It follows pod, Service and Endpoints changes through the shared informers (no watches
//! of its own), recomputes the Endpoints of the namespaces that changed, and writes only
//! what differs, through the API, pinned to the resourceVersion it read. Endpoints it
//! manages carry the `endpoints.kubernetes.io/last-change-trigger-time` annotation, as
//! Kubernetes'; those whose Service is gone are deleted.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::model::well_known;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::registry::object;
use crate::tasks::context::TaskContext;
use crate::tasks::sync_error::is_status;
use crate::tasks::workqueue::Change;

pub const TRIGGER_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Changes arriving within this window are handled together.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Full recomputation, in case a notification was lost.
const RESYNC_EVERY: Duration = Duration::from_secs(10);

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The container port a Service's `targetPort` means for this pod.
fn resolve_target_port(pod: &Pod, svc_port: &ServicePort) -> Option<i32> {
    match &svc_port.target_port {
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol(svc_port)
                })
                .map(|p| p.container_port),
        },
        None => Some(svc_port.port),
    }
}

fn protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

/// The ports of one endpoint: (Service port name, target port, protocol) per Service port.
pub type PortKey = Vec<(String, i32, String)>;

/// One pod a Service selects, with what both Endpoints and EndpointSlices say of it.
pub struct Selected<'a> {
    pub pod: &'a Pod,
    pub ip: &'a str,
    pub ports: PortKey,
    /// The pod is Ready (or the Service publishes not-ready addresses).
    pub ready: bool,
    /// The pod is being deleted (Endpoints leave it out; EndpointSlices keep it, marked).
    pub terminating: bool,
    /// Its hostname under the Service (`spec.hostname` when `spec.subdomain` names it).
    pub hostname: Option<String>,
}

/// The pods `svc` selects (pure), each with the Service's ports resolved against it;
/// `None`: the Service has no selector (its endpoints are written by hand). Pods without
/// an IP, finished pods and pods that have none of the Service's ports are left out.
pub fn selected_pods<'a>(svc: &Service, pods: &[&'a Pod]) -> Option<Vec<Selected<'a>>> {
    let selector = selector(svc)?;
    let spec = svc.spec.as_ref()?;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let svc_ports: &[ServicePort] = spec.ports.as_deref().unwrap_or_default();
    let svc_name = svc.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for pod in pods.iter().copied() {
        let labels = pod.labels();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let status = pod.status.as_ref();
        if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(ip) = status.and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty()) else { continue };
        let ports: PortKey = svc_ports
            .iter()
            .filter_map(|p| {
                let port = resolve_target_port(pod, p)?;
                Some((p.name.clone().unwrap_or_default(), port, protocol(p).to_string()))
            })
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue; // none of the Service's ports exist on this pod
        }
        let hostname =
            pod.spec.as_ref().filter(|s| s.subdomain.as_deref() == Some(svc_name)).and_then(|s| s.hostname.clone());
        out.push(Selected {
            pod,
            ip,
            ports,
            ready: is_ready(pod) || publish_not_ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            hostname,
        });
    }
    Some(out)
}

/// A reference to `pod` (an endpoint's `targetRef`).
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The `subsets` the Service's Endpoints should have (pure). `None`: not managed here
/// (a Service without a selector has hand-written Endpoints).
pub fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Option<Vec<EndpointSubset>> {
    // Subsets group addresses by their exact port list, as Kubernetes repacks them.
    let mut groups: BTreeMap<PortKey, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for selected in selected_pods(svc, pods)?.into_iter().filter(|s| !s.terminating) {
        let pod_spec = selected.pod.spec.as_ref();
        let address = EndpointAddress {
            ip: selected.ip.to_string(),
            hostname: selected.hostname,
            node_name: pod_spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            target_ref: Some(pod_reference(selected.pod)),
        };
        let group = groups.entry(selected.ports).or_default();
        if selected.ready {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    let sorted = |mut v: Vec<EndpointAddress>| {
        v.sort_by(|a, b| {
            let name = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|r| r.name.clone());
            (&a.ip, name(a)).cmp(&(&b.ip, name(b)))
        });
        Some(v).filter(|v| !v.is_empty())
    };
    Some(
        groups
            .into_iter()
            .map(|(ports, (ready, not_ready))| {
                let ports: Vec<EndpointPort> = ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: Some(name).filter(|n| !n.is_empty()),
                        port,
                        protocol: Some(protocol),
                        app_protocol: None,
                    })
                    .collect();
                EndpointSubset {
                    addresses: sorted(ready),
                    not_ready_addresses: sorted(not_ready),
                    ports: Some(ports).filter(|p| !p.is_empty()),
                }
            })
            .collect(),
    )
}

/// The labels an Endpoints object gets from its Service.
pub fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(well_known::LABEL_SERVICE_HEADLESS.into(), String::new());
    }
    labels
}

fn is_managed(e: &Endpoints) -> bool {
    e.annotations().contains_key(TRIGGER_ANNOTATION)
}

/// What the controller reads: the shared informers' caches.
struct Caches {
    pods: Store<Pod>,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<k8s_openapi::api::discovery::v1::EndpointSlice>,
}

fn in_namespace<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>, ns: &str) -> Vec<Arc<K>> {
    store.state().into_iter().filter(|o| o.meta().namespace.as_deref() == Some(ns)).collect()
}

/// Brings one namespace's Endpoints and EndpointSlices in line with its Services and pods.
async fn sync_namespace(ctx: &TaskContext, caches: &Caches, ns: &str) {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let services = in_namespace(&caches.services, ns);
    let existing = in_namespace(&caches.endpoints, ns);
    let with_selector: Vec<&Arc<Service>> = services.iter().filter(|s| selector(s).is_some()).collect();
    let pods = if with_selector.is_empty() { Vec::new() } else { in_namespace(&caches.pods, ns) };
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let slices = in_namespace(&caches.slices, ns);
    super::endpointslices::sync_namespace(ctx, &services, &pod_refs, &slices, ns).await;
    let mut wanted = HashSet::new();
    for svc in with_selector {
        let name = svc.name_any();
        wanted.insert(name.clone());
        let Some(subsets) = desired_subsets(svc, &pod_refs) else { continue };
        let labels = desired_labels(svc);
        let current = existing.iter().find(|e| e.metadata.name.as_deref() == Some(name.as_str()));
        let up_to_date = current.is_some_and(|e| {
            e.subsets.as_deref().unwrap_or_default() == subsets.as_slice() && *e.labels() == labels && is_managed(e)
        });
        if up_to_date {
            continue;
        }
        let now = object::timestamp(chrono::Utc::now());
        // Keep the annotations others put there.
        let mut annotations = current.map(|c| c.annotations().clone()).unwrap_or_default();
        annotations.insert(TRIGGER_ANNOTATION.into(), now);
        let desired = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: Some(annotations),
                // Pinned to the version read.
                resource_version: current.and_then(|c| c.metadata.resource_version.clone()),
                ..Default::default()
            },
            subsets: Some(subsets),
        };
        let result = match current {
            Some(_) => api.replace(&name, &PostParams::default(), &desired).await,
            None => api.create(&PostParams::default(), &desired).await,
        };
        record(ctx, result);
    }
    for stale in existing.iter().filter(|e| is_managed(e) && !wanted.contains(&e.name_any())) {
        let preconditions = Preconditions { uid: stale.metadata.uid.clone(), resource_version: None };
        let params = DeleteParams { preconditions: Some(preconditions), ..Default::default() };
        record(ctx, api.delete(&stale.name_any(), &params).await);
    }
}

pub(super) fn record<T>(ctx: &TaskContext, result: Result<T, kube::Error>) {
    match result {
        Ok(_) => ctx.status.record(true),
        // Changed, created or deleted meanwhile: the event brings the namespace back.
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => {
            ctx.status.record(false);
            tracing::debug!(error = %e, "endpoints write failed");
        }
    }
}

/// The namespaces whose Endpoints need a look, filled by the informers' handlers.
#[derive(Default)]
struct Dirty {
    namespaces: Mutex<BTreeSet<String>>,
    /// Every namespace with Services or Endpoints (at start, after a re-list, on resync).
    all: std::sync::atomic::AtomicBool,
    changed: Notify,
}

impl Dirty {
    fn mark<K: Resource>(&self, change: Change<'_, K>) {
        match change {
            Change::Object { obj, .. } => {
                if let Some(ns) = &obj.meta().namespace {
                    self.namespaces.lock().unwrap().insert(ns.clone());
                }
            }
            Change::Resynced => self.all.store(true, std::sync::atomic::Ordering::SeqCst),
        }
        self.changed.notify_one();
    }

    /// The namespaces to sync now.
    fn take(&self, caches: &Caches) -> BTreeSet<String> {
        let mut namespaces = std::mem::take(&mut *self.namespaces.lock().unwrap());
        if self.all.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let services = caches.services.state().into_iter().filter_map(|s| s.metadata.namespace.clone());
            let endpoints = caches.endpoints.state().into_iter().filter_map(|e| e.metadata.namespace.clone());
            let slices = caches.slices.state().into_iter().filter_map(|e| e.metadata.namespace.clone());
            namespaces.extend(services.chain(endpoints).chain(slices));
        }
        namespaces
    }
}

fn subscribe<K>(ctx: &TaskContext, dirty: &Arc<Dirty>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let dirty = dirty.clone();
    ctx.informers.subscribe(move |change: Change<'_, K>| dirty.mark(change))
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let dirty = Arc::new(Dirty::default());
    let caches = Caches {
        pods: subscribe(&ctx, &dirty),
        services: subscribe(&ctx, &dirty),
        endpoints: subscribe(&ctx, &dirty),
        slices: subscribe(&ctx, &dirty),
    };
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    dirty.all.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.tick().await;
    loop {
        for ns in dirty.take(&caches) {
            sync_namespace(&ctx, &caches, &ns).await;
        }
        // Wait for the next change (or the resync), then gather what else arrives.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = resync.tick() => dirty.all.store(true, std::sync::atomic::Ordering::SeqCst),
            _ = dirty.changed.notified() => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(DEBOUNCE) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// [`desired_subsets`] of JSON objects, as JSON.
    fn subsets(svc: &Value, pods: &[&Value]) -> Option<Vec<Value>> {
        let pods: Vec<Pod> = pods.iter().map(|p| serde_json::from_value((*p).clone()).unwrap()).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let subsets = desired_subsets(&service(svc), &refs)?;
        Some(subsets.into_iter().map(|s| serde_json::to_value(s).unwrap()).collect())
    }

    fn service(svc: &Value) -> Service {
        serde_json::from_value(svc.clone()).unwrap()
    }

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
        let subsets = subsets(&svc(json!("web")), &[&a, &b, &c]).unwrap();
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
        let subsets = subsets(&svc(json!("web")), &[&other, &gone, &pending, &done, &missing_port]).unwrap();
        assert!(subsets.is_empty(), "{subsets:?}");
    }

    #[test]
    fn numeric_and_default_target_ports_and_selectorless_services() {
        let a = pod("a", "10.0.0.2", true, "x", 1);
        let s = subsets(&svc(json!(8443)), &[&a]).unwrap();
        assert_eq!(s[0]["ports"][0]["port"], 8443);
        let mut no_target = svc(json!(null));
        no_target["spec"]["ports"][0].as_object_mut().unwrap().remove("targetPort");
        assert_eq!(subsets(&no_target, &[&a]).unwrap()[0]["ports"][0]["port"], 80);
        let mut manual = svc(json!(80));
        manual["spec"].as_object_mut().unwrap().remove("selector");
        assert!(subsets(&manual, &[&a]).is_none());
        let mut headless = svc(json!(80));
        headless["spec"]["clusterIP"] = json!("None");
        assert_eq!(
            desired_labels(&service(&headless)).get("service.kubernetes.io/headless").map(String::as_str),
            Some("")
        );
    }
}
