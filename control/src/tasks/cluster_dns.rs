//! The `kube-dns` Service in `kube-system` (the address kubelets' `--cluster-dns` names,
//! as kubeadm's CoreDNS add-on installs it): ClusterIP 10.96.0.10, ports `dns` 53/UDP and
//! `dns-tcp` 53/TCP, no selector. Every agent serves cluster DNS on its InternalIP, so the
//! Service's one EndpointSlice lists the Ready nodes' InternalIPs with their `nodeName`,
//! and `internalTrafficPolicy: Local` keeps each pod's queries on its own node (no hop, and
//! a failed node takes down only the DNS of pods that are gone with it).
//!
//! The Service is created when missing and otherwise left as the user keeps it; [`desired`]
//! is the pure decision for the slice, written only when it differs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::endpointslices::LABEL_SERVICE_NAME;
use super::node_lifecycle::{internal_ip, node_is_ready};
use crate::periodic::Every;
use crate::tasks::context::TaskContext;

pub const NAME: &str = "kube-dns";
pub const NAMESPACE: &str = "kube-system";
/// The tenth address of the default service range, as kubeadm reserves it for DNS.
pub const CLUSTER_IP: &str = berth_proto::model::well_known::KUBE_DNS_CLUSTER_IP;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The Service as it is created.
pub fn service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                                "kubernetes.io/cluster-service": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "internalTrafficPolicy": "Local",
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}
    }))
    .expect("a valid Service")
}

/// The Service's EndpointSlice (pure): one endpoint per Ready node with an InternalIP.
pub fn desired(nodes: &[&Node]) -> EndpointSlice {
    let mut endpoints: Vec<discovery::Endpoint> = nodes
        .iter()
        .filter(|n| node_is_ready(n))
        .filter_map(|n| {
            Some(discovery::Endpoint {
                addresses: vec![internal_ip(n)?.parse::<std::net::Ipv4Addr>().ok()?.to_string()],
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: n.metadata.name.clone(),
                ..Default::default()
            })
        })
        .collect();
    endpoints.sort_by(|a, b| a.node_name.cmp(&b.node_name));
    let port = |name: &str, protocol: &str| discovery::EndpointPort {
        name: Some(name.into()),
        port: Some(53),
        protocol: Some(protocol.into()),
        app_protocol: None,
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some([(LABEL_SERVICE_NAME.to_string(), NAME.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Keeps the Service and its EndpointSlice until `cancel`.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let nodes = ctx.informers.store::<Node>();
    let slices_store = ctx.informers.store::<EndpointSlice>();
    let services_store = ctx.informers.store::<Service>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let wanted = {
            let nodes = nodes.state();
            let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
            vec![(NAME.to_string(), desired(&nodes))]
        };
        let pass = async {
            let exists = services_store.state().iter().any(|s| {
                s.metadata.namespace.as_deref() == Some(NAMESPACE) && s.metadata.name.as_deref() == Some(NAME)
            });
            if !exists {
                super::endpoints::record(&ctx, services.create(&PostParams::default(), &service()).await);
            }
            super::kubernetes_service::put_slices(&ctx, &slices, &slices_store.state(), NAMESPACE, NAME, &wanted).await;
        };
        if every.pass(pass).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap()
    }

    #[test]
    fn ready_nodes_with_an_address_serve_dns_for_their_own_pods() {
        let nodes = [
            node("b", "172.31.1.12", "True"),
            node("a", "172.31.1.11", "True"),
            node("c", "172.31.1.13", "False"),
            node("d", "not-an-ip", "True"),
        ];
        let nodes: Vec<&Node> = nodes.iter().collect();
        let slice = desired(&nodes);
        let listed: Vec<(String, String)> =
            slice.endpoints.iter().map(|e| (e.node_name.clone().unwrap(), e.addresses[0].clone())).collect();
        assert_eq!(listed, vec![("a".into(), "172.31.1.11".into()), ("b".into(), "172.31.1.12".into())]);
        assert_eq!(slice.ports.as_ref().unwrap().len(), 2);
        let svc = service();
        assert_eq!(svc.spec.as_ref().unwrap().internal_traffic_policy.as_deref(), Some("Local"));
    }
}
