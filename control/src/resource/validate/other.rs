//! coordination.k8s.io Lease, autoscaling HorizontalPodAutoscaler (v2, with v1's
//! `targetCPUUtilizationPercentage` accepted too) and certificates.k8s.io
//! CertificateSigningRequest.

use serde_json::Value;

use super::json::{child, get, int_at, obj_at, objects_at, q, str_at, string_or_empty};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::pod;
use super::{Errs, FieldError};

pub(crate) fn validate_lease(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let Some(spec) = obj_at(errs, obj, "", "spec") else { return };
    let p = "spec";
    if let Some(d) = int_at(errs, spec, p, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(FieldError::invalid("spec.leaseDurationSeconds", d.to_string(), "must be greater than 0"));
    }
    if let Some(t) = int_at(errs, spec, p, "leaseTransitions").filter(|t| *t < 0) {
        errs.push(FieldError::invalid("spec.leaseTransitions", t.to_string(), "must be greater than or equal to 0"));
    }
    for f in ["holderIdentity", "acquireTime", "renewTime", "strategy", "preferredHolder"] {
        str_at(errs, spec, p, f);
    }
}

const METRIC_TYPES: &[&str] = &["ContainerResource", "External", "Object", "Pods", "Resource"];

pub(crate) fn validate_hpa(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    let p = "spec";
    let min = int_at(errs, spec, p, "minReplicas");
    let max = int_at(errs, spec, p, "maxReplicas").unwrap_or(0);
    if let Some(min) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid("spec.minReplicas", min.to_string(), "must be greater than or equal to 1"));
    }
    if max < 1 {
        errs.push(FieldError::invalid("spec.maxReplicas", max.to_string(), "must be greater than 0"));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let target = obj_at(errs, spec, p, "scaleTargetRef").unwrap_or(&empty);
    for f in ["kind", "name"] {
        let v = string_or_empty(errs, target, "spec.scaleTargetRef", f);
        let field = child("spec.scaleTargetRef", f);
        if v.is_empty() {
            errs.push(FieldError::required(&field, ""));
        } else {
            push_all(errs, &field, v, names::is_valid_path_segment_name(v));
        }
    }
    if let Some(cpu) = int_at(errs, spec, p, "targetCPUUtilizationPercentage").filter(|c| *c < 1) {
        errs.push(FieldError::invalid(
            "spec.targetCPUUtilizationPercentage",
            cpu.to_string(),
            "must be greater than 0",
        ));
    }
    for (mp, metric) in objects_at(errs, spec, p, "metrics") {
        validate_metric(errs, metric, &mp);
    }
}

fn validate_metric(errs: &mut Errs, metric: &Value, path: &str) {
    let ty = string_or_empty(errs, metric, path, "type");
    let source_key = match ty {
        "" => {
            errs.push(FieldError::required(&child(path, "type"), "must specify a metric source type"));
            return;
        }
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        other => {
            errs.push(FieldError::not_supported(&child(path, "type"), q(other), METRIC_TYPES));
            return;
        }
    };
    let sp = child(path, source_key);
    let Some(source) = obj_at(errs, metric, path, source_key) else {
        errs.push(FieldError::required(&sp, "must populate information for the given metric source"));
        return;
    };
    if matches!(source_key, "resource" | "containerResource") {
        if string_or_empty(errs, source, &sp, "name").is_empty() {
            errs.push(FieldError::required(&child(&sp, "name"), "must specify a resource name"));
        }
        if source_key == "containerResource" && string_or_empty(errs, source, &sp, "container").is_empty() {
            errs.push(FieldError::required(&child(&sp, "container"), "must specify a container"));
        }
    } else {
        let mp = child(&sp, "metric");
        let name = obj_at(errs, source, &sp, "metric").map(|m| string_or_empty(errs, m, &mp, "name")).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&child(&mp, "name"), "must specify a metric name"));
        }
    }
    let tp = child(&sp, "target");
    let Some(target) = obj_at(errs, source, &sp, "target") else {
        errs.push(FieldError::required(&tp, "must specify a metric target"));
        return;
    };
    match string_or_empty(errs, target, &tp, "type") {
        "" => errs.push(FieldError::required(&child(&tp, "type"), "must specify a metric target type")),
        "Utilization" | "Value" | "AverageValue" => {}
        other => errs.push(FieldError::invalid(
            &child(&tp, "type"),
            q(other),
            "must be either Utilization, Value, or AverageValue",
        )),
    }
    if let Some(u) = int_at(errs, target, &tp, "averageUtilization").filter(|u| *u <= 0) {
        errs.push(FieldError::invalid(&child(&tp, "averageUtilization"), u.to_string(), "must be greater than 0"));
    }
    for f in ["value", "averageValue"] {
        if let Some(v) = get(target, f) {
            if let Some(qty) = pod::quantity_value(errs, &child(&tp, f), v) {
                if qty.nanos() <= 0 {
                    errs.push(FieldError::invalid(&child(&tp, f), q(&qty.canonical()), "must be positive"));
                }
            }
        }
    }
    if matches!(source_key, "resource" | "containerResource") {
        let has_util = get(target, "averageUtilization").is_some();
        let has_avg = get(target, "averageValue").is_some();
        if !has_util && !has_avg {
            errs.push(FieldError::required(
                &child(&tp, "averageUtilization"),
                "must set either a target raw value or a target utilization",
            ));
        } else if has_util && has_avg {
            errs.push(FieldError::forbidden(
                &child(&tp, "averageValue"),
                "may not set both a target raw value and a target utilization",
            ));
        }
    }
}

/// The key usages a CertificateSigningRequest may ask for (kube's `KeyUsage` values).
const KEY_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// `certificates.k8s.io/v1` CertificateSigningRequest (kube's `ValidateCertificateRequest`).
pub(crate) fn validate_csr(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, false, NameRule::Subdomain, errs);
    let Some(spec) = obj_at(errs, obj, "", "spec") else { return };
    match spec.get("request").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.request", "")),
        Some(b64) => {
            use base64::Engine;
            let pem =
                base64::engine::general_purpose::STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok());
            match pem.map(|p| berth_proto::pki::csr_subject(&p)) {
                Some(Ok(_)) => {}
                _ => errs.push(FieldError::invalid(
                    "spec.request",
                    "[]byte{...}".to_string(),
                    "PEM block type must be CERTIFICATE REQUEST",
                )),
            }
        }
    }
    match str_at(errs, spec, "spec", "signerName") {
        None | Some("") => errs.push(FieldError::required("spec.signerName", "")),
        Some(signer) if !signer.contains('/') => errs.push(FieldError::invalid(
            "spec.signerName",
            q(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )),
        Some(_) => {}
    }
    match spec.get("usages").and_then(Value::as_array) {
        None => errs.push(FieldError::required("spec.usages", "")),
        Some(usages) => {
            for (i, u) in usages.iter().enumerate() {
                let u = u.as_str().unwrap_or("");
                if !KEY_USAGES.contains(&u) {
                    errs.push(FieldError::not_supported(&format!("spec.usages[{i}]"), q(u), KEY_USAGES));
                }
            }
        }
    }
    if let Some(s) = int_at(errs, spec, "spec", "expirationSeconds").filter(|s| *s < 600) {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            s.to_string(),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
}
