//! PATCH and server-side apply for Kubernetes objects held as `serde_json::Value`.
//!
//! Owns the four patch content types the API server accepts and field-ownership tracking:
//! - `application/json-patch+json` → [`json_patch`] (RFC 6902),
//! - `application/merge-patch+json` → [`merge_patch`] (RFC 7386),
//! - `application/strategic-merge-patch+json` → [`strategic_merge_patch`], Kubernetes'
//!   strategicpatch semantics driven by the struct-tag type graph in `schema.rs`,
//! - `application/apply-patch+yaml` → [`server_side_apply`]; ordinary writes show up in
//!   `metadata.managedFields` through `registry::managed_fields::record_update`, so they can
//!   conflict with later applies.
//!
//! All functions are pure: they take values and return new ones; storage, admission and
//! resourceVersion checks belong to the caller.
//!
//! Server-side apply is a simplification of structured-merge-diff:
//! - the applied configuration is merged into the live object with the strategic-merge rules of
//!   `schema.rs` (keyed lists merge by their `patchMergeKey`, primitive merge lists union, other
//!   lists are atomic, maps merge; `LabelSelector` and `Service.spec.selector` are owned whole);
//!   merged lists keep the live order with new items appended in configuration order;
//! - list items are identified by the single SMP merge key, so `k:` elements read
//!   `k:{"containerPort":80}` where the real server uses the OpenAPI list-map keys
//!   (`k:{"containerPort":80,"protocol":"TCP"}`); no defaulting or validation runs;
//! - a conflict is a leaf field of the applied configuration whose value would change while another
//!   manager (any other manager/operation pair, including this manager's own "Update" entry) owns
//!   that field or something below it; `force` transfers those fields to the applier;
//! - fields in this manager's previous Apply set but not in the new one are removed from the object
//!   unless another manager owns them (or something below them); containers left empty by a removal
//!   are pruned when nobody owns them, except top-level fields such as `spec`;
//! - apiVersion, kind, metadata.name/namespace and server-maintained metadata (uid,
//!   resourceVersion, generation, creationTimestamp, managedFields, ...) are never owned;
//!   `metadata.managedFields` and `metadata.resourceVersion` in the applied configuration are
//!   ignored; nulls in the applied configuration delete the field and are not owned;
//! - entries are tracked per (manager, operation) with no subresource; entries carrying a
//!   `subresource` are preserved but never updated; entries left empty are dropped.

mod apply;
mod strategic;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::resource::patch_schema::Ty;

/// Why a patch or apply request was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PatchError {
    /// The patch body is not valid for its type (maps to HTTP 400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well-formed but cannot apply (e.g. json-patch `test` failed, path missing) — HTTP 422.
    #[error("{0}")]
    Invalid(String),
    /// The patch or the object it produces is over a size limit (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// Server-side apply conflicts with fields owned by other managers (HTTP 409).
    /// Each entry: (manager, field path like ".spec.replicas").
    #[error("Apply failed with {} conflict(s)", .0.len())]
    Conflicts(Vec<(String, String)>),
}

/// kube-apiserver's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// json-patch's `AccumulatedCopySizeLimit` as kube-apiserver sets it (its request body
/// limit): without it a couple of kilobytes of doubling `copy` operations build an object
/// of hundreds of megabytes before anything looks at its size.
pub const MAX_ACCUMULATED_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies an RFC 6902 JSON Patch (`application/json-patch+json`), at most
/// [`MAX_JSON_PATCH_OPERATIONS`] operations whose `copy` and `add` values add up to at most
/// [`MAX_ACCUMULATED_COPY_BYTES`].
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    // Counted before decoding, so an oversized patch costs no more than its parse.
    if let Some(n) = patch.as_array().map(Vec::len).filter(|n| *n > MAX_JSON_PATCH_OPERATIONS) {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {n}"
        )));
    }
    let ops: ::json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut out = doc.clone();
    let mut accumulated = 0usize;
    // One operation at a time so the size check runs before each copy is made; `out` is a
    // copy, so a failure half way leaves the caller's document untouched (the patch stays atomic).
    for op in ops.0 {
        let added = match &op {
            ::json_patch::PatchOperation::Copy(c) => out.pointer(c.from.as_str()).map(json_size),
            ::json_patch::PatchOperation::Add(a) => Some(json_size(&a.value)),
            _ => None,
        };
        accumulated = accumulated.saturating_add(added.unwrap_or(0));
        if accumulated > MAX_ACCUMULATED_COPY_BYTES {
            return Err(PatchError::Invalid(format!(
                "Unable to complete the copy, the accumulated size increase of copy is {accumulated}, exceeding the limit {MAX_ACCUMULATED_COPY_BYTES}"
            )));
        }
        ::json_patch::patch(&mut out, std::slice::from_ref(&op)).map_err(|e| PatchError::Invalid(e.to_string()))?;
    }
    Ok(out)
}

/// The length of `v` serialised as compact JSON, without building the text.
pub fn json_size(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`). Kubernetes objects are
/// always JSON objects, so a non-object patch is refused rather than replacing the document.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed("merge patch must be a JSON object".into()));
    }
    let mut out = doc.clone();
    ::json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Applies a strategic merge patch (`application/strategic-merge-patch+json`) to an object whose
/// kind's patch schema is `schema` (`strategy.patch_schema`). [`Ty::Unknown`] gets plain merge
/// semantics with the directives still honoured.
pub fn strategic_merge_patch(schema: Ty, doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    strategic::apply(schema, doc, patch)
}

/// application/apply-patch+yaml (body already parsed from YAML/JSON to Value by the caller).
/// live = current object (None when creating). Returns the object to store, with metadata.managedFields updated.
pub fn server_side_apply(
    schema: Ty,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now_rfc3339: &str,
) -> Result<Value, PatchError> {
    apply::server_side_apply(schema, live, applied, manager, force, now_rfc3339)
}
