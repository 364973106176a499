//! JSON as a Kubernetes protobuf message: the inverse of `to_json`. Keys the message does
//! not have (`apiVersion` and `kind`, which travel in the envelope, or fields newer than the
//! schemas) are not written, as a Go client would not know them either; `null` is unset.

use base64::Engine as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value as Field};
use serde_json::{Map, Value};

use super::to_json::Special;
use super::ProtobufError;

/// `value` (a JSON object) as a message of `descriptor`.
pub fn message(descriptor: &MessageDescriptor, value: &Value) -> Result<DynamicMessage, ProtobufError> {
    if let Some(special) = Special::of(descriptor) {
        return self::special(special, descriptor, value);
    }
    let Value::Object(object) = value else {
        return Err(ProtobufError::field(format!("expected an object, got {}", type_name(value))));
    };
    let mut out = DynamicMessage::new(descriptor.clone());
    let (fields, rest) = fields_of(descriptor, object);
    for (field, key, value) in fields {
        let converted = self::field(&field, value).map_err(|e| e.within(key))?;
        out.set_field(&field, converted);
    }
    for (field, inline) in inline_fields(descriptor, rest.as_ref()) {
        let embedded = message(&inline, rest.as_ref().expect("only with keys left"))?;
        if embedded.fields().next().is_some() {
            out.set_field(&field, Field::Message(embedded));
        }
    }
    Ok(out)
}

/// The object's keys that are fields of this message (nulls are unset), and the keys left
/// over, which may belong to an inlined embedded struct (`None` if there are none).
fn fields_of<'a>(
    descriptor: &MessageDescriptor,
    object: &'a Map<String, Value>,
) -> (Vec<(FieldDescriptor, &'a str, &'a Value)>, Option<Value>) {
    let mut fields = Vec::with_capacity(object.len());
    let mut rest = Map::new();
    for (key, value) in object.iter().filter(|(_, v)| !v.is_null()) {
        match descriptor.get_field_by_name(&field_name(descriptor, key)) {
            Some(field) => fields.push((field, key.as_str(), value)),
            None => {
                rest.insert(key.clone(), value.clone());
            }
        }
    }
    (fields, (!rest.is_empty()).then_some(Value::Object(rest)))
}

/// The inlined embedded structs of this message, when keys are left over for them.
fn inline_fields(descriptor: &MessageDescriptor, rest: Option<&Value>) -> Vec<(FieldDescriptor, MessageDescriptor)> {
    if rest.is_none() {
        return vec![];
    }
    descriptor
        .fields()
        .filter(|f| super::to_json::is_inline(descriptor, f.name()))
        .filter_map(|f| match f.kind() {
            Kind::Message(inline) => Some((f, inline)),
            _ => None,
        })
        .collect()
}

/// Writes `value` (a JSON object) as a message of `descriptor` straight into `out`: the
/// same encoding as [`message`] followed by `encode`, without building the dynamic message
/// first (a LIST of thousands of objects is encoded on every request).
pub fn encode(descriptor: &MessageDescriptor, value: &Value, out: &mut Vec<u8>) -> Result<(), ProtobufError> {
    if Special::of(descriptor).is_some() {
        // Small, fixed shapes (times, quantities, int-or-strings): the dynamic path.
        return {
            use prost::Message as _;
            message(descriptor, value)?.encode_raw(out);
            Ok(())
        };
    }
    let Value::Object(object) = value else {
        return Err(ProtobufError::field(format!("expected an object, got {}", type_name(value))));
    };
    let (fields, rest) = fields_of(descriptor, object);
    for (field, key, value) in fields {
        write_field(&field, value, out).map_err(|e| e.within(key))?;
    }
    for (field, inline) in inline_fields(descriptor, rest.as_ref()) {
        let mut embedded = Vec::new();
        encode(&inline, rest.as_ref().expect("only with keys left"), &mut embedded)?;
        if !embedded.is_empty() {
            wire::length_delimited(field.number(), &embedded, out);
        }
    }
    Ok(())
}

fn write_field(field: &FieldDescriptor, value: &Value, out: &mut Vec<u8>) -> Result<(), ProtobufError> {
    let number = field.number();
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("a map field's kind is its entry message") };
        let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let Value::Object(object) = value else {
            return Err(ProtobufError::field(format!("expected an object, got {}", type_name(value))));
        };
        let mut entry_bytes = Vec::new();
        for (k, v) in object {
            entry_bytes.clear();
            write_scalar(&key_field.kind(), key_field.number(), &Value::String(k.clone()), &mut entry_bytes)
                .map_err(|e| e.within(k))?;
            write_scalar(&value_field.kind(), value_field.number(), v, &mut entry_bytes).map_err(|e| e.within(k))?;
            wire::length_delimited(number, &entry_bytes, out);
        }
        return Ok(());
    }
    if field.is_list() {
        let Value::Array(items) = value else {
            return Err(ProtobufError::field(format!("expected an array, got {}", type_name(value))));
        };
        let kind = field.kind();
        for (i, item) in items.iter().enumerate() {
            write_scalar(&kind, number, item, out).map_err(|e| e.within(&format!("[{i}]")))?;
        }
        return Ok(());
    }
    write_scalar(&field.kind(), number, value, out)
}

/// One value of a field: its key and its encoding. Map keys arrive as strings.
fn write_scalar(kind: &Kind, number: u32, value: &Value, out: &mut Vec<u8>) -> Result<(), ProtobufError> {
    if let Kind::Message(m) = kind {
        let mut nested = Vec::new();
        encode(m, value, &mut nested)?;
        wire::length_delimited(number, &nested, out);
        return Ok(());
    }
    // The common cases without an intermediate value.
    match (kind, value) {
        (Kind::String, Value::String(s)) => {
            wire::length_delimited(number, s.as_bytes(), out);
            return Ok(());
        }
        (Kind::Bool, Value::Bool(b)) => {
            wire::varint_field(number, u64::from(*b), out);
            return Ok(());
        }
        (Kind::Int64, Value::Number(n)) if n.is_i64() => {
            wire::varint_field(number, n.as_i64().unwrap_or_default() as u64, out);
            return Ok(());
        }
        (Kind::Int32, Value::Number(n)) if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {
            wire::varint_field(number, n.as_i64().unwrap_or_default() as u64, out);
            return Ok(());
        }
        _ => {}
    }
    let value = match (kind, value) {
        // A map key is a JSON object key: a string whatever the key type.
        (Kind::String | Kind::Bytes, _) | (_, Value::Number(_) | Value::Bool(_)) => value.clone(),
        (_, Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        _ => value.clone(),
    };
    match scalar(kind, &value)? {
        Field::Bool(b) => wire::varint_field(number, u64::from(b), out),
        Field::I32(n) => wire::varint_field(number, n as i64 as u64, out),
        Field::I64(n) => wire::varint_field(number, n as u64, out),
        Field::U32(n) => wire::varint_field(number, u64::from(n), out),
        Field::U64(n) => wire::varint_field(number, n, out),
        Field::EnumNumber(n) => wire::varint_field(number, n as i64 as u64, out),
        Field::F32(n) => wire::fixed32_field(number, n.to_bits(), out),
        Field::F64(n) => wire::fixed64_field(number, n.to_bits(), out),
        Field::String(s) => wire::length_delimited(number, s.as_bytes(), out),
        Field::Bytes(b) => wire::length_delimited(number, &b, out),
        Field::Message(_) | Field::List(_) | Field::Map(_) => unreachable!("messages are written above"),
    }
    // sint and fixed integer kinds do not occur in the Kubernetes schemas; `scalar` gives
    // them their value, and they are written as the varint or fixed width of their type.
    Ok(())
}

/// A length-delimited field (a message, a string or bytes) of `number`.
pub(crate) fn write_length_delimited(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    wire::length_delimited(number, bytes, out);
}

/// Protobuf's wire format, the little of it the encoder writes.
mod wire {
    pub(super) fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn key(number: u32, wire_type: u8, out: &mut Vec<u8>) {
        varint((u64::from(number) << 3) | u64::from(wire_type), out);
    }

    pub(super) fn varint_field(number: u32, value: u64, out: &mut Vec<u8>) {
        key(number, 0, out);
        varint(value, out);
    }

    pub(super) fn fixed64_field(number: u32, value: u64, out: &mut Vec<u8>) {
        key(number, 1, out);
        out.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn fixed32_field(number: u32, value: u32, out: &mut Vec<u8>) {
        key(number, 5, out);
        out.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn length_delimited(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
        key(number, 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
}

/// The proto name of a JSON key (see `to_json::json_key`).
fn field_name(descriptor: &MessageDescriptor, key: &str) -> String {
    if !super::to_json::is_schema_props(descriptor) {
        return key.to_string();
    }
    match key {
        "$ref" => "ref".into(),
        "$schema" => "schema".into(),
        k if k.starts_with("x-kubernetes-") => {
            let mut name = String::from("xKubernetes");
            for part in k["x-kubernetes-".len()..].split('-') {
                let mut chars = part.chars();
                if let Some(first) = chars.next() {
                    name.push(first.to_ascii_uppercase());
                    name.extend(chars);
                }
            }
            name
        }
        k => k.to_string(),
    }
}

fn field(field: &FieldDescriptor, value: &Value) -> Result<Field, ProtobufError> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("a map field's kind is its entry message") };
        let (key_kind, value_kind) = (entry.map_entry_key_field().kind(), entry.map_entry_value_field().kind());
        let Value::Object(object) = value else {
            return Err(ProtobufError::field(format!("expected an object, got {}", type_name(value))));
        };
        let mut out = std::collections::HashMap::with_capacity(object.len());
        for (k, v) in object {
            let key = map_key(&key_kind, k).map_err(|e| e.within(k))?;
            out.insert(key, scalar(&value_kind, v).map_err(|e| e.within(k))?);
        }
        return Ok(Field::Map(out));
    }
    if field.is_list() {
        let Value::Array(items) = value else {
            return Err(ProtobufError::field(format!("expected an array, got {}", type_name(value))));
        };
        let kind = field.kind();
        return items
            .iter()
            .enumerate()
            .map(|(i, v)| scalar(&kind, v).map_err(|e| e.within(&format!("[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Field::List);
    }
    scalar(&field.kind(), value)
}

fn map_key(kind: &Kind, key: &str) -> Result<MapKey, ProtobufError> {
    let bad = || ProtobufError::field(format!("{key:?} is not a {kind:?} map key"));
    Ok(match kind {
        Kind::String => MapKey::String(key.to_string()),
        Kind::Bool => MapKey::Bool(key.parse().map_err(|_| bad())?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(key.parse().map_err(|_| bad())?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(key.parse().map_err(|_| bad())?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(key.parse().map_err(|_| bad())?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(key.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

fn scalar(kind: &Kind, value: &Value) -> Result<Field, ProtobufError> {
    let expected = |what: &str| ProtobufError::field(format!("expected {what}, got {}", type_name(value)));
    let integer = || value.as_i64().ok_or_else(|| expected("an integer"));
    Ok(match kind {
        Kind::Message(m) => Field::Message(message(m, value)?),
        Kind::Bool => Field::Bool(value.as_bool().ok_or_else(|| expected("a boolean"))?),
        Kind::String => Field::String(value.as_str().ok_or_else(|| expected("a string"))?.to_string()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Field::I32(i32::try_from(integer()?).map_err(|_| ProtobufError::field("out of the int32 range"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Field::I64(integer()?),
        Kind::Uint32 | Kind::Fixed32 => Field::U32(
            value.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| expected("an unsigned 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => Field::U64(value.as_u64().ok_or_else(|| expected("an unsigned integer"))?),
        Kind::Float => Field::F32(value.as_f64().ok_or_else(|| expected("a number"))? as f32),
        Kind::Double => Field::F64(value.as_f64().ok_or_else(|| expected("a number"))?),
        Kind::Bytes => {
            let text = value.as_str().ok_or_else(|| expected("a base64 string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| ProtobufError::field(format!("not base64: {e}")))?;
            Field::Bytes(bytes.into())
        }
        Kind::Enum(_) => {
            Field::EnumNumber(i32::try_from(integer()?).map_err(|_| ProtobufError::field("out of the enum range"))?)
        }
    })
}

fn special(kind: Special, descriptor: &MessageDescriptor, value: &Value) -> Result<DynamicMessage, ProtobufError> {
    let mut out = DynamicMessage::new(descriptor.clone());
    let expected = |what: &str| ProtobufError::field(format!("expected {what}, got {}", type_name(value)));
    let schema_kind = |number: u32| descriptor.get_field(number).map(|f| f.kind());
    match kind {
        Special::Time | Special::MicroTime => {
            let text = value.as_str().ok_or_else(|| expected("an RFC 3339 time"))?;
            let time = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| ProtobufError::field(format!("{text:?} is not an RFC 3339 time: {e}")))?;
            out.set_field_by_number(1, Field::I64(time.timestamp()));
            let nanos = time.timestamp_subsec_nanos();
            if nanos != 0 {
                out.set_field_by_number(2, Field::I32(nanos as i32));
            }
        }
        Special::Duration => {
            let text = value.as_str().ok_or_else(|| expected("a duration"))?;
            let nanos =
                parse_go_duration(text).ok_or_else(|| ProtobufError::field(format!("{text:?} is not a duration")))?;
            out.set_field_by_number(1, Field::I64(nanos));
        }
        Special::Quantity => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(expected("a quantity")),
            };
            out.set_field_by_number(1, Field::String(text));
        }
        Special::IntOrString => match value {
            Value::Number(_) => {
                let n = value.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| expected("an int32"))?;
                out.set_field_by_number(1, Field::I64(0));
                out.set_field_by_number(2, Field::I32(n));
            }
            Value::String(s) => {
                out.set_field_by_number(1, Field::I64(1));
                out.set_field_by_number(3, Field::String(s.clone()));
            }
            _ => return Err(expected("an integer or a string")),
        },
        Special::RawJson => {
            let raw = serde_json::to_vec(value).expect("a JSON value serializes");
            out.set_field_by_number(1, Field::Bytes(raw.into()));
        }
        Special::SchemaOrArray => {
            let Some(Kind::Message(props)) = schema_kind(1) else { unreachable!("JSONSchemaPropsOrArray.schema") };
            match value {
                Value::Array(items) => {
                    let list = items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| message(&props, v).map(Field::Message).map_err(|e| e.within(&format!("[{i}]"))))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.set_field_by_number(2, Field::List(list));
                }
                _ => out.set_field_by_number(1, Field::Message(message(&props, value)?)),
            }
        }
        Special::SchemaOrBool => {
            let Some(Kind::Message(props)) = schema_kind(2) else { unreachable!("JSONSchemaPropsOrBool.schema") };
            match value {
                Value::Bool(b) => out.set_field_by_number(1, Field::Bool(*b)),
                _ => {
                    out.set_field_by_number(1, Field::Bool(true));
                    out.set_field_by_number(2, Field::Message(message(&props, value)?));
                }
            }
        }
        Special::SchemaOrStringArray => {
            let Some(Kind::Message(props)) = schema_kind(1) else { unreachable!("JSONSchemaPropsOrStringArray") };
            match value {
                Value::Array(_) => out.set_field_by_number(2, strings(value)?),
                _ => out.set_field_by_number(1, Field::Message(message(&props, value)?)),
            }
        }
        Special::StringList => out.set_field_by_number(1, strings(value)?),
    }
    Ok(out)
}

fn strings(value: &Value) -> Result<Field, ProtobufError> {
    let Value::Array(items) = value else {
        return Err(ProtobufError::field(format!("expected an array, got {}", type_name(value))));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(|s| Field::String(s.to_string())).ok_or_else(|| {
                ProtobufError::field(format!("expected a string, got {}", type_name(v))).within(&format!("[{i}]"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Field::List)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h`), optionally signed: `1h30m`, `-1.5s`, `0`.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}
