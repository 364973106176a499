//! Server-side apply: merging an applied configuration into the live object, its conflicts
//! and the removal of fields a manager stopped applying. The field sets and managedFields
//! entries it reads and writes are `registry::managed_fields` (ordinary writes record theirs
//! there); the simplified model is described in the `mod.rs` header.

use serde_json::{Map, Value};

use super::strategic;
use super::PatchError;
use crate::registry::managed_fields::{
    fields_of, get, new_entry, path_string, read_entries, remove_at, touch, write_entries, Entry, FieldSet, Path,
};
use crate::resource::patch_schema::Ty;

/// Copy of the applied configuration without the fields apply ignores.
fn sanitize_applied(applied: &Value) -> Value {
    let mut cfg = applied.clone();
    if let Some(Value::Object(meta)) = cfg.get_mut("metadata") {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    cfg
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Public operations.

pub(crate) fn server_side_apply(
    ty: Ty,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    if !applied.is_object() {
        return Err(PatchError::Malformed("apply configuration must be an object".into()));
    }
    if manager.is_empty() {
        return Err(PatchError::Malformed("fieldManager is required for apply requests".into()));
    }
    let mut config = sanitize_applied(applied);
    let applied_set = fields_of(&config, ty);
    let api_version = config.get("apiVersion").cloned();

    let Some(live) = live else {
        strip_nulls(&mut config);
        let entry = new_entry(manager, "Apply", api_version.as_ref(), now, applied_set);
        write_entries(&mut config, &[entry]);
        return Ok(config);
    };
    if !live.is_object() {
        return Err(PatchError::Invalid("live object is not a JSON object".into()));
    }

    let mut entries = read_entries(live);
    let mine = entries.iter().position(|e| e.is(manager, "Apply"));
    let previous = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
    let mut merged = strategic::apply_config(ty, live, &config)?;

    // Conflicts: a value this apply changes that another manager owns (at or below the path).
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut conflicting_paths: Vec<Path> = Vec::new();
    for leaf in applied_set.leaves() {
        if get(live, &leaf) == get(&merged, &leaf) {
            continue;
        }
        for (i, e) in entries.iter().enumerate() {
            if Some(i) != mine && e.set.owns_at_or_below(&leaf) {
                conflicts.push((e.manager.clone(), path_string(&leaf)));
                conflicting_paths.push(leaf.clone());
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            conflicts.sort();
            conflicts.dedup();
            return Err(PatchError::Conflicts(conflicts));
        }
        // Forcing moves ownership: the other managers lose the contested fields.
        for (i, e) in entries.iter_mut().enumerate() {
            if Some(i) != mine {
                for p in &conflicting_paths {
                    e.set.remove_subtree(p);
                }
                e.set.prune();
            }
        }
    }

    // Fields applied last time but omitted now go away unless someone else still owns them.
    let others_own = |entries: &[Entry], p: &[String]| {
        entries.iter().enumerate().any(|(i, e)| Some(i) != mine && e.set.owns_at_or_below(p))
    };
    for path in previous.members() {
        if applied_set.contains(&path) || applied_set.owns_at_or_below(&path) || applied_set.owns_ancestor(&path) {
            continue;
        }
        if others_own(&entries, &path) || is_item_key(&path) {
            continue;
        }
        if remove_at(&mut merged, &path) {
            prune_empty_parents(&mut merged, &path, &entries, &applied_set);
        }
    }

    match mine {
        Some(i) => {
            entries[i].set = applied_set;
            touch(&mut entries[i], api_version.as_ref(), now);
        }
        None => entries.push(new_entry(manager, "Apply", api_version.as_ref(), now, applied_set)),
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// True for the merge-key field of a keyed list item: it identifies the item, so it goes only
/// together with the item (which may be kept because another manager owns part of it).
fn is_item_key(path: &[String]) -> bool {
    let [.., item, field] = path else { return false };
    let (Some(k), Some(f)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else { return false };
    serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
}

/// After removing `path`, drops containers it left empty that nobody owns, up to (not
/// including) the top-level fields such as `spec` and `metadata`.
fn prune_empty_parents(obj: &mut Value, path: &[String], entries: &[Entry], applied: &FieldSet) {
    let mut parent = &path[..path.len().saturating_sub(1)];
    while parent.len() >= 2 {
        let empty = match get(obj, parent) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        let owned = applied.contains(parent) || entries.iter().any(|e| e.set.contains(parent));
        if !empty || owned || !remove_at(obj, parent) {
            return;
        }
        parent = &parent[..parent.len() - 1];
    }
}
