//! What the service proxy should do, decided purely from Services and EndpointSlices (as
//! kube-proxy's `ServicePortMap`/`EndpointsMap`): one [`ServicePortPlan`] per Service port
//! that carries traffic, with the addresses it answers on and the endpoints it may use.
//!
//! Kubernetes' rules, as kube-proxy applies them:
//! * headless Services (`clusterIP: None`) and ExternalName Services get no rules;
//! * an endpoint gets traffic when `ready`; when a Service has no ready endpoint, its
//!   `serving` and `terminating` ones still do (so connections drain during a rollout);
//! * `internalTrafficPolicy: Local` sends cluster-IP traffic only to this node's endpoints,
//!   `externalTrafficPolicy: Local` does so for NodePort, LoadBalancer and external IPs (and
//!   keeps the client's address: no masquerade);
//! * a slice's port matches the Service port of the same name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label joining an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// TCP, UDP or SCTP (as nft spells them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn of(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint a Service port may send to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node.
    pub local: bool,
}

/// One Service port's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortPlan {
    /// `namespace/name:port` (the port's name, else its number), for comments and logs.
    pub id: String,
    pub protocol: Protocol,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress[].ip`: answered on `port`.
    pub external_ips: Vec<Ipv4Addr>,
    /// Endpoints for cluster-IP traffic (internalTrafficPolicy applied).
    pub internal: Vec<Target>,
    /// Endpoints for NodePort/external traffic (externalTrafficPolicy applied).
    pub external: Vec<Target>,
    /// externalTrafficPolicy: Local (external traffic keeps its source address).
    pub external_local: bool,
    /// sessionAffinity: ClientIP, with its timeout in seconds.
    pub affinity_seconds: Option<u32>,
}

/// The endpoints of `port_name` in `slices`: the ready ones, else the serving terminating
/// ones (kube-proxy's fallback), deduplicated and sorted.
pub fn endpoints_of(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol, node: &str) -> Vec<Target> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name && Protocol::of(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else { continue };
        for e in &slice.endpoints {
            let c = e.conditions.clone().unwrap_or_default();
            let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
            let target = Target { ip, port, local: e.node_name.as_deref() == Some(node) };
            // A nil `ready` means ready (discovery/v1).
            if c.ready.unwrap_or(true) {
                ready.push(target);
            } else if c.serving.unwrap_or(false) && c.terminating.unwrap_or(false) {
                terminating.push(target);
            }
        }
    }
    let mut chosen = if ready.is_empty() { terminating } else { ready };
    chosen.sort();
    chosen.dedup();
    chosen
}

fn port_id(svc: &Service, p: &ServicePort) -> String {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    match p.name.as_deref().filter(|n| !n.is_empty()) {
        Some(port) => format!("{ns}/{name}:{port}"),
        None => format!("{ns}/{name}:{}", p.port),
    }
}

/// The plans of every Service port, from the Services and all EndpointSlices (pure).
/// `node` is this node's name (for the Local traffic policies).
pub fn plan(services: &[&Service], slices: &[&EndpointSlice], node: &str) -> Vec<ServicePortPlan> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let Some(name) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((ns, name.clone())).or_default().push(s);
    }
    let mut plans = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        let mut external_ips: Vec<Ipv4Addr> =
            spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
        external_ips.extend(
            svc.status
                .iter()
                .filter_map(|s| s.load_balancer.as_ref())
                .flat_map(|lb| lb.ingress.iter().flatten())
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
        external_ips.sort();
        external_ips.dedup();
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let configured = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()?.timeout_seconds);
            configured.and_then(|s| u32::try_from(s).ok()).unwrap_or(10_800)
        });
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::of(p.protocol.as_deref()) else { continue };
            let Ok(port) = u16::try_from(p.port) else { continue };
            let node_port = p.node_port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0);
            if cluster_ip.is_none() {
                continue; // headless: DNS only
            }
            let all = endpoints_of(slices, p.name.as_deref().unwrap_or_default(), protocol, node);
            let local_only = |targets: &[Target]| targets.iter().filter(|t| t.local).cloned().collect::<Vec<_>>();
            plans.push(ServicePortPlan {
                id: port_id(svc, p),
                protocol,
                cluster_ip,
                port,
                node_port,
                external_ips: external_ips.clone(),
                internal: if internal_local { local_only(&all) } else { all.clone() },
                external: if external_local { local_only(&all) } else { all },
                external_local,
                affinity_seconds,
            });
        }
    }
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    plans
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})).unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints
        }))
        .unwrap()
    }

    fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> serde_json::Value {
        json!({"addresses": [ip], "nodeName": node,
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
    }

    fn t(ip: &str, local: bool) -> Target {
        Target { ip: ip.parse().unwrap(), port: 8080, local }
    }

    #[test]
    fn ready_endpoints_get_traffic_and_terminating_ones_only_when_none_is_ready() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}));
        let s = slice(json!([
            ep("10.244.0.2", "n1", true, true, false),
            ep("10.244.1.2", "n2", false, true, true),
            ep("10.244.1.3", "n2", false, false, false)
        ]));
        let plans = plan(&[&svc], &[&s], "n1");
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(
            (p.id.as_str(), p.cluster_ip, p.port, p.node_port),
            ("default/web:http", Some(Ipv4Addr::new(10, 96, 0, 10)), 80, Some(30080))
        );
        assert_eq!(p.internal, vec![t("10.244.0.2", true)]);
        let draining =
            slice(json!([ep("10.244.1.2", "n2", false, true, true), ep("10.244.1.3", "n2", false, false, true)]));
        assert_eq!(plan(&[&svc], &[&draining], "n1")[0].internal, vec![t("10.244.1.2", false)]);
    }

    #[test]
    fn traffic_policies_keep_traffic_on_the_node() {
        let svc = service(json!({"clusterIP": "10.96.0.10", "type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Local", "externalIPs": ["192.0.2.7"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        let s = slice(json!([ep("10.244.0.2", "n1", true, true, false), ep("10.244.1.2", "n2", true, true, false)]));
        let p = &plan(&[&svc], &[&s], "n2")[0];
        assert_eq!(
            (p.internal.clone(), p.external.clone()),
            (vec![t("10.244.1.2", true)], vec![t("10.244.1.2", true)])
        );
        assert!(p.external_local);
        assert_eq!(p.external_ips, vec![Ipv4Addr::new(192, 0, 2, 7)]);
        let cluster = service(json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}));
        assert_eq!(plan(&[&cluster], &[&s], "n2")[0].internal.len(), 2);
    }

    #[test]
    fn headless_external_name_and_unmatched_ports_get_nothing() {
        let headless = service(json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}));
        let external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        let s = slice(json!([ep("10.244.0.2", "n1", true, true, false)]));
        assert!(plan(&[&headless, &external], &[&s], "n1").is_empty());
        let other_port = service(json!({"clusterIP": "10.96.0.11", "ports": [{"name": "metrics", "port": 9100}],
            "sessionAffinity": "ClientIP"}));
        let p = &plan(&[&other_port], &[&s], "n1")[0];
        assert!(p.internal.is_empty(), "no slice port named metrics");
        assert_eq!(p.affinity_seconds, Some(10_800));
    }
}
