//! Strategic merge patch application (server side), following
//! k8s.io/apimachinery/pkg/util/strategicpatch `mergeMap` / `mergeSlice` with
//! `MergeParallelList` and `IgnoreUnmatchedNulls` set, as the API server runs it.
//!
//! Owns: `$patch` (replace / delete / merge), `$retainKeys`, `$setElementOrder/<f>`,
//! `$deleteFromPrimitiveList/<f>`, keyed list merging and the element ordering rules
//! (patch order wins, server-only items keep their live relative position).
//!
//! Deliberate differences from Go, all of which only matter for values Go would later drop when
//! decoding into typed structs: values inserted where the original had nothing are merged into an
//! empty value instead of copied raw, so nested directives are applied and nulls dropped rather
//! than leaking into the stored object; `$patch: merge` is accepted as a no-op instead of an error;
//! `$deleteFromPrimitiveList` on a missing list is a no-op (as the upstream tests require).

use serde_json::{Map, Value};

use super::PatchError;
use crate::resource::patch_schema::{self as schema, val_eq, FieldMeta, Ty};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ORDER_PREFIX: &str = "$setElementOrder";

fn malformed(msg: impl Into<String>) -> PatchError {
    PatchError::Malformed(msg.into())
}

/// Applies `patch` to `original`, both JSON objects, with `ty` as the root of the type graph.
pub(crate) fn apply(ty: Ty, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    merge_root(false, ty, original, patch)
}

/// Merges a server-side apply configuration into the live object: the same rules, except that
/// list order follows the live object with new items appended (structured-merge-diff's order)
/// instead of strategic merge's "patch items first".
pub(crate) fn apply_config(ty: Ty, live: &Value, config: &Value) -> Result<Value, PatchError> {
    merge_root(true, ty, live, config)
}

fn merge_root(ssa: bool, ty: Ty, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(p) => p.clone(),
        _ => return Err(malformed("strategic merge patch must be a JSON object")),
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::Invalid("object to patch is not a JSON object".into())),
    };
    merge_map(ssa, original, patch, ty).map(Value::Object)
}

fn same_shape(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Merges `patch` into `original` (both maps of struct type `ty`). `ssa` selects server-side
/// apply list ordering (see [`apply_config`]); everything else is identical.
pub(crate) fn merge_map(
    ssa: bool,
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> MapResult {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            // Go returns the patch itself; merging it into nothing also applies its own directives.
            Some("replace") => return merge_map(ssa, Map::new(), patch, ty),
            Some("delete") => return Ok(Map::new()),
            // Go rejects this on maps; merging is the only sensible reading, so accept it.
            Some("merge") => {}
            _ => return Err(malformed(format!("Unknown patch type: {directive}"))),
        }
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(ssa, &mut original, &mut patch, ty)?;

    for (key, patch_v) in patch {
        if key.starts_with(DELETE_PRIMITIVE_PREFIX) {
            let target = extract_key(&key, DELETE_PRIMITIVE_PREFIX)?;
            let to_delete = match patch_v {
                Value::Array(items) => items,
                Value::Null => continue,
                _ => return Err(malformed(format!("invalid patch format for {key}: must be a list"))),
            };
            // Deletion works whatever the field's strategy and never creates the list.
            if let Some(Value::Array(items)) = original.get_mut(target) {
                items.retain(|item| !to_delete.iter().any(|d| val_eq(d, item)));
            }
            continue;
        }
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let meta = schema::field(ty, &key);
        let merged = match original.remove(&key) {
            Some(orig_v) if same_shape(&orig_v, &patch_v) => match (orig_v, patch_v) {
                (Value::Object(o), Value::Object(p)) => Value::Object(merge_map(ssa, o, p, meta.ty)?),
                (Value::Array(o), Value::Array(p)) if meta.is_merge_list() => {
                    Value::Array(merge_slice(ssa, o, p, &meta)?)
                }
                (_, p) => fill_absent(ssa, p, &meta)?,
            },
            _ => fill_absent(ssa, patch_v, &meta)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

type MapResult = Result<Map<String, Value>, PatchError>;

/// The value a patch puts where the original has nothing (or a value of another shape): the
/// patch merged into an empty value, which applies nested directives and drops nulls.
fn fill_absent(ssa: bool, patch_v: Value, meta: &FieldMeta) -> Result<Value, PatchError> {
    match patch_v {
        Value::Object(p) => Ok(Value::Object(merge_map(ssa, Map::new(), p, meta.ty)?)),
        Value::Array(p) if meta.is_merge_list() => Ok(Value::Array(merge_slice(ssa, Vec::new(), p, meta)?)),
        Value::Array(p) => p
            .into_iter()
            .map(|item| match item {
                Value::Object(o) => merge_map(ssa, Map::new(), o, meta.ty).map(Value::Object),
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

/// `$deleteFromPrimitiveList/name` → `name`.
fn extract_key<'a>(key: &'a str, prefix: &str) -> Result<&'a str, PatchError> {
    match key.split_once('/') {
        Some((p, rest)) if p == prefix && !rest.is_empty() => Ok(rest),
        _ => Err(malformed(format!("invalid patch format: unable to find the key in {key:?} for {prefix}"))),
    }
}

/// `$retainKeys`: drop original keys not listed; every non-null patch key must be listed.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else { return Ok(()) };
    let retain = match retain {
        Value::Array(items) => items,
        _ => return Err(malformed("invalid patch format of retainKeys: must be a list")),
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE_PREFIX) || k.starts_with(SET_ORDER_PREFIX) {
            continue;
        }
        if !listed(k) {
            return Err(malformed(format!("invalid patch format of retainKeys: {k:?} is not in the $retainKeys list")));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the sibling patch list (if any) and then orders the result
/// by the directive; live-only items keep their relative live position.
fn apply_set_element_order(
    ssa: bool,

    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
) -> Result<(), PatchError> {
    let directive_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ORDER_PREFIX)).cloned().collect();
    for dkey in directive_keys {
        let order = match patch.remove(&dkey) {
            Some(Value::Array(order)) => order,
            _ => return Err(malformed(format!("invalid patch format for {dkey}: must be a list"))),
        };
        let field = extract_key(&dkey, SET_ORDER_PREFIX)?.to_string();
        let meta = schema::field(ty, &field);
        let key = meta.merge_key();
        let orig_list = match original.get(&field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(_) => return Err(PatchError::Invalid(format!("{field} is not a list in the object"))),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(_) => return Err(malformed(format!("{field} must be a list when {dkey} is given"))),
        };
        validate_against_order(patch_list.as_deref().unwrap_or(&[]), &order, key)?;
        let mut server_view = None;
        let merged = match (&orig_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match fill_absent(ssa, Value::Array(p), &meta)? {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) if meta.is_merge_list() => {
                let (merged, view) = merge_slice_with_view(ssa, o.clone(), p, &meta)?;
                server_view = Some(view);
                merged
            }
            (Some(_), Some(p)) => match fill_absent(ssa, Value::Array(p), &meta)? {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
        };
        patch.remove(&field);
        let server_order = server_view.or(orig_list).unwrap_or_default();
        let (patch_items, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|item| index_of(&order, item, key).is_some());
        let ordered = normalize_element_order(patch_items, server_only, &order, &server_order, key);
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// The patch list (ignoring deletions and directive items) must be a subsequence of the order list.
fn validate_against_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let relevant: Vec<&Value> = patch.iter().filter(|item| item.get(DIRECTIVE).is_none()).collect();
    let (mut pi, mut oi) = (0, 0);
    while pi < relevant.len() && oi < order.len() {
        if merge_key_equal(relevant[pi], &order[oi], key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < relevant.len() {
        return Err(malformed(format!(
            "The order in patch list: {} doesn't match {SET_ORDER_PREFIX} list: {}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = key else { return Ok(val_eq(left, right)) };
    match (left.get(key), right.get(key)) {
        (Some(l), Some(r)) => Ok(val_eq(l, r)),
        _ => Err(malformed(format!("map does not contain declared merge key: {key}"))),
    }
}

/// Kind of the list elements; all must agree and lists of lists are rejected, as in Go.
fn element_shape(lists: &[&[Value]]) -> Result<Option<std::mem::Discriminant<Value>>, PatchError> {
    let mut shape = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        if item.is_array() {
            return Err(PatchError::Invalid("lists of lists are not supported".into()));
        }
        let d = std::mem::discriminant(item);
        match shape {
            None => shape = Some(d),
            Some(s) if s != d => return Err(malformed("list element types are not identical")),
            _ => {}
        }
    }
    Ok(shape)
}

/// Merges two lists of a `patchStrategy:"merge"` field.
pub(crate) fn merge_slice(
    ssa: bool,
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta,
) -> Result<Vec<Value>, PatchError> {
    merge_slice_with_view(ssa, original, patch, meta).map(|(merged, _)| merged)
}

/// Like [`merge_slice`], also returning the live list as Go's `mergePatchIntoOriginal` sees it
/// afterwards. Go deletes and appends in the live list's backing array, so its later ordering
/// step (for `$setElementOrder`) reads: surviving items, then the first appended new items, then
/// stale leftovers. Upstream expectations such as "add map and delete map from merging list"
/// depend on that, so it is reproduced here.
fn merge_slice_with_view(
    ssa: bool,

    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok((original, Vec::new()));
    }
    let shape = element_shape(&[&original, &patch])?;
    let maps = shape == Some(std::mem::discriminant(&Value::Object(Map::new())));
    if !maps {
        // Primitive lists union, deduplicated; order is fixed up below.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(patch.iter()) {
            if !merged.iter().any(|m| val_eq(m, item)) {
                merged.push(item.clone());
            }
        }
        if ssa {
            return Ok((merged, original));
        }
        let (patch_items, server_only) = merged.into_iter().partition(|item| index_of(&patch, item, None).is_some());
        let ordered = normalize_element_order(patch_items, server_only, &patch, &original, None);
        return Ok((ordered, original));
    }
    let key = meta.merge_key().ok_or_else(|| malformed("cannot merge lists of objects without a merge key"))?;

    // `view` mirrors Go's backing array of the live list; `live` is its current length.
    let mut view = original;
    let mut live = view.len();
    let matches = |item: &Value, kv: &Value| item.get(key).is_some_and(|v| val_eq(v, kv));

    // Special elements first: deletions by key and a list-level replace.
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let directive = item.get(DIRECTIVE).cloned();
        match directive {
            None => plain.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(kv) = item.get(key) else {
                        return Err(malformed(format!("map does not contain declared merge key: {key}")));
                    };
                    while let Some(i) = view[..live].iter().position(|o| matches(o, kv)) {
                        // Shift left inside the array, leaving the old last element behind.
                        view[i..live].rotate_left(1);
                        view[live - 1] = view[live.saturating_sub(2).max(i)].clone();
                        live -= 1;
                    }
                }
                Some("replace") => replace = true,
                // Go rejects this; treat the element as an ordinary one instead.
                Some("merge") => {
                    let mut item = item;
                    if let Some(m) = item.as_object_mut() {
                        m.remove(DIRECTIVE);
                    }
                    plain.push(item);
                }
                _ => return Err(malformed(format!("Unknown patch type: {d}"))),
            },
        }
    }
    let survivors: Vec<Value> = view[..live].to_vec();
    let (base, patch) = if replace { (plain, Vec::new()) } else { (survivors, plain) };
    let server_order = base.clone();

    let mut merged = base;
    for item in &patch {
        let Value::Object(pm) = item else { return Err(malformed("list element is not an object")) };
        let Some(kv) = pm.get(key) else {
            return Err(malformed(format!("map does not contain declared merge key: {key}")));
        };
        match merged.iter().position(|o| matches(o, kv)) {
            Some(i) => {
                let orig = match std::mem::take(&mut merged[i]) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(ssa, orig, pm.clone(), meta.ty)?);
            }
            None => {
                if !replace && live < view.len() {
                    view[live] = item.clone();
                    live += 1;
                }
                merged.push(Value::Object(merge_map(ssa, Map::new(), pm.clone(), meta.ty)?));
            }
        }
    }
    for item in patch.iter().chain(server_order.iter()) {
        if item.get(key).is_none() {
            return Err(malformed(format!("map does not contain declared merge key: {key}")));
        }
    }
    if ssa {
        return Ok((merged, view));
    }
    let (patch_items, server_only) = merged.into_iter().partition(|item| index_of(&patch, item, Some(key)).is_some());
    let ordered = normalize_element_order(patch_items, server_only, &patch, &server_order, Some(key));
    Ok((ordered, view))
}

/// Position of `item` in `list`, comparing merge-key values for maps and whole values otherwise.
fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(k) => {
            let want = item.get(k);
            list.iter().position(|v| match (v.get(k), want) {
                (Some(a), Some(b)) => val_eq(a, b),
                (None, None) => true,
                _ => false,
            })
        }
        None => list.iter().position(|v| val_eq(v, item)),
    }
}

/// Sorts patch items by `patch_order` and server-only items by `server_order`, then interleaves
/// them: a server-only item goes before a patch item only when both appear in the live list and
/// the server item came first there.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let right = sort_by_order(patch_items, patch_order, key);
    let left = sort_by_order(server_only, server_order, key);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut li, mut ri) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        match (li.peek(), ri.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(li.next()),
            (None, Some(_)) => out.extend(ri.next()),
            (Some(l), Some(r)) => {
                let left_first = match (index_of(server_order, l, key), index_of(server_order, r, key)) {
                    (Some(a), Some(b)) => a < b,
                    _ => false,
                };
                if left_first {
                    out.extend(li.next());
                } else {
                    out.extend(ri.next());
                }
            }
        }
    }
    out
}

/// Stable sort by position in `order`; items absent from it keep their relative order at the end.
fn sort_by_order(items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let mut indexed: Vec<(usize, Value)> =
        items.into_iter().map(|v| (index_of(order, &v, key).unwrap_or(usize::MAX), v)).collect();
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, v)| v).collect()
}
