//! Printers of RBAC: Roles and ClusterRoles (name and creation time), RoleBindings and
//! ClusterRoleBindings (the role, and wide: users, groups, service accounts).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static ROLE: Printer = Printer { columns: ROLE_COLS, row: role_row };
pub static ROLE_BINDING: Printer = Printer { columns: ROLE_BINDING_COLS, row: role_binding_row };

static ROLE_COLS: &[Col] = &[NAME, col("Created At", "string", D_CREATED)];

static ROLE_BINDING_COLS: &[Col] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the binding"),
    wide("Groups", "string", "Groups in the binding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the binding"),
];

fn role_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = at(obj, &["metadata", "creationTimestamp"]).and_then(Value::as_str).unwrap_or("");
    vec![name(obj), Value::from(created)]
}

fn role_binding_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let kind = at(obj, &["roleRef", "kind"]).and_then(Value::as_str).unwrap_or("");
    let role = at(obj, &["roleRef", "name"]).and_then(Value::as_str).unwrap_or("");
    let subjects = list(obj, &["subjects"]);
    let of_kind = |k: &str| -> String {
        subjects
            .iter()
            .filter(|s| at(s, &["kind"]).and_then(Value::as_str) == Some(k))
            .filter_map(|s| {
                let name = at(s, &["name"]).and_then(Value::as_str)?;
                Some(match (k, at(s, &["namespace"]).and_then(Value::as_str)) {
                    ("ServiceAccount", Some(ns)) => format!("{ns}/{name}"),
                    _ => name.to_string(),
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(obj),
        Value::from(format!("{kind}/{role}")),
        age(obj, now),
        Value::from(of_kind("User")),
        Value::from(of_kind("Group")),
        Value::from(of_kind("ServiceAccount")),
    ]
}
