//! Mutations within one applied log entry (etcd's `TxnWrite`).
//!
//! A [`WriteTxn`] reads the state before the entry through a [`ReadView`] and buffers its
//! writes in a [`WriteBatch`]. An entry may carry several client requests (proposal
//! batching); each runs as one *step* ([`WriteTxn::step`]): its changes get the next main
//! revision with increasing sub-revisions, a step that changes nothing consumes no
//! revision, and a failing step is rolled back without touching the others. An overlay
//! keeps every version this entry wrote, so later reads — in the same etcd txn or in a
//! later step — see earlier writes, at the right revisions. Nothing reaches the engine
//! until the caller writes [`WriteTxn::finish`]'s batch.

use std::collections::BTreeMap;

use berth_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use berth_proto::keys::KeyRange;
use berth_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::encoding::{kv_key, revs_key, Record};
use super::index::{KeyIndex, KeyMeta};
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
    /// Whether events carry `prev_kv` (only fetched when a watcher may want it).
    pub prev_kv_complete: bool,
}

/// The latest state of a key as an entry sees it, without loading a stored value.
enum Current {
    /// Written by this entry (value at hand).
    Written(KeyValue),
    /// Stored before this entry (value not loaded).
    Stored(KeyMeta),
    Absent,
}

impl Current {
    fn lease(&self) -> i64 {
        match self {
            Current::Written(kv) => kv.lease,
            Current::Stored(m) => m.lease,
            Current::Absent => 0,
        }
    }

    fn exists(&self) -> bool {
        !matches!(self, Current::Absent)
    }

    /// (create revision, version) of the key's next version.
    fn next_version(&self, rev: i64) -> (i64, i64) {
        match self {
            Current::Written(kv) => (kv.create_revision, kv.version + 1),
            Current::Stored(m) => (m.create_revision, m.version + 1),
            Current::Absent => (rev, 1),
        }
    }
}

/// Where to roll back to if a step fails.
struct Savepoint {
    batch_len: usize,
    events_len: usize,
    touched_len: usize,
}

pub struct WriteTxn<'v> {
    view: &'v dyn ReadView,
    /// Latest versions as of `view` (the apply path has one; readers do not).
    index: Option<&'v KeyIndex>,
    /// Fill events' `prev_kv` (a watcher may want it).
    want_prev_kv: bool,
    /// Revision of `view` (the store revision before this entry).
    view_rev: i64,
    compact: i64,
    /// Revision reached by completed steps.
    rev: i64,
    /// Sub-revision of the current step's next change (0: the step changed nothing yet).
    next_sub: u32,
    /// Every version written by this entry: key → [(revision, state)], oldest first;
    /// `None` = deleted.
    overlay: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
    /// Keys written by the current step, for rollback.
    touched: Vec<Vec<u8>>,
    savepoint: Savepoint,
    batch: WriteBatch,
    events: Vec<Event>,
}

impl<'v> WriteTxn<'v> {
    pub fn new(view: &'v dyn ReadView, base: i64, compact: i64) -> Self {
        WriteTxn {
            view,
            index: None,
            want_prev_kv: true,
            view_rev: base,
            compact,
            rev: base,
            next_sub: 0,
            overlay: BTreeMap::new(),
            touched: Vec::new(),
            savepoint: Savepoint { batch_len: 0, events_len: 0, touched_len: 0 },
            batch: WriteBatch::default(),
            events: Vec::new(),
        }
    }

    /// Uses `index` (which must describe `view`) for latest versions, and fills events'
    /// `prev_kv` only when `want_prev_kv`.
    pub fn with_index(mut self, index: &'v KeyIndex, want_prev_kv: bool) -> Self {
        self.index = Some(index);
        self.want_prev_kv = want_prev_kv;
        self
    }

    pub fn view(&self) -> &'v dyn ReadView {
        self.view
    }

    /// The revision the current step's changes get.
    fn pending(&self) -> i64 {
        self.rev + 1
    }

    fn changed(&self) -> bool {
        self.next_sub > 0
    }

    /// The revision a reader in the current step sees as "current".
    pub fn current(&self) -> i64 {
        if self.changed() {
            self.pending()
        } else {
            self.rev
        }
    }

    pub fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: self.current(), ..Default::default() })
    }

    /// Runs `f` as one step: on success its changes stay (one revision if it changed
    /// anything); on error they are rolled back and the error returned.
    pub fn step<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.savepoint =
            Savepoint { batch_len: self.batch.len(), events_len: self.events.len(), touched_len: self.touched.len() };
        match f(self) {
            Ok(v) => {
                if self.changed() {
                    self.rev = self.pending();
                    self.next_sub = 0;
                }
                self.touched.clear();
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn rollback(&mut self) {
        let pending = self.pending();
        self.batch.ops.truncate(self.savepoint.batch_len);
        self.events.truncate(self.savepoint.events_len);
        for key in self.touched.drain(self.savepoint.touched_len..) {
            if let Some(history) = self.overlay.get_mut(&key) {
                history.retain(|(rev, _)| *rev != pending);
                if history.is_empty() {
                    self.overlay.remove(&key);
                }
            }
        }
        self.next_sub = 0;
    }

    /// The state of `key` at revision `rev` as this entry sees it.
    fn state_at(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        if let Some(history) = self.overlay.get(key) {
            if let Some((_, state)) = history.iter().rev().find(|(r, _)| *r <= rev) {
                return Ok(state.clone());
            }
        }
        get_at(self.view, key, rev.min(self.view_rev))
    }

    /// The latest state of `key`, including this entry's own changes.
    pub fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let current = self.current_of(key)?;
        self.materialize(key, current)
    }

    fn current_of(&self, key: &[u8]) -> Result<Current> {
        if let Some(history) = self.overlay.get(key) {
            if let Some((_, state)) = history.last() {
                return Ok(state.clone().map_or(Current::Absent, Current::Written));
            }
        }
        match self.index {
            Some(index) => Ok(index.get(key).map_or(Current::Absent, Current::Stored)),
            None => Ok(get_at(self.view, key, self.view_rev)?.map_or(Current::Absent, Current::Written)),
        }
    }

    /// Loads a stored version's value by an exact point lookup.
    fn load(&self, key: &[u8], meta: KeyMeta) -> Result<KeyValue> {
        let raw = self.view.get(Cf::Kv, &kv_key(key, meta.mod_revision))?.ok_or_else(|| {
            StoreError::corrupt("key index", format!("version {} of {key:?} is missing", meta.mod_revision))
        })?;
        match Record::decode(&raw)? {
            Record::Live { value, .. } => Ok(KeyValue {
                key: key.to_vec(),
                create_revision: meta.create_revision,
                mod_revision: meta.mod_revision,
                version: meta.version,
                value,
                lease: meta.lease,
            }),
            Record::Tombstone => Err(StoreError::corrupt("key index", format!("{key:?} indexed as live"))),
        }
    }

    fn materialize(&self, key: &[u8], current: Current) -> Result<Option<KeyValue>> {
        match current {
            Current::Written(kv) => Ok(Some(kv)),
            Current::Stored(meta) => self.load(key, meta).map(Some),
            Current::Absent => Ok(None),
        }
    }

    /// The live keys of `range` now (this entry's changes included), values not loaded.
    fn live_entries(&self, range: &KeyRange) -> Result<BTreeMap<Vec<u8>, Current>> {
        let mut out: BTreeMap<Vec<u8>, Current> = match self.index {
            Some(index) => index.range(range).map(|(k, m)| (k.clone(), Current::Stored(*m))).collect(),
            None => collect_range(self.view, range, self.view_rev, Keep::All)?
                .0
                .into_iter()
                .map(|kv| (kv.key.clone(), Current::Written(kv)))
                .collect(),
        };
        for (key, history) in self.overlay.iter().filter(|(k, _)| range.contains(k)) {
            match history.last() {
                Some((_, Some(kv))) => {
                    out.insert(key.clone(), Current::Written(kv.clone()));
                }
                _ => {
                    out.remove(key);
                }
            }
        }
        Ok(out)
    }

    pub fn lease_exists(&self, id: i64) -> Result<bool> {
        Ok(self.view.get(Cf::Meta, &meta::lease_key(id))?.is_some())
    }

    fn next_revision(&mut self) -> (i64, u32) {
        let sub = self.next_sub;
        self.next_sub += 1;
        (self.pending(), sub)
    }

    fn record(&mut self, key: &[u8], rev: i64, state: Option<KeyValue>) {
        self.overlay.entry(key.to_vec()).or_default().push((rev, state));
        self.touched.push(key.to_vec());
    }

    fn attach(&mut self, lease: i64, key: &[u8]) {
        if lease != 0 {
            self.batch.put(Cf::Meta, meta::lease_attached_key(lease, key), Vec::new());
        }
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if lease != 0 {
            self.batch.delete(Cf::Meta, meta::lease_attached_key(lease, key));
        }
    }

    /// etcd `Put`: checks (key present for ignore_*, lease exists) happen before any write.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let current = self.current_of(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && !current.exists() {
            return Err(StoreError::KeyNotFound);
        }
        let prev_lease = current.lease();
        let lease = if req.ignore_lease { prev_lease } else { req.lease };
        if lease != 0 && !self.lease_exists(lease)? {
            return Err(StoreError::LeaseNotFound);
        }
        let (rev, sub) = self.next_revision();
        let (create_revision, version) = current.next_version(rev);
        let need_prev = req.prev_kv || req.ignore_value || self.want_prev_kv;
        let prev = if need_prev { self.materialize(&req.key, current)? } else { None };
        let value = match (&prev, req.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => req.value.clone(),
        };
        let record = Record::Live { create_revision, version, lease, value: value.clone() };
        self.batch.put(Cf::Kv, kv_key(&req.key, rev), record.encode());
        self.batch.put(Cf::Revs, revs_key(rev, sub).to_vec(), req.key.clone());
        if prev_lease != lease {
            self.detach(prev_lease, &req.key);
        }
        self.attach(lease, &req.key);
        let kv = KeyValue { key: req.key.clone(), create_revision, mod_revision: rev, version, value, lease };
        let event_prev = if self.want_prev_kv { prev.clone() } else { None };
        self.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv.clone()), prev_kv: event_prev });
        self.record(&req.key, rev, Some(kv));
        Ok(PutResponse { header: None, prev_kv: if req.prev_kv { prev } else { None } })
    }

    fn overlay_touches(&self, range: &KeyRange, rev: i64) -> bool {
        self.overlay.iter().any(|(k, history)| history.first().is_some_and(|(r, _)| *r <= rev) && range.contains(k))
    }

    /// Live keys of `range` at `rev` as this entry sees them.
    fn live_at(&self, range: &KeyRange, rev: i64) -> Result<Vec<KeyValue>> {
        let (kvs, _) = collect_range(self.view, range, rev.min(self.view_rev), Keep::All)?;
        if !self.overlay_touches(range, rev) {
            return Ok(kvs);
        }
        let mut merged: BTreeMap<Vec<u8>, KeyValue> = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        for (key, _) in self.overlay.iter().filter(|(k, _)| range.contains(k)) {
            match self.state_at(key, rev)? {
                Some(kv) => merged.insert(key.clone(), kv),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_values().collect())
    }

    /// Live keys of `range` now, with values (compares use this).
    pub fn live_now(&self, range: &KeyRange) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        for (key, current) in self.live_entries(range)? {
            if let Some(kv) = self.materialize(&key, current)? {
                out.push(kv);
            }
        }
        Ok(out)
    }

    /// etcd `DeleteRange`.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let range = KeyRange::from_etcd(&req.key, &req.range_end);
        let doomed = self.live_entries(&range)?;
        let deleted = doomed.len() as i64;
        let need_prev = req.prev_kv || self.want_prev_kv;
        let mut prev_kvs = Vec::new();
        for (key, current) in doomed {
            let lease = current.lease();
            let prev = if need_prev { self.materialize(&key, current)? } else { None };
            self.delete_key(&key, lease, if self.want_prev_kv { prev.clone() } else { None });
            if req.prev_kv {
                prev_kvs.extend(prev);
            }
        }
        Ok(DeleteRangeResponse { header: None, deleted, prev_kvs })
    }

    fn delete_key(&mut self, key: &[u8], lease: i64, event_prev: Option<KeyValue>) {
        let (rev, sub) = self.next_revision();
        self.batch.put(Cf::Kv, kv_key(key, rev), Record::Tombstone.encode());
        self.batch.put(Cf::Revs, revs_key(rev, sub).to_vec(), key.to_vec());
        self.detach(lease, key);
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue { key: key.to_vec(), mod_revision: rev, ..Default::default() }),
            prev_kv: event_prev,
        });
        self.record(key, rev, None);
    }

    /// etcd `Range` inside an entry: sees this entry's earlier writes at their revisions.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let current = self.current();
        let rev = resolve_revision(req.revision, current, self.compact)?;
        let key_range = KeyRange::from_etcd(&req.key, &req.range_end);
        if rev > self.view_rev && self.overlay_touches(&key_range, rev) {
            let kvs = self.live_at(&key_range, rev)?;
            let total = kvs.len() as i64;
            return finish_range(req, kvs, total, current);
        }
        // Nothing this entry wrote is visible there: the view (everything up to its
        // revision) answers.
        let (kvs, total) = collect_range(self.view, &key_range, rev.min(self.view_rev), read::keep_for(req))?;
        finish_range(req, kvs, total, current)
    }

    /// etcd lease grant: records the lease; no revision change.
    pub fn grant_lease(&mut self, id: i64, ttl: i64) -> Result<()> {
        if self.lease_exists(id)? {
            return Err(StoreError::LeaseExists);
        }
        self.batch.put(Cf::Meta, meta::lease_key(id), meta::i64_value(ttl));
        Ok(())
    }

    /// etcd lease revoke: deletes every attached key (one revision) and the lease.
    pub fn revoke_lease(&mut self, id: i64) -> Result<()> {
        if !self.lease_exists(id)? {
            return Err(StoreError::LeaseNotFound);
        }
        for key in attached_keys(self.view, id)? {
            let current = self.current_of(&key)?;
            if current.exists() {
                let lease = current.lease();
                let prev = if self.want_prev_kv { self.materialize(&key, current)? } else { None };
                self.delete_key(&key, lease, prev);
            }
        }
        let prefix = meta::lease_attached_prefix(id);
        let end = berth_proto::keys::prefix_end(&prefix);
        self.batch.delete_range(Cf::Meta, prefix, end);
        self.batch.delete(Cf::Meta, meta::lease_key(id));
        Ok(())
    }

    /// Direct access for non-KV state-machine records (members, compaction).
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    pub fn finish(self) -> Changes {
        let revision = self.current();
        let mut batch = self.batch;
        if revision != self.view_rev {
            batch.put(Cf::Meta, meta::REVISION, meta::i64_value(revision));
        }
        Changes { batch, events: self.events, revision, prev_kv_complete: self.want_prev_kv }
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
