//! A Kubernetes protobuf message as the JSON its Go object marshals to.
//!
//! Go writes every non-pointer field of a struct to protobuf, zero or not, while its JSON
//! leaves out the empty ones (`omitempty`); so an empty singular string is left out here, as
//! JSON would (the one thing lost: an explicitly empty `*string`, such as a PVC's
//! `storageClassName: ""`, reads as unset). Numbers and booleans that are present are kept,
//! since a pointer's zero (`replicas: 0`) means something. An empty `Time` is Go's zero time,
//! `null` in JSON, and is left out too.

use base64::Engine as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, MapKey, MessageDescriptor, ReflectMessage, Value as Field};
use serde_json::{Map, Number, Value};

use super::ProtobufError;

/// Messages whose JSON is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// `metav1.Time`: RFC 3339 to the second.
    Time,
    /// `metav1.MicroTime`: RFC 3339 to the microsecond.
    MicroTime,
    /// `metav1.Duration`: Go's duration text (`1m30s`).
    Duration,
    /// `resource.Quantity`: its canonical text.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension`, apiextensions `JSON`, `metav1.FieldsV1`: embedded JSON.
    RawJson,
    /// `JSONSchemaPropsOrArray`: a schema or a list of schemas.
    SchemaOrArray,
    /// `JSONSchemaPropsOrBool`: a schema or a boolean.
    SchemaOrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema or a list of strings.
    SchemaOrStringArray,
    /// Go slice types (`ExtraValue`, `Verbs`): a list of strings.
    StringList,
}

/// Go structs embedded with `json:",inline"`: a field of their own in protobuf, their
/// fields spread into the parent's in JSON (`emptyDir` is `Volume.volumeSource.emptyDir`).
const INLINE_FIELDS: &[(&str, &str)] = &[
    ("api.core.v1.Volume", "volumeSource"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("api.core.v1.Probe", "handler"),
    ("api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("api.core.v1.SecretEnvSource", "localObjectReference"),
    ("api.core.v1.SecretKeySelector", "localObjectReference"),
    ("api.core.v1.SecretProjection", "localObjectReference"),
    ("api.networking.v1.IngressRule", "ingressRuleValue"),
    ("api.extensions.v1beta1.IngressRule", "ingressRuleValue"),
    ("api.admissionregistration.v1.NamedRuleWithOperations", "ruleWithOperations"),
    ("api.admissionregistration.v1.RuleWithOperations", "rule"),
];

/// Whether `field` of `message` is an embedded Go struct whose JSON is inlined.
pub(crate) fn is_inline(message: &MessageDescriptor, field: &str) -> bool {
    INLINE_FIELDS.iter().any(|(m, f)| *f == field && *m == message.full_name())
}

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

impl Special {
    pub(crate) fn of(message: &MessageDescriptor) -> Option<Special> {
        Some(match message.full_name() {
            "apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
            "apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
            "apimachinery.pkg.apis.meta.v1.Duration" => Special::Duration,
            "apimachinery.pkg.api.resource.Quantity" => Special::Quantity,
            "apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
            "apimachinery.pkg.runtime.RawExtension"
            | "apimachinery.pkg.apis.meta.v1.FieldsV1"
            | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => Special::RawJson,
            "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray" => Special::SchemaOrArray,
            "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool" => Special::SchemaOrBool,
            "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
                Special::SchemaOrStringArray
            }
            "apimachinery.pkg.apis.meta.v1.Verbs" => Special::StringList,
            name if name.ends_with(".ExtraValue") => Special::StringList,
            _ => return None,
        })
    }
}

/// Whether `message` is apiextensions' JSONSchemaProps, whose JSON keys are not all proto
/// names.
pub(crate) fn is_schema_props(message: &MessageDescriptor) -> bool {
    message.full_name() == JSON_SCHEMA_PROPS
}

/// The JSON key of a field: the proto name, except where JSON's is not an identifier
/// (`$ref`, `x-kubernetes-preserve-unknown-fields` in JSONSchemaProps).
pub(crate) fn json_key(message: &MessageDescriptor, field: &str) -> String {
    if is_schema_props(message) {
        match field {
            "ref" => return "$ref".into(),
            "schema" => return "$schema".into(),
            _ => {}
        }
        if let Some(rest) = field.strip_prefix("xKubernetes") {
            let mut key = String::from("x-kubernetes");
            for c in rest.chars() {
                if c.is_ascii_uppercase() {
                    key.push('-');
                    key.push(c.to_ascii_lowercase());
                } else {
                    key.push(c);
                }
            }
            return key;
        }
    }
    field.to_string()
}

/// A message as JSON.
pub fn message(message: &DynamicMessage) -> Result<Value, ProtobufError> {
    let descriptor = message.descriptor();
    if let Some(special) = Special::of(&descriptor) {
        return self::special(special, message);
    }
    let mut out = Map::new();
    for (field, value) in message.fields() {
        let key = json_key(&descriptor, field.name());
        let json = self::field(&field, value).map_err(|e| e.within(&key))?;
        match json {
            Value::Null => {}
            Value::Object(fields) if is_inline(&descriptor, field.name()) => out.extend(fields),
            json => {
                out.insert(key, json);
            }
        }
    }
    Ok(Value::Object(out))
}

fn field(field: &FieldDescriptor, value: &Field) -> Result<Value, ProtobufError> {
    match value {
        Field::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| scalar(v).map_err(|e| e.within(&format!("[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Field::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                let json = scalar(v).map_err(|e| e.within(&key))?;
                out.insert(key, json);
            }
            Ok(Value::Object(out))
        }
        // Go's zero string of a non-pointer field: JSON leaves it out (see the module doc).
        Field::String(s) if s.is_empty() && !field.is_list() => Ok(Value::Null),
        other => scalar(other),
    }
}

fn scalar(value: &Field) -> Result<Value, ProtobufError> {
    Ok(match value {
        Field::Bool(b) => Value::Bool(*b),
        Field::I32(n) => Value::from(*n),
        Field::I64(n) => Value::from(*n),
        Field::U32(n) => Value::from(*n),
        Field::U64(n) => Value::from(*n),
        Field::F32(n) => Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number),
        Field::F64(n) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Field::String(s) => Value::String(s.clone()),
        // Go marshals []byte as standard base64.
        Field::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Field::EnumNumber(n) => Value::from(*n),
        Field::Message(m) => message(m)?,
        Field::List(_) | Field::Map(_) => return Err(ProtobufError::field("a list or map inside a list or map")),
    })
}

fn special(kind: Special, message: &DynamicMessage) -> Result<Value, ProtobufError> {
    let by_number = |n: u32| message.get_field_by_number(n).filter(|_| message.has_field_by_number(n));
    let int = |n: u32| by_number(n).and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)));
    let schema = |n: u32| -> Result<Option<Value>, ProtobufError> {
        by_number(n).and_then(|v| v.as_message().map(self::message)).transpose()
    };
    Ok(match kind {
        Special::Time | Special::MicroTime => {
            let (Some(seconds), nanos) = (int(1), int(2).unwrap_or(0)) else {
                // Go's zero time marshals as an empty message; its JSON is null.
                return Ok(Value::Null);
            };
            let Some(time) = chrono::DateTime::from_timestamp(seconds, nanos.clamp(0, 999_999_999) as u32) else {
                return Err(ProtobufError::field(format!("{seconds}s is not a time")));
            };
            let format = if kind == Special::Time { "%Y-%m-%dT%H:%M:%SZ" } else { "%Y-%m-%dT%H:%M:%S%.6fZ" };
            Value::String(time.format(format).to_string())
        }
        Special::Duration => Value::String(go_duration(int(1).unwrap_or(0))),
        Special::Quantity => {
            let text = by_number(1).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            Value::String(if text.is_empty() { "0".into() } else { text })
        }
        Special::IntOrString => match int(1) {
            Some(1) => Value::String(by_number(3).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()),
            _ => Value::from(int(2).unwrap_or(0)),
        },
        Special::RawJson => {
            let raw = by_number(1).and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
            embedded(&raw)?
        }
        Special::SchemaOrArray => match schema(1)? {
            Some(one) => one,
            None => match by_number(2).as_deref() {
                Some(Field::List(items)) => Value::Array(items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?),
                _ => Value::Null,
            },
        },
        Special::SchemaOrBool => match schema(2)? {
            Some(one) => one,
            None => Value::Bool(by_number(1).and_then(|v| v.as_bool()).unwrap_or(false)),
        },
        Special::SchemaOrStringArray => match schema(1)? {
            Some(one) => one,
            None => match by_number(2).as_deref() {
                Some(Field::List(items)) => Value::Array(items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?),
                _ => Value::Array(vec![]),
            },
        },
        Special::StringList => match by_number(1).as_deref() {
            Some(Field::List(items)) => Value::Array(items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?),
            _ => Value::Array(vec![]),
        },
    })
}

/// Embedded bytes: JSON as clients write it, or an enveloped protobuf object.
fn embedded(raw: &[u8]) -> Result<Value, ProtobufError> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(super::MAGIC) {
        return super::decode_object(raw);
    }
    serde_json::from_slice(raw).map_err(|e| ProtobufError::field(format!("the embedded object is not JSON: {e}")))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `150ms`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, scale) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, scale));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let seconds = fraction(n % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `n / scale` with the fraction's trailing zeros dropped, as Go prints it.
fn fraction(n: u64, scale: u64) -> String {
    let whole = n / scale;
    let rest = n % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let frac = format!("{rest:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}
