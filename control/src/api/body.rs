//! Decoding what a write request sends: object bodies (JSON, YAML or protobuf, legacy group
//! conversion), patch bodies and their content types, applying a non-apply patch, and
//! `DeleteOptions`. Shared by the verbs in `handlers` and the `subresources`, which both
//! build on this module (it imports neither).

use axum::http::header;
use serde_json::Value;

use super::request::{Query, Target};
use super::{decode, encoding, patch, ApiRequest};
use crate::registry::{DeleteOptions, Propagation};
use crate::resource::patch_schema::Ty;
use crate::resource::{ApiError, Cause};

/// Decodes a JSON (or YAML) body.
pub async fn decode_body(req: &ApiRequest) -> Result<Value, ApiError> {
    Ok(decode_body_warned(req).await?.0)
}

/// [`decode_body`], with the warnings about repeated keys `fieldValidation=Warn` sends
/// (with `Strict` they are a 400).
pub async fn decode_body_warned(req: &ApiRequest) -> Result<(Value, Vec<String>), ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    if encoding::is_protobuf_body(&req.headers) {
        return Ok((convert_legacy(&req.target, encoding::decode_protobuf(&req.body)?), vec![]));
    }
    let ct = req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/json" | "application/yaml" | "" | "*/*") {
        // CBOR and anything else: client-go falls back to JSON on 415.
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {media:?})"
        )));
    }
    let decoded =
        if ct.contains("yaml") { decode::yaml(&req.body).await? } else { decode::json(&req.body, "the request body")? };
    if !decoded.value.is_object() {
        return Err(ApiError::BadRequest("the body of the request was not a JSON object".into()));
    }
    let warnings = decode::check_duplicates(&decoded.duplicates, req.query.write_options()?.field_validation)?;
    Ok((convert_legacy(&req.target, decoded.value), warnings))
}

/// A body for an alias becomes its storage form (`resource::alias`).
pub(crate) fn convert_legacy(target: &Target, body: Value) -> Value {
    crate::resource::alias::to_storage(target.info, body)
}

/// The patch types of the PATCH verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub fn patch_kind(req: &ApiRequest) -> Result<PatchKind, ApiError> {
    let ct = req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    // Custom resources have no strategic-merge schema (no patchStrategy tags), so
    // kube-apiserver does not offer the patch type for them.
    let custom = req.target.info.custom.is_some();
    match media {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" if custom => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {media:?})"
        ))),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
        ))),
    }
}

pub fn patch_error(e: patch::PatchError) -> ApiError {
    match e {
        patch::PatchError::Malformed(m) => ApiError::BadRequest(m),
        patch::PatchError::TooLarge(m) => ApiError::TooLarge(m),
        patch::PatchError::Invalid(m) => ApiError::Invalid {
            qualified_kind: String::new(),
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            causes: vec![Cause { reason: "FieldValueInvalid".into(), message: m, field: String::new() }],
        },
        patch::PatchError::Conflicts(list) => ApiError::ApplyConflict {
            message: apply_conflict_message(&list),
            causes: list
                .iter()
                .map(|(manager, field)| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {manager:?}"),
                    field: field.clone(),
                })
                .collect(),
        },
    }
}

/// kube-apiserver's wording for apply conflicts (`getConflictMessage`): one conflict on one
/// line; several grouped by manager (sorted), one `- path` line each.
pub fn apply_conflict_message(conflicts: &[(String, String)]) -> String {
    if let [(manager, field)] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {manager:?}: {field}");
    }
    let mut by_manager: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (manager, field) in conflicts {
        by_manager.entry(manager).or_default().push(field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager:?}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// Applies a decoded patch of `kind` to `doc`.
pub fn apply_patch(kind: PatchKind, schema: Ty, doc: &Value, patch_body: &Value) -> Result<Value, ApiError> {
    let patched = match kind {
        PatchKind::Json => patch::json_patch(doc, patch_body),
        PatchKind::Merge => patch::merge_patch(doc, patch_body),
        PatchKind::Strategic => patch::strategic_merge_patch(schema, doc, patch_body),
        PatchKind::Apply => unreachable!("apply is handled by the caller"),
    }
    .map_err(patch_error)?;
    check_patched_size(&patched)?;
    Ok(patched)
}

/// The largest object a patch or apply may produce: kube-apiserver's request body limit.
/// Checked before defaulting and normalising, which drop unknown fields: a patch that
/// bloats a field the typed check then discards must not get through on the object's
/// small stored size.
pub const MAX_PATCHED_BYTES: usize = 3 * 1024 * 1024;

pub(crate) fn check_patched_size(obj: &Value) -> Result<(), ApiError> {
    if patch::json_size(obj) > MAX_PATCHED_BYTES {
        return Err(ApiError::TooLarge(format!("limit is {MAX_PATCHED_BYTES}")));
    }
    Ok(())
}

pub async fn decode_patch(req: &ApiRequest, kind: PatchKind) -> Result<Value, ApiError> {
    Ok(decode_patch_warned(req, kind).await?.0)
}

/// [`decode_patch`] with the warnings about repeated keys (see [`decode_body_warned`]).
pub async fn decode_patch_warned(req: &ApiRequest, kind: PatchKind) -> Result<(Value, Vec<String>), ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::BadRequest("the patch body is empty".into()));
    }
    let decoded =
        if kind == PatchKind::Apply { decode::yaml(&req.body).await? } else { decode::json(&req.body, "the patch")? };
    let warnings = decode::check_duplicates(&decoded.duplicates, req.query.write_options()?.field_validation)?;
    Ok((decoded.value, warnings))
}

/// Whether a (non-apply) patch sets `metadata.resourceVersion` itself.
pub(crate) fn patch_sets_resource_version(kind: PatchKind, body: &Value) -> bool {
    match kind {
        PatchKind::Json => body.as_array().is_some_and(|ops| {
            ops.iter().any(|op| op["path"].as_str() == Some("/metadata/resourceVersion") && op["op"] != "remove")
        }),
        _ => !body["metadata"]["resourceVersion"].is_null(),
    }
}

/// A body that is JSON or protobuf but no whole object to validate (`DeleteOptions`, a
/// `Scale`); `what` names it in the error.
pub fn decode_options_body(req: &ApiRequest, what: &str) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Ok(Value::Null);
    }
    if encoding::is_protobuf_body(&req.headers) {
        return encoding::decode_protobuf(&req.body);
    }
    serde_json::from_slice(&req.body).map_err(|e| ApiError::BadRequest(format!("error decoding {what}: {e}")))
}

/// `DeleteOptions` from the body (if any) and the query.
pub fn delete_options(query: &Query, body: &Value) -> Result<DeleteOptions, ApiError> {
    let grace = match query.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => body["gracePeriodSeconds"].as_i64(),
    };
    let dry_run =
        query.get("dryRun") == Some("All") || body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All"));
    let propagation = match query.get("propagationPolicy").or(body["propagationPolicy"].as_str()) {
        Some(p) => Propagation::parse(p).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
            ))
        })?,
        // The deprecated boolean, still sent by old clients.
        None if query.get("orphanDependents") == Some("true") || body["orphanDependents"] == true => {
            Propagation::Orphan
        }
        None => Propagation::Background,
    };
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
        precondition_resource_version: body["preconditions"]["resourceVersion"].as_str().map(String::from),
        dry_run,
        propagation,
    })
}

#[cfg(test)]
mod tests {
    use super::apply_conflict_message;

    #[test]
    fn apply_conflicts_read_like_kube_apiserver() {
        let one = vec![("kubectl-client-side-apply".to_string(), ".spec.replicas".to_string())];
        assert_eq!(
            apply_conflict_message(&one),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\": .spec.replicas"
        );
        let many = vec![
            ("m2".to_string(), ".spec.replicas".to_string()),
            ("m1".to_string(), ".metadata.labels.app".to_string()),
            ("m2".to_string(), ".spec.paused".to_string()),
        ];
        assert_eq!(
            apply_conflict_message(&many),
            "Apply failed with 3 conflicts: conflicts with \"m1\":\n- .metadata.labels.app\nconflicts with \"m2\":\n- .spec.replicas\n- .spec.paused"
        );
    }
}
