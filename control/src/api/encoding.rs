//! Content negotiation as kube-apiserver does it: which form (object, `Table`,
//! `PartialObjectMetadata`) and which encoding (JSON or Kubernetes protobuf) a client gets,
//! taken from the first entry of its `Accept` that the server can give, and the writing of
//! response bodies and reading of protobuf request bodies in that encoding. The
//! encoding itself (`k8s\0` envelope, schemas) is `berth_proto::protobuf`.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use berth_proto::protobuf::{self, ProtobufError};
use serde_json::Value;

use super::{bytes_response, json_response, ApiRequest, Rendering};
use crate::resource::ApiError;

/// The content type of a protobuf watch stream.
pub const PROTOBUF_WATCH: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// How response bodies are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// Protobuf; `json_too` when the client also accepts JSON, which objects without a
    /// protobuf schema (custom resources) then get instead of a 406.
    Protobuf {
        json_too: bool,
    },
}

/// The rendering and encoding of the first `Accept` entry the server can give.
pub fn negotiate(headers: &HeaderMap) -> (Rendering, Encoding) {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let entries: Vec<&str> = accept.split(',').map(str::trim).collect();
    let json_acceptable = entries.iter().any(|e| is_json(media(e)));
    for entry in &entries {
        let media = media(entry);
        let encoding = if media == protobuf::CONTENT_TYPE {
            Encoding::Protobuf { json_too: json_acceptable }
        } else if is_json(media) {
            Encoding::Json
        } else {
            continue;
        };
        let rendering = if entry.contains("as=Table") {
            Rendering::Table
        } else if entry.contains("as=PartialObjectMetadata") {
            Rendering::Metadata
        } else {
            Rendering::Object
        };
        return (rendering, encoding);
    }
    (Rendering::Object, Encoding::Json)
}

fn media(entry: &str) -> &str {
    entry.split(';').next().unwrap_or("").trim()
}

fn is_json(media: &str) -> bool {
    matches!(media, "application/json" | "*/*" | "application/*" | "application/yaml")
}

/// Whether a request body is Kubernetes protobuf.
pub fn is_protobuf_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| media(ct) == protobuf::CONTENT_TYPE)
}

/// A protobuf request body as the JSON object it encodes.
pub fn decode_protobuf(body: &[u8]) -> Result<Value, ApiError> {
    protobuf::decode_object(body).map_err(|e| match e {
        ProtobufError::ContentEncoding(_) => ApiError::UnsupportedMediaType(e.to_string()),
        _ => ApiError::BadRequest(format!("the protobuf body could not be decoded: {e}")),
    })
}

/// The 406 for a client that takes only protobuf asking for a kind that has no protobuf
/// form (a custom resource, a `Table`).
pub fn no_protobuf_form(kind: &str) -> ApiError {
    ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml (a {kind} has no protobuf form)"
    ))
}

/// A response in the negotiated encoding, with Kubernetes' `Warning` headers.
pub fn respond(req: &ApiRequest, code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let Encoding::Protobuf { json_too } = req.encoding else {
        return json_response(code, value, warnings);
    };
    match protobuf::encode_object(value) {
        Ok(bytes) => bytes_response(code, protobuf::CONTENT_TYPE, bytes.into(), warnings),
        Err(e) if json_too => {
            // No schema (a custom resource) or a value the schema cannot hold: JSON, which
            // the client accepts as well.
            if !matches!(e, ProtobufError::NotRegistered { .. }) {
                tracing::warn!(error = %e, "an object could not be written as protobuf; answering JSON");
            }
            json_response(code, value, warnings)
        }
        Err(ProtobufError::NotRegistered { .. }) => {
            let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
            axum::response::IntoResponse::into_response(no_protobuf_form(kind))
        }
        Err(e) => axum::response::IntoResponse::into_response(ApiError::Internal(format!(
            "the object could not be written as protobuf: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_first_entry_the_server_can_give_wins() {
        let typed_client = "application/vnd.kubernetes.protobuf, */*";
        assert_eq!(negotiate(&accept(typed_client)), (Rendering::Object, Encoding::Protobuf { json_too: true }));
        assert_eq!(
            negotiate(&accept("application/vnd.kubernetes.protobuf")),
            (Rendering::Object, Encoding::Protobuf { json_too: false })
        );
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(&accept(kubectl_get)), (Rendering::Table, Encoding::Json));
        assert_eq!(
            negotiate(&accept("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")),
            (Rendering::Metadata, Encoding::Protobuf { json_too: false })
        );
        assert_eq!(negotiate(&accept("application/cbor, application/json")), (Rendering::Object, Encoding::Json));
        assert_eq!(negotiate(&HeaderMap::new()), (Rendering::Object, Encoding::Json));
    }
}
