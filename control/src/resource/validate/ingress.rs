//! networking.k8s.io/v1 Ingress and IngressClass validation (`ValidateIngress`,
//! `ValidateIngressClass`): rules' hosts (wildcards only as the first label), paths and
//! their types, and backends that name a Service port or a resource, never both.

use serde_json::Value;

use super::json::{child, int_at, obj_at, objects_at, q, str_at};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::pod;
use super::{Errs, FieldError};

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

/// A backend: exactly one of `service` (with a name and a port number or name) and
/// `resource`.
fn validate_backend(errs: &mut Errs, backend: &Value, path: &str) {
    let service = obj_at(errs, backend, path, "service");
    let resource = obj_at(errs, backend, path, "resource");
    match (service, resource) {
        (Some(_), Some(_)) => {
            errs.push(FieldError::invalid(path, String::new(), "cannot set both resource and service backends"))
        }
        (None, None) => errs.push(FieldError::invalid(path, String::new(), "resource or service backend is required")),
        (None, Some(r)) => {
            let rp = child(path, "resource");
            for f in ["kind", "name"] {
                if str_at(errs, r, &rp, f).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(&child(&rp, f), ""));
                }
            }
        }
        (Some(s), None) => {
            let sp = child(path, "service");
            match str_at(errs, s, &sp, "name") {
                None | Some("") => errs.push(FieldError::required(&child(&sp, "name"), "")),
                Some(name) => push_all(errs, &child(&sp, "name"), name, names::is_dns1035_label(name)),
            }
            let pp = child(&sp, "port");
            let Some(port) = obj_at(errs, s, &sp, "port") else {
                errs.push(FieldError::required(&pp, "port name or number is required"));
                return;
            };
            let name = str_at(errs, port, &pp, "name").filter(|n| !n.is_empty());
            let number = int_at(errs, port, &pp, "number").filter(|n| *n != 0);
            match (name, number) {
                (Some(_), Some(_)) => {
                    errs.push(FieldError::invalid(&pp, String::new(), "cannot set both port name & port number"))
                }
                (None, None) => errs.push(FieldError::required(&pp, "port name or number is required")),
                (Some(n), None) => names::validate_dns1123_label(errs, &child(&pp, "name"), n),
                (None, Some(n)) => pod::port_num(errs, &child(&pp, "number"), n),
            }
        }
    }
}

/// A rule's host: a DNS subdomain, optionally `*.` first; never an IP address.
fn validate_host(errs: &mut Errs, field: &str, host: &str) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        errs.push(FieldError::invalid(field, q(host), "must be a DNS name, not an IP address"));
        return;
    }
    match host.strip_prefix("*.") {
        Some(rest) => push_all(errs, field, host, names::is_dns1123_subdomain(rest)),
        None if host.contains('*') => errs.push(FieldError::invalid(
            field,
            q(host),
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain",
        )),
        None => push_all(errs, field, host, names::is_dns1123_subdomain(host)),
    }
}

/// `ValidateIngress` (networking.k8s.io/v1).
pub(crate) fn validate_ingress(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    if let Some(class) = str_at(errs, spec, "spec", "ingressClassName").filter(|c| !c.is_empty()) {
        push_all(errs, "spec.ingressClassName", class, names::is_dns1123_subdomain(class));
    }
    let default_backend = obj_at(errs, spec, "spec", "defaultBackend");
    if let Some(b) = default_backend {
        validate_backend(errs, b, "spec.defaultBackend");
    }
    let rules = objects_at(errs, spec, "spec", "rules");
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            "spec.rules",
            String::new(),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (rp, rule) in &rules {
        if let Some(host) = str_at(errs, rule, rp, "host").filter(|h| !h.is_empty()) {
            validate_host(errs, &child(rp, "host"), host);
        }
        let Some(http) = obj_at(errs, rule, rp, "http") else { continue };
        let hp = child(rp, "http");
        let paths = objects_at(errs, http, &hp, "paths");
        if paths.is_empty() {
            errs.push(FieldError::required(&child(&hp, "paths"), ""));
        }
        for (pp, p) in &paths {
            let path_type = str_at(errs, p, pp, "pathType").unwrap_or_default();
            match path_type {
                "" => errs.push(FieldError::required(&child(pp, "pathType"), "pathType must be specified")),
                t if !PATH_TYPES.contains(&t) => {
                    errs.push(FieldError::not_supported(&child(pp, "pathType"), q(t), PATH_TYPES))
                }
                _ => {}
            }
            let path = str_at(errs, p, pp, "path").unwrap_or_default();
            if matches!(path_type, "Exact" | "Prefix") && !path.starts_with('/') {
                errs.push(FieldError::invalid(&child(pp, "path"), q(path), "must be an absolute path"));
            }
            if matches!(path_type, "Exact" | "Prefix")
                && (path.contains("//") || path.contains("/./") || path.contains("/../"))
            {
                errs.push(FieldError::invalid(&child(pp, "path"), q(path), "must not contain '//', '/./' or '/../'"));
            }
            match obj_at(errs, p, pp, "backend") {
                Some(b) => validate_backend(errs, b, &child(pp, "backend")),
                None => errs.push(FieldError::required(&child(pp, "backend"), "")),
            }
        }
    }
}

/// `ValidateIngressClass` (networking.k8s.io/v1): a controller name is required.
pub(crate) fn validate_ingress_class(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    match str_at(errs, spec, "spec", "controller") {
        None | Some("") => errs.push(FieldError::required("spec.controller", "")),
        Some(c) if c.len() > 250 => errs.push(FieldError::too_long("spec.controller", 250)),
        Some(_) => {}
    }
}
