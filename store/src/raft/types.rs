//! The Raft type configuration and the application payloads it carries.

use std::fmt;

use berth_proto::berthraftpb::{ApplyResult, InternalRequest};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::snapshot::SnapshotFile;

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Berth's Raft types: etcd requests in, etcd responses out, u64 member ids.
    pub TypeConfig:
        D = StoreRequest,
        R = StoreResponse,
        NodeId = NodeId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// What Raft knows about a member: where its peers reach it. Name and client URLs are
/// replicated state-machine data instead (published by the member once it runs, as etcd
/// does), so they can change without a membership change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub peer_urls: Vec<String>,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_urls.join(","))
    }
}

/// Serialises a prost message as one bincode byte string.
fn serialize_message<M: Message, S: Serializer>(msg: &M, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(&msg.encode_to_vec())
}

fn deserialize_message<'de, M: Message + Default, D: Deserializer<'de>>(d: D) -> Result<M, D::Error> {
    let bytes = d.deserialize_bytes(ByteString)?;
    M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
}

/// Reads a byte string written by `serialize_bytes` in one piece. (Deserializing a
/// `Vec<u8>` goes through serde's sequence visitor, one byte at a time: a follower spent
/// most of its CPU there decoding megabyte entries, and appends timed out.)
struct ByteString;

impl<'de> serde::de::Visitor<'de> for ByteString {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// A log entry's application payload: an etcd request in its protobuf encoding.
///
/// The entry is serialized for the local log and again for every follower; keeping the
/// encoded bytes (shared, not copied, between clones) means the request is encoded once, on
/// the proposing member, and decoded once per member, when applied.
///
/// A request proposed on this member also carries an [`AppendMark`] (never serialized): the
/// log store sets it when the entry reaches the log, so the proposer can tell "refused before
/// it was appended" from "appended, then truncated" — openraft answers both with the same
/// `ForwardToLeader` (see `node::propose`).
#[derive(Debug, Clone, Default)]
pub struct StoreRequest {
    encoded: bytes::Bytes,
    appended: Option<AppendMark>,
}

impl PartialEq for StoreRequest {
    fn eq(&self, other: &StoreRequest) -> bool {
        self.encoded == other.encoded
    }
}

/// Set once the log store has received an entry (shared by the entry's in-memory clones).
#[derive(Debug, Clone, Default)]
pub struct AppendMark(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl AppendMark {
    /// True once the entry was handed to this member's log store: from then on it may have
    /// been replicated, whatever becomes of this member's copy.
    pub fn appended(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl StoreRequest {
    pub fn new(req: &InternalRequest) -> StoreRequest {
        StoreRequest { encoded: req.encode_to_vec().into(), appended: None }
    }

    /// A request to propose on this member, and the mark that says whether it reached the log.
    pub fn proposal(req: &InternalRequest) -> (StoreRequest, AppendMark) {
        let mark = AppendMark::default();
        (StoreRequest { encoded: req.encode_to_vec().into(), appended: Some(mark.clone()) }, mark)
    }

    /// Called by the log store for every entry it receives, before writing it.
    pub(crate) fn mark_appended(&self) {
        if let Some(mark) = &self.appended {
            mark.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    pub fn decode(&self) -> Result<InternalRequest, crate::error::StoreError> {
        InternalRequest::decode(self.encoded.as_ref())
            .map_err(|e| crate::error::StoreError::corrupt("log entry payload", e))
    }
}

impl Serialize for StoreRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.encoded)
    }
}

impl<'de> Deserialize<'de> for StoreRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = d.deserialize_bytes(ByteString)?;
        Ok(StoreRequest { encoded: bytes.into(), appended: None })
    }
}

/// The state machine's answer to one entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoreResponse(pub ApplyResult);

impl Serialize for StoreResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_message(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for StoreResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_message(d).map(StoreResponse)
    }
}

/// Wraps a store error for openraft's storage error type.
pub fn storage_error(err: crate::error::StoreError) -> StorageError {
    openraft::StorageIOError::write(openraft::AnyError::new(&err)).into()
}

pub fn storage_read_error(err: crate::error::StoreError) -> StorageError {
    openraft::StorageIOError::read(openraft::AnyError::new(&err)).into()
}
