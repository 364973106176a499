//! Panic-free typed access to client JSON, field-path building, and rendering of bad values
//! the way Kubernetes prints them in error messages.
//!
//! Input is arbitrary client JSON, so every accessor tolerates missing fields and reports a
//! wrongly typed one as an `Invalid value ...: must be of type T` error (Kubernetes would reject
//! such a body while decoding; reporting it per field is friendlier and never panics).

use serde_json::{Map, Value};

use super::{Errs, FieldError};

pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// Go's `%q` quoting, which Kubernetes uses for string values in messages.
pub(crate) fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders any JSON value for a message: strings quoted, scalars bare, containers as compact
/// JSON (Kubernetes prints Go structs there; JSON is the closest portable equivalent).
pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::String(s) => q(s),
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Renders a string map as Go's `%#v` of `map[string]string` (keys sorted), which is how
/// Kubernetes prints template labels in "`selector` does not match template `labels`".
pub(crate) fn render_string_map(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = pairs.to_vec();
    sorted.sort();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{}", q(k), q(v))).collect();
    if pairs.is_empty() {
        "map[string]string(nil)".to_string()
    } else {
        format!("map[string]string{{{}}}", inner.join(", "))
    }
}

pub(crate) fn type_error(field: &str, v: &Value, expected: &str) -> FieldError {
    FieldError::invalid(field, render(v), &format!("must be of type {expected}"))
}

/// A present, non-null member of `obj`.
pub(crate) fn get<'a>(obj: &'a Value, k: &str) -> Option<&'a Value> {
    obj.get(k).filter(|v| !v.is_null())
}

pub(crate) fn str_at<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> Option<&'a str> {
    let v = get(obj, k)?;
    match v.as_str() {
        Some(s) => Some(s),
        None => {
            errs.push(type_error(&child(path, k), v, "string"));
            None
        }
    }
}

/// A string member, treating absence as the empty string (Go's zero value).
pub(crate) fn string_or_empty<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> &'a str {
    str_at(errs, obj, path, k).unwrap_or("")
}

pub(crate) fn int_at(errs: &mut Errs, obj: &Value, path: &str, k: &str) -> Option<i64> {
    let v = get(obj, k)?;
    match v.as_i64() {
        Some(i) => Some(i),
        None => {
            errs.push(type_error(&child(path, k), v, "integer"));
            None
        }
    }
}

pub(crate) fn bool_at(errs: &mut Errs, obj: &Value, path: &str, k: &str) -> Option<bool> {
    let v = get(obj, k)?;
    match v.as_bool() {
        Some(b) => Some(b),
        None => {
            errs.push(type_error(&child(path, k), v, "boolean"));
            None
        }
    }
}

pub(crate) fn obj_at<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> Option<&'a Value> {
    let v = get(obj, k)?;
    if v.is_object() {
        Some(v)
    } else {
        errs.push(type_error(&child(path, k), v, "object"));
        None
    }
}

pub(crate) fn arr_at<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> &'a [Value] {
    match get(obj, k) {
        None => &[],
        Some(Value::Array(a)) => a,
        Some(v) => {
            errs.push(type_error(&child(path, k), v, "array"));
            &[]
        }
    }
}

/// The object elements of an array member, each with its index path; non-objects are reported.
pub(crate) fn objects_at<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> Vec<(String, &'a Value)> {
    let list_path = child(path, k);
    let mut out = Vec::new();
    for (i, item) in arr_at(errs, obj, path, k).iter().enumerate() {
        let p = index(&list_path, i);
        if item.is_object() {
            out.push((p, item));
        } else {
            errs.push(type_error(&p, item, "object"));
        }
    }
    out
}

/// A `map[string]string` member (labels, selectors, data), in key order.
pub(crate) fn str_map_at<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> Vec<(&'a str, &'a str)> {
    let field = child(path, k);
    match get(obj, k) {
        None => Vec::new(),
        Some(Value::Object(m)) => string_pairs(errs, m, &field),
        Some(v) => {
            errs.push(type_error(&field, v, "object"));
            Vec::new()
        }
    }
}

fn string_pairs<'a>(errs: &mut Errs, m: &'a Map<String, Value>, field: &str) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for (k, v) in m {
        match v {
            Value::String(s) => out.push((k.as_str(), s.as_str())),
            // A null map value decodes to "" in Go.
            Value::Null => out.push((k.as_str(), "")),
            other => errs.push(type_error(&key(field, k), other, "string")),
        }
    }
    out
}

/// A `[]string` member; non-string elements are reported.
pub(crate) fn str_list_at<'a>(errs: &mut Errs, obj: &'a Value, path: &str, k: &str) -> Vec<(String, &'a str)> {
    let list_path = child(path, k);
    let mut out = Vec::new();
    for (i, item) in arr_at(errs, obj, path, k).iter().enumerate() {
        let p = index(&list_path, i);
        match item.as_str() {
            Some(s) => out.push((p, s)),
            None => errs.push(type_error(&p, item, "string")),
        }
    }
    out
}

/// Lenient read with no error reporting, for cross-field checks whose field was already
/// type-checked elsewhere (so we do not report the same type error twice).
pub(crate) fn peek_str<'a>(obj: &'a Value, k: &str) -> &'a str {
    obj.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Walks a `/`-free dotted path of object keys leniently.
pub(crate) fn dig<'a>(obj: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for k in keys {
        cur = get(cur, k)?;
    }
    Some(cur)
}

/// Gets (creating as needed) the object member `k` of `obj`; returns None when `obj` or the
/// existing member is not an object, in which case defaulting leaves the bad input for
/// validation to report.
pub(crate) fn ensure_obj<'a>(obj: &'a mut Value, k: &str) -> Option<&'a mut Value> {
    let map = obj.as_object_mut()?;
    let entry = map.entry(k.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    if entry.is_object() {
        Some(entry)
    } else {
        None
    }
}

/// Sets `obj[k] = v` when the member is absent or null.
pub(crate) fn set_default(obj: &mut Value, k: &str, v: Value) {
    if let Some(map) = obj.as_object_mut() {
        let entry = map.entry(k.to_string()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = v;
        }
    }
}

/// Treats an absent, null or empty-string member as unset (Go's zero value) for defaulting.
pub(crate) fn set_default_str(obj: &mut Value, k: &str, v: &str) {
    if let Some(map) = obj.as_object_mut() {
        let entry = map.entry(k.to_string()).or_insert(Value::Null);
        if entry.is_null() || entry.as_str() == Some("") {
            *entry = Value::String(v.to_string());
        }
    }
}

/// Mutable iteration over the object elements of an array member.
pub(crate) fn for_each_obj_mut(obj: &mut Value, k: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Array(items)) = obj.get_mut(k) {
        for item in items.iter_mut().filter(|i| i.is_object()) {
            f(item);
        }
    }
}

/// Go's `%#v` of a `[]string`.
pub(crate) fn go_string_slice(items: &[(String, &str)]) -> String {
    let inner: Vec<String> = items.iter().map(|(_, s)| q(s)).collect();
    if items.is_empty() {
        "[]string(nil)".to_string()
    } else {
        format!("[]string{{{}}}", inner.join(", "))
    }
}
