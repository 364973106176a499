//! The `kubernetes` Service in `default`, as kube-apiserver's bootstrap controller and
//! endpoint reconciler keep it: ClusterIP 10.96.0.1 (the service range's first address),
//! port `https` 443, and Endpoints and EndpointSlices listing the API servers whose
//! identity Leases are fresh — so in-cluster clients reach the API through the service
//! proxy, and a server that stops renewing leaves the list.
//!
//! The servers advertise `http://IP:PORT`; servers on different ports (a local cluster's
//! share one address) get one EndpointSlice per port, and one Endpoints subset per port.
//! [`desired`] is the pure decision; the sweep writes only what differs.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_proto::identity::{fresh_api_servers, IDENTITY_NAMESPACE};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::endpointslices::LABEL_SERVICE_NAME;
use crate::periodic::Every;
use crate::tasks::context::TaskContext;

pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";
/// The first address of the default service range (10.96.0.0/12), kept for this Service.
pub const CLUSTER_IP: &str = "10.96.0.1";
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// The API servers' addresses by port (pure): from their advertised `http://IP:PORT` URLs.
pub fn servers_by_port(api_urls: &[String]) -> BTreeMap<u16, Vec<String>> {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for url in api_urls {
        let Ok(uri) = url.parse::<http::Uri>() else { continue };
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else { continue };
        if host.parse::<std::net::Ipv4Addr>().is_ok() {
            by_port.entry(port).or_default().push(host.to_string());
        }
    }
    by_port.values_mut().for_each(|ips| {
        ips.sort();
        ips.dedup();
    });
    by_port
}

/// The Endpoints subsets and the EndpointSlices (name, content) for `by_port` (pure).
pub fn desired(by_port: &BTreeMap<u16, Vec<String>>) -> (Vec<EndpointSubset>, Vec<(String, EndpointSlice)>) {
    let subsets = by_port
        .iter()
        .map(|(port, ips)| EndpointSubset {
            addresses: Some(ips.iter().map(|ip| EndpointAddress { ip: ip.clone(), ..Default::default() }).collect()),
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: i32::from(*port),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
            not_ready_addresses: None,
        })
        .collect();
    let slices = by_port
        .iter()
        .enumerate()
        .map(|(i, (port, ips))| {
            let name = if i == 0 { NAME.to_string() } else { format!("{NAME}-{port}") };
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(NAMESPACE.into()),
                    labels: Some([(LABEL_SERVICE_NAME.to_string(), NAME.to_string())].into()),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: ips
                    .iter()
                    .map(|ip| discovery::Endpoint {
                        addresses: vec![ip.clone()],
                        conditions: Some(discovery::EndpointConditions {
                            ready: Some(true),
                            serving: Some(true),
                            terminating: Some(false),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ports: Some(vec![discovery::EndpointPort {
                    name: Some("https".into()),
                    port: Some(i32::from(*port)),
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            };
            (name, slice)
        })
        .collect();
    (subsets, slices)
}

/// Makes the EndpointSlices of the selector-less Service `namespace/service` exactly
/// `wanted` (name, content): creates and replaces what differs, deletes the Service's
/// other slices. `existing` is the informer's view of all slices.
pub(super) async fn put_slices(
    ctx: &TaskContext,
    api: &Api<EndpointSlice>,
    existing: &[std::sync::Arc<EndpointSlice>],
    namespace: &str,
    service: &str,
    wanted: &[(String, EndpointSlice)],
) {
    let named =
        |m: &ObjectMeta, name: &str| m.namespace.as_deref() == Some(namespace) && m.name.as_deref() == Some(name);
    for (name, slice) in wanted {
        let current = existing.iter().find(|s| named(&s.metadata, name));
        if current.is_some_and(|c| c.endpoints == slice.endpoints && c.ports == slice.ports) {
            continue;
        }
        let mut slice = slice.clone();
        slice.metadata.resource_version = current.and_then(|c| c.metadata.resource_version.clone());
        let result = match current {
            Some(_) => api.replace(name, &PostParams::default(), &slice).await,
            None => api.create(&PostParams::default(), &slice).await,
        };
        super::endpoints::record(ctx, result);
    }
    // Slices no longer wanted (a port no server uses any more).
    for stale in existing.iter().filter(|s| {
        s.metadata.namespace.as_deref() == Some(namespace)
            && s.labels().get(LABEL_SERVICE_NAME).map(String::as_str) == Some(service)
            && !wanted.iter().any(|(n, _)| Some(n.as_str()) == s.metadata.name.as_deref())
    }) {
        let result = api.delete(&stale.name_any(), &Default::default()).await.map(drop);
        super::endpoints::record(ctx, result);
    }
}

/// The API URLs of the servers whose identity Leases (in `leases`) are fresh now.
pub(super) fn fresh_servers(leases: &kube::runtime::reflector::Store<Lease>) -> Vec<String> {
    let identity: Vec<Lease> = leases
        .state()
        .iter()
        .filter(|l| l.metadata.namespace.as_deref() == Some(IDENTITY_NAMESPACE))
        .map(|l| l.as_ref().clone())
        .collect();
    fresh_api_servers(&identity, k8s_openapi::jiff::Timestamp::now())
}

/// Keeps the Service, its Endpoints and its EndpointSlices, until `cancel`.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let leases = ctx.informers.store::<Lease>();
    let slices_store = ctx.informers.store::<EndpointSlice>();
    let endpoints_store = ctx.informers.store::<Endpoints>();
    let services_store = ctx.informers.store::<Service>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let by_port = servers_by_port(&fresh_servers(&leases));
        let Some(first_port) = by_port.keys().next().copied() else { continue };
        let (subsets, wanted_slices) = desired(&by_port);
        let pass = async {
            let in_default = |m: &ObjectMeta, name: &str| {
                m.namespace.as_deref() == Some(NAMESPACE) && m.name.as_deref() == Some(name)
            };
            if !services_store.state().iter().any(|s| in_default(&s.metadata, NAME)) {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": NAME, "namespace": NAMESPACE,
                                 "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "sessionAffinity": "None",
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": first_port}]}
                }))
                .expect("a valid Service");
                super::endpoints::record(&ctx, services.create(&PostParams::default(), &svc).await);
            }
            let current = endpoints_store.state().into_iter().find(|e| in_default(&e.metadata, NAME));
            if current.as_ref().map(|e| e.subsets.clone().unwrap_or_default()) != Some(subsets.clone()) {
                let object = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        namespace: Some(NAMESPACE.into()),
                        labels: Some(
                            [("endpointslice.kubernetes.io/skip-mirror".to_string(), "true".to_string())].into(),
                        ),
                        resource_version: current.as_ref().and_then(|c| c.metadata.resource_version.clone()),
                        ..Default::default()
                    },
                    subsets: Some(subsets.clone()),
                };
                let result = match current {
                    Some(_) => endpoints.replace(NAME, &PostParams::default(), &object).await,
                    None => endpoints.create(&PostParams::default(), &object).await,
                };
                super::endpoints::record(&ctx, result);
            }
            put_slices(&ctx, &slices, &slices_store.state(), NAMESPACE, NAME, &wanted_slices).await;
        };
        if every.pass(pass).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_grouped_by_port_and_each_port_is_a_slice() {
        let urls: Vec<String> = [
            "http://172.31.1.1:6443",
            "http://172.31.1.1:16443",
            "http://10.0.0.2:6443",
            "http://[::1]:6443",
            "nonsense",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let by_port = servers_by_port(&urls);
        assert_eq!(
            by_port,
            BTreeMap::from([
                (6443, vec!["10.0.0.2".to_string(), "172.31.1.1".to_string()]),
                (16443, vec!["172.31.1.1".to_string()])
            ])
        );
        let (subsets, slices) = desired(&by_port);
        assert_eq!(subsets.len(), 2);
        let names: Vec<&str> = slices.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["kubernetes", "kubernetes-16443"]);
        assert_eq!(slices[0].1.endpoints.len(), 2);
        assert_eq!(slices[1].1.ports.as_ref().unwrap()[0].port, Some(16443));
    }
}
