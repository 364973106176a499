//! Compaction: physical removal of superseded history (etcd's `Compact`).
//!
//! Compacting at `c` keeps, for every key, its newest version at or below `c` and removes
//! the older ones; a key whose newest version at or below `c` is a tombstone loses it too —
//! except a tombstone written *exactly* at `c`, which stays until the next compaction so that
//! a watch starting at `c` (allowed, as in etcd) still sees every event of revision `c`. The
//! revision index below `c` goes entirely.
//!
//! Compaction is deterministic (a function of the state and `c`), so replicas stay
//! byte-identical and `HashKV` can compare them.

use std::collections::BTreeSet;

use super::encoding::{escape_key, kv_key_escaped, revs_key, split_kv_key, Record};
use super::meta;
use crate::engine::{scan, Cf, ReadView, WriteBatch};
use crate::error::{Result, StoreError};

/// Validates a compaction request against (current, compacted) revisions.
pub fn check_compact(rev: i64, current: i64, compacted: i64) -> Result<()> {
    if rev <= compacted {
        return Err(StoreError::Compacted { compact_revision: compacted });
    }
    if rev > current {
        return Err(StoreError::FutureRevision);
    }
    Ok(())
}

/// Adds to `batch` every deletion compaction at `rev` implies, and records `rev`.
pub fn compact(view: &dyn ReadView, rev: i64, batch: &mut WriteBatch) -> Result<usize> {
    // Every key with a version at or below `rev` that might now be superseded appears in the
    // revision index at or below `rev` (entries below the previous compaction are gone, and
    // their keys' survivors were settled then).
    let mut keys = BTreeSet::new();
    scan(view, Cf::Revs, &revs_key(0, 0), Some(&revs_key(rev + 1, 0)), |_, user_key| {
        keys.insert(user_key.to_vec());
        Ok(true)
    })?;
    let mut removed = 0;
    for key in keys {
        let escaped = escape_key(&key);
        let mut cursor = view.cursor(Cf::Kv);
        cursor.seek(&kv_key_escaped(&escaped, rev));
        let mut newest = true;
        while cursor.valid() {
            let (k, version_rev) = split_kv_key(cursor.key())?;
            if k != escaped.as_slice() {
                break;
            }
            let keep = newest && !(Record::is_tombstone(cursor.value()) && version_rev < rev);
            if !keep {
                batch.delete(Cf::Kv, cursor.key().to_vec());
                removed += 1;
            }
            newest = false;
            cursor.next();
        }
        cursor.status()?;
    }
    batch.delete_range(Cf::Revs, revs_key(0, 0).to_vec(), revs_key(rev, 0).to_vec());
    batch.put(Cf::Meta, meta::COMPACT, meta::i64_value(rev));
    Ok(removed)
}
