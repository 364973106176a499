//! The registry's view of the store: keys, JSON values, and guarded writes.
//!
//! Values pass through the server's [`Transformer`] on the way in and out, so resources
//! the encryption configuration names (Secrets, by default) are ciphertext in the store.
//!
//! Objects live as JSON under `/registry/{resource}/{namespace}/{name}` (cluster-scoped:
//! `/registry/{resource}/{name}`), as kube-apiserver lays out etcd. `resourceVersion` is not
//! stored: it is the key's `mod_revision`, filled in on every read. Every write is one
//! store transaction guarded by a compare (key absent, or `mod_revision` unchanged), which
//! is what makes optimistic concurrency and leader-task fencing hold under any failure.

use berth_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use berth_proto::etcdserverpb::request_op::Request as Op;
use berth_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use berth_proto::keys::prefix_end;
use std::sync::Arc;

use berth_store::Store;
use serde_json::Value;

use super::fence;
use crate::encryption::Transformer;
use crate::resource::ApiError;
use crate::resource::ResourceInfo;

/// The storage key of one object.
pub fn object_key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match (info.namespaced, namespace) {
        (true, Some(ns)) => format!("/registry/{}/{ns}/{name}", info.key_root()),
        _ => format!("/registry/{}/{name}", info.key_root()),
    }
}

/// The key prefix of a resource, or of one namespace of it.
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match (info.namespaced, namespace) {
        (true, Some(ns)) => format!("/registry/{}/{ns}/", info.key_root()),
        _ => format!("/registry/{}/", info.key_root()),
    }
}

/// A stored object with its revisions.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub mod_revision: i64,
}

/// The store as the registry uses it: every value through the encryption transformer.
#[derive(Clone)]
pub struct Storage {
    store: Store,
    transformer: Arc<Transformer>,
}

/// Decodes a stored value and stamps `metadata.resourceVersion`.
fn decode_plain(key: String, value: &[u8], mod_revision: i64) -> Result<Stored, ApiError> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::Internal(format!("stored object {key} is not JSON: {e}")))?;
    crate::registry::object::set_resource_version(&mut object, mod_revision);
    Ok(Stored { key, object, mod_revision })
}

/// The bytes stored for an object: without `resourceVersion` (that is the revision).
pub fn encode(object: &Value) -> Vec<u8> {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&copy).expect("a JSON value always serializes")
}

/// One compare of a guarded write.
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key exists (any revision).
    Present(String),
    /// The key was last modified at exactly this revision.
    ModRevision(String, i64),
}

impl Guard {
    fn compare(&self) -> Compare {
        let (key, result, target, union) = match self {
            Guard::Absent(k) => (k, CompareResult::Equal, CompareTarget::Version, TargetUnion::Version(0)),
            Guard::Present(k) => (k, CompareResult::Greater, CompareTarget::Version, TargetUnion::Version(0)),
            Guard::ModRevision(k, r) => (k, CompareResult::Equal, CompareTarget::Mod, TargetUnion::ModRevision(*r)),
        };
        Compare {
            result: result as i32,
            target: target as i32,
            key: key.as_bytes().to_vec(),
            range_end: vec![],
            target_union: Some(union),
        }
    }
}

/// One write of a guarded transaction.
pub enum Write {
    Put(String, Vec<u8>),
    Delete(String),
}

/// Whether `key` exists (linearizable; any value, JSON or not — allocation keys hold their
/// owner's key).
pub async fn exists(store: &Store, key: &str) -> Result<bool, ApiError> {
    let resp =
        store.range(RangeRequest { key: key.as_bytes().to_vec(), count_only: true, ..Default::default() }).await?;
    Ok(resp.count > 0)
}

/// One page of a prefix scan at a fixed revision (0: latest, linearizable).
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the page was read at.
    pub revision: i64,
    /// More keys follow the last one returned.
    pub more: bool,
    /// Keys in the range after this page (for `remainingItemCount`).
    pub remaining: i64,
}

impl Storage {
    pub fn new(store: Store, transformer: Arc<Transformer>) -> Storage {
        Storage { store, transformer }
    }

    /// The store underneath, for what is not an object (leases, allocations, fences).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decodes (and decrypts) the value stored under `key` and stamps
    /// `metadata.resourceVersion`.
    pub fn decode(&self, key: &[u8], value: &[u8], mod_revision: i64) -> Result<Stored, ApiError> {
        let key = String::from_utf8_lossy(key).into_owned();
        let plain = self.transformer.from_storage(&key, value).map_err(ApiError::Internal)?;
        decode_plain(key, &plain, mod_revision)
    }

    fn decode_all(&self, kvs: &[berth_proto::mvccpb::KeyValue]) -> Result<Vec<Stored>, ApiError> {
        kvs.iter().map(|kv| self.decode(&kv.key, &kv.value, kv.mod_revision)).collect()
    }

    /// Runs `writes` if every guard holds. Returns `Some(revision)` on success, `None` when a
    /// guard failed (the caller re-reads to say why). Inside a leader task's request the write
    /// is also fenced to the task's term (see [`fence`]): once a newer leader has claimed the
    /// epoch it fails with 503 whatever the other guards say.
    pub async fn guarded(&self, guards: &[Guard], writes: Vec<Write>) -> Result<Option<i64>, ApiError> {
        let store = &self.store;
        let mut success = Vec::with_capacity(writes.len());
        for w in writes {
            success.push(RequestOp {
                request: Some(match w {
                    Write::Put(key, value) => {
                        let value = self.transformer.to_storage(&key, value).map_err(ApiError::Internal)?;
                        Op::RequestPut(PutRequest { key: key.into_bytes(), value, ..Default::default() })
                    }
                    Write::Delete(key) => {
                        Op::RequestDeleteRange(DeleteRangeRequest { key: key.into_bytes(), ..Default::default() })
                    }
                }),
            });
        }
        let mut compare: Vec<Compare> = guards.iter().map(Guard::compare).collect();
        let term = fence::current();
        let mut failure = vec![];
        if let Some(term) = term {
            compare.push(fence::guard(term));
            failure.push(fence::epoch_read());
        }
        let resp = store.txn(TxnRequest { compare, success, failure }).await?;
        if !resp.succeeded {
            if let Some(term) = term {
                let epoch = fence::epoch_in(&resp.responses);
                if epoch != Some(term) {
                    tracing::warn!(term, ?epoch, "refused a write of a deposed leader's task");
                    return Err(fence::superseded(term, epoch));
                }
            }
            return Ok(None);
        }
        let revision = resp.header.map_or(0, |h| h.revision);
        if let Some(term) = term {
            tracing::debug!(target: fence::COMMIT_LOG_TARGET, term, revision, "fenced write committed");
        }
        Ok(Some(revision))
    }

    /// Reads one key. `consistent`: a linearizable read (the default for GET); otherwise this
    /// member's latest applied state.
    pub async fn get(&self, key: &str, consistent: bool) -> Result<Option<Stored>, ApiError> {
        let resp = self
            .store
            .range(RangeRequest { key: key.as_bytes().to_vec(), serializable: !consistent, ..Default::default() })
            .await?;
        match resp.kvs.first() {
            Some(kv) => Ok(Some(self.decode(&kv.key, &kv.value, kv.mod_revision)?)),
            None => Ok(None),
        }
    }

    /// Reads up to `limit` keys (0: all) in `[start, end of prefix)` at `revision`.
    pub async fn scan(&self, prefix: &str, start: &str, limit: i64, revision: i64) -> Result<Page, ApiError> {
        let resp = self
            .store
            .range(RangeRequest {
                key: start.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                limit,
                revision,
                ..Default::default()
            })
            .await?;
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let items = self.decode_all(&resp.kvs)?;
        let remaining = resp.count - items.len() as i64;
        Ok(Page { items, revision: if revision > 0 { revision } else { header_rev }, more: resp.more, remaining })
    }

    /// Every key under `prefix` as this member has applied it (no read-index round): for
    /// reads whose result a later guarded write re-checks anyway. The prefix must hold few
    /// keys: the read runs on the calling task.
    pub async fn scan_few_serializable(&self, prefix: &str) -> Result<Page, ApiError> {
        let resp = self
            .store
            .range_few(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                serializable: true,
                ..Default::default()
            })
            .await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let items = self.decode_all(&resp.kvs)?;
        Ok(Page { items, revision, more: resp.more, remaining: 0 })
    }
}
