//! Printers of Services and Endpoints.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static SERVICE: Printer = Printer { columns: SERVICE_COLS, row: service_row };
pub static ENDPOINTS: Printer = Printer { columns: ENDPOINTS_COLS, row: endpoints_row };

static SERVICE_COLS: &[Col] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, \
         ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for \
         load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by \
         manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual \
         IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \
         \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as \
         the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in \
         the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this \
         service to the specified externalName. Several other fields do not apply to ExternalName services. More \
         info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified \
         manually, is in-range (as per system configuration), and is not in use, it will be allocated to the \
         service; otherwise creation of the service will fail. This field may not be changed through updates unless \
         the type field is also being changed to ExternalName (which requires this field to be blank) or the type \
         field is being changed from ExternalName (in which case this field may optionally be specified, as \
         describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \
         \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections \
         are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. \
         If this field is specified when creating a Service of type ExternalName, creation will fail. This field \
         will be wiped when updating a Service to type ExternalName. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this \
         service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic \
         arrives at a node with this IP.  A common example is external load-balancers that are not part of the \
         Kubernetes system.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector. If empty or not present, \
         the service is assumed to have an external process managing its endpoints, which Kubernetes will not \
         modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More \
         info: https://kubernetes.io/docs/concepts/services-networking/service/",
    ),
];

static ENDPOINTS_COLS: &[Col] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the \
         IPs they share. A single address with multiple ports, some of which are ready and some of which are not \
         (because they come from different containers) will result in the address being displayed in different \
         subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same \
         subset. Sets of addresses and ports that comprise a service.",
    ),
    AGE,
];

// Services and endpoints
// ---------------------------------------------------------------------------------------------

fn service_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let svc_type = match text(obj, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    };
    // v1 conversion keeps clusterIPs[0] == clusterIP; fall back for objects that only set clusterIP.
    let cluster_ip = list(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(obj, &["spec", "clusterIP"]));
    let ports: Vec<String> = list(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = match text(p, &["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int(p, &["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(p, &["port"])),
                _ => format!("{}/{protocol}", int(p, &["port"])),
            }
        })
        .collect();
    vec![
        name(obj),
        Value::from(svc_type),
        Value::from(or_none(cluster_ip)),
        Value::from(service_external_ip(obj, svc_type)),
        Value::from(or_none(&ports.join(","))),
        age(obj, now),
        Value::from(format_labels(at(obj, &["spec", "selector"]))),
    ]
}

/// getServiceExternalIP with wide=true (the apiserver never clips load-balancer addresses).
fn service_external_ip(obj: &Value, svc_type: &str) -> String {
    let external_ips: Vec<&str> = list(obj, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match svc_type {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = list(obj, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| match (text(i, &["ip"]), text(i, &["hostname"])) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            let mut all: Vec<&str> = lb.into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// formatEndpoints: the first three addresses (host:port per port), then "+ N more...".
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list(ss, &["addresses"]);
        let ports = list(ss, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports at all.
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(a, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn endpoints_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(format_endpoints(obj)), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------

pub static ENDPOINT_SLICE: Printer = Printer { columns: ENDPOINT_SLICE_COLS, row: endpoint_slice_row };

static ENDPOINT_SLICE_COLS: &[Col] = &[
    NAME,
    col("AddressType", "string", "Type of address carried by this EndpointSlice"),
    col("Ports", "string", "Ports of the EndpointSlice (port numbers, else names)"),
    col("Endpoints", "string", "The first addresses of the EndpointSlice's endpoints"),
    AGE,
];

/// listWithMoreString: the first `MAX` items, then "+ N more...", "<unset>" for none.
fn with_more(items: impl Iterator<Item = String>) -> String {
    const MAX: usize = 3;
    let all: Vec<String> = items.collect();
    let shown = all[..all.len().min(MAX)].join(",");
    if all.len() > MAX {
        format!("{shown} + {} more...", all.len() - MAX)
    } else if shown.is_empty() {
        "<unset>".to_string()
    } else {
        shown
    }
}

fn endpoint_slice_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports = list(obj, &["ports"]).iter().map(|p| match opt_int(p, &["port"]) {
        Some(n) => n.to_string(),
        None => at(p, &["name"]).and_then(Value::as_str).unwrap_or("*").to_string(),
    });
    let addresses = list(obj, &["endpoints"])
        .iter()
        .flat_map(|e| list(e, &["addresses"]).iter().map(|a| a.as_str().unwrap_or("").to_string()));
    vec![
        name(obj),
        Value::from(text(obj, &["addressType"])),
        Value::from(with_more(ports)),
        Value::from(with_more(addresses)),
        age(obj, now),
    ]
}

// ---------------------------------------------------------------------------------------------

pub static INGRESS: Printer = Printer { columns: INGRESS_COLS, row: ingress_row };
pub static INGRESS_CLASS: Printer = Printer { columns: INGRESS_CLASS_COLS, row: ingress_class_row };

static INGRESS_COLS: &[Col] = &[
    NAME,
    col("Class", "string", "The name of the IngressClass resource that should be used for ingress"),
    col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
    col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

static INGRESS_CLASS_COLS: &[Col] = &[
    NAME,
    col("Controller", "string", "Controller that is responsible for handling this class"),
    col("Parameters", "string", "A reference to a resource with additional parameters"),
    AGE,
];

fn ingress_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let class = at(obj, &["spec", "ingressClassName"]).and_then(Value::as_str).unwrap_or("<none>");
    let hosts: Vec<String> = list(obj, &["spec", "rules"])
        .iter()
        .filter_map(|r| at(r, &["host"]).and_then(Value::as_str).filter(|h| !h.is_empty()).map(String::from))
        .collect();
    let hosts = if hosts.is_empty() { "*".to_string() } else { with_more(hosts.into_iter()) };
    let address: Vec<&str> = list(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| at(i, &["ip"]).or_else(|| at(i, &["hostname"])).and_then(Value::as_str))
        .collect();
    let ports = if list(obj, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        name(obj),
        Value::from(class),
        Value::from(hosts),
        Value::from(address.join(",")),
        Value::from(ports),
        age(obj, now),
    ]
}

fn ingress_class_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let parameters = at(obj, &["spec", "parameters"])
        .map(|p| {
            let group = at(p, &["apiGroup"]).and_then(Value::as_str).map(|g| format!("{g}/")).unwrap_or_default();
            format!("{group}{}/{}", text(p, &["kind"]), text(p, &["name"]))
        })
        .unwrap_or_else(|| "<none>".into());
    vec![name(obj), Value::from(text(obj, &["spec", "controller"])), Value::from(parameters), age(obj, now)]
}
