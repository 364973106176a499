//! Kubernetes-style defaulting and validation of API objects in their JSON form.
//!
//! This module owns the public surface (`default_object`, `validate_create`, `validate_update`,
//! `FieldError`); which rules apply is the kind's strategy (`resource::kinds`), reached from
//! its `ResourceInfo`. The rules themselves
//! live in the sibling files and mirror kube-apiserver's `pkg/apis/*/validation` packages
//! (Kubernetes 1.33), down to the wording of the messages, because clients such as kubectl
//! and test suites match on them.
//!
//! Everything here is pure: no I/O, no allocation of cluster resources (cluster IPs, node
//! ports and generated names are the caller's job), and no panics on arbitrary client JSON;
//! wrongly typed fields are reported as `FieldError`s instead.

pub(crate) mod apps;
pub(crate) mod batch;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod defaults;
pub(crate) mod event;
pub(crate) mod ingress;
pub(crate) mod json;
pub(crate) mod meta;
pub(crate) mod names;
pub(crate) mod other;
pub(crate) mod pod;
pub(crate) mod policy;
pub(crate) mod quota;
pub(crate) mod rbac;
pub(crate) mod service;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::resource::ResourceInfo;

/// The kind of a field error; one-to-one with Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    TooMany,
    Forbidden,
    /// Kubernetes uses "Not found" for references to things that do not exist in the same
    /// object (a volumeMount naming an undeclared volume), so it is kept distinct.
    NotFound,
}

/// One validation failure at one field, as Kubernetes' `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub error_type: ErrorType,
    /// Field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The offending value rendered as Kubernetes prints it (strings quoted Go-style), if any.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// Kubernetes' `field.Error.Error()` text, e.g. `spec.selector: Required value`.
    pub fn message(&self) -> String {
        let kind = match self.error_type {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::NotFound => "Not found",
        };
        // Kubernetes never prints the value for these types, even when one was recorded.
        let hide_value = matches!(self.error_type, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong);
        let mut body = match (&self.value, hide_value) {
            (Some(v), false) => format!("{kind}: {v}"),
            _ => kind.to_string(),
        };
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        format!("{}: {}", self.field, body)
    }

    /// The `StatusCause.reason` Kubernetes reports for this error.
    pub fn reason(&self) -> &'static str {
        match self.error_type {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }

    pub(crate) fn new(error_type: ErrorType, field: &str, value: Option<String>, detail: &str) -> Self {
        FieldError { error_type, field: field.to_string(), value, detail: detail.to_string() }
    }

    pub(crate) fn required(field: &str, detail: &str) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }

    /// `value` must already be rendered (see `json::q` / `json::render`).
    pub(crate) fn invalid(field: &str, value: String, detail: &str) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value), detail)
    }

    pub(crate) fn not_supported(field: &str, value: String, valid: &[&str]) -> Self {
        let quoted: Vec<String> = valid.iter().map(|v| json::q(v)).collect();
        let detail = if valid.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
        Self::new(ErrorType::NotSupported, field, Some(value), &detail)
    }

    pub(crate) fn duplicate(field: &str, value: String) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(value), "")
    }

    pub(crate) fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }

    /// `field.TooMany`: `count` items where at most `max` are allowed.
    pub(crate) fn too_many(field: &str, count: usize, max: usize) -> Self {
        Self::new(ErrorType::TooMany, field, Some(count.to_string()), &format!("must have at most {max} items"))
    }

    pub(crate) fn too_long(field: &str, max_bytes: usize) -> Self {
        Self::new(ErrorType::TooLong, field, None, &format!("must have at most {max_bytes} bytes"))
    }

    pub(crate) fn not_found(field: &str, value: String) -> Self {
        Self::new(ErrorType::NotFound, field, Some(value), "")
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// Accumulator every rule appends to; Kubernetes reports all errors, not just the first.
pub(crate) type Errs = Vec<FieldError>;

/// Fills defaults in place like kube-apiserver's defaulting for the kind of `info` (plus the
/// few registry-strategy mutations that happen before validation, such as a Job's generated
/// selector and a Secret's `stringData` merge). Never allocates cluster IPs or node ports.
pub fn default_object(info: &ResourceInfo, obj: &mut Value) {
    if obj.is_object() {
        (info.strategy.defaults)(obj);
        if let Some(custom) = info.custom {
            custom.apply_defaults(obj);
        }
    }
}

/// Validates a whole object on create.
pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errs::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid("", json::render(obj), "must be of type object"));
        return errs;
    }
    (info.strategy.validate)(obj, &mut errs);
    if let Some(custom) = info.custom {
        errs.extend(custom.validate(info, obj));
    }
    errs
}

/// Validates an update: every create rule on `new`, plus the immutability rules of the kind.
pub fn validate_update(info: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate_create(info, new);
    if !new.is_object() || !old.is_object() {
        return errs;
    }
    meta::validate_meta_update(old, new, &mut errs);
    (info.strategy.validate_update)(old, new, &mut errs);
    errs
}

/// For kinds whose updates follow the create rules alone.
pub(crate) fn no_update_rules(_old: &Value, _new: &Value, _errs: &mut Errs) {}

/// Why `name` is not a DNS-1123 subdomain (empty when it is): for names the server
/// checks outside an object's own validation, such as a binding's target node.
pub fn dns1123_subdomain_errors(name: &str) -> Vec<String> {
    names::is_dns1123_subdomain(name)
}
