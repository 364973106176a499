//! Streaming watches: `?watch=1&resourceVersion=N`, served from the watch cache as
//! chunked JSON lines (`{"type":"ADDED","object":{…}}`) or, for protobuf clients,
//! length-prefixed `WatchEvent` frames, with BOOKMARKs when asked,
//! `timeoutSeconds`, and `410 Gone` (as an ERROR event, like kube-apiserver) when N is
//! older than the cache's window.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::encoding::{Encoding, PROTOBUF_WATCH};
use super::render::table_of;
use super::{body_response, present, ApiRequest, ApiState, Rendering};
use crate::cache::{EventType, WatchItem};
use crate::resource::error::ApiError;

/// The longest a watch stays open (kube-apiserver closes them after 30–60 minutes too);
/// clients re-watch from their last resourceVersion.
const MAX_WATCH: Duration = Duration::from_secs(3600);
const DEFAULT_WATCH: Duration = Duration::from_secs(1800);

/// One watch line, `{"type":…,"object":…}` and a newline (kube-apiserver's field order),
/// serialized straight from the borrowed object: a watch event is encoded once per watcher,
/// so a deep copy of every object per event is what this avoids.
fn line(kind: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"{\"type\":");
    // Writing JSON into a Vec cannot fail: strings and Values always serialize.
    let _ = serde_json::to_writer(&mut buf, kind);
    buf.extend_from_slice(b",\"object\":");
    let _ = serde_json::to_writer(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// One watch event in `encoding`. An object protobuf cannot hold (which the stored,
/// validated objects of built-in kinds never are) becomes an ERROR event saying so.
fn frame(encoding: Encoding, kind: &str, object: &Value) -> Bytes {
    if encoding == Encoding::Json {
        return line(kind, object);
    }
    match berth_proto::protobuf::watch_frame(kind, object) {
        Ok(frame) => Bytes::from(frame),
        Err(e) => {
            tracing::warn!(error = %e, "a watch event could not be written as protobuf");
            let status = ApiError::Internal(format!("the object could not be written as protobuf: {e}")).status();
            Bytes::from(berth_proto::protobuf::watch_frame("ERROR", &status).unwrap_or_default())
        }
    }
}

/// Encodes watch items for one client (object, Table rows, or metadata).
struct Encoder {
    req: ApiRequest,
    encoding: Encoding,
    columns_sent: bool,
}

impl Encoder {
    fn event(&mut self, kind: EventType, obj: &Value) -> Bytes {
        let object = match self.req.rendering {
            Rendering::Object if !self.req.target.info.is_alias() => return frame(self.encoding, kind.as_str(), obj),
            Rendering::Object => present(&self.req.target, obj.clone()),
            Rendering::Metadata => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
            }
            Rendering::Table => {
                let rv = obj["metadata"]["resourceVersion"].clone();
                let t =
                    table_of(&self.req, std::slice::from_ref(obj), json!({"resourceVersion": rv}), !self.columns_sent);
                self.columns_sent = true;
                t
            }
        };
        frame(self.encoding, kind.as_str(), &object)
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let info = self.req.target.info;
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        frame(
            self.encoding,
            "BOOKMARK",
            &json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}),
        )
    }
}

/// The encoding of a watch: protobuf only for kinds that have a protobuf form, and JSON
/// for the others if the client takes it (a 406 if not), as kube-apiserver serves custom
/// resources.
fn watch_encoding(req: &ApiRequest) -> Result<Encoding, ApiError> {
    let Encoding::Protobuf { json_too } = req.encoding else { return Ok(Encoding::Json) };
    let info = req.target.info;
    let (api_version, kind) = match req.rendering {
        Rendering::Object => (info.api_version(), info.kind),
        // Table is JSON-only in Kubernetes (`+protobuf=false`).
        Rendering::Table => ("meta.k8s.io/v1".to_string(), "Table"),
        Rendering::Metadata => ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata"),
    };
    let has_schema = berth_proto::protobuf::schema::message_for(&api_version, kind).is_some();
    match (has_schema, json_too) {
        (true, _) => Ok(req.encoding),
        (false, true) => Ok(Encoding::Json),
        (false, false) => Err(super::encoding::no_protobuf_form(kind)),
    }
}

fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => "application/json",
        Encoding::Protobuf { .. } => PROTOBUF_WATCH,
    }
}

pub async fn serve(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let filter = req.query.filter(&req.target)?;
    let from = req.query.resource_version()?.filter(|rv| *rv != 0);
    let send_initial = req.query.flag("sendInitialEvents");
    let bookmarks = req.query.flag("allowWatchBookmarks");
    if send_initial && !bookmarks {
        return Err(ApiError::Invalid {
            qualified_kind: "ListOptions.meta.k8s.io".into(),
            name: String::new(),
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            causes: vec![crate::resource::error::Cause {
                reason: "FieldValueForbidden".into(),
                message:
                    "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true"
                        .into(),
                field: "allowWatchBookmarks".into(),
            }],
        });
    }
    let encoding = watch_encoding(&req)?;
    let timeout = match req.query.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64).min(MAX_WATCH),
        _ => DEFAULT_WATCH,
    };
    let cacher = state.cache.get(req.target.info);
    // sendInitialEvents: the current state first, whatever resourceVersion says.
    let start = if send_initial { None } else { from };
    let sub = match cacher.watch(filter, start, bookmarks).await {
        Ok(s) => s,
        Err(e @ (ApiError::Expired(_) | ApiError::Gone(_))) => {
            let body = Body::from(frame(encoding, "ERROR", &e.status()));
            return Ok(body_response(StatusCode::OK, content_type(encoding), body));
        }
        Err(e) => return Err(e),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let shutdown = state.shutdown.clone();
    let watchers = state.metrics.watchers.clone();
    watchers.inc();
    tokio::spawn(async move {
        let mut sub = sub;
        let mut enc = Encoder { req, encoding, columns_sent: false };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let initial = std::mem::take(&mut sub.initial);
        let mut last_revision = from.unwrap_or(0);
        for item in initial {
            if let WatchItem::Event(k, o) = &item {
                last_revision = last_revision
                    .max(o["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0));
                if tx.send(Ok(enc.event(*k, o))).await.is_err() {
                    watchers.dec();
                    return;
                }
            }
        }
        if send_initial {
            let rev = last_revision.max(sub.cacher.revision());
            if tx.send(Ok(enc.bookmark(rev, true))).await.is_err() {
                watchers.dec();
                return;
            }
        }
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
                item = sub.events.recv() => {
                    let bytes = match item {
                        Some(WatchItem::Event(k, o)) => enc.event(k, &o),
                        Some(WatchItem::Bookmark(rev)) => enc.bookmark(rev, false),
                        // The cache dropped this watcher (too slow, or re-listed): end the
                        // stream; the client re-watches from its last resourceVersion.
                        None => break,
                    };
                    if tx.send(Ok(bytes)).await.is_err() {
                        break;
                    }
                }
            }
        }
        watchers.dec();
    });
    Ok(body_response(StatusCode::OK, content_type(encoding), Body::from_stream(ReceiverStream::new(rx))))
}
