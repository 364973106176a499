//! `metadata.managedFields` bookkeeping: which manager owns which fields of an object.
//!
//! The registry records every ordinary write here ([`record_update`], operation "Update") so
//! that a later server-side apply (`api::patch`, operation "Apply") can find fields other
//! managers own and conflict on them. The field sets, the FieldsV1 encoding and the entry
//! list live here because both sides share them; apply's own merge and conflict rules stay in
//! `api::patch`. Field sets use the real FieldsV1 encoding (`f:<field>`, `k:{<merge key>}` for
//! keyed list items, `v:<json>` for set members, `.` for an item itself); the simplified model
//! is described in the `api::patch` header.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::resource::patch_schema::{self as schema, val_eq, FieldMeta, ListStrategy, Ty};

/// A set of field paths, stored as a tree of FieldsV1 path elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSet {
    /// The path ending at this node is in the set (a leaf, or `.` in FieldsV1).
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

pub(crate) type Path = Vec<String>;

impl FieldSet {
    /// Decodes FieldsV1; anything that is not an object is ignored (best effort on bad input).
    pub(crate) fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(map) = v {
            if map.is_empty() {
                set.member = true;
            }
            for (k, child) in map {
                if k == "." {
                    set.member = true;
                } else {
                    let child = FieldSet::from_fields_v1(child);
                    if !child.is_empty() {
                        set.children.insert(k.clone(), child);
                    }
                }
            }
        }
        set
    }

    /// Encodes as FieldsV1 (the root's own membership is not representable and is dropped).
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for (k, child) in &self.children {
            if child.is_empty() {
                continue;
            }
            let mut encoded = child.to_fields_v1();
            if child.member && !child.children.values().all(FieldSet::is_empty) {
                if let Value::Object(m) = &mut encoded {
                    m.insert(".".into(), Value::Object(Map::new()));
                }
            }
            map.insert(k.clone(), encoded);
        }
        Value::Object(map)
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub(crate) fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        let mut node = self;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    pub(crate) fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    /// True when `path` or anything below it is in the set.
    pub(crate) fn owns_at_or_below(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// True when a strict ancestor of `path` is in the set.
    pub(crate) fn owns_ancestor(&self, path: &[String]) -> bool {
        (0..path.len()).any(|i| self.contains(&path[..i]))
    }

    /// Removes `path` and everything below it.
    pub(crate) fn remove_subtree(&mut self, path: &[String]) {
        let Some((last, parents)) = path.split_last() else {
            *self = FieldSet::default();
            return;
        };
        let mut node = self;
        for pe in parents {
            match node.children.get_mut(pe) {
                Some(n) => node = n,
                None => return,
            }
        }
        node.children.remove(last);
    }

    /// Every member path, parents before children.
    pub(crate) fn members(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out, false);
        out
    }

    /// Member paths with no member below them: the values a manager actually sets.
    pub(crate) fn leaves(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out, true);
        out
    }

    fn walk(&self, prefix: &mut Path, out: &mut Vec<Path>, leaves_only: bool) {
        let has_members_below = self.children.values().any(|c| !c.is_empty());
        if self.member && (!leaves_only || !has_members_below) {
            out.push(prefix.clone());
        }
        for (k, child) in &self.children {
            prefix.push(k.clone());
            child.walk(prefix, out, leaves_only);
            prefix.pop();
        }
    }

    fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, child) in &other.children {
            self.children.entry(k.clone()).or_default().union(child);
        }
    }

    /// Removes every member of `other` (and, for each, whatever this set holds below it).
    fn subtract(&mut self, other: &FieldSet) {
        for path in other.members() {
            self.remove_subtree(&path);
        }
        self.prune();
    }

    pub(crate) fn prune(&mut self) {
        for child in self.children.values_mut() {
            child.prune();
        }
        self.children.retain(|_, c| !c.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Path elements and navigation.

fn field_pe(name: &str) -> String {
    format!("f:{name}")
}

fn key_pe(key: &str, value: &Value) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    format!("k:{}", Value::Object(m))
}

fn value_pe(value: &Value) -> String {
    format!("v:{value}")
}

/// Human-readable path as the API server prints it in conflict messages.
pub(crate) fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let parts = match serde_json::from_str::<Map<String, Value>>(k) {
                Ok(m) => m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                Err(_) => k.to_string(),
            };
            out.push_str(&format!("[{parts}]"));
        } else if let Some(v) = pe.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        } else {
            out.push_str(pe);
        }
    }
    out
}

/// Index of the list element a `k:`, `v:` or `i:` path element designates.
fn find_in_list(items: &[Value], pe: &str) -> Option<usize> {
    if let Some(k) = pe.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
        items.iter().position(|item| keys.iter().all(|(kk, kv)| item.get(kk).is_some_and(|v| val_eq(v, kv))))
    } else if let Some(v) = pe.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        items.iter().position(|item| val_eq(item, &want))
    } else if let Some(i) = pe.strip_prefix("i:") {
        i.parse().ok().filter(|i| *i < items.len())
    } else {
        None
    }
}

fn step<'a>(value: &'a Value, pe: &str) -> Option<&'a Value> {
    match value {
        Value::Object(m) => m.get(pe.strip_prefix("f:")?),
        Value::Array(items) => items.get(find_in_list(items, pe)?),
        _ => None,
    }
}

pub(crate) fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, pe| step(v, pe))
}

fn get_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = value;
    for pe in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(pe.strip_prefix("f:")?)?,
            Value::Array(items) => {
                let i = find_in_list(items, pe)?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the value at `path`; returns whether something was removed.
pub(crate) fn remove_at(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    match get_mut(value, parents) {
        Some(Value::Object(m)) => last.strip_prefix("f:").is_some_and(|f| m.remove(f).is_some()),
        Some(Value::Array(items)) => match find_in_list(items, last) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Computing field sets from objects.

/// Fields nobody owns: identity and server-maintained metadata.
fn excluded(prefix: &[String], key: &str) -> bool {
    match prefix {
        [] => matches!(key, "apiVersion" | "kind"),
        [m] if m == "f:metadata" => matches!(
            key,
            "name"
                | "namespace"
                | "managedFields"
                | "resourceVersion"
                | "uid"
                | "creationTimestamp"
                | "generation"
                | "selfLink"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
        ),
        _ => false,
    }
}

/// Adds the fields of struct-typed map `map` (at `path`, type `ty`) to `set`.
fn collect_map(map: &Map<String, Value>, ty: Ty, path: &mut Path, set: &mut FieldSet) {
    for (k, v) in map {
        if v.is_null() || excluded(path, k) {
            continue;
        }
        path.push(field_pe(k));
        collect_value(v, &schema::field(ty, k), path, set);
        path.pop();
    }
}

/// Adds the field at `path` holding `value` (described by `meta`) to `set`.
fn collect_value(value: &Value, meta: &FieldMeta, path: &mut Path, set: &mut FieldSet) {
    match value {
        Value::Object(m) if !meta.atomic && !m.is_empty() => collect_map(m, meta.ty, path, set),
        Value::Array(items) if !items.is_empty() => match keyed_items(items, meta) {
            Some(key) => {
                for item in items {
                    let (Some(kv), Value::Object(m)) = (item.get(key), item) else { continue };
                    path.push(key_pe(key, kv));
                    set.insert(path);
                    collect_map(m, meta.ty, path, set);
                    path.pop();
                }
            }
            None if meta.list == (ListStrategy::Merge { key: None }) && items.iter().all(|i| !i.is_object()) => {
                for item in items {
                    path.push(value_pe(item));
                    set.insert(path);
                    path.pop();
                }
            }
            None => set.insert(path),
        },
        _ => set.insert(path),
    }
}

/// The merge key when `items` can be tracked per item (every item is an object carrying it).
fn keyed_items<'a>(items: &[Value], meta: &'a FieldMeta) -> Option<&'a str> {
    let key = meta.merge_key()?;
    items.iter().all(|i| i.get(key).is_some()).then_some(key)
}

/// The fields an object sets (everything but identity and server-maintained metadata).
pub(crate) fn fields_of(obj: &Value, ty: Ty) -> FieldSet {
    let mut set = FieldSet::default();
    if let Value::Object(m) = obj {
        collect_map(m, ty, &mut Vec::new(), &mut set);
    }
    set
}

/// Fields added or changed (`changed`) and removed (`removed`) between two struct-typed maps.
fn diff_map(old: &Map<String, Value>, new: &Map<String, Value>, ty: Ty, path: &mut Path, d: &mut Diff) {
    for (k, nv) in new {
        if nv.is_null() || excluded(path, k) {
            continue;
        }
        path.push(field_pe(k));
        let meta = schema::field(ty, k);
        match old.get(k).filter(|v| !v.is_null()) {
            None => collect_value(nv, &meta, path, &mut d.changed),
            Some(ov) => diff_value(ov, nv, &meta, path, d),
        }
        path.pop();
    }
    for (k, ov) in old {
        if ov.is_null() || excluded(path, k) || new.get(k).is_some_and(|v| !v.is_null()) {
            continue;
        }
        path.push(field_pe(k));
        d.removed.insert(path);
        path.pop();
    }
}

#[derive(Default)]
struct Diff {
    changed: FieldSet,
    removed: FieldSet,
}

fn diff_value(old: &Value, new: &Value, meta: &FieldMeta, path: &mut Path, d: &mut Diff) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) if !meta.atomic && !o.is_empty() && !n.is_empty() => {
            diff_map(o, n, meta.ty, path, d)
        }
        (Value::Array(o), Value::Array(n)) if meta.is_merge_list() && !o.is_empty() && !n.is_empty() => {
            if let (Some(key), Some(_)) = (keyed_items(o, meta), keyed_items(n, meta)) {
                for item in n {
                    let (Some(kv), Value::Object(nm)) = (item.get(key), item) else { continue };
                    path.push(key_pe(key, kv));
                    match o.iter().find(|oi| oi.get(key).is_some_and(|ov| val_eq(ov, kv))) {
                        Some(Value::Object(om)) => diff_map(om, nm, meta.ty, path, d),
                        _ => {
                            d.changed.insert(path);
                            collect_map(nm, meta.ty, path, &mut d.changed);
                        }
                    }
                    path.pop();
                }
                for item in o {
                    let Some(kv) = item.get(key) else { continue };
                    if !n.iter().any(|ni| ni.get(key).is_some_and(|nv| val_eq(nv, kv))) {
                        path.push(key_pe(key, kv));
                        d.removed.insert(path);
                        path.pop();
                    }
                }
            } else if meta.merge_key().is_none() && !o.iter().chain(n).any(Value::is_object) {
                for item in n.iter().filter(|i| !o.iter().any(|x| val_eq(x, i))) {
                    path.push(value_pe(item));
                    d.changed.insert(path);
                    path.pop();
                }
                for item in o.iter().filter(|i| !n.iter().any(|x| val_eq(x, i))) {
                    path.push(value_pe(item));
                    d.removed.insert(path);
                    path.pop();
                }
            } else {
                d.changed.insert(path);
            }
        }
        _ => collect_value(new, meta, path, &mut d.changed),
    }
}

// ---------------------------------------------------------------------------------------------
// managedFields entries.

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    operation: String,
    pub(crate) set: FieldSet,
    /// Every other key of the entry (apiVersion, time, subresource, ...), preserved verbatim.
    raw: Map<String, Value>,
}

impl Entry {
    pub(crate) fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && !self.raw.contains_key("subresource")
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = self.raw.clone();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        Value::Object(m)
    }
}

pub(crate) fn new_entry(
    manager: &str,
    operation: &str,
    api_version: Option<&Value>,
    now: &str,
    set: FieldSet,
) -> Entry {
    let mut raw = Map::new();
    if let Some(v) = api_version.filter(|v| v.is_string()) {
        raw.insert("apiVersion".into(), v.clone());
    }
    raw.insert("time".into(), Value::String(now.to_string()));
    Entry { manager: manager.to_string(), operation: operation.to_string(), set, raw }
}

pub(crate) fn touch(entry: &mut Entry, api_version: Option<&Value>, now: &str) {
    if let Some(v) = api_version.filter(|v| v.is_string()) {
        entry.raw.insert("apiVersion".into(), v.clone());
    }
    entry.raw.insert("time".into(), Value::String(now.to_string()));
}

/// Parses `metadata.managedFields`; malformed entries are skipped rather than failing the write.
pub(crate) fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(Value::Array(items)) = obj.get("metadata").and_then(|m| m.get("managedFields")) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let m = item.as_object()?;
            let manager = m.get("manager")?.as_str()?.to_string();
            let operation = m.get("operation").and_then(Value::as_str).unwrap_or("Update").to_string();
            let set = m.get("fieldsV1").map(FieldSet::from_fields_v1).unwrap_or_default();
            let mut raw = m.clone();
            for k in ["manager", "operation", "fieldsType", "fieldsV1"] {
                raw.remove(k);
            }
            Some(Entry { manager, operation, set, raw })
        })
        .collect()
}

pub(crate) fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let Value::Object(root) = obj else { return };
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(meta) = meta else { return };
    let kept: Vec<Value> = entries.iter().filter(|e| !e.set.is_empty()).map(Entry::to_value).collect();
    if kept.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(kept));
    }
}

/// Records a non-apply write by `manager` (operation "Update") in managedFields so SSA conflicts
/// can be detected later; optional best effort. Fields the write adds or changes move to `manager`
/// (updates never conflict), fields it removes lose every owner. When `new` carries no
/// `metadata.managedFields`, the entries of `old` are carried over.
pub fn record_update(ty: Ty, old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    if !new.is_object() || manager.is_empty() {
        return;
    }
    let sent = new.get("metadata").and_then(|m| m.get("managedFields")).filter(|v| !v.is_null());
    let mut entries = match (sent, old) {
        (Some(_), _) => read_entries(new),
        (None, Some(old)) => read_entries(old),
        (None, None) => Vec::new(),
    };
    let mut d = Diff::default();
    match old.and_then(Value::as_object) {
        Some(o) => {
            if let Value::Object(n) = &*new {
                diff_map(o, n, ty, &mut Vec::new(), &mut d);
            }
        }
        None => d.changed = fields_of(new, ty),
    }
    // Updates never conflict: they take the fields they touch from everyone else.
    for e in entries.iter_mut() {
        if !e.is(manager, "Update") {
            e.set.subtract(&d.changed);
        }
        e.set.subtract(&d.removed);
    }
    if !d.changed.is_empty() {
        let api_version = new.get("apiVersion").cloned();
        match entries.iter().position(|e| e.is(manager, "Update")) {
            Some(i) => {
                entries[i].set.union(&d.changed);
                touch(&mut entries[i], api_version.as_ref(), now);
            }
            None => entries.push(new_entry(manager, "Update", api_version.as_ref(), now, d.changed)),
        }
    }
    write_entries(new, &entries);
}
