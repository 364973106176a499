//! Rendering objects as the client asked: the object itself, `PartialObjectMetadata`, or a
//! server-side `Table`. Shared by the verbs in `handlers`, `watch` and `resource_metrics`.

use serde_json::{json, Value};

use super::{present, table, ApiRequest, Rendering};
use crate::registry::object;

/// PartialObjectMetadata of an object.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

/// A Table of `items` (columns included unless `with_columns` is false: watches send them once).
pub fn table_of(req: &ApiRequest, items: &[Value], list_meta: Value, with_columns: bool) -> Value {
    let resource = req.target.info.storage().plural;
    let now = chrono::Utc::now();
    let include = req.query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": table::cells(resource, o, now)});
            match include {
                "None" => {}
                "Object" => row["object"] = present(&req.target, o.clone()),
                _ => row["object"] = metadata_only(o),
            }
            row
        })
        .collect();
    let columns = if with_columns { table::columns(resource) } else { vec![] };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}

/// Renders one object as the client asked.
pub fn render_one(req: &ApiRequest, obj: Value) -> Value {
    match req.rendering {
        Rendering::Object => present(&req.target, obj),
        Rendering::Metadata => metadata_only(&obj),
        Rendering::Table => {
            let rv = object::resource_version(&obj).unwrap_or_default().to_string();
            table_of(req, &[obj], json!({"resourceVersion": rv}), true)
        }
    }
}
