//! Rendering objects as the client asked: the object itself, `PartialObjectMetadata`, or a
//! server-side `Table`. Shared by the verbs in `handlers`, `watch` and `resource_metrics`.

use serde_json::{json, Value};

use super::{present, ApiRequest, Rendering};
use crate::registry::object;
use crate::resource::custom::columns;
use crate::resource::printers;

/// PartialObjectMetadata of an object.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

/// A Table of `items` (columns included unless `with_columns` is false: watches send them once).
pub fn table_of(req: &ApiRequest, items: &[Value], list_meta: Value, with_columns: bool) -> Value {
    let printer = req.target.info.strategy.printer;
    let custom = req.target.info.custom;
    let now = chrono::Utc::now();
    let include = req.query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells = match custom {
                Some(c) => columns::cells(&c.columns, o, now),
                None => printers::cells(printer, o, now),
            };
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = present(&req.target, o.clone()),
                _ => row["object"] = metadata_only(o),
            }
            row
        })
        .collect();
    let columns = match (with_columns, custom) {
        (false, _) => vec![],
        (true, Some(c)) => columns::definitions(&c.columns),
        (true, None) => printers::columns(printer),
    };
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
