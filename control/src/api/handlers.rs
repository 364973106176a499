//! The verbs: get, list, create, update, patch, delete, deletecollection (watch and the
//! subresources have their own modules). Each handler decodes the request, calls the
//! registry or the watch cache, and renders the answer as the client asked (object,
//! server-side `Table`, or `PartialObjectMetadata`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use super::body::{
    apply_patch, check_patched_size, convert_legacy, decode_body_warned, decode_options_body, decode_patch_warned,
    delete_options, patch_error, patch_kind, patch_sets_resource_version, PatchKind,
};
use super::encoding::respond;
use super::render::{metadata_only, render_one, table_of};
use super::{patch, present, subresources, watch, ApiRequest, ApiState, Rendering};
use crate::cache::Filter;
use crate::registry::{object, storage, Deleted, Part, WriteOptions};
use crate::resource::ApiError;

/// Routes one resource request to its handler.
pub async fn dispatch(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let sub = req.target.subresource.clone();
    let has_name = req.target.name.is_some();
    let info = req.target.info;
    if let Some(s) = sub.as_deref().filter(|s| !is_subresource(info, s)) {
        // kube-apiserver has no route for it: 404, not 405 (and never the parent object).
        tracing::debug!(resource = info.plural, subresource = s, "unknown subresource");
        return Err(ApiError::NotFound(Default::default()));
    }
    match (&req.method, has_name, sub.as_deref()) {
        (&Method::GET, false, None) if req.query.is_watch() || req.target.watch_path => watch::serve(state, req).await,
        (&Method::GET, true, None) if req.target.watch_path || req.query.is_watch() => watch::serve(state, req).await,
        (&Method::GET, false, None) => list(state, req).await,
        (&Method::GET, true, None | Some("status" | "approval")) => get(state, req).await,
        (&Method::POST, false, None) => create(state, req).await,
        (&Method::PUT, true, None | Some("status" | "approval")) => update(state, req).await,
        (&Method::PATCH, true, None | Some("status" | "approval")) => patch_object(state, req).await,
        (&Method::DELETE, true, None) => delete(state, req).await,
        (&Method::DELETE, false, None) => delete_collection(state, req).await,
        (_, true, Some("scale")) if req.target.info.has_scale => subresources::scale(state, req).await,
        (&Method::POST, true, Some("binding")) if req.target.info.has_pod_subresources => {
            subresources::binding(state, req).await
        }
        (&Method::POST, true, Some("eviction")) if req.target.info.has_pod_subresources => {
            super::eviction::eviction(state, req).await
        }
        (&Method::GET, true, Some("log")) if req.target.info.has_pod_subresources => {
            subresources::log(state, req).await
        }
        (m, _, _) => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

/// The subresources `info` serves.
fn is_subresource(info: &crate::resource::ResourceInfo, sub: &str) -> bool {
    match sub {
        "status" => info.has_status,
        "approval" => info.has_approval,
        "scale" => info.has_scale,
        "binding" | "eviction" | "log" => info.has_pod_subresources,
        _ => false,
    }
}

async fn get(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let name = req.target.name.as_deref().expect("routed with a name");
    let obj = if req.query.resource_version()? == Some(0) {
        // Any recent state will do: serve from this member without a read barrier.
        state.registry.get(req.target.info.storage(), req.target.namespace.as_deref(), name, false).await?
    } else {
        state.registry.get(req.target.info.storage(), req.target.namespace.as_deref(), name, true).await?
    };
    Ok(respond(&req, StatusCode::OK, &render_one(&req, obj), &[]))
}

/// `continue` tokens: Kubernetes' shape (base64 JSON with the list revision and the next
/// key relative to the resource prefix), so they stay opaque and consistent across pages.
fn encode_continue(revision: i64, next_key: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": revision, "start": next_key}).to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad("not a JSON object"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad("server does not recognize this encoded version"));
    }
    let rv = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(|| bad("incorrect encoded start resourceVersion"))?;
    let start = v["start"].as_str().ok_or_else(|| bad("missing start key"))?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad("key must not escape the resource"));
    }
    Ok((rv, start.to_string()))
}

/// The list kind of a resource: "PodList".
fn list_kind(req: &ApiRequest) -> String {
    format!("{}List", req.target.info.kind)
}

fn list_body(req: &ApiRequest, items: Vec<Value>, meta: Value) -> Value {
    match req.rendering {
        Rendering::Table => table_of(req, &items, meta, true),
        Rendering::Metadata => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "items": items.iter().map(metadata_only).collect::<Vec<_>>(),
        }),
        Rendering::Object => json!({
            "kind": list_kind(req),
            "apiVersion": req.target.info.api_version(),
            "metadata": meta,
            "items": items.into_iter().map(|o| present(&req.target, o)).collect::<Vec<_>>(),
        }),
    }
}

/// One page of matching objects from the store at `revision` (0: latest, linearizable).
pub async fn list_from_store(
    state: &ApiState,
    req: &ApiRequest,
    filter: &Filter,
    limit: i64,
    start_after: Option<String>,
    revision: i64,
) -> Result<(Vec<Value>, i64, Option<String>, Option<i64>), ApiError> {
    let info = req.target.info.storage();
    let prefix = storage::prefix(info, req.target.namespace.as_deref());
    let mut start = match &start_after {
        Some(rel) => format!("{prefix}{rel}"),
        None => prefix.clone(),
    };
    let mut revision = revision;
    let mut items = Vec::new();
    let unfiltered = filter.labels.is_empty() && filter.fields.is_empty();
    loop {
        let want = if limit > 0 { (limit - items.len() as i64).max(1) } else { 0 };
        // Filtered pages read ahead in bigger chunks: fewer round trips for sparse matches.
        let chunk = if limit > 0 && !unfiltered { want.max(500) } else { want };
        let page = state.registry.storage().scan(&prefix, &start, chunk, revision).await.map_err(|e| match e {
            ApiError::Gone(_) if start_after.is_some() => ApiError::Expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            ),
            other => other,
        })?;
        revision = page.revision;
        let scanned = page.items.len();
        let mut last_key = None;
        for s in page.items {
            last_key = Some(s.key.clone());
            if filter.matches(&s.object) {
                items.push(s.object);
                if limit > 0 && items.len() as i64 >= limit {
                    break;
                }
            }
        }
        let stopped_early = limit > 0 && items.len() as i64 >= limit;
        if stopped_early || !page.more || scanned == 0 {
            // Is anything left after the last key we looked at?
            let next = last_key.map(|k| format!("{}\0", &k[prefix.len()..]));
            let has_more =
                if stopped_early { more_after(state, &prefix, next.as_deref(), revision).await? } else { false };
            let remaining = if unfiltered && has_more { Some(page.remaining.max(0)) } else { None };
            let token = if has_more { next.map(|n| encode_continue(revision, &n)) } else { None };
            return Ok((items, revision, token, remaining));
        }
        start = format!("{}\0", last_key.expect("a non-empty page has a last key"));
    }
}

async fn more_after(state: &ApiState, prefix: &str, next: Option<&str>, revision: i64) -> Result<bool, ApiError> {
    let Some(next) = next else { return Ok(false) };
    let page = state.registry.storage().scan(prefix, &format!("{prefix}{next}"), 1, revision).await?;
    Ok(!page.items.is_empty())
}

async fn list(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let filter = req.query.filter(&req.target)?;
    let limit = req.query.int("limit")?.unwrap_or(0).max(0);
    let rv = req.query.get("resourceVersion").filter(|s| !s.is_empty());
    let rv_match = req.query.get("resourceVersionMatch").filter(|s| !s.is_empty());
    let continue_token = req.query.get("continue").filter(|s| !s.is_empty());
    if rv_match.is_some() && rv.is_none() {
        return Err(ApiError::BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
                .into(),
        ));
    }
    if continue_token.is_some() && rv.is_some_and(|r| r != "0") {
        return Err(ApiError::BadRequest(
            "resourceVersion: Forbidden: specifying resource version is not allowed when using continue".into(),
        ));
    }
    let rv_num = req.query.resource_version()?;
    let (items, revision, token, remaining) = match (continue_token, rv_num, rv_match) {
        (Some(token), _, _) => {
            let (rev, start) = decode_continue(token)?;
            list_from_store(state, &req, &filter, limit, Some(start), rev).await?
        }
        (None, Some(0), Some("Exact")) => return Err(ApiError::BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""
                .into(),
        )),
        (None, Some(n), Some("Exact")) => list_from_store(state, &req, &filter, limit, None, n).await?,
        (None, Some(n), None) if n > 0 && limit > 0 => list_from_store(state, &req, &filter, limit, None, n).await?,
        (None, Some(n), None | Some("NotOlderThan")) => {
            // From the watch cache: as fresh as this server has seen, at least `n`.
            let cacher = state.cache.get(req.target.info);
            let (items, rev) = cacher.list(&filter, n).await?;
            (items.iter().map(|o| (**o).clone()).collect(), rev, None, None)
        }
        (None, Some(_), Some(other)) => {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )))
        }
        (None, None, _) => list_from_store(state, &req, &filter, limit, None, 0).await?,
    };
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(t) = token {
        meta["continue"] = json!(t);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    Ok(respond(&req, StatusCode::OK, &list_body(&req, items, meta), &[]))
}

async fn create(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let (mut body, mut warnings) = decode_body_warned(&req).await?;
    if req.target.info.group == "certificates.k8s.io" && req.target.info.plural == "certificatesigningrequests" {
        // Who asks is recorded by the server, never taken from the request.
        let user = req.user.clone().unwrap_or_else(super::authn::UserInfo::anonymous);
        if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("username".into(), json!(user.name));
            spec.insert("groups".into(), json!(user.groups));
            spec.remove("uid");
            spec.remove("extra");
        }
    }
    let opts = req.query.write_options()?;
    let written =
        state.registry.create(req.target.info.storage(), req.target.namespace.as_deref(), body, &opts).await?;
    warnings.extend(written.warnings);
    Ok(respond(&req, StatusCode::CREATED, &render_one(&req, written.object), &warnings))
}

fn part_of(req: &ApiRequest) -> Part {
    // A CSR's approval is its status conditions (kube-apiserver's approval strategy keeps
    // the rest of the status; the approver task writes conditions only).
    if matches!(req.target.subresource.as_deref(), Some("status" | "approval")) {
        Part::Status
    } else {
        Part::Main
    }
}

async fn update(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let (body, mut warnings) = decode_body_warned(&req).await?;
    let opts = req.query.write_options()?;
    let name = req.target.name.clone().expect("routed with a name");
    let written = state
        .registry
        .update(req.target.info.storage(), req.target.namespace.as_deref(), &name, body, part_of(&req), &opts)
        .await?;
    warnings.extend(written.warnings);
    Ok(respond(&req, StatusCode::OK, &render_one(&req, written.object), &warnings))
}

async fn patch_object(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let kind = patch_kind(&req)?;
    let (body, mut warnings) = decode_patch_warned(&req, kind).await?;
    let opts = req.query.write_options()?;
    let name = req.target.name.clone().expect("routed with a name");
    let info = req.target.info.storage();
    let ns = req.target.namespace.as_deref();
    if kind == PatchKind::Apply {
        return apply(state, &req, body, opts, &name, warnings).await;
    }
    let schema = info.strategy.patch_schema;
    let written = state
        .registry
        .modify(info, ns, &name, part_of(&req), &opts, |current| {
            let presented = present(&req.target, current.clone());
            let patched = apply_patch(kind, schema, &presented, &body)?;
            let mut next = convert_legacy(&req.target, patched);
            // As in Kubernetes, only a resourceVersion the patch itself sets is a
            // precondition: the one inherited from the current object must not turn a
            // concurrent write (a controller's status update) into a 409 instead of a retry.
            if !patch_sets_resource_version(kind, &body) {
                object::meta_mut(&mut next).remove("resourceVersion");
            }
            Ok(next)
        })
        .await?;
    warnings.extend(written.warnings);
    Ok(respond(&req, StatusCode::OK, &render_one(&req, written.object), &warnings))
}

/// Server-side apply: update, or create when the object does not exist.
async fn apply(
    state: &ApiState,
    req: &ApiRequest,
    body: Value,
    opts: WriteOptions,
    name: &str,
    mut warnings: Vec<String>,
) -> Result<Response, ApiError> {
    let Some(manager) = opts.field_manager.clone() else {
        return Err(ApiError::Invalid {
            qualified_kind: "PatchOptions.meta.k8s.io".into(),
            name: String::new(),
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            causes: vec![crate::resource::Cause {
                reason: "FieldValueRequired".into(),
                message: "fieldManager: Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }],
        });
    };
    let body = convert_legacy(&req.target, body);
    let force = req.query.flag("force");
    let info = req.target.info.storage();
    let ns = req.target.namespace.as_deref();
    let now = object::timestamp(chrono::Utc::now());
    // The apply itself records the manager: the registry must not record an Update too.
    let write_opts = WriteOptions { field_manager: None, ..opts.clone() };
    let result = state
        .registry
        .modify(info, ns, name, part_of(req), &write_opts, |current| {
            let mut next =
                patch::server_side_apply(info.strategy.patch_schema, Some(current), &body, &manager, force, &now)
                    .map_err(patch_error)?;
            check_patched_size(&next)?;
            // Only a resourceVersion in the applied configuration is a precondition (a stale
            // one is a 409, as in kube-apiserver); the live one must not turn a concurrent
            // controller write into a 409.
            match &body["metadata"]["resourceVersion"] {
                Value::Null => {
                    object::meta_mut(&mut next).remove("resourceVersion");
                }
                rv => {
                    object::meta_mut(&mut next).insert("resourceVersion".into(), rv.clone());
                }
            }
            Ok(next)
        })
        .await;
    match result {
        Ok(w) => {
            warnings.extend(w.warnings);
            Ok(respond(req, StatusCode::OK, &render_one(req, w.object), &warnings))
        }
        Err(ApiError::NotFound(s)) if s.name == name && part_of(req) == Part::Main => {
            let mut obj = patch::server_side_apply(info.strategy.patch_schema, None, &body, &manager, force, &now)
                .map_err(patch_error)?;
            if object::name(&obj).is_none() {
                object::meta_mut(&mut obj).insert("name".into(), json!(name));
            }
            let w = state.registry.create(info, ns, obj, &write_opts).await?;
            warnings.extend(w.warnings);
            Ok(respond(req, StatusCode::CREATED, &render_one(req, w.object), &warnings))
        }
        Err(e) => Err(e),
    }
}

/// The `Status` of a completed delete.
fn deleted_status(req: &ApiRequest, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": object::name(obj).unwrap_or_default(),
            "group": req.target.info.group,
            "kind": req.target.info.plural,
            "uid": object::meta_str(obj, "uid").unwrap_or_default(),
        },
    })
}

/// The optional `DeleteOptions` body of a DELETE.
fn delete_body(req: &ApiRequest) -> Result<Value, ApiError> {
    decode_options_body(req, "DeleteOptions")
}

async fn delete(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let opts = delete_options(&req.query, &delete_body(&req)?)?;
    let name = req.target.name.clone().expect("routed with a name");
    let info = req.target.info.storage();
    match state.registry.delete(info, req.target.namespace.as_deref(), &name, &opts).await? {
        Deleted::Now(obj) => Ok(respond(&req, StatusCode::OK, &deleted_status(&req, &obj), &[])),
        Deleted::Pending(obj) => Ok(respond(&req, StatusCode::OK, &render_one(&req, obj), &[])),
    }
}

async fn delete_collection(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let opts = delete_options(&req.query, &delete_body(&req)?)?;
    let filter = req.query.filter(&req.target)?;
    let (items, _, _, _) = list_from_store(state, &req, &filter, 0, None, 0).await?;
    let info = req.target.info.storage();
    let mut deleted = Vec::new();
    for obj in items {
        let name = object::name(&obj).unwrap_or_default().to_string();
        let ns = object::namespace(&obj).map(String::from);
        match state.registry.delete(info, ns.as_deref(), &name, &opts).await {
            Ok(Deleted::Now(o) | Deleted::Pending(o)) => deleted.push(o),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let revision = state.store.revision();
    let body = list_body(&req, deleted, json!({"resourceVersion": revision.to_string()}));
    Ok(respond(&req, StatusCode::OK, &body, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "default/web\0");
        assert_eq!(decode_continue(&t).unwrap(), (42, "default/web\0".to_string()));
        assert!(decode_continue("not base64!").is_err());
        let escape =
            base64::engine::general_purpose::STANDARD.encode(r#"{"v":"meta.k8s.io/v1","rv":3,"start":"../secrets/"}"#);
        assert!(decode_continue(&escape).is_err());
    }
}
