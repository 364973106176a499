//! EndpointSlices (discovery.k8s.io/v1) of Services with selectors, as Kubernetes'
//! EndpointSlice controller writes them, from the same pod selection as the Endpoints
//! ([`super::endpoints::selected_pods`]); the Endpoints controller's loop calls
//! [`sync_namespace`] for every namespace it syncs.
//!
//! Each slice holds endpoints with one port list (pods whose named target ports resolve
//! differently land in different slices), at most [`MAX_ENDPOINTS_PER_SLICE`] of them. An
//! endpoint is one pod: its address, `conditions` (`ready` — Ready and not terminating —,
//! `serving` — Ready —, `terminating`), `nodeName`, `targetRef` and hostname. A Service
//! selecting nothing keeps one empty slice, as Kubernetes' does. Slices carry
//! `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by` and the Service's
//! labels, are owned by the Service and named `{service}-{random}`; only slices managed
//! here are changed, and identical ones are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::ResourceExt;

use super::endpoints::{desired_labels, pod_reference, selected_pods, PortKey};
use crate::tasks::context::TaskContext;

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The controller's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What one slice holds (pure content: no name, no version).
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// The slices a Service should have (pure); `None`: not managed here (no selector).
pub fn desired_slices(svc: &Service, pods: &[&Pod]) -> Option<Vec<SliceContent>> {
    let app_protocols: BTreeMap<String, String> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.app_protocol.clone()?)))
        .collect();
    let mut groups: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
    for s in selected_pods(svc, pods)? {
        if s.ip.parse::<std::net::Ipv4Addr>().is_err() {
            continue; // the slices here are IPv4
        }
        let endpoint = Endpoint {
            addresses: vec![s.ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(s.ready && !s.terminating),
                serving: Some(s.ready),
                terminating: Some(s.terminating),
            }),
            hostname: s.hostname,
            node_name: s.pod.spec.as_ref().and_then(|p| p.node_name.clone()).filter(|n| !n.is_empty()),
            target_ref: Some(pod_reference(s.pod)),
            ..Default::default()
        };
        groups.entry(s.ports).or_default().push(endpoint);
    }
    let mut slices = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| {
            let name = |e: &Endpoint| e.target_ref.as_ref().and_then(|r| r.name.clone());
            (&a.addresses, name(a)).cmp(&(&b.addresses, name(b)))
        });
        let ports: Vec<EndpointPort> = ports
            .into_iter()
            .map(|(name, port, protocol)| EndpointPort {
                app_protocol: app_protocols.get(&name).cloned(),
                name: Some(name),
                port: Some(port),
                protocol: Some(protocol),
            })
            .collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push(SliceContent { ports: ports.clone(), endpoints: chunk.to_vec() });
        }
    }
    if slices.is_empty() {
        // A placeholder, so that consumers can tell "no endpoints" from "not synced yet".
        slices.push(SliceContent { ports: Vec::new(), endpoints: Vec::new() });
    }
    Some(slices)
}

/// The content of an existing slice.
fn content_of(slice: &EndpointSlice) -> SliceContent {
    SliceContent { ports: slice.ports.clone().unwrap_or_default(), endpoints: slice.endpoints.clone() }
}

/// How to get from `existing` slices to `desired` contents (pure), touching as few as
/// possible: slices already right stay; the rest are rewritten in place, then created or
/// deleted. Returns (slices to rewrite with their new content, contents to create, slices
/// to delete), by index into `existing`.
pub fn slice_changes(
    existing: &[SliceContent],
    desired: &[SliceContent],
) -> (Vec<(usize, SliceContent)>, Vec<SliceContent>, Vec<usize>) {
    let mut unmatched_existing: Vec<usize> = (0..existing.len()).collect();
    let mut unmatched_desired: Vec<&SliceContent> = Vec::new();
    for want in desired {
        match unmatched_existing.iter().position(|&i| existing[i] == *want) {
            Some(at) => {
                unmatched_existing.remove(at);
            }
            None => unmatched_desired.push(want),
        }
    }
    let rewrite: Vec<(usize, SliceContent)> =
        unmatched_existing.iter().zip(&unmatched_desired).map(|(&i, want)| (i, (*want).clone())).collect();
    let create = unmatched_desired.iter().skip(rewrite.len()).map(|c| (*c).clone()).collect();
    let delete = unmatched_existing.iter().skip(rewrite.len()).copied().collect();
    (rewrite, create, delete)
}

fn is_managed(slice: &EndpointSlice) -> bool {
    slice.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

/// The labels of `svc`'s slices.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = desired_labels(svc);
    labels.insert(LABEL_SERVICE_NAME.into(), svc.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn slice(svc: &Service, ns: &str, base: Option<&EndpointSlice>, content: SliceContent) -> EndpointSlice {
    let name = svc.name_any();
    EndpointSlice {
        metadata: ObjectMeta {
            name: base.and_then(|b| b.metadata.name.clone()),
            generate_name: base.is_none().then(|| format!("{name}-")),
            namespace: Some(ns.to_string()),
            labels: Some(slice_labels(svc)),
            // Keep the annotations others put there.
            annotations: base.and_then(|b| b.metadata.annotations.clone()),
            owner_references: Some(vec![owner(svc)]),
            // Pinned to the version read.
            resource_version: base.and_then(|b| b.metadata.resource_version.clone()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: content.endpoints,
        ports: Some(content.ports).filter(|p| !p.is_empty()),
    }
}

/// Brings one namespace's EndpointSlices in line with its Services and pods.
pub async fn sync_namespace(
    ctx: &TaskContext,
    services: &[Arc<Service>],
    pods: &[&Pod],
    slices: &[Arc<EndpointSlice>],
    ns: &str,
) {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut wanted: Vec<String> = Vec::new();
    for svc in services {
        let Some(desired) = desired_slices(svc, pods) else { continue };
        let name = svc.name_any();
        wanted.push(name.clone());
        let mut existing: Vec<&Arc<EndpointSlice>> =
            slices.iter().filter(|s| is_managed(s) && s.labels().get(LABEL_SERVICE_NAME) == Some(&name)).collect();
        existing.sort_by_key(|s| s.name_any());
        let labels = slice_labels(svc);
        let contents: Vec<SliceContent> = existing.iter().map(|s| content_of(s)).collect();
        let (mut rewrite, create, delete) = slice_changes(&contents, &desired);
        // Slices whose labels or owner drifted are rewritten too, with their content.
        for (i, s) in existing.iter().enumerate() {
            let drifted = *s.labels() != labels || s.metadata.owner_references.as_deref() != Some(&[owner(svc)][..]);
            if drifted && !rewrite.iter().any(|(r, _)| *r == i) && !delete.contains(&i) {
                rewrite.push((i, contents[i].clone()));
            }
        }
        for (i, content) in rewrite {
            let base = existing[i];
            let result =
                api.replace(&base.name_any(), &PostParams::default(), &slice(svc, ns, Some(base), content)).await;
            super::endpoints::record(ctx, result);
        }
        for content in create {
            let result = api.create(&PostParams::default(), &slice(svc, ns, None, content)).await;
            super::endpoints::record(ctx, result);
        }
        for i in delete {
            super::endpoints::record(ctx, delete_slice(&api, existing[i]).await);
        }
    }
    for stale in slices.iter().filter(|s| is_managed(s)) {
        let service = stale.labels().get(LABEL_SERVICE_NAME).cloned().unwrap_or_default();
        if !wanted.contains(&service) {
            super::endpoints::record(ctx, delete_slice(&api, stale).await);
        }
    }
}

async fn delete_slice(api: &Api<EndpointSlice>, slice: &EndpointSlice) -> Result<(), kube::Error> {
    let preconditions = Preconditions { uid: slice.metadata.uid.clone(), resource_version: None };
    let params = DeleteParams { preconditions: Some(preconditions), ..Default::default() };
    api.delete(&slice.name_any(), &params).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, deleting: bool) -> Pod {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(p).unwrap()
    }

    fn service() -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}]}}))
        .unwrap()
    }

    #[test]
    fn endpoints_carry_ready_serving_and_terminating() {
        let pods =
            [pod("a", "10.0.0.1", true, false), pod("b", "10.0.0.2", false, false), pod("c", "10.0.0.3", true, true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let slices = desired_slices(&service(), &refs).unwrap();
        assert_eq!(slices.len(), 1);
        let port = &slices[0].ports[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.app_protocol.as_deref()),
            (Some("http"), Some(8080), Some("http"))
        );
        let conditions: Vec<(String, bool, bool, bool)> = slices[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap();
                (e.addresses[0].clone(), c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect();
        assert_eq!(
            conditions,
            vec![
                ("10.0.0.1".into(), true, true, false),
                ("10.0.0.2".into(), false, false, false),
                ("10.0.0.3".into(), false, true, true),
            ]
        );
        assert_eq!(slices[0].endpoints[0].target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
        assert_eq!(slices[0].endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints_and_none_is_one_empty_slice() {
        let pods: Vec<Pod> = (0..250)
            .map(|i| pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 200, i % 200 + 1), true, false))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let sizes: Vec<usize> = desired_slices(&service(), &refs).unwrap().iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let empty = desired_slices(&service(), &[]).unwrap();
        assert_eq!(empty, vec![SliceContent { ports: vec![], endpoints: vec![] }]);
        let mut manual = service();
        manual.spec.as_mut().unwrap().selector = None;
        assert!(desired_slices(&manual, &refs).is_none());
    }

    #[test]
    fn changes_keep_what_is_right_and_reuse_slices_before_creating() {
        let c = |n: usize| SliceContent {
            ports: vec![],
            endpoints: vec![Endpoint { addresses: vec![format!("10.0.0.{n}")], ..Default::default() }],
        };
        assert_eq!(slice_changes(&[c(1), c(2)], &[c(2), c(1)]), (vec![], vec![], vec![]));
        assert_eq!(slice_changes(&[c(1), c(2)], &[c(1), c(3), c(4)]), (vec![(1, c(3))], vec![c(4)], vec![]));
        assert_eq!(slice_changes(&[c(1), c(2), c(3)], &[c(3)]), (vec![], vec![], vec![0, 1]));
    }
}
