//! Validation of the policy kinds users' manifests carry: policy/v1 PodDisruptionBudget,
//! scheduling.k8s.io/v1 PriorityClass, core/v1 LimitRange, networking.k8s.io/v1
//! NetworkPolicy, and apps/v1 ControllerRevision (`ValidatePodDisruptionBudget`,
//! `ValidatePriorityClass`, `ValidateLimitRange`, `ValidateNetworkPolicy`,
//! `ValidateControllerRevision`), with their defaults and update rules.

use berth_proto::Quantity;
use serde_json::{json, Value};

use super::apps::int_or_percent;
use super::json::{child, get, int_at, obj_at, objects_at, q, str_at, str_list_at, string_or_empty};
use super::meta::{self, IMMUTABLE};
use super::names::NameRule;
use super::pod;
use super::{Errs, FieldError};

/// `HighestUserDefinablePriority`: above it only the system classes.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The classes kube-apiserver creates, and their values.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] =
    &[("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];
const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

fn spec(errs: &mut Errs, obj: &Value) -> Value {
    obj_at(errs, obj, "", "spec").cloned().unwrap_or_else(|| json!({}))
}

/// `ValidatePodDisruptionBudget`: one of minAvailable and maxUnavailable, each a count or
/// a percentage of at most 100%, and a valid selector.
pub(crate) fn validate_pdb(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let spec = spec(errs, obj);
    let min = int_or_percent(errs, &spec, "spec", "minAvailable");
    let max = int_or_percent(errs, &spec, "spec", "maxUnavailable");
    if min.is_some() && max.is_some() {
        // kube-apiserver prints the spec struct; the JSON is what the user wrote.
        errs.push(FieldError::invalid("spec", spec.to_string(), "minAvailable and maxUnavailable cannot be both set"));
    }
    if let Some(selector) = obj_at(errs, &spec, "spec", "selector") {
        meta::validate_label_selector(errs, selector, "spec.selector");
    }
    if let Some(policy) = str_at(errs, &spec, "spec", "unhealthyPodEvictionPolicy").filter(|p| !p.is_empty()) {
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                q(policy),
                UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
}

/// `SetDefaults_PriorityClass`: PreemptLowerPriority.
pub(crate) fn default_priority_class(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get("preemptionPolicy").is_none_or(Value::is_null) {
            m.insert("preemptionPolicy".into(), json!("PreemptLowerPriority"));
        }
    }
}

/// `ValidatePriorityClass`: `system-` names are reserved for the system classes, user
/// values stay at or below `HighestUserDefinablePriority`.
pub(crate) fn validate_priority_class(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Subdomain, errs);
    let name = meta::meta_str(obj, "name");
    let value = int_at(errs, obj, "", "value").unwrap_or(0);
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
        Some((_, system_value)) if value != *system_value => errs.push(FieldError::forbidden(
            "metadata.name",
            &format!("priority class {name:?} is a system class: its value is {system_value}"),
        )),
        Some(_) => {}
        None if name.starts_with("system-") => errs.push(FieldError::forbidden(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved for system use only",
        )),
        None if value > HIGHEST_USER_DEFINABLE_PRIORITY => errs.push(FieldError::forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        )),
        None => {}
    }
    if let Some(policy) = str_at(errs, obj, "", "preemptionPolicy") {
        if !PREEMPTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported("preemptionPolicy", q(policy), PREEMPTION_POLICIES));
        }
    }
}

/// `ValidatePriorityClassUpdate`: the value and the preemption policy are fixed.
pub(crate) fn validate_priority_class_update(old: &Value, new: &Value, errs: &mut Errs) {
    if old.get("value") != new.get("value") {
        errs.push(FieldError::forbidden("value", "may not be changed in an update."));
    }
    meta::immutable(errs, "preemptionPolicy", old.get("preemptionPolicy"), new.get("preemptionPolicy"));
}

const LIMIT_TYPES: &[&str] = &["Container", "PersistentVolumeClaim", "Pod"];

/// `ValidateLimitRange`: each limit's type, quantities, and min ≤ defaultRequest ≤ default
/// ≤ max for every resource named.
pub(crate) fn validate_limit_range(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let spec = spec(errs, obj);
    for (p, limit) in objects_at(errs, &spec, "spec", "limits") {
        let ty = string_or_empty(errs, limit, &p, "type");
        if !LIMIT_TYPES.contains(&ty) {
            errs.push(FieldError::not_supported(&child(&p, "type"), q(ty), LIMIT_TYPES));
        }
        let max = pod::resource_list(errs, limit, &p, "max");
        let min = pod::resource_list(errs, limit, &p, "min");
        let default = pod::resource_list(errs, limit, &p, "default");
        let default_request = pod::resource_list(errs, limit, &p, "defaultRequest");
        pod::resource_list(errs, limit, &p, "maxLimitRequestRatio");
        if ty == "Pod" {
            for field in ["default", "defaultRequest"] {
                if get(limit, field).is_some() {
                    errs.push(FieldError::forbidden(&child(&p, field), "may not be specified when `type` is 'Pod'"));
                }
            }
        }
        let find = |list: &[(&str, Quantity)], r: &str| list.iter().find(|(n, _)| *n == r).map(|(_, q)| *q);
        let mut names: Vec<&str> =
            max.iter().chain(&min).chain(&default).chain(&default_request).map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        for r in names {
            let (mx, mn, df, dr) = (find(&max, r), find(&min, r), find(&default, r), find(&default_request, r));
            let order = [("min", &mn), ("defaultRequest", &dr), ("default", &df), ("max", &mx)];
            for (i, (low_name, low)) in order.iter().enumerate() {
                for (high_name, high) in &order[i + 1..] {
                    if let (Some(l), Some(h)) = (low, high) {
                        if l > h {
                            errs.push(FieldError::invalid(
                                &format!("{}[{r}]", child(&p, low_name)),
                                q(&l.to_string()),
                                &format!("{low_name} value {l} is greater than {high_name} value {h}"),
                            ));
                        }
                    }
                }
            }
        }
    }
}

const POLICY_TYPES: &[&str] = &["Egress", "Ingress"];

/// `SetDefaults_NetworkPolicy`: policyTypes from the rules present, TCP ports.
pub(crate) fn default_network_policy(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if spec.get("policyTypes").and_then(Value::as_array).is_none_or(|t| t.is_empty()) {
        let mut types = vec![json!("Ingress")];
        if spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    for direction in ["ingress", "egress"] {
        for rule in spec.get_mut(direction).and_then(Value::as_array_mut).into_iter().flatten() {
            for port in rule.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(p) = port.as_object_mut() {
                    if p.get("protocol").is_none_or(Value::is_null) {
                        p.insert("protocol".into(), json!("TCP"));
                    }
                }
            }
        }
    }
}

/// `ValidateNetworkPolicy`: selectors, policy types, ports and peers (an ipBlock alone, or
/// pod and namespace selectors).
pub(crate) fn validate_network_policy(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let spec = spec(errs, obj);
    match obj_at(errs, &spec, "spec", "podSelector") {
        Some(selector) => {
            meta::validate_label_selector(errs, selector, "spec.podSelector");
        }
        None => errs.push(FieldError::required("spec.podSelector", "")),
    }
    let types = str_list_at(errs, &spec, "spec", "policyTypes");
    if types.len() > 2 {
        errs.push(FieldError::forbidden("spec.policyTypes", "may not specify more than two policyTypes"));
    }
    for (p, t) in types {
        if !POLICY_TYPES.contains(&t) {
            errs.push(FieldError::not_supported(&p, q(t), POLICY_TYPES));
        }
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (rp, rule) in objects_at(errs, &spec, "spec", direction) {
            for (pp, port) in objects_at(errs, rule, &rp, "ports") {
                if get(port, "protocol").is_some() {
                    pod::protocol(errs, port, &pp);
                }
                if get(port, "port").is_some() {
                    pod::port_num_or_name(errs, port, &pp, "port");
                }
                if let Some(end) = int_at(errs, port, &pp, "endPort") {
                    match get(port, "port").and_then(Value::as_i64) {
                        Some(start) if end >= start => pod::port_num(errs, &child(&pp, "endPort"), end),
                        Some(_) => errs.push(FieldError::invalid(
                            &child(&pp, "endPort"),
                            end.to_string(),
                            "must be greater than or equal to `port`",
                        )),
                        None => errs.push(FieldError::required(
                            &child(&pp, "port"),
                            "when endPort is specified, port must be specified",
                        )),
                    }
                }
            }
            for (peer_path, peer) in objects_at(errs, rule, &rp, peers) {
                validate_peer(errs, peer, &peer_path);
            }
        }
    }
}

fn validate_peer(errs: &mut Errs, peer: &Value, path: &str) {
    let pods = obj_at(errs, peer, path, "podSelector");
    let namespaces = obj_at(errs, peer, path, "namespaceSelector");
    let block = obj_at(errs, peer, path, "ipBlock");
    if let Some(s) = pods {
        meta::validate_label_selector(errs, s, &child(path, "podSelector"));
    }
    if let Some(s) = namespaces {
        meta::validate_label_selector(errs, s, &child(path, "namespaceSelector"));
    }
    match (block, pods.is_some() || namespaces.is_some()) {
        (None, false) => errs.push(FieldError::required(path, "must specify a peer")),
        (Some(_), true) => errs.push(FieldError::forbidden(path, "may not specify more than 1 peer")),
        (Some(block), false) => validate_ip_block(errs, block, &child(path, "ipBlock")),
        (None, true) => {}
    }
}

fn validate_ip_block(errs: &mut Errs, block: &Value, path: &str) {
    let cidr_field = child(path, "cidr");
    let Some(cidr) = str_at(errs, block, path, "cidr").filter(|c| !c.is_empty()) else {
        errs.push(FieldError::required(&cidr_field, ""));
        return;
    };
    let Some(net) = Cidr::parse(cidr) else {
        errs.push(FieldError::invalid(
            &cidr_field,
            q(cidr),
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
        return;
    };
    for (p, except) in str_list_at(errs, block, path, "except") {
        match Cidr::parse(except) {
            None => errs.push(FieldError::invalid(
                &p,
                q(except),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
            Some(e) if !net.strictly_contains(&e) => {
                errs.push(FieldError::invalid(&p, q(except), "must be a strict subset of `cidr`"))
            }
            Some(_) => {}
        }
    }
}

/// An IPv4 or IPv6 CIDR (`10.0.0.0/8`, `2001:db8::/64`), as NetworkPolicy ipBlocks hold.
struct Cidr {
    v6: bool,
    bits: u128,
    prefix: u32,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let prefix: u32 = prefix.parse().ok()?;
        let (v6, bits, width) = match addr.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            std::net::IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        (prefix <= width).then_some(Cidr { v6, bits: bits << (128 - width), prefix })
    }

    fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix)
        }
    }

    /// Whether `other` is a smaller range inside this one.
    fn strictly_contains(&self, other: &Cidr) -> bool {
        self.v6 == other.v6 && other.prefix > self.prefix && (other.bits & self.mask()) == (self.bits & self.mask())
    }
}

/// `ValidateControllerRevision`: a revision number that is not negative.
pub(crate) fn validate_controller_revision(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    if let Some(revision) = int_at(errs, obj, "", "revision") {
        meta::nonnegative(errs, "revision", revision);
    }
}

/// `ValidateControllerRevisionUpdate`: a revision's data never changes.
pub(crate) fn validate_controller_revision_update(old: &Value, new: &Value, errs: &mut Errs) {
    if old.get("data") != new.get("data") {
        errs.push(FieldError::invalid("data", String::new(), IMMUTABLE));
    }
}
