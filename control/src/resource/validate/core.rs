//! core/v1 non-pod kinds: Service, Endpoints, ConfigMap, Secret, Namespace, Node, Event,
//! ServiceAccount and ResourceQuota, with their update rules (cluster IPs fixed once set,
//! immutable ConfigMap/Secret data, node podCIDRs/providerID, new-style event fields).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::json::{
    self, bool_at, child, get, index, int_at, key, obj_at, objects_at, q, render, str_at, str_list_at, str_map_at,
    string_or_empty,
};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::pod;
use super::{Errs, FieldError};

/// Kubernetes' `MaxSecretSize`, also the ConfigMap limit.
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";
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
        let name = string_or_empty(errs, port, pp, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&child(pp, "name"), ""));
        } else if !name.is_empty() {
            names::validate_dns1123_label(errs, &child(pp, "name"), name);
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(&child(pp, "name"), q(name)));
            }
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

/// Go's `%#v` of a `[]string`.
fn go_string_slice(items: &[(String, &str)]) -> String {
    let inner: Vec<String> = items.iter().map(|(_, s)| q(s)).collect();
    if items.is_empty() {
        "[]string(nil)".to_string()
    } else {
        format!("[]string{{{}}}", inner.join(", "))
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
            let name = string_or_empty(errs, port, pp, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(&child(pp, "name"), ""));
            } else if !name.is_empty() {
                names::validate_dns1123_label(errs, &child(pp, "name"), name);
            }
            let number = int_at(errs, port, pp, "port").unwrap_or(0);
            pod::port_num(errs, &child(pp, "port"), number);
            pod::protocol(errs, port, pp);
        }
    }
}

/// Decoded length of a base64 `[]byte` field, or None if it is not valid base64.
fn base64_len(s: &str) -> Option<usize> {
    let trimmed = s.trim_end_matches('=');
    let valid = s.len().is_multiple_of(4)
        && s.len() - trimmed.len() <= 2
        && trimmed.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/');
    valid.then_some(trimmed.len() * 3 / 4)
}

/// Validates a `map[string][]byte` (base64 strings in JSON): key syntax, encoding; returns
/// the keys and the total decoded size.
fn byte_map<'a>(errs: &mut Errs, obj: &'a Value, k: &str) -> (Vec<&'a str>, usize) {
    let mut keys = Vec::new();
    let mut total = 0;
    for (name, value) in str_map_at(errs, obj, "", k) {
        push_all(errs, &key(k, name), name, names::is_config_map_key(name));
        match base64_len(value) {
            Some(n) => total += n,
            None => errs.push(FieldError::invalid(&key(k, name), q("<redacted>"), "must be valid base64 data")),
        }
        keys.push(name);
    }
    (keys, total)
}

pub(crate) fn validate_configmap(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let data = str_map_at(errs, obj, "", "data");
    let binary_keys: Vec<&str> = meta::peek_str_map(obj, "binaryData").into_iter().map(|(k, _)| k).collect();
    let mut total = 0;
    for (k, v) in &data {
        let field = key("data", k);
        push_all(errs, &field, k, names::is_config_map_key(k));
        if binary_keys.contains(k) {
            errs.push(FieldError::invalid(&field, q(k), "duplicate of key present in binaryData"));
        }
        total += v.len();
    }
    let (_, binary_total) = byte_map(errs, obj, "binaryData");
    if total + binary_total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    bool_at(errs, obj, "", "immutable");
}

pub(crate) fn validate_secret(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let (mut keys, mut total) = byte_map(errs, obj, "data");
    // stringData is merged into data by the API server; validate it the same way if the
    // caller did not default the object first.
    for (k, v) in str_map_at(errs, obj, "", "stringData") {
        push_all(errs, &key("stringData", k), k, names::is_config_map_key(k));
        total += v.len();
        keys.push(k);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    bool_at(errs, obj, "", "immutable");
    let required = |errs: &mut Errs, k: &str| {
        if !keys.contains(&k) {
            errs.push(FieldError::required(&key("data", k), ""));
        }
    };
    match str_at(errs, obj, "", "type").unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let annotations = json::dig(obj, &["metadata"]).map(|m| meta::peek_str_map(m, "annotations"));
            let has_sa = annotations
                .unwrap_or_default()
                .iter()
                .any(|(k, v)| *k == "kubernetes.io/service-account.name" && !v.is_empty());
            if !has_sa {
                errs.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
        }
        "kubernetes.io/dockercfg" => required(errs, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => required(errs, ".dockerconfigjson"),
        "kubernetes.io/basic-auth" if !keys.contains(&"username") && !keys.contains(&"password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" => required(errs, "ssh-privatekey"),
        "kubernetes.io/tls" => {
            required(errs, "tls.crt");
            required(errs, "tls.key");
        }
        _ => {}
    }
}

/// Absent, null and `{}` maps compare equal (Go treats nil and empty alike after decoding
/// for our purposes; kube-apiserver normalises them on storage).
fn map_member(v: &Value, k: &str) -> Value {
    match get(v, k) {
        Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()),
        Some(Value::Object(_)) | None => Value::Null,
        Some(other) => other.clone(),
    }
}

pub(crate) fn validate_configmap_update(old: &Value, new: &Value, errs: &mut Errs) {
    validate_immutable_data_update(false, old, new, errs);
}

pub(crate) fn validate_secret_update(old: &Value, new: &Value, errs: &mut Errs) {
    validate_immutable_data_update(true, old, new, errs);
}

/// ConfigMap/Secret: `immutable: true` freezes data (and a Secret's type is always fixed).
fn validate_immutable_data_update(secret: bool, old: &Value, new: &Value, errs: &mut Errs) {
    if secret {
        let ty = |v: &Value| get(v, "type").cloned().unwrap_or(Value::Null);
        meta::immutable(errs, "type", Some(&ty(old)), Some(&ty(new)));
    }
    if get(old, "immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if get(new, "immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    let fields: &[&str] = if secret { &["data"] } else { &["data", "binaryData"] };
    for f in fields {
        if map_member(old, f) != map_member(new, f) {
            errs.push(FieldError::forbidden(f, IMMUTABLE_WHEN_SET));
        }
    }
}

pub(crate) fn validate_namespace(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Label, errs);
    let Some(spec) = obj_at(errs, obj, "", "spec") else { return };
    for (_, f) in str_list_at(errs, spec, "spec", "finalizers") {
        let msgs = names::is_qualified_name(f);
        let ok = msgs.is_empty();
        push_all(errs, "spec.finalizers", f, msgs);
        if ok && !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
            errs.push(FieldError::invalid(
                "spec.finalizers",
                q(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

pub(crate) fn validate_node(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    // Kubernetes reports taint errors under `metadata.taints` (a long-standing quirk kept for
    // message compatibility).
    let mut unique = BTreeSet::new();
    for (i, (tp, taint)) in objects_at(errs, spec, "spec", "taints").into_iter().enumerate() {
        let ip = index("metadata.taints", i);
        let k = string_or_empty(errs, taint, &tp, "key");
        push_all(errs, &child(&ip, "key"), k, names::is_qualified_name(k));
        let v = string_or_empty(errs, taint, &tp, "value");
        let msgs = names::is_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&child(&ip, "value"), q(v), &msgs.join(";")));
        }
        let effect = string_or_empty(errs, taint, &tp, "effect");
        if effect.is_empty() {
            errs.push(FieldError::required(&child(&ip, "effect"), ""));
        } else if !pod::TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(&child(&ip, "effect"), q(effect), pod::TAINT_EFFECTS));
        }
        if !unique.insert((effect, k)) {
            let mut dup = FieldError::duplicate(&ip, render(taint));
            dup.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(dup);
        }
    }
    let cidrs = str_list_at(errs, spec, "spec", "podCIDRs");
    for (cp, cidr) in &cidrs {
        if !is_cidr(cidr) {
            errs.push(FieldError::invalid(
                cp,
                q(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (cp, cidr) in &cidrs {
        if cidrs.len() > 1 && !seen.insert(*cidr) {
            errs.push(FieldError::duplicate(cp, q(cidr)));
        }
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.podCIDRs",
            go_string_slice(&cidrs),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    if let Some(status) = obj_at(errs, obj, "", "status") {
        for list in ["capacity", "allocatable"] {
            for (name, qty) in pod::resource_list(errs, status, "status", list) {
                pod::validate_quantity_value(errs, &format!("status.{list}.{name}"), name, &qty);
            }
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Ok(addr) = ip.parse::<IpAddr>() else { return false };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
}

/// `ValidateNodeUpdate`: podCIDRs and providerID may only go from unset to set.
pub(crate) fn validate_node_update(old: &Value, new: &Value, errs: &mut Errs) {
    let list = |v: &Value| json::dig(v, &["spec", "podCIDRs"]).cloned().unwrap_or(Value::Array(Vec::new()));
    let old_cidrs = list(old);
    if old_cidrs.as_array().is_some_and(|a| !a.is_empty()) && old_cidrs != list(new) {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let provider = |v: &Value| json::dig(v, &["spec", "providerID"]).and_then(Value::as_str).unwrap_or("").to_string();
    if !provider(old).is_empty() && provider(old) != provider(new) {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    let mut seen = BTreeSet::new();
    let addrs = json::dig(new, &["status", "addresses"]).and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, a) in addrs.iter().enumerate() {
        if !seen.insert(a.to_string()) {
            errs.push(FieldError::duplicate(&index("status.addresses", i), render(a)));
        }
    }
}

fn is_events_api(obj: &Value) -> bool {
    json::peek_str(obj, "apiVersion").starts_with("events.k8s.io/")
}

/// (internal field name used in messages, core/v1 JSON name, events.k8s.io JSON name).
/// Kubernetes validates the internal type, so paths use the internal names whichever API
/// the event came through.
const EVENT_FIELDS: &[(&str, &str, &str)] = &[
    ("involvedObject", "involvedObject", "regarding"),
    ("reason", "reason", "reason"),
    ("message", "message", "note"),
    ("source", "source", "deprecatedSource"),
    ("firstTimestamp", "firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "count", "deprecatedCount"),
    ("type", "type", "type"),
    ("eventTime", "eventTime", "eventTime"),
    ("action", "action", "action"),
    ("related", "related", "related"),
    ("reportingController", "reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance", "reportingInstance"),
];

/// The JSON member holding the internal field `internal`, for this event's API group.
fn event_field<'a>(obj: &'a Value, internal: &str) -> Option<&'a Value> {
    let events_api = is_events_api(obj);
    let (_, core_name, events_name) = EVENT_FIELDS.iter().find(|(i, _, _)| *i == internal)?;
    get(obj, if events_api { events_name } else { core_name })
}

fn event_str<'a>(errs: &mut Errs, obj: &'a Value, internal: &str) -> &'a str {
    match event_field(obj, internal) {
        None => "",
        Some(Value::String(s)) => s,
        Some(v) => {
            errs.push(json::type_error(internal, v, "string"));
            ""
        }
    }
}

/// `ValidateEventCreate`: core/v1 events only get the legacy checks (no ObjectMeta
/// validation at all, for backwards compatibility); events.k8s.io adds strict rules.
pub(crate) fn validate_event(obj: &Value, errs: &mut Errs) {
    let namespace = meta::meta_str(obj, "namespace");
    let involved_ns = match event_field(obj, "involvedObject") {
        Some(o) if o.is_object() => string_or_empty(errs, o, "involvedObject", "namespace"),
        Some(o) => {
            errs.push(json::type_error("involvedObject", o, "object"));
            ""
        }
        None => "",
    };
    let mismatch = || FieldError::invalid("involvedObject.namespace", q(involved_ns), "does not match event.namespace");
    let event_time = event_str(errs, obj, "eventTime");
    if event_time.is_empty() {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(mismatch());
            }
        } else if namespace != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = event_str(errs, obj, "reportingController");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        push_all(errs, "reportingController", controller, names::is_qualified_name(controller));
        for (f, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = event_str(errs, obj, f);
            if v.is_empty() {
                errs.push(FieldError::required(f, ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(f, q(""), &format!("can have at most {limit} characters")));
            }
        }
        if event_str(errs, obj, "message").len() > 1024 {
            errs.push(FieldError::invalid("message", q(""), "can have at most 1024 characters"));
        }
    }
    push_all(errs, "namespace", namespace, names::is_dns1123_subdomain(namespace));
    if !is_events_api(obj) {
        for f in ["reason", "message", "type"] {
            event_str(errs, obj, f);
        }
        // kube-apiserver's generic registry still checks ObjectMeta, with path-segment names.
        meta::validate_object_meta(obj, true, NameRule::PathSegment, errs);
        return;
    }
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    if event_time.is_empty() {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = event_str(errs, obj, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid("type", q(""), &format!("has invalid value: {ty}")));
    }
    for f in ["firstTimestamp", "lastTimestamp", "count", "source"] {
        let set = match event_field(obj, f) {
            None => false,
            Some(Value::Object(m)) => m.values().any(|v| v.as_str().is_some_and(|s| !s.is_empty())),
            Some(v) => v.as_i64() != Some(0),
        };
        if set {
            errs.push(FieldError::invalid(f, q(""), "needs to be unset"));
        }
    }
}

/// `ValidateEventUpdate`: core/v1 events stay mutable (kubelets bump count and timestamps);
/// events.k8s.io events are immutable apart from their series.
pub(crate) fn validate_event_update(old: &Value, new: &Value, errs: &mut Errs) {
    if !is_events_api(new) {
        return;
    }
    for (internal, _, _) in EVENT_FIELDS {
        meta::immutable(errs, internal, event_field(old, internal), event_field(new, internal));
    }
}

pub(crate) fn validate_service_account(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    bool_at(errs, obj, "", "automountServiceAccountToken");
    for list in ["secrets", "imagePullSecrets"] {
        for (p, r) in objects_at(errs, obj, "", list) {
            str_at(errs, r, &p, "name");
        }
    }
}

/// `helper.IsStandardQuotaResourceName`.
fn is_standard_quota_resource(name: &str) -> bool {
    const QUOTA: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "persistentvolumeclaims",
        "configmaps",
        "services.nodeports",
        "services.loadbalancers",
    ];
    QUOTA.contains(&name) || name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

pub(crate) fn validate_resource_quota(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    quota_list(errs, spec, "spec", "hard");
    const SCOPES: &[&str] = &[
        "BestEffort",
        "CrossNamespacePodAffinity",
        "NotBestEffort",
        "NotTerminating",
        "PriorityClass",
        "Terminating",
        "VolumeAttributesClass",
    ];
    let scopes = str_list_at(errs, spec, "spec", "scopes");
    let names_only: Vec<&str> = scopes.iter().map(|(_, s)| *s).collect();
    let rendered = go_string_slice(&scopes);
    for s in &names_only {
        if !SCOPES.contains(s) {
            errs.push(FieldError::invalid("spec.scopes", rendered.clone(), "unsupported scope"));
        }
    }
    let has = |s: &str| names_only.contains(&s);
    if (has("Terminating") && has("NotTerminating")) || (has("BestEffort") && has("NotBestEffort")) {
        errs.push(FieldError::invalid("spec.scopes", rendered, "conflicting scopes"));
    }
    if let Some(status) = obj_at(errs, obj, "", "status") {
        quota_list(errs, status, "status", "hard");
        quota_list(errs, status, "status", "used");
    }
}

fn quota_list(errs: &mut Errs, obj: &Value, path: &str, k: &str) {
    let list_path = child(path, k);
    for (name, qty) in pod::resource_list(errs, obj, path, k) {
        let field = key(&list_path, name);
        if pod::validate_resource_name(errs, &field, name) && !name.contains('/') && !is_standard_quota_resource(name) {
            errs.push(FieldError::invalid(&field, q(name), "must be a standard resource for quota"));
        }
        pod::validate_quantity_value(errs, &field, name, &qty);
    }
}
