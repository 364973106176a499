//! The latest version of every live key, in memory (etcd keeps a similar in-memory key
//! index).
//!
//! The apply path needs, for every put or delete, the key's current create revision,
//! version and lease; reading them from RocksDB means an iterator seek across memtables and
//! table files, which dominated apply time. The index answers from memory; values are
//! fetched (by an exact point lookup) only when a response or a watcher needs them.
//!
//! Owned by the state machine and updated from each entry's events after its write, it
//! always describes the state of the engine as the next entry sees it. Rebuilt from the
//! `kv` column family at start-up and after a snapshot install.

use std::collections::BTreeMap;
use std::ops::Bound;

use berth_proto::keys::KeyRange;
use berth_proto::mvccpb::{event::EventType, Event};

use super::encoding::{split_kv_key, unescape_key, Record};
use crate::engine::{Cf, ReadView};
use crate::error::Result;

/// Where the latest version of a key lives and what it carries besides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMeta {
    pub mod_revision: i64,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

#[derive(Debug, Default)]
pub struct KeyIndex {
    live: BTreeMap<Vec<u8>, KeyMeta>,
}

impl KeyIndex {
    /// Scans `kv`: the first entry of each key is its newest version (revisions sort
    /// descending), live unless a tombstone.
    pub fn build(view: &dyn ReadView) -> Result<KeyIndex> {
        let mut live = BTreeMap::new();
        let mut cursor = view.cursor(Cf::Kv);
        cursor.seek_to_first();
        let mut last_escaped: Vec<u8> = Vec::new();
        while cursor.valid() {
            let (escaped, rev) = split_kv_key(cursor.key())?;
            if escaped != last_escaped.as_slice() {
                last_escaped = escaped.to_vec();
                if let Record::Live { create_revision, version, lease, .. } = Record::decode(cursor.value())? {
                    live.insert(unescape_key(escaped)?, KeyMeta { mod_revision: rev, create_revision, version, lease });
                }
            }
            cursor.next();
        }
        cursor.status()?;
        Ok(KeyIndex { live })
    }

    pub fn get(&self, key: &[u8]) -> Option<KeyMeta> {
        self.live.get(key).copied()
    }

    /// Live keys in `range`, in key order.
    pub fn range<'a>(&'a self, range: &KeyRange) -> impl Iterator<Item = (&'a Vec<u8>, &'a KeyMeta)> + 'a {
        let end = match &range.end {
            // An empty range becomes [start, start): BTreeMap panics on start > end.
            _ if range.is_empty() => Bound::Excluded(range.start.clone()),
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        self.live.range((Bound::Included(range.start.clone()), end))
    }

    /// Records an entry's changes (after its write reached the engine).
    pub fn apply_events(&mut self, events: &[Event]) {
        for ev in events {
            let Some(kv) = &ev.kv else { continue };
            if ev.r#type == EventType::Delete as i32 {
                self.live.remove(&kv.key);
            } else {
                self.live.insert(
                    kv.key.clone(),
                    KeyMeta {
                        mod_revision: kv.mod_revision,
                        create_revision: kv.create_revision,
                        version: kv.version,
                        lease: kv.lease,
                    },
                );
            }
        }
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}
