//! Reading the event history by revision (watch catch-up) and hashing it (`HashKV`).

use berth_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::encoding::{kv_key, revs_key, split_kv_key, split_revs_key, Record};
use super::read::{get_at, to_key_value};
use crate::engine::{scan, Cf, ReadView};
use crate::error::{Result, StoreError};

/// A contiguous slice of history.
#[derive(Debug, Default)]
pub struct HistoryChunk {
    /// Events in (revision, sub-revision) order.
    pub events: Vec<Event>,
    /// Every revision up to and including this one has been read (events of a revision are
    /// never split between chunks).
    pub covered_through: i64,
}

/// Events with revision in `[from, to]`, keys filtered by `wanted`. Stops at the first
/// revision boundary after `max_events` events.
///
/// The caller must have checked that `from` is not below the compact revision of `view`:
/// compaction removes the history this reads.
pub fn events_between(
    view: &dyn ReadView,
    from: i64,
    to: i64,
    max_events: usize,
    with_prev_kv: bool,
    wanted: impl Fn(&[u8]) -> bool,
) -> Result<HistoryChunk> {
    let mut chunk = HistoryChunk { events: Vec::new(), covered_through: to };
    if from > to {
        chunk.covered_through = from - 1;
        return Ok(chunk);
    }
    let start = revs_key(from, 0);
    let end = revs_key(to + 1, 0);
    let mut last_rev = from - 1;
    let mut failure = None;
    scan(view, Cf::Revs, &start, Some(&end), |k, user_key| {
        let (rev, _sub) = split_revs_key(k)?;
        if rev != last_rev && chunk.events.len() >= max_events {
            chunk.covered_through = last_rev;
            return Ok(false);
        }
        last_rev = rev;
        if !wanted(user_key) {
            return Ok(true);
        }
        match event_at(view, user_key, rev, with_prev_kv) {
            Ok(ev) => chunk.events.push(ev),
            Err(e) => {
                failure = Some(e);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(chunk)
}

fn event_at(view: &dyn ReadView, user_key: &[u8], rev: i64, with_prev_kv: bool) -> Result<Event> {
    let raw = view
        .get(Cf::Kv, &kv_key(user_key, rev))?
        .ok_or_else(|| StoreError::corrupt("revision index", format!("revision {rev} names a missing version")))?;
    let prev_kv = if with_prev_kv { get_at(view, user_key, rev - 1)? } else { None };
    let event = match Record::decode(&raw)? {
        Record::Tombstone => Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue { key: user_key.to_vec(), mod_revision: rev, ..Default::default() }),
            prev_kv,
        },
        Record::Live { create_revision, version, lease, value } => Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue { key: user_key.to_vec(), create_revision, mod_revision: rev, version, value, lease }),
            prev_kv,
        },
    };
    Ok(event)
}

/// CRC32 over every stored version with `mod_revision <= rev` (keys, revisions and records),
/// so two replicas at the same compact revision agree exactly when their MVCC data does.
pub fn hash_kv(view: &dyn ReadView, rev: i64) -> Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    scan(view, Cf::Kv, b"", None, |k, v| {
        let (_, version_rev) = split_kv_key(k)?;
        if version_rev <= rev {
            hasher.update(k);
            hasher.update(v);
        }
        Ok(true)
    })?;
    Ok(hasher.finalize())
}

/// Decodes one `kv` entry into its KeyValue (None for a tombstone); exposed for snapshots
/// and tests.
pub fn decode_entry(key: &[u8], value: &[u8]) -> Result<Option<KeyValue>> {
    let (escaped, rev) = split_kv_key(key)?;
    to_key_value(escaped, rev, value)
}
