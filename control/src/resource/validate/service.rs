//! Service and Endpoints validation, with the Service update rules (cluster IPs fixed once set).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::json::{
    self, bool_at, child, get, go_string_slice, index, int_at, obj_at, objects_at, q, str_at, str_list_at,
    string_or_empty,
};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::pod;
use super::{Errs, FieldError};

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
/// Default kube-apiserver `--service-node-port-range`.
const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);

pub(crate) fn validate_service(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Dns1035, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    let p = "spec";
    let svc_type = str_at(errs, spec, p, "type").unwrap_or("");
    let cluster_ip = str_at(errs, spec, p, "clusterIP").unwrap_or("");
    let cluster_ips = str_list_at(errs, spec, p, "clusterIPs");
    let headless = cluster_ip == "None" || cluster_ips.first().is_some_and(|(_, ip)| *ip == "None");
    let ports = objects_at(errs, spec, p, "ports");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            q("None"),
            &format!("may not be set to 'None' for {svc_type} services"),
        )),
        "ExternalName" => {
            if !cluster_ip.is_empty() || !cluster_ips.is_empty() {
                errs.push(FieldError::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            if !json::arr_at(errs, spec, p, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                errs.push(FieldError::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            let cname = string_or_empty(errs, spec, p, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                push_all(errs, "spec.externalName", cname, names::is_dns1123_subdomain(cname));
            }
        }
        _ => {}
    }

    let mut port_names = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    let mut seen_node_ports = BTreeSet::new();
    for (pp, port) in &ports {
        let name = port_name(errs, port, pp, ports.len());
        if !name.is_empty() && !port_names.insert(name) {
            errs.push(FieldError::duplicate(&child(pp, "name"), q(name)));
        }
        let number = int_at(errs, port, pp, "port").unwrap_or(0);
        pod::port_num(errs, &child(pp, "port"), number);
        pod::protocol(errs, port, pp);
        pod::port_num_or_name(errs, port, pp, "targetPort");
        if let Some(app) = str_at(errs, port, pp, "appProtocol") {
            push_all(errs, &child(pp, "appProtocol"), app, names::is_qualified_name(app));
        }
        let protocol = json::peek_str(port, "protocol");
        let node_port = int_at(errs, port, pp, "nodePort").unwrap_or(0);
        if node_port != 0 {
            if svc_type == "ClusterIP" {
                errs.push(FieldError::forbidden(&child(pp, "nodePort"), "may not be used when `type` is 'ClusterIP'"));
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port) {
                errs.push(FieldError::invalid(
                    &child(pp, "nodePort"),
                    node_port.to_string(),
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
            if !seen_node_ports.insert((protocol, node_port)) {
                errs.push(FieldError::duplicate(&child(pp, "nodePort"), node_port.to_string()));
            }
        }
        if !seen_ports.insert((protocol, number)) {
            errs.push(FieldError::duplicate(pp, format!("{{\"port\":{number},\"protocol\":{}}}", q(protocol))));
        }
    }

    meta::validate_labels_at(errs, spec, p, "selector");
    let affinity = str_at(errs, spec, p, "sessionAffinity").unwrap_or("");
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !SESSION_AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported("spec.sessionAffinity", q(affinity), SESSION_AFFINITIES));
    }
    let affinity_config = obj_at(errs, spec, p, "sessionAffinityConfig");
    match (affinity, affinity_config) {
        ("ClientIP", cfg) => {
            let timeout = cfg
                .and_then(|c| obj_at(errs, c, "spec.sessionAffinityConfig", "clientIP"))
                .and_then(|c| int_at(errs, c, "spec.sessionAffinityConfig.clientIP", "timeoutSeconds"));
            match timeout {
                None => errs.push(FieldError::required("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "")),
                Some(t) if !(1..=86400).contains(&t) => errs.push(FieldError::invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    t.to_string(),
                    "must be greater than 0 and less than 86400",
                )),
                Some(_) => {}
            }
        }
        ("None", Some(_)) => errs
            .push(FieldError::forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")),
        _ => {}
    }

    validate_cluster_ips(errs, spec, cluster_ip, &cluster_ips);
    let external_ips = str_list_at(errs, spec, p, "externalIPs");
    for (ip_path, ip) in &external_ips {
        validate_endpoint_ip(errs, ip_path, ip);
    }

    if svc_type.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !SERVICE_TYPES.contains(&svc_type) {
        errs.push(FieldError::not_supported("spec.type", q(svc_type), SERVICE_TYPES));
    }
    if !json::arr_at(errs, spec, p, "loadBalancerSourceRanges").is_empty() && svc_type != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.loadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }

    let externally_accessible =
        matches!(svc_type, "NodePort" | "LoadBalancer") || (svc_type == "ClusterIP" && !external_ips.is_empty());
    let etp = str_at(errs, spec, p, "externalTrafficPolicy").unwrap_or("");
    if !externally_accessible {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                q(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported("spec.externalTrafficPolicy", q(etp), TRAFFIC_POLICIES));
    }
    if let Some(hc) = int_at(errs, spec, p, "healthCheckNodePort").filter(|v| *v != 0) {
        if !(svc_type == "LoadBalancer" && etp == "Local") {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc.to_string(),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    }
    match str_at(errs, spec, p, "internalTrafficPolicy") {
        None if matches!(svc_type, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""))
        }
        Some(itp) if !TRAFFIC_POLICIES.contains(&itp) => {
            errs.push(FieldError::not_supported("spec.internalTrafficPolicy", q(itp), TRAFFIC_POLICIES))
        }
        _ => {}
    }
    bool_at(errs, spec, p, "allocateLoadBalancerNodePorts");
    bool_at(errs, spec, p, "publishNotReadyAddresses");
}

/// Cluster IP syntax, `clusterIPs[0] == clusterIP`, IP families and family policy.
fn validate_cluster_ips(errs: &mut Errs, spec: &Value, cluster_ip: &str, cluster_ips: &[(String, &str)]) {
    if let Some((_, first)) = cluster_ips.first() {
        if !cluster_ip.is_empty() && *first != cluster_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                go_string_slice(cluster_ips),
                "first value must match `clusterIP`",
            ));
        }
    }
    let ips: Vec<(String, &str)> = if cluster_ips.is_empty() && !cluster_ip.is_empty() {
        vec![("spec.clusterIP".to_string(), cluster_ip)]
    } else {
        cluster_ips.to_vec()
    };
    for (i, (ip_path, ip)) in ips.iter().enumerate() {
        if *ip == "None" {
            if i != 0 || ips.len() > 1 {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    go_string_slice(cluster_ips),
                    "'None' must be the first and only value",
                ));
            }
        } else if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(ip_path, q(ip), INVALID_IP));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid("spec.clusterIPs", go_string_slice(cluster_ips), "may only hold up to 2 values"));
    }
    let families = str_list_at(errs, spec, "spec", "ipFamilies");
    let mut seen = BTreeSet::new();
    for (fp, fam) in &families {
        if !IP_FAMILIES.contains(fam) {
            errs.push(FieldError::not_supported(fp, q(fam), IP_FAMILIES));
        } else if !seen.insert(*fam) {
            errs.push(FieldError::duplicate(fp, q(fam)));
        }
    }
    if families.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.ipFamilies",
            go_string_slice(&families),
            "may specify no more than one IP for each IP family, i.e 192.168.0.1 and/or 2001:db8::1",
        ));
    }
    if let Some(policy) = str_at(errs, spec, "spec", "ipFamilyPolicy") {
        if !IP_FAMILY_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported("spec.ipFamilyPolicy", q(policy), IP_FAMILY_POLICIES));
        } else if policy == "SingleStack" && (families.len() > 1 || ips.len() > 1) {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                q(policy),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
}

fn cluster_ips_of(spec: &Value) -> Vec<String> {
    let list: Vec<String> = get(spec, "clusterIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if list.is_empty() {
        let ip = json::peek_str(spec, "clusterIP");
        if !ip.is_empty() {
            return vec![ip.to_string()];
        }
    }
    list
}

/// `validateUpgradeDowngradeClusterIPs`: allocated cluster IPs cannot change. An update that
/// omits them entirely is treated as carrying them over (kube-apiserver patches allocated
/// values into the new object before validating; the caller is expected to do the same).
pub(crate) fn validate_service_update(old: &Value, new: &Value, errs: &mut Errs) {
    let null = Value::Null;
    let os = get(old, "spec").unwrap_or(&null);
    let ns = get(new, "spec").unwrap_or(&null);
    let external = |s: &Value| json::peek_str(s, "type") == "ExternalName";
    if external(os) || external(ns) {
        return;
    }
    let old_ips = cluster_ips_of(os);
    let new_ips = cluster_ips_of(ns);
    let headless = |ips: &[String]| ips.first().is_some_and(|ip| ip == "None");
    if new_ips.is_empty() || (headless(&old_ips) && headless(&new_ips)) {
        return;
    }
    let rendered = {
        let pairs: Vec<(String, &str)> = new_ips.iter().map(|s| (String::new(), s.as_str())).collect();
        go_string_slice(&pairs)
    };
    if old_ips.len() == new_ips.len() {
        for (i, (o, n)) in old_ips.iter().zip(&new_ips).enumerate() {
            if o != n {
                errs.push(FieldError::invalid(
                    &index("spec.clusterIPs", i),
                    rendered.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if !old_ips.is_empty() && old_ips[0] != new_ips[0] {
        errs.push(FieldError::invalid("spec.clusterIPs[0]", rendered.clone(), "may not change once set"));
    }
    if old_ips.len() > new_ips.len() && new_ips.len() == 1 && json::peek_str(ns, "ipFamilyPolicy") != "SingleStack" {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            rendered,
            "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP",
        ));
    }
}

/// `ValidateEndpointIP`: a parseable IP that is not unspecified or link-local.
///
/// Unlike Kubernetes, loopback addresses are allowed: Berth's process runtime runs pods in
/// the host network, and a single-machine cluster's node (and so pod) IP is 127.0.0.1.
fn validate_endpoint_ip(errs: &mut Errs, field: &str, ip: &str) {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        errs.push(FieldError::invalid(field, q(ip), INVALID_IP));
        return;
    };
    let (link_local, link_local_mc) = match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(field, q(ip), &format!("may not be unspecified ({ip})")));
    }
    if link_local {
        errs.push(FieldError::invalid(field, q(ip), "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if link_local_mc {
        errs.push(FieldError::invalid(
            field,
            q(ip),
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

pub(crate) fn validate_endpoints(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    for (sp, subset) in objects_at(errs, obj, "", "subsets") {
        let addresses = objects_at(errs, subset, &sp, "addresses");
        let not_ready = objects_at(errs, subset, &sp, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(&sp, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (ap, addr) in addresses.iter().chain(not_ready.iter()) {
            let ip = string_or_empty(errs, addr, ap, "ip");
            validate_endpoint_ip(errs, &child(ap, "ip"), ip);
            if let Some(h) = str_at(errs, addr, ap, "hostname").filter(|h| !h.is_empty()) {
                names::validate_dns1123_label(errs, &child(ap, "hostname"), h);
            }
            if let Some(n) = str_at(errs, addr, ap, "nodeName") {
                push_all(errs, &child(ap, "nodeName"), n, names::is_dns1123_subdomain(n));
            }
        }
        let ports = objects_at(errs, subset, &sp, "ports");
        for (pp, port) in &ports {
            port_name(errs, port, pp, ports.len());
            let number = int_at(errs, port, pp, "port").unwrap_or(0);
            pod::port_num(errs, &child(pp, "port"), number);
            pod::protocol(errs, port, pp);
        }
    }
}

/// A port's name: required where there are several ports, and a DNS label where given.
fn port_name<'a>(errs: &mut Errs, port: &'a Value, pp: &str, count: usize) -> &'a str {
    let name = string_or_empty(errs, port, pp, "name");
    if count > 1 && name.is_empty() {
        errs.push(FieldError::required(&child(pp, "name"), ""));
    } else if !name.is_empty() {
        names::validate_dns1123_label(errs, &child(pp, "name"), name);
    }
    name
}

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
/// discovery/v1's limits: endpoints per slice, addresses per endpoint, ports per slice.
const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_ENDPOINT_ADDRESSES: usize = 100;
const MAX_SLICE_PORTS: usize = 20000;

/// `ValidateEndpointSlice` (discovery.k8s.io/v1).
pub(crate) fn validate_endpoint_slice(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let address_type = string_or_empty(errs, obj, "", "addressType");
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errs.push(FieldError::not_supported("addressType", q(address_type), ADDRESS_TYPES));
    }
    let endpoints = objects_at(errs, obj, "", "endpoints");
    if endpoints.len() > MAX_SLICE_ENDPOINTS {
        errs.push(FieldError::too_many("endpoints", endpoints.len(), MAX_SLICE_ENDPOINTS));
    }
    for (ep, endpoint) in &endpoints {
        let addresses = str_list_at(errs, endpoint, ep, "addresses");
        let ap = child(ep, "addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if addresses.len() > MAX_ENDPOINT_ADDRESSES {
            errs.push(FieldError::too_many(&ap, addresses.len(), MAX_ENDPOINT_ADDRESSES));
        }
        for (field, address) in &addresses {
            let (field, address) = (field.as_str(), *address);
            match address_type {
                "IPv4" if address.parse::<std::net::Ipv4Addr>().is_err() => {
                    errs.push(FieldError::invalid(field, q(address), "must be a valid IPv4 address"))
                }
                "IPv6" if address.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(FieldError::invalid(field, q(address), "must be a valid IPv6 address"))
                }
                "IPv4" | "IPv6" => validate_endpoint_ip(errs, field, address),
                "FQDN" => push_all(errs, field, address, names::is_dns1123_subdomain(address)),
                _ => {}
            }
        }
        if let Some(h) = str_at(errs, endpoint, ep, "hostname").filter(|h| !h.is_empty()) {
            names::validate_dns1123_label(errs, &child(ep, "hostname"), h);
        }
        if let Some(n) = str_at(errs, endpoint, ep, "nodeName") {
            push_all(errs, &child(ep, "nodeName"), n, names::is_dns1123_subdomain(n));
        }
        if let Some(conditions) = obj_at(errs, endpoint, ep, "conditions") {
            let cp = child(ep, "conditions");
            for f in ["ready", "serving", "terminating"] {
                bool_at(errs, conditions, &cp, f);
            }
        }
    }
    let ports = objects_at(errs, obj, "", "ports");
    if ports.len() > MAX_SLICE_PORTS {
        errs.push(FieldError::too_many("ports", ports.len(), MAX_SLICE_PORTS));
    }
    let mut names_seen = BTreeSet::new();
    for (pp, port) in &ports {
        let name = string_or_empty(errs, port, pp, "name");
        if !name.is_empty() {
            names::validate_dns1123_label(errs, &child(pp, "name"), name);
        }
        if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&child(pp, "name"), q(name)));
        }
        if let Some(number) = int_at(errs, port, pp, "port") {
            pod::port_num(errs, &child(pp, "port"), number);
        }
        pod::protocol(errs, port, pp);
    }
}
