//! openraft's log storage on the `raft_log` and `raft_meta` column families.
//!
//! Durability decisions:
//! * `append` writes entries without fsync, so they are readable as soon as it returns, and
//!   hands the completion callback to a *group-commit* thread that fsyncs the shared WAL
//!   once for every append queued meanwhile, then reports them all flushed. Under load one
//!   fsync covers many client writes; openraft counts an entry towards the commit quorum
//!   only once its callback fires.
//! * `save_vote` fsyncs before returning: a vote must never be forgotten (Raft safety).
//! * `save_committed` and `purge` are not synced: a lost committed index is re-learned from
//!   the leader, and a purge that is lost only leaves extra log behind.
//! * Every entry carries a CRC32 checked on read, and `open` walks the whole log once, so a
//!   torn or corrupt log is reported with its index instead of being served.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogId, RaftLogReader};
use parking_lot::Mutex;

use super::codec::{checked, decode, encode, with_checksum};
use super::types::{storage_error, storage_read_error, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::engine::{Cf, Durability, KvEngine, WriteBatch};
use crate::error::{Result, StoreError};
use crate::failpoints;
use crate::metrics::StoreMetrics;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Recently appended entries kept decoded, so replication to followers rarely touches disk.
const CACHE_ENTRIES: usize = 8192;

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

struct LogTail {
    last_log_id: Option<LogId>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    /// Contiguous entries ending at `last_log_id`.
    cache: VecDeque<Entry>,
}

impl LogTail {
    fn cached(&self, index: u64) -> Option<&Entry> {
        let first = self.cache.front()?.log_id.index;
        if index < first {
            return None;
        }
        self.cache.get((index - first) as usize)
    }
}

/// openraft log store (and, cloned, its log reader).
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn KvEngine>,
    /// Bytes appended since the last snapshot trigger (see `node::snapshot_trigger`).
    appended_bytes: Arc<std::sync::atomic::AtomicU64>,
    tail: Arc<Mutex<LogTail>>,
    flusher: Arc<Mutex<Flusher>>,
    /// A reclaim of purged entries' space is running (see `purge`).
    reclaiming: Arc<std::sync::atomic::AtomicBool>,
}

fn read_meta<T: serde::de::DeserializeOwned>(engine: &dyn KvEngine, key: &[u8]) -> Result<Option<T>> {
    match engine.view().get(Cf::RaftMeta, key)? {
        Some(bytes) => Ok(Some(decode(&String::from_utf8_lossy(key), checked("raft meta", &bytes)?)?)),
        None => Ok(None),
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry> {
    let what = format!("raft log entry {index}");
    let entry: Entry = decode(&what, checked(&what, bytes)?)?;
    if entry.log_id.index != index {
        return Err(StoreError::corrupt(what, format!("holds index {}", entry.log_id.index)));
    }
    Ok(entry)
}

impl LogStore {
    /// Opens the log, verifying every stored entry (checksum, decoding, contiguity).
    pub fn open(engine: Arc<dyn KvEngine>, metrics: Arc<StoreMetrics>) -> Result<LogStore> {
        let last_purged: Option<LogId> = read_meta(&*engine, LAST_PURGED)?;
        let mut last_log_id = last_purged;
        let mut expected = last_purged.map_or(0, |l| l.index + 1);
        let mut cache = VecDeque::new();
        {
            let view = engine.view();
            let mut cursor = view.cursor(Cf::RaftLog);
            cursor.seek(&index_key(expected));
            while cursor.valid() {
                let index = u64::from_be_bytes(
                    cursor
                        .key()
                        .try_into()
                        .map_err(|_| StoreError::corrupt("raft log", format!("bad key {:?}", cursor.key())))?,
                );
                if index != expected {
                    return Err(StoreError::corrupt(
                        "raft log",
                        format!("hole: expected entry {expected}, found {index}"),
                    ));
                }
                let entry = decode_entry(index, cursor.value())?;
                last_log_id = Some(*entry.get_log_id());
                cache.push_back(entry);
                if cache.len() > CACHE_ENTRIES {
                    cache.pop_front();
                }
                expected += 1;
                cursor.next();
            }
            cursor.status()?;
        }
        let committed: Option<LogId> = read_meta::<Option<LogId>>(&*engine, COMMITTED)?.flatten();
        let tail = LogTail { last_log_id, committed, last_purged, cache };
        Ok(LogStore {
            appended_bytes: Default::default(),
            flusher: Arc::new(Mutex::new(spawn_flusher(engine.clone(), metrics))),
            engine,
            tail: Arc::new(Mutex::new(tail)),
            reclaiming: Default::default(),
        })
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T, durability: Durability) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Cf::RaftMeta, key, with_checksum(encode(value)?));
        self.engine.write(batch, durability)
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(4096) as usize);
        {
            // The cache is contiguous up to the last entry: if it holds `start`, it holds
            // everything the log has from there.
            let tail = self.tail.lock();
            if tail.cached(start).is_some() {
                let mut index = start;
                while index < end {
                    match tail.cached(index) {
                        Some(e) => out.push(e.clone()),
                        None => break,
                    }
                    index += 1;
                }
                return Ok(out);
            }
        }
        let view = self.engine.view();
        let mut cursor = view.cursor(Cf::RaftLog);
        cursor.seek(&index_key(start));
        let mut expected = start;
        while cursor.valid() && expected < end {
            let index =
                u64::from_be_bytes(cursor.key().try_into().map_err(|_| StoreError::corrupt("raft log", "bad key"))?);
            if index != expected {
                break;
            }
            out.push(decode_entry(index, cursor.value())?);
            expected += 1;
            cursor.next();
        }
        cursor.status()?;
        Ok(out)
    }

    /// Last committed log id openraft reported (in memory; see `save_committed`).
    pub fn committed_index(&self) -> Option<u64> {
        self.tail.lock().committed.map(|l| l.index)
    }

    /// Takes (and resets) the count of bytes appended since the last call.
    pub fn take_appended_bytes(&self) -> u64 {
        self.appended_bytes.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes appended since the last `take_appended_bytes`.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Last log index, for metrics and tests.
    pub fn last_index(&self) -> Option<u64> {
        self.tail.lock().last_log_id.map(|l| l.index)
    }
}

/// The group-commit thread and the channel that feeds it. Dropping it (with the last log
/// store handle) closes the channel and *joins* the thread: the thread holds the engine, and
/// a RocksDB left open when the process exits aborts in RocksDB's static destructors
/// ("pthread lock: Invalid argument"), so the engine must be released before `main` returns.
struct Flusher {
    tx: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn send(&self, callback: LogFlushed<TypeConfig>) -> std::result::Result<(), ()> {
        self.tx.as_ref().ok_or(())?.send(callback).map_err(|_| ())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // At most one fsync in flight: a short, bounded wait.
            let _ = thread.join();
        }
    }
}

/// The group-commit thread: waits for append completions, fsyncs the WAL once for all of
/// them, then reports them flushed in order.
fn spawn_flusher(engine: Arc<dyn KvEngine>, metrics: Arc<StoreMetrics>) -> Flusher {
    let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
    let thread = std::thread::Builder::new()
        .name("raft-log-fsync".into())
        .spawn(move || {
            // Ends when the sender is dropped (see `Flusher`'s Drop).
            while let Ok(first) = rx.recv() {
                let mut pending = vec![first];
                pending.extend(rx.try_iter());
                let started = std::time::Instant::now();
                failpoints::hit(failpoints::RAFT_LOG_BEFORE_FSYNC);
                let result = engine.sync_wal();
                failpoints::hit(failpoints::RAFT_LOG_AFTER_FSYNC);
                metrics.wal_fsync_duration.observe(started.elapsed().as_secs_f64());
                metrics.wal_fsync_appends.observe(pending.len() as f64);
                for callback in pending {
                    let outcome = result.clone().map_err(|e| std::io::Error::other(e.to_string()));
                    callback.log_io_completed(outcome);
                }
            }
        })
        .expect("spawning the log fsync thread");
    Flusher { tx: Some(tx), thread: Some(thread) }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e + 1,
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.read_range(start, end).map_err(storage_read_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let tail = self.tail.lock();
        Ok(LogState { last_purged_log_id: tail.last_purged, last_log_id: tail.last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // fsync: a granted vote must survive a crash or two leaders could win one term.
        self.put_meta(VOTE, vote, Durability::Sync).map_err(storage_error)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        read_meta(&*self.engine, VOTE).map_err(storage_read_error)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: after a crash the committed index is re-learned from the leader; the
        // saved value only lets a restarted member apply what it already knows sooner.
        self.tail.lock().committed = committed;
        self.put_meta(COMMITTED, &committed, Durability::Buffered).map_err(storage_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(read_meta::<Option<LogId>>(&*self.engine, COMMITTED).map_err(storage_read_error)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut batch = WriteBatch::default();
        for entry in &entries {
            // Before the write: once here, the entry can be read for replication, so its
            // proposer must treat any later failure as indeterminate (`node::propose`).
            if let openraft::EntryPayload::Normal(request) = &entry.payload {
                request.mark_appended();
            }
            let bytes = encode(entry).map_err(storage_error)?;
            self.appended_bytes.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            batch.put(Cf::RaftLog, index_key(entry.log_id.index).to_vec(), with_checksum(bytes));
        }
        // Buffered: readable now; durable when the flusher's fsync completes (see module docs).
        self.engine.write(batch, Durability::Buffered).map_err(storage_error)?;
        {
            let mut tail = self.tail.lock();
            for entry in entries {
                if tail.cache.back().is_some_and(|last| last.log_id.index + 1 != entry.log_id.index) {
                    tail.cache.clear();
                }
                tail.last_log_id = Some(entry.log_id);
                tail.cache.push_back(entry);
                if tail.cache.len() > CACHE_ENTRIES {
                    tail.cache.pop_front();
                }
            }
        }
        self.flusher.lock().send(callback).map_err(|_| storage_error(StoreError::Stopped))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range(Cf::RaftLog, index_key(log_id.index).to_vec(), index_key(u64::MAX).to_vec());
        self.engine.write(batch, Durability::Buffered).map_err(storage_error)?;
        let previous = if log_id.index == 0 {
            None
        } else {
            self.read_range(log_id.index - 1, log_id.index).map_err(storage_read_error)?.pop().map(|e| e.log_id)
        };
        let mut tail = self.tail.lock();
        tail.cache.retain(|e| e.log_id.index < log_id.index);
        tail.last_log_id = previous.or(tail.last_purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        failpoints::hit(failpoints::LOG_PURGE);
        let mut batch = WriteBatch::default();
        batch.put(Cf::RaftMeta, LAST_PURGED, with_checksum(encode(&log_id).map_err(storage_error)?));
        batch.delete_range(Cf::RaftLog, index_key(0).to_vec(), index_key(log_id.index + 1).to_vec());
        self.engine.write(batch, Durability::Buffered).map_err(storage_error)?;
        {
            let mut tail = self.tail.lock();
            tail.last_purged = Some(log_id);
            tail.cache.retain(|e| e.log_id.index > log_id.index);
            if tail.last_log_id.is_none_or(|last| last.index < log_id.index) {
                tail.last_log_id = Some(log_id);
            }
        }
        // The purged entries stay in RocksDB's table files under a range tombstone until a
        // compaction covers them: in a churn soak the log's files held 65 MB of purged
        // entries. Compact the log's family in the background (at most one at a time);
        // purges come once per snapshot, so this is rare.
        crate::engine::reclaim_in_background(self.engine.clone(), &[Cf::RaftLog], self.reclaiming.clone());
        Ok(())
    }
}

/// Local identity and cluster facts kept beside the log (not replicated).
pub mod identity {
    use super::*;

    const MEMBER_ID: &[u8] = b"member_id";
    const CLUSTER_ID: &[u8] = b"cluster_id";

    /// (member id, cluster id) saved by an earlier run, if any.
    pub fn load(engine: &dyn KvEngine) -> Result<Option<(u64, u64)>> {
        let member: Option<u64> = read_meta(engine, MEMBER_ID)?;
        let cluster: Option<u64> = read_meta(engine, CLUSTER_ID)?;
        Ok(member.zip(cluster))
    }

    /// Saves the identity (fsynced: a member must never come back under another id).
    pub fn save(engine: &dyn KvEngine, member_id: u64, cluster_id: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Cf::RaftMeta, MEMBER_ID, with_checksum(encode(&member_id)?));
        batch.put(Cf::RaftMeta, CLUSTER_ID, with_checksum(encode(&cluster_id)?));
        engine.write(batch, Durability::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::raft::types::StoreRequest;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(StoreRequest::default()),
        }
    }

    fn write_raw(engine: &dyn KvEngine, index: u64, value: Vec<u8>) {
        let mut b = WriteBatch::default();
        b.put(Cf::RaftLog, index_key(index).to_vec(), value);
        engine.write(b, Durability::Sync).unwrap();
    }

    fn good(index: u64) -> Vec<u8> {
        with_checksum(encode(&entry(index)).unwrap())
    }

    #[test]
    fn open_reads_back_a_contiguous_log() {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        for i in 0..=5 {
            write_raw(&*engine, i, good(i));
        }
        let store = LogStore::open(engine, Default::default()).unwrap();
        assert_eq!(store.last_index(), Some(5));
        assert_eq!(store.read_range(2, 4).unwrap().iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn a_flipped_bit_or_a_hole_is_reported_as_corruption() {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        write_raw(&*engine, 0, good(0));
        write_raw(&*engine, 1, good(1));
        let mut bad = good(2);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        write_raw(&*engine, 2, bad);
        let err = LogStore::open(engine, Default::default()).err().expect("corruption detected");
        assert!(err.to_string().contains("raft log entry 2") && err.to_string().contains("checksum"), "{err}");

        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        write_raw(&*engine, 0, good(0));
        write_raw(&*engine, 2, good(2));
        let err = LogStore::open(engine, Default::default()).err().expect("hole detected");
        assert!(err.to_string().contains("hole"), "{err}");

        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        write_raw(&*engine, 0, good(7));
        let err = LogStore::open(engine, Default::default()).err().expect("misplaced entry detected");
        assert!(err.to_string().contains("holds index 7"), "{err}");
    }
}
