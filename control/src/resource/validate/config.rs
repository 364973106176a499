//! ConfigMap, Secret and ServiceAccount validation, with the update rules of immutable ConfigMap/Secret data.

use berth_proto::model::well_known as wk;
use serde_json::Value;

use super::json::{self, bool_at, get, key, objects_at, q, str_at, str_map_at};
use super::meta;
use super::names::{self, push_all, NameRule};
use super::{Errs, FieldError};

/// Kubernetes' `MaxSecretSize`, also the ConfigMap limit.
const MAX_SECRET_SIZE: usize = 1024 * 1024;

const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

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
        wk::SECRET_TYPE_SERVICE_ACCOUNT_TOKEN => {
            let annotations = json::dig(obj, &["metadata"]).map(|m| meta::peek_str_map(m, "annotations"));
            let has_sa = annotations
                .unwrap_or_default()
                .iter()
                .any(|(k, v)| *k == wk::ANNOTATION_SERVICE_ACCOUNT_NAME && !v.is_empty());
            if !has_sa {
                errs.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
        }
        wk::SECRET_TYPE_DOCKERCFG => required(errs, ".dockercfg"),
        wk::SECRET_TYPE_DOCKER_CONFIG_JSON => required(errs, ".dockerconfigjson"),
        wk::SECRET_TYPE_BASIC_AUTH if !keys.contains(&"username") && !keys.contains(&"password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        wk::SECRET_TYPE_SSH_AUTH => required(errs, "ssh-privatekey"),
        wk::SECRET_TYPE_TLS => {
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

pub(crate) fn validate_service_account(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    bool_at(errs, obj, "", "automountServiceAccountToken");
    for list in ["secrets", "imagePullSecrets"] {
        for (p, r) in objects_at(errs, obj, "", list) {
            str_at(errs, r, &p, "name");
        }
    }
}
