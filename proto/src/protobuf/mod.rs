//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), for every
//! built-in kind, read and written through the Kubernetes 1.32 schemas themselves
//! (`protos/k8s`, compiled into a descriptor set by `build.rs`) rather than one Rust type
//! per message:
//!
//! * [`schema`] — which message an `apiVersion`/`kind` is;
//! * [`to_json`] / [`from_json`] — a message as the JSON the same Go object marshals to,
//!   and back (times as RFC 3339, quantities and int-or-strings as scalars, raw extensions
//!   as embedded JSON, `[]byte` as base64, `x-kubernetes-*` and `$ref` names);
//! * this module — the envelope every object travels in (the magic `k8s\0`, then a
//!   `runtime.Unknown` holding the type and the object's bytes) and the length-prefixed
//!   frames of a watch stream.
//!
//! JSON stays Berth's internal form: requests in protobuf are turned into JSON once, and
//! responses are encoded from JSON at the edge.

pub mod from_json;
pub mod schema;
pub mod to_json;

use prost::Message as _;
use prost_reflect::{DynamicMessage, Value as Field};
use serde_json::{Map, Value};

/// The media type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What starts every enveloped object.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read or an object could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body is not a Kubernetes protobuf object: it does not start with \"k8s\\x00\"")]
    NoMagic,
    /// apimachinery's `notRegisteredErr` text.
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    NotRegistered { api_version: String, kind: String },
    #[error("the object has no apiVersion and kind to encode it by")]
    NoTypeMeta,
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    /// Bytes that are not the message they claim to be (truncated, wrong wire types).
    #[error("decoding {message}: {reason}")]
    Decode { message: String, reason: String },
    /// A value that does not fit its field; `path` is the JSON path (`spec.replicas`).
    #[error("{path}: {reason}")]
    Field { path: String, reason: String },
}

impl ProtobufError {
    pub(crate) fn field(reason: impl Into<String>) -> ProtobufError {
        ProtobufError::Field { path: String::new(), reason: reason.into() }
    }

    /// The same error one level down in the JSON path.
    pub(crate) fn within(self, key: &str) -> ProtobufError {
        match self {
            ProtobufError::Field { path, reason } => {
                let path = match (path.is_empty(), path.starts_with('[')) {
                    (true, _) => key.to_string(),
                    (false, true) => format!("{key}{path}"),
                    (false, false) => format!("{key}.{path}"),
                };
                ProtobufError::Field { path, reason }
            }
            other => other,
        }
    }
}

/// The object of an enveloped protobuf body, as JSON with its `apiVersion` and `kind`.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let unknown = DynamicMessage::decode(schema::unknown(), rest)
        .map_err(|e| ProtobufError::Decode { message: "the runtime.Unknown envelope".into(), reason: e.to_string() })?;
    let string = |name: &str| unknown.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string));
    let type_meta = unknown.get_field_by_name("typeMeta");
    let type_meta = type_meta.as_ref().and_then(|v| v.as_message());
    let meta = |name: &str| {
        type_meta
            .and_then(|m| m.get_field_by_name(name))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let (api_version, kind) = (meta("apiVersion"), meta("kind"));
    if let Some(encoding) = string("contentEncoding").filter(|e| !e.is_empty()) {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let raw = unknown.get_field_by_name("raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    let descriptor = schema::message_for(&api_version, &kind)
        .ok_or_else(|| ProtobufError::NotRegistered { api_version: api_version.clone(), kind: kind.clone() })?;
    let message = DynamicMessage::decode(descriptor.clone(), raw)
        .map_err(|e| ProtobufError::Decode { message: descriptor.full_name().to_string(), reason: e.to_string() })?;
    let body = to_json::message(&message)?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    if let Value::Object(fields) = body {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

/// Whether objects of this type can be written as protobuf (custom resources cannot).
pub fn can_encode(object: &Value) -> bool {
    let (api_version, kind) = type_of(object);
    schema::message_for(api_version, kind).is_some()
}

fn type_of(object: &Value) -> (&str, &str) {
    let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or("");
    (field("apiVersion"), field("kind"))
}

/// `object` (JSON with `apiVersion` and `kind`) enveloped as kube-apiserver writes it.
pub fn encode_object(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let (api_version, kind) = type_of(object);
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::NoTypeMeta);
    }
    let descriptor = schema::message_for(api_version, kind)
        .ok_or_else(|| ProtobufError::NotRegistered { api_version: api_version.to_string(), kind: kind.to_string() })?;
    let mut raw = Vec::with_capacity(1024);
    from_json::encode(&descriptor, object, &mut raw)?;
    let mut type_meta = DynamicMessage::new(schema::type_meta());
    type_meta.set_field_by_name("apiVersion", Field::String(api_version.to_string()));
    type_meta.set_field_by_name("kind", Field::String(kind.to_string()));
    let type_meta = type_meta.encode_to_vec();
    // runtime.Unknown written by hand around the object's bytes, which are not copied
    // into a message first: typeMeta is field 1, raw field 2 (both length-delimited).
    let mut out = Vec::with_capacity(MAGIC.len() + type_meta.len() + raw.len() + 16);
    out.extend_from_slice(MAGIC);
    for (number, bytes) in [(1u64, &type_meta), (2, &raw)] {
        from_json::write_length_delimited(number as u32, bytes, &mut out);
    }
    Ok(out)
}

/// One event of a protobuf watch stream: a `WatchEvent` whose object is enveloped, framed
/// by its length as four big-endian bytes (apimachinery's length-delimited framer).
pub fn watch_frame(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let mut raw_extension = DynamicMessage::new(schema::raw_extension());
    raw_extension.set_field_by_name("raw", Field::Bytes(encode_object(object)?.into()));
    let mut event = DynamicMessage::new(schema::watch_event());
    event.set_field_by_name("type", Field::String(event_type.to_string()));
    event.set_field_by_name("object", Field::Message(raw_extension));
    let len = event.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    event.encode(&mut out).expect("a Vec grows as needed");
    Ok(out)
}

/// Reads one frame of a protobuf watch stream from the start of `stream`: the event's type
/// and object, and how many bytes the frame took (`None`: the frame is not complete yet).
pub fn read_watch_frame(stream: &[u8]) -> Result<Option<(String, Value, usize)>, ProtobufError> {
    let Some(len) = stream.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
    let Some(frame) = stream.get(4..4 + len) else { return Ok(None) };
    let event = DynamicMessage::decode(schema::watch_event(), frame)
        .map_err(|e| ProtobufError::Decode { message: "a WatchEvent".into(), reason: e.to_string() })?;
    let event_type = event.get_field_by_name("type").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let raw = event
        .get_field_by_name("object")
        .and_then(|v| v.as_message().and_then(|m| m.get_field_by_name("raw")).and_then(|r| r.as_bytes().cloned()))
        .unwrap_or_default();
    Ok(Some((event_type, decode_object(&raw)?, 4 + len)))
}

#[cfg(test)]
mod tests;
