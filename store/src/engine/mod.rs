//! The storage-engine capability the rest of the store is written against.
//!
//! Following TiKV's `engine_traits`: the traits here name what the MVCC layer, the Raft log
//! store and the snapshotter need (point reads, ordered cursors over a consistent view, atomic
//! multi-column-family write batches, WAL sync), and say nothing about RocksDB. [`rocks`]
//! implements them on RocksDB; [`memory`] is an in-memory twin for fast tests; the
//! [`conformance`] suite runs against both so they cannot drift apart.

pub mod memory;
pub mod rocks;

#[cfg(test)]
mod conformance;

use crate::error::Result;

/// Column families. One RocksDB holds them all so a single write batch can update state
/// machine data and its applied log id atomically, and so one WAL sync makes every earlier
/// write durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Raft log entries, keyed by big-endian index.
    RaftLog,
    /// Raft log-side metadata: vote, committed, last purged, local identity.
    RaftMeta,
    /// MVCC data: `escaped(user_key) ‖ !revision`.
    Kv,
    /// Revision index: `revision ‖ sub_revision` → user key (watch catch-up, compaction).
    Revs,
    /// State-machine metadata: applied log id, membership, revisions, leases, members.
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::RaftLog, Cf::RaftMeta, Cf::Kv, Cf::Revs, Cf::Meta];
    /// The column families that make up the replicated state machine (what a snapshot holds).
    pub const STATE_MACHINE: [Cf; 3] = [Cf::Kv, Cf::Revs, Cf::Meta];
    /// The MVCC data and its revision index: where compaction leaves deleted versions.
    pub const MVCC: [Cf; 2] = [Cf::Kv, Cf::Revs];

    pub fn name(self) -> &'static str {
        match self {
            Cf::RaftLog => "raft_log",
            Cf::RaftMeta => "raft_meta",
            Cf::Kv => "kv",
            Cf::Revs => "revs",
            Cf::Meta => "meta",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: u8) -> Option<Cf> {
        Cf::ALL.get(i as usize).copied()
    }
}

/// One mutation in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
    /// Deletes keys in `[from, to)`.
    DeleteRange {
        cf: Cf,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Mutations applied atomically, in order.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put { cf, key: key.into(), value: value.into() });
    }
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete { cf, key: key.into() });
    }
    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::DeleteRange { cf, from: from.into(), to: to.into() });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// How durable a write must be when `write` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (fsync) before returning.
    Sync,
    /// In the engine's log but maybe only in the OS page cache; made durable by the next
    /// `Sync` write or [`KvEngine::sync_wal`]. Survives a process crash, not a power loss.
    Buffered,
}

/// A storage engine holding the column families of [`Cf`].
pub trait KvEngine: Send + Sync + 'static {
    /// A consistent point-in-time view across all column families.
    fn view(&self) -> Box<dyn ReadView + '_>;
    /// Applies `batch` atomically.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()>;
    /// Makes every write so far durable.
    fn sync_wal(&self) -> Result<()>;
    /// Approximate bytes used on disk (or in memory for the twin).
    fn size_bytes(&self) -> u64;
    /// Writes a consistent point-in-time copy of every column family to `dir` (which must
    /// not exist), durably. Cheap for RocksDB: table files are hard-linked.
    fn checkpoint(&self, dir: &std::path::Path) -> Result<()>;
    /// Gives the space of deleted data in `cfs` back (RocksDB: compacts them, so tombstones
    /// and what they cover leave the table files). Slow and blocking: call it off the
    /// apply and append paths. For the MVCC families, etcd's `Defragment`.
    fn reclaim(&self, cfs: &[Cf]) -> Result<()>;
}

/// Runs [`KvEngine::reclaim`] of `cfs` on the blocking pool (it rewrites table files:
/// seconds for a large store), at most one at a time per `running` flag: a reclaim asked
/// for while one runs is skipped, the running one covers it.
pub fn reclaim_in_background(
    engine: std::sync::Arc<dyn KvEngine>,
    cfs: &'static [Cf],
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    if running.swap(true, Ordering::SeqCst) {
        return;
    }
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let before = engine.size_bytes();
        match engine.reclaim(cfs) {
            Ok(()) => tracing::info!(
                ?cfs,
                before,
                after = engine.size_bytes(),
                took_ms = started.elapsed().as_millis() as u64,
                "reclaimed the space of deleted data"
            ),
            Err(e) => tracing::warn!(?cfs, error = %e, "reclaiming space failed"),
        }
        running.store(false, Ordering::SeqCst);
    });
}

/// Opens a checkpoint made by [`KvEngine::checkpoint`] for reading.
pub fn open_checkpoint(dir: &std::path::Path) -> Result<Box<dyn KvEngine>> {
    if memory::is_checkpoint(dir) {
        return Ok(Box::new(memory::MemoryEngine::load_checkpoint(dir)?));
    }
    Ok(Box::new(rocks::RocksEngine::open_read_only(dir)?))
}

/// Reads from one consistent view.
pub trait ReadView {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// An ordered cursor over `cf`, initially unpositioned (call a seek first).
    fn cursor(&self, cf: Cf) -> Box<dyn Cursor + '_>;
}

/// An ordered cursor, RocksDB-iterator style.
pub trait Cursor {
    /// Positions at the first entry with key ≥ `key`.
    fn seek(&mut self, key: &[u8]);
    /// Positions at the last entry with key ≤ `key`.
    fn seek_for_prev(&mut self, key: &[u8]);
    fn seek_to_first(&mut self);
    fn seek_to_last(&mut self);
    fn valid(&self) -> bool;
    /// The current key; only when `valid()`.
    fn key(&self) -> &[u8];
    /// The current value; only when `valid()`.
    fn value(&self) -> &[u8];
    fn next(&mut self);
    fn prev(&mut self);
    /// An I/O or corruption error met while moving (the cursor then reports invalid).
    fn status(&self) -> Result<()>;
}

/// Visits every entry of `cf` with key in `[from, to)` (`to = None`: to the end), in order,
/// until `visit` returns `false`.
pub fn scan(
    view: &dyn ReadView,
    cf: Cf,
    from: &[u8],
    to: Option<&[u8]>,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    let mut cursor = view.cursor(cf);
    cursor.seek(from);
    while cursor.valid() {
        if to.is_some_and(|to| cursor.key() >= to) {
            break;
        }
        if !visit(cursor.key(), cursor.value())? {
            break;
        }
        cursor.next();
    }
    cursor.status()
}
