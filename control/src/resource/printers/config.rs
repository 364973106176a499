//! Printers of Configuration: ConfigMaps, Secrets, ServiceAccounts.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static CONFIG_MAP: Printer = Printer { columns: CONFIG_MAP_COLS, row: config_map_row };
pub static SECRET: Printer = Printer { columns: SECRET_COLS, row: secret_row };
pub static SERVICE_ACCOUNT: Printer = Printer { columns: SERVICE_ACCOUNT_COLS, row: service_account_row };

static SECRET_COLS: &[Col] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data. More info: \
         https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The \
         serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly \
         non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

static SERVICE_ACCOUNT_COLS: &[Col] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are \
         allowed to use. Pods are only limited to this list if this service account has a \
         \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \
         \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces \
         to isolate access to mounted secrets. This field should not be used to find auto-generated service account \
         token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest \
         API, or service account token secrets can be manually created. More info: \
         https://kubernetes.io/docs/concepts/configuration/secret",
    ),
    AGE,
];

static CONFIG_MAP_COLS: &[Col] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. \
         Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap \
         with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

fn config_map_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let data = map_len(obj, &["data"]) + map_len(obj, &["binaryData"]);
    vec![name(obj), Value::from(data), age(obj, now)]
}

fn secret_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = match text(obj, &["type"]) {
        "" => berth_proto::model::well_known::SECRET_TYPE_OPAQUE,
        t => t,
    };
    // v1 conversion merges stringData into data, so the stored secret counts their union.
    let keys: BTreeSet<&str> = ["data", "stringData"]
        .iter()
        .filter_map(|field| at(obj, &[*field]).and_then(Value::as_object))
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    vec![name(obj), Value::from(ty), Value::from(keys.len()), age(obj, now)]
}

fn service_account_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(list(obj, &["secrets"]).len()), age(obj, now)]
}
