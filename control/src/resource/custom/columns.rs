//! `additionalPrinterColumns`: the server-side table of a custom resource, as the
//! apiextensions server's table convertor builds it — the name, then each column's
//! JSONPath evaluated on the object (`date` columns as ages, numbers and booleans typed,
//! several matches joined by spaces, none as an empty cell).

use chrono::{DateTime, Utc};
use jsonpath_rust::JsonPath;
use serde_json::{json, Value};

use berth_proto::model::duration::human_duration;

/// One column of a CRD version.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// integer, number, string, boolean or date.
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// kubectl's form, `.spec.replicas` (without the braces).
    pub json_path: String,
}

/// A version's columns; a version without any gets kube-apiserver's default `Age`.
pub fn of_version(version: &Value) -> Vec<PrinterColumn> {
    let given: Vec<PrinterColumn> = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(PrinterColumn {
                name: c["name"].as_str()?.to_string(),
                ty: c["type"].as_str()?.to_string(),
                format: c["format"].as_str().unwrap_or_default().to_string(),
                description: c["description"].as_str().unwrap_or_default().to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
                json_path: c["jsonPath"].as_str()?.to_string(),
            })
        })
        .collect();
    if !given.is_empty() || version["additionalPrinterColumns"].is_array() {
        return given;
    }
    vec![PrinterColumn {
        name: "Age".into(),
        ty: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although \
                                some resources may allow a client to request the generation of an appropriate name \
                                automatically. Name is primarily intended for creation idempotence and configuration \
                                definition. Cannot be updated. More info: \
                                https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// The Table's column definitions: Name, then the version's columns.
pub fn definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}),
    ];
    out.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    out
}

/// One row's cells for `obj`.
pub fn cells(columns: &[PrinterColumn], obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut out = vec![obj["metadata"]["name"].clone()];
    out.extend(columns.iter().map(|c| cell(c, obj, now)));
    out
}

fn cell(column: &PrinterColumn, obj: &Value, now: DateTime<Utc>) -> Value {
    let path = format!("${}", column.json_path.trim_start_matches('$'));
    let Ok(found) = obj.query(&path) else { return Value::Null };
    match found.as_slice() {
        [] => Value::Null,
        [one] => typed(column, one, now),
        many => {
            let parts: Vec<String> = many.iter().map(|v| plain(v)).collect();
            Value::String(parts.join(" "))
        }
    }
}

fn typed(column: &PrinterColumn, value: &Value, now: DateTime<Utc>) -> Value {
    match (column.ty.as_str(), value) {
        ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => json!(human_duration(now.signed_duration_since(t.with_timezone(&Utc)))),
            Err(_) => Value::String(s.clone()),
        },
        ("integer", Value::Number(n)) if n.is_i64() => value.clone(),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) | ("string", Value::String(_)) => value.clone(),
        _ => Value::String(plain(value)),
    }
}

/// A value as kubectl's JSONPath printer writes it: strings bare, the rest as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_columns() {
        let version = json!({"additionalPrinterColumns": [
            {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Ports", "type": "string", "jsonPath": ".spec.ports[*].port"},
        ]});
        let cols = of_version(&version);
        let now = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z").unwrap().with_timezone(&Utc);
        let obj = json!({
            "metadata": {"name": "c1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"cronSpec": "* * * * */5", "replicas": 3, "ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        assert_eq!(
            cells(&cols, &obj, now),
            vec![json!("c1"), json!("* * * * */5"), json!(3), json!("True"), json!("60m"), json!("80 443")]
        );
        assert_eq!(definitions(&cols).len(), 6);
        // Missing values are empty cells, never an error.
        let bare = json!({"metadata": {"name": "c2"}});
        assert_eq!(cells(&cols, &bare, now)[1], Value::Null);
    }

    #[test]
    fn a_version_without_columns_prints_its_age() {
        let cols = of_version(&json!({}));
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].name, "Age");
    }
}
