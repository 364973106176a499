//! Mutations within one applied log entry (etcd's `TxnWrite`).
//!
//! A [`WriteTxn`] reads the state before the entry through a [`ReadView`], buffers its
//! writes in a [`WriteBatch`], and keeps an overlay of the keys it changed so later
//! operations of the same etcd txn see earlier ones. Every change gets main revision
//! `base + 1` and the next sub-revision; an entry that changes nothing leaves the revision
//! alone. Nothing reaches the engine until the caller writes [`WriteTxn::finish`]'s batch,
//! so a failing operation leaves no trace.

use std::collections::BTreeMap;

use berth_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader,
};
use berth_proto::keys::KeyRange;
use berth_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::encoding::{kv_key, revs_key, Record};
use super::meta;
use super::read::{self, collect_range, finish_range, get_at, resolve_revision, Keep};
use crate::engine::{scan, Cf, ReadView, WriteBatch};
use crate::error::{Result, StoreError};

/// What an entry's writes produced.
#[derive(Debug, Default)]
pub struct Changes {
    pub batch: WriteBatch,
    /// Events in (revision, sub-revision) order, with `prev_kv` always filled when the key
    /// had a live previous version (watchers that did not ask for it get it stripped).
    pub events: Vec<Event>,
    /// The store revision after the entry.
    pub revision: i64,
}

pub struct WriteTxn<'v> {
    view: &'v dyn ReadView,
    base: i64,
    compact: i64,
    next_sub: u32,
    /// Keys changed so far → their new state (`None` = deleted).
    overlay: BTreeMap<Vec<u8>, Option<KeyValue>>,
    batch: WriteBatch,
    events: Vec<Event>,
}

impl<'v> WriteTxn<'v> {
    pub fn new(view: &'v dyn ReadView, base: i64, compact: i64) -> Self {
        WriteTxn {
            view,
            base,
            compact,
            next_sub: 0,
            overlay: BTreeMap::new(),
            batch: WriteBatch::default(),
            events: Vec::new(),
        }
    }

    pub fn view(&self) -> &'v dyn ReadView {
        self.view
    }

    /// The revision this entry's changes get.
    fn pending(&self) -> i64 {
        self.base + 1
    }

    fn changed(&self) -> bool {
        self.next_sub > 0
    }

    /// The revision a reader inside this txn sees as "current".
    pub fn current(&self) -> i64 {
        if self.changed() {
            self.pending()
        } else {
            self.base
        }
    }

    pub fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.current(),
            ..Default::default()
        })
    }

    /// The latest state of `key`, including this txn's own changes.
    pub fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.overlay.get(key) {
            Some(state) => Ok(state.clone()),
            None => get_at(self.view, key, self.base),
        }
    }

    pub fn lease_exists(&self, id: i64) -> Result<bool> {
        Ok(self.view.get(Cf::Meta, &meta::lease_key(id))?.is_some())
    }

    fn next_revision(&mut self) -> (i64, u32) {
        let sub = self.next_sub;
        self.next_sub += 1;
        (self.pending(), sub)
    }

    fn attach(&mut self, lease: i64, key: &[u8]) {
        if lease != 0 {
            self.batch
                .put(Cf::Meta, meta::lease_attached_key(lease, key), Vec::new());
        }
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if lease != 0 {
            self.batch
                .delete(Cf::Meta, meta::lease_attached_key(lease, key));
        }
    }

    /// etcd `Put`: checks (key present for ignore_*, lease exists) happen before any write.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = self.latest(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(StoreError::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => req.lease,
        };
        if lease != 0 && !self.lease_exists(lease)? {
            return Err(StoreError::LeaseNotFound);
        }
        let (rev, sub) = self.next_revision();
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev, 1),
        };
        let record = Record::Live {
            create_revision,
            version,
            lease,
            value: value.clone(),
        };
        self.batch
            .put(Cf::Kv, kv_key(&req.key, rev), record.encode());
        self.batch
            .put(Cf::Revs, revs_key(rev, sub).to_vec(), req.key.clone());
        let prev_lease = prev.as_ref().map_or(0, |p| p.lease);
        if prev_lease != lease {
            self.detach(prev_lease, &req.key);
        }
        self.attach(lease, &req.key);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: prev.clone(),
        });
        self.overlay.insert(req.key.clone(), Some(kv));
        Ok(PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// Live keys of `range` as this txn sees them (own changes included).
    fn live_in(&self, range: &KeyRange) -> Result<Vec<KeyValue>> {
        let (mut kvs, _) = collect_range(self.view, range, self.base, Keep::All)?;
        self.merge_overlay(range, &mut kvs);
        Ok(kvs)
    }

    fn overlay_touches(&self, range: &KeyRange) -> bool {
        self.overlay.keys().any(|k| range.contains(k))
    }

    fn merge_overlay(&self, range: &KeyRange, kvs: &mut Vec<KeyValue>) {
        if !self.overlay_touches(range) {
            return;
        }
        let mut merged: BTreeMap<Vec<u8>, KeyValue> =
            kvs.drain(..).map(|kv| (kv.key.clone(), kv)).collect();
        for (key, state) in self.overlay.iter().filter(|(k, _)| range.contains(k)) {
            match state {
                Some(kv) => merged.insert(key.clone(), kv.clone()),
                None => merged.remove(key),
            };
        }
        kvs.extend(merged.into_values());
    }

    /// etcd `DeleteRange`.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let range = KeyRange::from_etcd(&req.key, &req.range_end);
        let doomed = self.live_in(&range)?;
        let deleted = doomed.len() as i64;
        for prev in &doomed {
            self.delete_key(prev);
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted,
            prev_kvs: if req.prev_kv { doomed } else { vec![] },
        })
    }

    fn delete_key(&mut self, prev: &KeyValue) {
        let (rev, sub) = self.next_revision();
        self.batch
            .put(Cf::Kv, kv_key(&prev.key, rev), Record::Tombstone.encode());
        self.batch
            .put(Cf::Revs, revs_key(rev, sub).to_vec(), prev.key.clone());
        self.detach(prev.lease, &prev.key);
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: prev.key.clone(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(prev.clone()),
        });
        self.overlay.insert(prev.key.clone(), None);
    }

    /// etcd `Range` inside a txn: at the txn's current revision it sees the txn's own writes.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let current = self.current();
        let rev = resolve_revision(req.revision, current, self.compact)?;
        let key_range = KeyRange::from_etcd(&req.key, &req.range_end);
        if rev == self.pending() && self.overlay_touches(&key_range) {
            let kvs = self.live_in(&key_range)?;
            let total = kvs.len() as i64;
            return finish_range(req, kvs, total, current);
        }
        // Own writes are invisible below the pending revision, and at it they do not touch
        // this range: read the view (which holds everything up to `base`).
        let (kvs, total) = collect_range(
            self.view,
            &key_range,
            rev.min(self.base),
            read::keep_for(req),
        )?;
        finish_range(req, kvs, total, current)
    }

    /// etcd lease grant: records the lease; no revision change.
    pub fn grant_lease(&mut self, id: i64, ttl: i64) -> Result<()> {
        if self.lease_exists(id)? {
            return Err(StoreError::LeaseExists);
        }
        self.batch
            .put(Cf::Meta, meta::lease_key(id), meta::i64_value(ttl));
        Ok(())
    }

    /// The keys attached to lease `id`.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        attached_keys(self.view, id)
    }

    /// etcd lease revoke: deletes every attached key (one revision) and the lease.
    pub fn revoke_lease(&mut self, id: i64) -> Result<()> {
        if !self.lease_exists(id)? {
            return Err(StoreError::LeaseNotFound);
        }
        for key in self.lease_keys(id)? {
            if let Some(prev) = self.latest(&key)? {
                self.delete_key(&prev);
            }
        }
        let prefix = meta::lease_attached_prefix(id);
        let end = berth_proto::keys::prefix_end(&prefix);
        self.batch.delete_range(Cf::Meta, prefix, end);
        self.batch.delete(Cf::Meta, meta::lease_key(id));
        Ok(())
    }

    /// Direct access for non-KV state-machine records (members, …).
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    pub fn finish(mut self) -> Changes {
        let revision = self.current();
        if self.changed() {
            self.batch
                .put(Cf::Meta, meta::REVISION, meta::i64_value(revision));
        }
        Changes {
            batch: self.batch,
            events: self.events,
            revision,
        }
    }
}

/// The keys attached to lease `id` as of `view`.
pub fn attached_keys(view: &dyn ReadView, id: i64) -> Result<Vec<Vec<u8>>> {
    let prefix = meta::lease_attached_prefix(id);
    let end = berth_proto::keys::prefix_end(&prefix);
    let mut keys = Vec::new();
    scan(view, Cf::Meta, &prefix, Some(&end), |k, _| {
        keys.push(k[prefix.len()..].to_vec());
        Ok(true)
    })?;
    Ok(keys)
}
