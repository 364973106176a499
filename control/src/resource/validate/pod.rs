//! Pod rules: `ValidatePodSpec` (volumes, containers, init containers, probes, resources,
//! tolerations, enums), pod templates as embedded in workload controllers, and
//! `ValidatePodUpdate`'s "spec is immutable except ..." rule.

use std::collections::BTreeSet;

use serde_json::Value;

use super::json::{
    self, arr_at, bool_at, child, get, index, int_at, key, obj_at, objects_at, q, render, str_at, str_list_at,
    string_or_empty,
};
use super::meta::{self, nonnegative};
use super::names::{self, push_all, NameRule};
use super::{Errs, FieldError};
use berth_proto::Quantity;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
pub(crate) const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_INT32: i64 = i32::MAX as i64;

/// Every member of `core.VolumeSource`; exactly one must be set.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

pub(crate) fn validate_pod(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    validate_pod_spec(spec, "spec", &[], errs);
}

/// `ValidatePodTemplateSpec` for `parent[k]`; a missing template validates as an empty one,
/// which is what Go's zero value does.
/// `extra_volumes` are names that volumeMounts may use besides `spec.volumes` (a
/// StatefulSet's volumeClaimTemplates).
pub(crate) fn validate_pod_template(errs: &mut Errs, parent: &Value, path: &str, k: &str, extra_volumes: &[&str]) {
    let empty = Value::Object(Default::default());
    let tpath = child(path, k);
    let template = obj_at(errs, parent, path, k).unwrap_or(&empty);
    let tmeta = obj_at(errs, template, &tpath, "metadata").unwrap_or(&empty);
    let meta_path = child(&tpath, "metadata");
    // Kubernetes reports template labels at `template.labels` (no `metadata`), historically.
    let labels = json::str_map_at(errs, tmeta, &meta_path, "labels");
    names::validate_labels(errs, &child(&tpath, "labels"), &labels);
    let annotations = json::str_map_at(errs, tmeta, &meta_path, "annotations");
    names::validate_annotations(errs, &child(&tpath, "annotations"), &annotations);
    let spec = obj_at(errs, template, &tpath, "spec").unwrap_or(&empty);
    validate_pod_spec(spec, &child(&tpath, "spec"), extra_volumes, errs);
}

/// The template's labels, read leniently (already validated).
pub(crate) fn template_labels<'a>(parent: &'a Value, k: &str) -> Vec<(&'a str, &'a str)> {
    json::dig(parent, &[k, "metadata"]).map(|m| meta::peek_str_map(m, "labels")).unwrap_or_default()
}

/// The labels of the pod template under `spec.template` must match the workload's selector.
pub(crate) fn validate_template_matches(errs: &mut Errs, spec: &Value, sel: &meta::Selector) {
    let labels = template_labels(spec, "template");
    if !sel.matches(&labels) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            json::render_string_map(&labels),
            "`selector` does not match template `labels`",
        ));
    }
}

pub(crate) fn validate_pod_spec(spec: &Value, path: &str, extra_volumes: &[&str], errs: &mut Errs) {
    let mut volumes = validate_volumes(spec, path, errs);
    volumes.extend(extra_volumes.iter().copied());
    let host_network = bool_at(errs, spec, path, "hostNetwork").unwrap_or(false);
    let mut container_names = BTreeSet::new();
    let containers = objects_at(errs, spec, path, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&child(path, "containers"), ""));
    }
    for (p, c) in &containers {
        validate_container(c, p, ContainerKind::Regular, &volumes, &mut container_names, host_network, errs);
    }
    for (p, c) in objects_at(errs, spec, path, "initContainers") {
        validate_container(c, &p, ContainerKind::Init, &volumes, &mut container_names, host_network, errs);
    }

    match str_at(errs, spec, path, "restartPolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(&child(path, "restartPolicy"), "")),
        p if RESTART_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(&child(path, "restartPolicy"), q(p), RESTART_POLICIES)),
    }
    let dns_policy = str_at(errs, spec, path, "dnsPolicy").unwrap_or("");
    match dns_policy {
        "" => errs.push(FieldError::required(&child(path, "dnsPolicy"), "")),
        p if DNS_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(&child(path, "dnsPolicy"), q(p), DNS_POLICIES)),
    }
    let dns_config = obj_at(errs, spec, path, "dnsConfig");
    if dns_policy == "None" && dns_config.is_none() {
        errs.push(FieldError::required(&child(path, "dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"));
    }

    meta::validate_labels_at(errs, spec, path, "nodeSelector");
    for field in ["serviceAccountName", "nodeName", "priorityClassName"] {
        if let Some(v) = str_at(errs, spec, path, field).filter(|s| !s.is_empty()) {
            push_all(errs, &child(path, field), v, names::is_dns1123_subdomain(v));
        }
    }
    for field in ["hostname", "subdomain"] {
        if let Some(v) = str_at(errs, spec, path, field).filter(|s| !s.is_empty()) {
            push_all(errs, &child(path, field), v, names::is_dns1123_label(v));
        }
    }
    if let Some(v) = int_at(errs, spec, path, "activeDeadlineSeconds") {
        if !(1..=MAX_INT32).contains(&v) {
            errs.push(FieldError::invalid(
                &child(path, "activeDeadlineSeconds"),
                v.to_string(),
                &names::inclusive_range_error(1, MAX_INT32),
            ));
        }
    }
    int_at(errs, spec, path, "terminationGracePeriodSeconds");
    validate_tolerations(errs, spec, path);
    if let Some(sc) = obj_at(errs, spec, path, "securityContext") {
        validate_security_context_ids(
            errs,
            sc,
            &child(path, "securityContext"),
            &["runAsUser", "runAsGroup", "fsGroup"],
        );
    }
    for (p, s) in objects_at(errs, spec, path, "imagePullSecrets") {
        str_at(errs, s, &p, "name");
    }
}

fn validate_security_context_ids(errs: &mut Errs, sc: &Value, path: &str, fields: &[&str]) {
    for f in fields {
        if let Some(id) = int_at(errs, sc, path, f) {
            if !(0..=MAX_INT32).contains(&id) {
                errs.push(FieldError::invalid(
                    &child(path, f),
                    id.to_string(),
                    &names::inclusive_range_error(0, MAX_INT32),
                ));
            }
        }
    }
}

fn validate_tolerations(errs: &mut Errs, spec: &Value, path: &str) {
    for (p, t) in objects_at(errs, spec, path, "tolerations") {
        let key = string_or_empty(errs, t, &p, "key");
        if !key.is_empty() {
            push_all(errs, &child(&p, "key"), key, names::is_qualified_name(key));
        }
        let operator = string_or_empty(errs, t, &p, "operator");
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &child(&p, "operator"),
                q(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = string_or_empty(errs, t, &p, "effect");
        if int_at(errs, t, &p, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &child(&p, "effect"),
                q(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = string_or_empty(errs, t, &p, "value");
        match operator {
            "" | "Equal" => push_all(errs, &child(&p, "value"), value, names::is_label_value(value)),
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        &child(&p, "operator"),
                        render(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(&child(&p, "operator"), q(other), TOLERATION_OPERATORS)),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(&child(&p, "effect"), q(effect), TAINT_EFFECTS));
        }
    }
}

/// Validates `spec.volumes`, returning the declared names for volumeMount checks.
fn validate_volumes<'a>(spec: &'a Value, path: &str, errs: &mut Errs) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    for (p, vol) in objects_at(errs, spec, path, "volumes") {
        let name_path = child(&p, "name");
        let name = string_or_empty(errs, vol, &p, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            names::validate_dns1123_label(errs, &name_path, name);
        }
        if !seen.insert(name) && !name.is_empty() {
            errs.push(FieldError::duplicate(&name_path, q(name)));
        }
        let sources: Vec<&str> = VOLUME_SOURCES.iter().copied().filter(|s| get(vol, s).is_some()).collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&p, "must specify a volume type")),
            [one] => validate_volume_source(errs, vol, &p, one),
            [_, rest @ ..] => {
                for extra in rest {
                    errs.push(FieldError::forbidden(&child(&p, extra), "may not specify more than 1 volume type"));
                }
            }
        }
    }
    seen
}

fn validate_volume_source(errs: &mut Errs, vol: &Value, path: &str, source: &str) {
    let Some(src) = obj_at(errs, vol, path, source) else { return };
    let sp = child(path, source);
    let required = |errs: &mut Errs, field: &str| {
        if str_at(errs, src, &sp, field).unwrap_or("").is_empty() {
            errs.push(FieldError::required(&child(&sp, field), ""));
        }
    };
    match source {
        "hostPath" => {
            required(errs, "path");
            const TYPES: &[&str] =
                &["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];
            let t = string_or_empty(errs, src, &sp, "type");
            if !TYPES.contains(&t) {
                errs.push(FieldError::not_supported(&child(&sp, "type"), q(t), TYPES));
            }
        }
        "secret" => required(errs, "secretName"),
        "configMap" => required(errs, "name"),
        "persistentVolumeClaim" => required(errs, "claimName"),
        "nfs" => {
            required(errs, "server");
            required(errs, "path");
        }
        "emptyDir" => {
            if let Some(v) = get(src, "sizeLimit") {
                quantity_value(errs, &child(&sp, "sizeLimit"), v);
            }
        }
        _ => {}
    }
    if matches!(source, "secret" | "configMap" | "downwardAPI" | "projected") {
        if let Some(mode) = int_at(errs, src, &sp, "defaultMode") {
            if !(0..=0o777).contains(&mode) {
                errs.push(FieldError::invalid(&child(&sp, "defaultMode"), mode.to_string(), FILE_MODE_MSG));
            }
        }
        for (ip, item) in objects_at(errs, src, &sp, "items") {
            if source != "downwardAPI" && string_or_empty(errs, item, &ip, "key").is_empty() {
                errs.push(FieldError::required(&child(&ip, "key"), ""));
            }
            let item_path = string_or_empty(errs, item, &ip, "path");
            if item_path.is_empty() {
                errs.push(FieldError::required(&child(&ip, "path"), ""));
            } else {
                validate_local_descending_path(errs, &child(&ip, "path"), item_path);
            }
        }
    }
}

fn validate_local_descending_path(errs: &mut Errs, field: &str, p: &str) {
    if p.starts_with('/') {
        errs.push(FieldError::invalid(field, q(p), "must be a relative path"));
    }
    if p.split(['/', '\\']).any(|seg| seg == "..") {
        errs.push(FieldError::invalid(field, q(p), "must not contain '..'"));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ContainerKind {
    Regular,
    Init,
}

fn validate_container<'a>(
    c: &'a Value,
    path: &str,
    kind: ContainerKind,
    volumes: &BTreeSet<&str>,
    names_seen: &mut BTreeSet<&'a str>,
    host_network: bool,
    errs: &mut Errs,
) {
    let name_path = child(path, "name");
    let name = string_or_empty(errs, c, path, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        names::validate_dns1123_label(errs, &name_path, name);
    }
    if !name.is_empty() && !names_seen.insert(name) {
        errs.push(FieldError::duplicate(&name_path, q(name)));
    }

    let image = string_or_empty(errs, c, path, "image");
    if image.is_empty() {
        errs.push(FieldError::required(&child(path, "image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(&child(path, "image"), q(image), "must not have leading or trailing whitespace"));
    }
    match str_at(errs, c, path, "imagePullPolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(&child(path, "imagePullPolicy"), "")),
        p if PULL_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(&child(path, "imagePullPolicy"), q(p), PULL_POLICIES)),
    }
    match str_at(errs, c, path, "terminationMessagePolicy").unwrap_or("") {
        "" => errs.push(FieldError::required(&child(path, "terminationMessagePolicy"), "")),
        p if TERMINATION_MESSAGE_POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(
            &child(path, "terminationMessagePolicy"),
            q(p),
            TERMINATION_MESSAGE_POLICIES,
        )),
    }
    str_list_at(errs, c, path, "command");
    str_list_at(errs, c, path, "args");

    let restart_policy = str_at(errs, c, path, "restartPolicy");
    let sidecar = restart_policy == Some("Always");
    match (kind, restart_policy) {
        (_, None) => {}
        (ContainerKind::Regular, Some(_)) => {
            errs.push(FieldError::forbidden(&child(path, "restartPolicy"), "may not be set for non-init containers"))
        }
        (ContainerKind::Init, Some(p)) if p != "Always" => {
            errs.push(FieldError::not_supported(&child(path, "restartPolicy"), q(p), &["Always"]))
        }
        _ => {}
    }

    validate_container_ports(errs, c, path, host_network);
    validate_env(errs, c, path);
    validate_volume_mounts(errs, c, path, volumes);
    if let Some(r) = obj_at(errs, c, path, "resources") {
        validate_resource_requirements(errs, r, &child(path, "resources"));
    }
    if let Some(sc) = obj_at(errs, c, path, "securityContext") {
        validate_security_context_ids(errs, sc, &child(path, "securityContext"), &["runAsUser", "runAsGroup"]);
    }

    let probes_allowed = kind == ContainerKind::Regular || sidecar;
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = obj_at(errs, c, path, probe) else { continue };
        let pp = child(path, probe);
        if !probes_allowed {
            errs.push(FieldError::forbidden(&pp, "may not be set for init containers without restartPolicy=Always"));
            continue;
        }
        validate_probe(errs, p, &pp);
        if probe != "readinessProbe" {
            if let Some(st) = int_at(errs, p, &pp, "successThreshold").filter(|v| *v != 1) {
                errs.push(FieldError::invalid(&child(&pp, "successThreshold"), st.to_string(), "must be 1"));
            }
        }
    }
    if let Some(lc) = obj_at(errs, c, path, "lifecycle") {
        let lp = child(path, "lifecycle");
        if !probes_allowed {
            errs.push(FieldError::forbidden(&lp, "may not be set for init containers without restartPolicy=Always"));
        } else {
            for hook in ["postStart", "preStop"] {
                if let Some(h) = obj_at(errs, lc, &lp, hook) {
                    validate_handler(errs, h, &child(&lp, hook), &["exec", "httpGet", "tcpSocket", "sleep"]);
                }
            }
        }
    }
}

fn validate_container_ports(errs: &mut Errs, c: &Value, path: &str, host_network: bool) {
    let mut port_names = BTreeSet::new();
    for (p, port) in objects_at(errs, c, path, "ports") {
        if let Some(name) = str_at(errs, port, &p, "name").filter(|s| !s.is_empty()) {
            push_all(errs, &child(&p, "name"), name, names::is_valid_port_name(name));
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(&child(&p, "name"), q(name)));
            }
        }
        let container_port = int_at(errs, port, &p, "containerPort").unwrap_or(0);
        if container_port == 0 {
            errs.push(FieldError::required(&child(&p, "containerPort"), ""));
        } else {
            port_num(errs, &child(&p, "containerPort"), container_port);
        }
        if let Some(hp) = int_at(errs, port, &p, "hostPort").filter(|v| *v != 0) {
            port_num(errs, &child(&p, "hostPort"), hp);
            if host_network && hp != container_port {
                errs.push(FieldError::invalid(
                    &child(&p, "hostPort"),
                    hp.to_string(),
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
        protocol(errs, port, &p);
    }
}

/// `Required` / `NotSupported` check of a port's `protocol`.
pub(crate) fn protocol(errs: &mut Errs, port: &Value, path: &str) {
    match str_at(errs, port, path, "protocol").unwrap_or("") {
        "" => errs.push(FieldError::required(&child(path, "protocol"), "")),
        p if PROTOCOLS.contains(&p) => {}
        p => errs.push(FieldError::not_supported(&child(path, "protocol"), q(p), PROTOCOLS)),
    }
}

pub(crate) fn port_num(errs: &mut Errs, field: &str, port: i64) {
    for m in names::is_valid_port_num(port) {
        errs.push(FieldError::invalid(field, port.to_string(), &m));
    }
}

/// `ValidatePortNumOrName` for an IntOrString port at `obj[k]`.
pub(crate) fn port_num_or_name(errs: &mut Errs, obj: &Value, path: &str, k: &str) {
    let field = child(path, k);
    match get(obj, k) {
        None => port_num(errs, &field, 0),
        Some(Value::String(s)) => push_all(errs, &field, s, names::is_valid_port_name(s)),
        Some(v) => match v.as_i64() {
            Some(n) => port_num(errs, &field, n),
            None => errs.push(json::type_error(&field, v, "integer or string")),
        },
    }
}

fn validate_env(errs: &mut Errs, c: &Value, path: &str) {
    for (p, ev) in objects_at(errs, c, path, "env") {
        let name = string_or_empty(errs, ev, &p, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&child(&p, "name"), ""));
        } else {
            push_all(errs, &child(&p, "name"), name, names::is_relaxed_env_var_name(name));
        }
        let value = string_or_empty(errs, ev, &p, "value");
        let Some(from) = obj_at(errs, ev, &p, "valueFrom") else { continue };
        let fp = child(&p, "valueFrom");
        let refs: Vec<&str> = ["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"]
            .into_iter()
            .filter(|r| get(from, r).is_some())
            .collect();
        if refs.is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                q(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if refs.len() > 1 {
            errs.push(FieldError::invalid(&fp, q(""), "may not have more than one field specified at a time"));
        }
        if !value.is_empty() {
            errs.push(FieldError::invalid(&fp, q(""), "may not be specified when `value` is not empty"));
        }
        if let Some(fr) = obj_at(errs, from, &fp, "fieldRef") {
            let frp = child(&fp, "fieldRef");
            let field_path = string_or_empty(errs, fr, &frp, "fieldPath");
            let labelish =
                field_path.starts_with("metadata.labels[") || field_path.starts_with("metadata.annotations[");
            if field_path.is_empty() {
                errs.push(FieldError::required(&child(&frp, "fieldPath"), ""));
            } else if !labelish && !ENV_FIELD_PATHS.contains(&field_path) {
                errs.push(FieldError::not_supported(&child(&frp, "fieldPath"), q(field_path), ENV_FIELD_PATHS));
            }
        }
        for r in ["configMapKeyRef", "secretKeyRef"] {
            let Some(kr) = obj_at(errs, from, &fp, r) else { continue };
            let krp = child(&fp, r);
            let k = string_or_empty(errs, kr, &krp, "key");
            if k.is_empty() {
                errs.push(FieldError::required(&child(&krp, "key"), ""));
            } else {
                push_all(errs, &child(&krp, "key"), k, names::is_config_map_key(k));
            }
        }
        if let Some(rr) = obj_at(errs, from, &fp, "resourceFieldRef") {
            let rrp = child(&fp, "resourceFieldRef");
            if string_or_empty(errs, rr, &rrp, "resource").is_empty() {
                errs.push(FieldError::required(&child(&rrp, "resource"), ""));
            }
        }
    }
    for (p, ef) in objects_at(errs, c, path, "envFrom") {
        let refs = ["configMapRef", "secretRef"].iter().filter(|r| get(ef, r).is_some()).count();
        if refs == 0 {
            errs.push(FieldError::invalid(&p, q(""), "must specify one of: `configMapRef` or `secretRef`"));
        } else if refs > 1 {
            errs.push(FieldError::invalid(&p, q(""), "may not have more than one field specified at a time"));
        }
        for r in ["configMapRef", "secretRef"] {
            if let Some(rf) = obj_at(errs, ef, &p, r) {
                let rp = child(&p, r);
                let name = string_or_empty(errs, rf, &rp, "name");
                if name.is_empty() {
                    errs.push(FieldError::required(&child(&rp, "name"), ""));
                } else {
                    push_all(errs, &child(&rp, "name"), name, names::is_dns1123_subdomain(name));
                }
            }
        }
    }
}

fn validate_volume_mounts(errs: &mut Errs, c: &Value, path: &str, volumes: &BTreeSet<&str>) {
    let mut mount_paths = BTreeSet::new();
    for (p, m) in objects_at(errs, c, path, "volumeMounts") {
        let name = string_or_empty(errs, m, &p, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&child(&p, "name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(&child(&p, "name"), q(name)));
        }
        let mount_path = string_or_empty(errs, m, &p, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(&child(&p, "mountPath"), ""));
        } else if !mount_paths.insert(mount_path) {
            errs.push(FieldError::invalid(&child(&p, "mountPath"), q(mount_path), "must be unique"));
        }
        if let Some(sub) = str_at(errs, m, &p, "subPath").filter(|s| !s.is_empty()) {
            validate_local_descending_path(errs, &child(&p, "subPath"), sub);
        }
        bool_at(errs, m, &p, "readOnly");
    }
}

fn validate_probe(errs: &mut Errs, probe: &Value, path: &str) {
    validate_handler(errs, probe, path, &["exec", "httpGet", "tcpSocket", "grpc"]);
    for f in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        if let Some(v) = int_at(errs, probe, path, f) {
            nonnegative(errs, &child(path, f), v);
        }
    }
    if let Some(v) = int_at(errs, probe, path, "terminationGracePeriodSeconds").filter(|v| *v <= 0) {
        errs.push(FieldError::invalid(
            &child(path, "terminationGracePeriodSeconds"),
            v.to_string(),
            "must be greater than 0",
        ));
    }
}

/// Exactly one handler of `kinds` must be set (probes and lifecycle hooks).
fn validate_handler(errs: &mut Errs, h: &Value, path: &str, kinds: &[&str]) {
    let set: Vec<&str> = kinds.iter().copied().filter(|k| get(h, k).is_some()).collect();
    if set.is_empty() {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    for extra in set.iter().skip(1) {
        errs.push(FieldError::forbidden(&child(path, extra), "may not specify more than 1 handler type"));
    }
    if let Some(exec) = obj_at(errs, h, path, "exec") {
        let ep = child(path, "exec");
        if arr_at(errs, exec, &ep, "command").is_empty() {
            errs.push(FieldError::required(&child(&ep, "command"), ""));
        }
    }
    if let Some(hg) = obj_at(errs, h, path, "httpGet") {
        let hp = child(path, "httpGet");
        if string_or_empty(errs, hg, &hp, "path").is_empty() {
            errs.push(FieldError::required(&child(&hp, "path"), ""));
        }
        port_num_or_name(errs, hg, &hp, "port");
        let scheme = string_or_empty(errs, hg, &hp, "scheme");
        if !["HTTP", "HTTPS"].contains(&scheme) {
            errs.push(FieldError::not_supported(&child(&hp, "scheme"), q(scheme), &["HTTP", "HTTPS"]));
        }
    }
    if let Some(ts) = obj_at(errs, h, path, "tcpSocket") {
        port_num_or_name(errs, ts, &child(path, "tcpSocket"), "port");
    }
    if let Some(g) = obj_at(errs, h, path, "grpc") {
        let gp = child(path, "grpc");
        let number = int_at(errs, g, &gp, "port").unwrap_or(0);
        port_num(errs, &child(&gp, "port"), number);
    }
}

/// Parses a quantity member (string, or a bare JSON number as YAML clients send), reporting
/// syntax errors the way Kubernetes' decoder words them.
pub(crate) fn quantity_value(errs: &mut Errs, field: &str, v: &Value) -> Option<Quantity> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            errs.push(json::type_error(field, other, "string"));
            return None;
        }
    };
    match Quantity::parse(&text) {
        Ok(qty) => Some(qty),
        Err(e) => {
            errs.push(FieldError::invalid(field, q(&text), &e.to_string()));
            None
        }
    }
}

/// A `ResourceList` member as (name, quantity) pairs; bad entries are reported.
pub(crate) fn resource_list<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> Vec<(&'a str, Quantity)> {
    let field = child(path, k);
    let mut out = Vec::new();
    match get(obj, k) {
        None => {}
        Some(Value::Object(m)) => {
            for (name, v) in m {
                if let Some(qty) = quantity_value(errs, &key(&field, name), v) {
                    out.push((name.as_str(), qty));
                }
            }
        }
        Some(v) => errs.push(json::type_error(&field, v, "object")),
    }
    out
}

/// Resources that are whole units (`helper.IsIntegerResourceName`'s set): object counts.
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// CPU, memory and ephemeral storage: as themselves, as requests and as limits.
const COMPUTE_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// Resources that are whole units (`helper.IsIntegerResourceName`).
pub(crate) fn is_integer_resource(name: &str) -> bool {
    INTEGER_RESOURCES.contains(&name) || name.starts_with("count/") || is_extended_resource(name)
}

/// `helper.IsStandardQuotaResourceName`: the compute and object-count resources,
/// `requests.storage`, and hugepages, plain or requested.
pub(crate) fn is_standard_quota_resource(name: &str) -> bool {
    COMPUTE_RESOURCES.contains(&name)
        || INTEGER_RESOURCES.contains(&name)
        || name == "requests.storage"
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// Native resources live in the default or `kubernetes.io` namespace.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.") && names::is_qualified_name(name).is_empty()
}

/// Hugepages and extended resources cannot be overcommitted: request must equal limit.
fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// `ValidateResourceQuantityValue`: non-negative, and whole for integer resources.
pub(crate) fn validate_quantity_value(errs: &mut Errs, field: &str, resource: &str, qty: &Quantity) {
    if qty.is_negative() {
        errs.push(FieldError::invalid(field, q(&qty.canonical()), "must be greater than or equal to 0"));
    }
    if is_integer_resource(resource) && qty.milli_value() % 1000 != 0 {
        errs.push(FieldError::invalid(field, qty.canonical(), "must be an integer"));
    }
}

/// `helper.IsStandardResourceName`: the quota resources and `storage`.
fn is_standard_resource(name: &str) -> bool {
    is_standard_quota_resource(name) || name == "storage"
}

/// `validateResourceName`: a qualified name that is either standard or domain-prefixed.
/// Returns false when it reported an error.
pub(crate) fn validate_resource_name(errs: &mut Errs, field: &str, name: &str) -> bool {
    let msgs = names::is_qualified_name(name);
    if !msgs.is_empty() {
        push_all(errs, field, name, msgs);
        return false;
    }
    if !name.contains('/') && !is_standard_resource(name) {
        errs.push(FieldError::invalid(field, q(name), "must be a standard resource type or fully qualified"));
        return false;
    }
    true
}

fn validate_container_resource_name(errs: &mut Errs, field: &str, name: &str) {
    validate_resource_name(errs, field, name);
    if !name.contains('/') {
        let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
        if !standard {
            errs.push(FieldError::invalid(field, q(name), "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(FieldError::invalid(field, q(name), "doesn't follow extended resource name standard"));
    }
}

fn validate_resource_requirements(errs: &mut Errs, r: &Value, path: &str) {
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let limits = resource_list(errs, r, path, "limits");
    let requests = resource_list(errs, r, path, "requests");
    for (name, qty) in &limits {
        let field = key(&lim_path, name);
        validate_container_resource_name(errs, &field, name);
        validate_quantity_value(errs, &field, name, qty);
    }
    for (name, qty) in &requests {
        let field = key(&req_path, name);
        validate_container_resource_name(errs, &field, name);
        validate_quantity_value(errs, &field, name, qty);
        match limits.iter().find(|(l, _)| l == name) {
            Some((_, limit)) if qty != limit && !is_overcommit_allowed(name) => errs.push(FieldError::invalid(
                &req_path,
                q(&qty.canonical()),
                &format!("must be equal to {name} limit of {}", limit.canonical()),
            )),
            Some((_, limit)) if qty > limit => errs.push(FieldError::invalid(
                &req_path,
                q(&qty.canonical()),
                &format!("must be less than or equal to {name} limit of {}", limit.canonical()),
            )),
            Some(_) => {}
            None if !is_overcommit_allowed(name) => {
                errs.push(FieldError::required(&lim_path, "Limit must be set for non overcommitable resources"))
            }
            None => {}
        }
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: the spec is immutable except images, a shrinking
/// activeDeadlineSeconds, added tolerations and a negative grace period becoming 1.
pub(crate) fn validate_pod_update(old: &Value, new: &Value, errs: &mut Errs) {
    let null = Value::Null;
    let old_spec = get(old, "spec").unwrap_or(&null);
    let new_spec = get(new, "spec").unwrap_or(&null);
    let mut masked = new_spec.clone();

    match (get(old_spec, "activeDeadlineSeconds").and_then(Value::as_i64), get(new_spec, "activeDeadlineSeconds")) {
        (Some(_), None) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            "null".to_string(),
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n.as_i64().is_some_and(|n| n > o) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            render(n),
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    copy_member(&mut masked, old_spec, "activeDeadlineSeconds");

    for list in ["containers", "initContainers"] {
        let old_items = get(old_spec, list).and_then(Value::as_array);
        if let (Some(old_items), Some(Value::Array(new_items))) = (old_items, masked.get_mut(list)) {
            if old_items.len() == new_items.len() {
                for (o, n) in old_items.iter().zip(new_items.iter_mut()) {
                    if n.is_object() {
                        copy_member(n, o, "image");
                    }
                }
            }
        }
    }

    let old_tols = get(old_spec, "tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let new_tols = get(new_spec, "tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let all_kept = old_tols.iter().all(|o| {
        new_tols.iter().any(|n| {
            let mut o = o.clone();
            copy_member(&mut o, n, "tolerationSeconds");
            &o == n
        })
    });
    if all_kept {
        copy_member(&mut masked, old_spec, "tolerations");
    } else {
        errs.push(FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
        copy_member(&mut masked, old_spec, "tolerations");
    }

    let old_grace = get(old_spec, "terminationGracePeriodSeconds").and_then(Value::as_i64);
    let new_grace = get(new_spec, "terminationGracePeriodSeconds").and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        copy_member(&mut masked, old_spec, "terminationGracePeriodSeconds");
    }

    if &masked != old_spec {
        let mut diffs = Vec::new();
        diff_paths("spec", old_spec, &masked, &mut diffs);
        let detail = format!("{POD_UPDATE_MSG}\n{}", diffs.join("\n"));
        errs.push(FieldError::forbidden("spec", &detail));
    }
}

/// Sets `dst[k]` to `src[k]` (removing it when `src` lacks it).
fn copy_member(dst: &mut Value, src: &Value, k: &str) {
    let Some(map) = dst.as_object_mut() else { return };
    match src.get(k) {
        Some(v) => {
            map.insert(k.to_string(), v.clone());
        }
        None => {
            map.remove(k);
        }
    }
}

/// Lists the leaf paths that differ, a readable stand-in for Kubernetes' struct diff.
fn diff_paths(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if out.len() >= 20 || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                diff_paths(&child(path, k), o.get(k).unwrap_or(&Value::Null), n.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                diff_paths(&index(path, i), a, b, out);
            }
        }
        _ => out.push(format!("  {path}: {} -> {}", render(old), render(new))),
    }
}
