//! Snapshots.
//!
//! A Raft snapshot is a RocksDB *checkpoint* of the state machine (hard-linked table files,
//! made in milliseconds whatever the data size) plus its meta (applied log id, membership):
//! taking one every `--snapshot-count` requests costs almost nothing, like etcd's. Only when
//! a lagging member needs it is the checkpoint exported into the transfer *file* below.
//!
//! The snapshot file: a self-describing, checksummed dump of the state-machine column
//! families at one applied log id.
//!
//! ```text
//! "BERTHSNP" | format u32 | meta_len u32 | bincode(SnapshotMeta)
//! { cf u8 | key_len u32 | key | value_len u32 | value }*
//! 0xFF | crc32 (u32, of every preceding byte)
//! ```
//!
//! The same file serves Raft (sent to lagging members, kept as the current snapshot) and
//! operators (`Maintenance.Snapshot` streams it as a backup). Files are written to a
//! temporary name, fsynced, renamed and the directory fsynced, so a crash leaves either the
//! old snapshot or the complete new one.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::codec::{decode, encode};
use super::types::{SnapshotMeta, StoredMembership};
use crate::engine::{Cf, Durability, KvEngine, ReadView, WriteBatch};
use crate::error::{Result, StoreError};
use crate::mvcc::meta;

const MAGIC: &[u8; 8] = b"BERTHSNP";
const FORMAT: u32 = 1;
const END: u8 = 0xff;
/// Bytes of state written per batch while installing.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// openraft's snapshot data: where the snapshot's state is on local disk.
#[derive(Debug, Clone)]
pub enum SnapshotFile {
    /// A checkpoint directory (made by this member).
    Checkpoint(PathBuf),
    /// A snapshot file (received from the leader, or exported for sending).
    File(PathBuf),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError::io(context, e)
}

/// A writer that checksums everything it writes.
struct Checksummed<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the snapshot meta stored in a view's `meta` column family.
pub fn meta_of_view(view: &dyn ReadView, snapshot_id: String) -> Result<SnapshotMeta> {
    let last_log_id = match view.get(Cf::Meta, meta::APPLIED)? {
        Some(bytes) => decode("applied log id", &bytes)?,
        None => None,
    };
    let last_membership: StoredMembership = match view.get(Cf::Meta, meta::MEMBERSHIP)? {
        Some(bytes) => decode("membership", &bytes)?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
}

/// Writes the state machine as of `view` to `path` (atomically: temp file, fsync, rename).
pub fn write_snapshot(view: &dyn ReadView, meta: &SnapshotMeta, path: &Path) -> Result<u64> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    let mut out = Checksummed { inner: BufWriter::with_capacity(1 << 20, file), hasher: crc32fast::Hasher::new() };
    let werr = io_err(format!("writing {}", tmp.display()));
    let write = |out: &mut Checksummed<BufWriter<File>>, bytes: &[u8]| out.write_all(bytes);
    let meta_bytes = encode(meta)?;
    let mut header = Vec::new();
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_be_bytes());
    header.extend_from_slice(&(meta_bytes.len() as u32).to_be_bytes());
    header.extend_from_slice(&meta_bytes);
    let mut result: std::io::Result<()> = write(&mut out, &header);
    for cf in Cf::STATE_MACHINE {
        if result.is_err() {
            break;
        }
        let mut cursor = view.cursor(cf);
        cursor.seek_to_first();
        while cursor.valid() {
            let (k, v) = (cursor.key(), cursor.value());
            let mut frame = Vec::with_capacity(9 + k.len() + v.len());
            frame.push(cf as u8);
            frame.extend_from_slice(&(k.len() as u32).to_be_bytes());
            frame.extend_from_slice(k);
            frame.extend_from_slice(&(v.len() as u32).to_be_bytes());
            frame.extend_from_slice(v);
            if let Err(e) = write(&mut out, &frame) {
                result = Err(e);
                break;
            }
            cursor.next();
        }
        cursor.status()?;
    }
    result.map_err(werr)?;
    out.write_all(&[END]).map_err(io_err("writing snapshot end"))?;
    let crc = out.hasher.clone().finalize();
    let mut file = out.inner.into_inner().map_err(|e| StoreError::io("flushing snapshot", e.error()))?;
    file.write_all(&crc.to_be_bytes()).map_err(io_err("writing snapshot checksum"))?;
    // fsync the file, then publish it by rename and fsync the directory: a crash leaves the
    // previous snapshot or this complete one, never a partial file under the final name.
    file.sync_all().map_err(io_err("syncing snapshot"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(size)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(format!("syncing {}", dir.display())))
}

/// One record of a snapshot file: (column family, key, value).
pub type SnapshotEntry = (Cf, Vec<u8>, Vec<u8>);

/// Sequential reader of a snapshot file.
pub struct SnapshotReader {
    input: BufReader<File>,
    hasher: crc32fast::Hasher,
    pub meta: SnapshotMeta,
    path: PathBuf,
    /// Bytes consumed so far (after the end: the snapshot's length; a backup may carry a
    /// trailer after it).
    consumed: u64,
}

impl SnapshotReader {
    pub fn open(path: &Path) -> Result<SnapshotReader> {
        let file = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
        let mut reader = SnapshotReader {
            input: BufReader::with_capacity(1 << 20, file),
            hasher: crc32fast::Hasher::new(),
            meta: SnapshotMeta::default(),
            path: path.to_path_buf(),
            consumed: 0,
        };
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(reader.corrupt("not a Berth snapshot file"));
        }
        let format = reader.read_u32()?;
        if format != FORMAT {
            return Err(reader.corrupt(format!("unsupported snapshot format {format}")));
        }
        let len = reader.read_u32()? as usize;
        let mut meta_bytes = vec![0u8; len];
        reader.read_exact(&mut meta_bytes)?;
        reader.meta = decode("snapshot meta", &meta_bytes)?;
        Ok(reader)
    }

    fn corrupt(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::corrupt(format!("snapshot {}", self.path.display()), detail)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| self.corrupt(format!("truncated: {e}")))?;
        self.hasher.update(buf);
        self.consumed += buf.len() as u64;
        Ok(())
    }

    fn read_u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// The next (cf, key, value); `None` at the end, after verifying the checksum.
    pub fn next_entry(&mut self) -> Result<Option<SnapshotEntry>> {
        let mut tag = [0u8; 1];
        self.read_exact(&mut tag)?;
        if tag[0] == END {
            let expected = self.hasher.clone().finalize();
            let mut stored = [0u8; 4];
            self.input.read_exact(&mut stored).map_err(|e| self.corrupt(format!("truncated: {e}")))?;
            self.consumed += stored.len() as u64;
            if u32::from_be_bytes(stored) != expected {
                return Err(self.corrupt("checksum mismatch"));
            }
            return Ok(None);
        }
        let cf = Cf::from_index(tag[0])
            .filter(|cf| Cf::STATE_MACHINE.contains(cf))
            .ok_or_else(|| self.corrupt(format!("bad column family tag {}", tag[0])))?;
        let klen = self.read_u32()? as usize;
        let mut key = vec![0u8; klen];
        self.read_exact(&mut key)?;
        let vlen = self.read_u32()? as usize;
        let mut value = vec![0u8; vlen];
        self.read_exact(&mut value)?;
        Ok(Some((cf, key, value)))
    }
}

impl SnapshotReader {
    /// Bytes read so far; after the last entry, the length of the snapshot itself.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

/// Reads a whole snapshot file to check it, returning its meta.
pub fn verify_snapshot(path: &Path) -> Result<SnapshotMeta> {
    let mut reader = SnapshotReader::open(path)?;
    while reader.next_entry()?.is_some() {}
    Ok(reader.meta)
}

/// Deletes every entry of `cf` in `batch` (half-open range up to the last key, plus it).
fn clear_cf(view: &dyn ReadView, cf: Cf, batch: &mut WriteBatch) {
    let mut cursor = view.cursor(cf);
    cursor.seek_to_last();
    if cursor.valid() {
        let last = cursor.key().to_vec();
        batch.delete_range(cf, Vec::new(), last.clone());
        batch.delete(cf, last);
    }
}

/// Replaces the state machine with the snapshot at `path`.
///
/// Crash safety: the `installing` marker is written (synced) together with the wipe; it is
/// removed by the final batch. A member that finds the marker at startup re-runs the
/// install from the same (already saved) file.
pub fn install_snapshot(engine: &dyn KvEngine, path: &Path) -> Result<SnapshotMeta> {
    let mut reader = SnapshotReader::open(path)?;
    let mut batch = WriteBatch::default();
    {
        let view = engine.view();
        for cf in Cf::STATE_MACHINE {
            clear_cf(&*view, cf, &mut batch);
        }
    }
    batch.put(Cf::Meta, meta::INSTALLING, path.to_string_lossy().as_bytes().to_vec());
    engine.write(batch, Durability::Sync)?;
    let mut batch = WriteBatch::default();
    let mut bytes = 0;
    while let Some((cf, key, value)) = reader.next_entry()? {
        bytes += key.len() + value.len();
        batch.put(cf, key, value);
        if bytes >= INSTALL_BATCH_BYTES {
            engine.write(std::mem::take(&mut batch), Durability::Buffered)?;
            bytes = 0;
        }
    }
    batch.delete(Cf::Meta, meta::INSTALLING);
    engine.write(batch, Durability::Sync)?;
    Ok(reader.meta)
}

/// If a snapshot install was interrupted, the file it was installing.
pub fn interrupted_install(engine: &dyn KvEngine) -> Result<Option<PathBuf>> {
    Ok(engine.view().get(Cf::Meta, meta::INSTALLING)?.map(|p| PathBuf::from(String::from_utf8_lossy(&p).into_owned())))
}

/// The snapshot directory: `checkpoint-<id>/` directories with their `<id>.meta` (written
/// last: a checkpoint without meta is incomplete), received `<id>.snap` files while they are
/// installed, and temporary exports.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    pub dir: PathBuf,
}

impl SnapshotDir {
    pub fn open(dir: PathBuf) -> Result<SnapshotDir> {
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let snapshots = SnapshotDir { dir };
        // Leftovers of interrupted writes, transfers or checkpoints are garbage.
        if let Ok(entries) = fs::read_dir(&snapshots.dir) {
            for e in entries.flatten() {
                let p = e.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                let incomplete_checkpoint = name.starts_with("checkpoint-")
                    && !snapshots.dir.join(format!("{}.meta", &name["checkpoint-".len()..])).exists();
                if incomplete_checkpoint
                    || name.ends_with(".tmp")
                    || name.ends_with(".part")
                    || name.starts_with("export-")
                {
                    let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                }
            }
        }
        Ok(snapshots)
    }

    pub fn path_for(&self, snapshot_id: &str) -> PathBuf {
        self.dir.join(format!("{snapshot_id}.snap"))
    }

    fn checkpoint_dir(&self, snapshot_id: &str) -> PathBuf {
        self.dir.join(format!("checkpoint-{snapshot_id}"))
    }

    fn meta_path(&self, snapshot_id: &str) -> PathBuf {
        self.dir.join(format!("{snapshot_id}.meta"))
    }

    /// A fresh path for an incoming transfer.
    pub fn incoming_path(&self) -> PathBuf {
        self.dir.join(format!("incoming-{}.part", rand::random::<u64>()))
    }

    /// A fresh path for exporting a checkpoint to send it.
    pub fn export_path(&self) -> PathBuf {
        self.dir.join(format!("export-{}.snap", rand::random::<u64>()))
    }

    /// Checkpoints the engine's current state and records it as the current snapshot.
    /// The meta is read from the checkpoint itself, so it matches the data exactly.
    pub fn take(&self, engine: &dyn KvEngine) -> Result<SnapshotMeta> {
        let staging = self.dir.join(format!("checkpoint-{}.tmp", rand::random::<u64>()));
        engine.checkpoint(&staging)?;
        let mut meta = {
            let copy = crate::engine::open_checkpoint(&staging)?;
            let view = copy.view();
            meta_of_view(&*view, String::new())?
        };
        meta.snapshot_id = snapshot_id(meta.last_log_id);
        let final_dir = self.checkpoint_dir(&meta.snapshot_id);
        fs::rename(&staging, &final_dir).map_err(io_err(format!("renaming to {}", final_dir.display())))?;
        self.write_meta(&meta)?;
        self.retain_only(&meta.snapshot_id);
        Ok(meta)
    }

    fn write_meta(&self, meta: &SnapshotMeta) -> Result<()> {
        let path = self.meta_path(&meta.snapshot_id);
        let tmp = path.with_extension("tmp");
        let bytes = encode(meta)?;
        let mut f = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(io_err("writing snapshot meta"))?;
        fs::rename(&tmp, &path).map_err(io_err("publishing snapshot meta"))?;
        sync_dir(&self.dir)
    }

    /// The current snapshot: the newest complete checkpoint and its meta.
    pub fn current(&self) -> Result<Option<(PathBuf, SnapshotMeta)>> {
        let mut best: Option<(PathBuf, SnapshotMeta)> = None;
        for entry in fs::read_dir(&self.dir).map_err(io_err("listing snapshots"))?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|x| x.to_str()) != Some("meta") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            let meta: SnapshotMeta = decode("snapshot meta", &bytes)?;
            let dir = self.checkpoint_dir(&meta.snapshot_id);
            if dir.is_dir() && best.as_ref().is_none_or(|(_, b)| meta.last_log_id > b.last_log_id) {
                best = Some((dir, meta));
            }
        }
        Ok(best)
    }

    /// Removes every snapshot but `keep` (checkpoints, metas and files). Files being read
    /// elsewhere stay readable until closed.
    pub fn retain_only(&self, keep: &str) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let stem = name.strip_prefix("checkpoint-").unwrap_or(&name);
            let stem = stem.strip_suffix(".meta").unwrap_or(stem);
            let is_snapshot = name.starts_with("checkpoint-") || name.ends_with(".meta");
            if is_snapshot && stem != keep && !name.ends_with(".tmp") {
                let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            }
        }
    }

    /// Exports a checkpoint into a transfer file at `path`.
    pub fn export(checkpoint: &Path, meta: &SnapshotMeta, path: &Path) -> Result<u64> {
        let copy = crate::engine::open_checkpoint(checkpoint)?;
        let view = copy.view();
        write_snapshot(&*view, meta, path)
    }

    /// After installing a received snapshot: make it the current snapshot.
    pub fn adopt_installed(&self, engine: &dyn KvEngine, meta: &SnapshotMeta) -> Result<()> {
        let taken = self.take(engine)?;
        if taken.last_log_id != meta.last_log_id {
            tracing::debug!(installed = ?meta.last_log_id, checkpoint = ?taken.last_log_id, "state moved on while checkpointing");
        }
        Ok(())
    }
}

/// A snapshot id that sorts by log position.
pub fn snapshot_id(meta_last: Option<super::types::LogId>) -> String {
    let (term, index) = meta_last.map_or((0, 0), |l| (l.leader_id.term, l.index));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{term:020}-{index:020}-{nanos}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;

    #[test]
    fn snapshot_round_trips_and_detects_corruption() {
        let src = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        batch.put(Cf::Kv, b"k1".to_vec(), b"v1".to_vec());
        batch.put(Cf::Revs, b"r".to_vec(), b"k1".to_vec());
        batch.put(Cf::Meta, meta::REVISION, meta::i64_value(9));
        batch.put(Cf::RaftLog, b"not-in-snapshot".to_vec(), b"x".to_vec());
        src.write(batch, Durability::Buffered).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let view = src.view();
        let meta = meta_of_view(&*view, "id".into()).unwrap();
        write_snapshot(&*view, &meta, &path).unwrap();
        assert_eq!(verify_snapshot(&path).unwrap().snapshot_id, "id");

        let dst = MemoryEngine::new();
        let mut stale = WriteBatch::default();
        stale.put(Cf::Kv, b"stale".to_vec(), b"x".to_vec());
        dst.write(stale, Durability::Buffered).unwrap();
        install_snapshot(&dst, &path).unwrap();
        let v = dst.view();
        assert_eq!(v.get(Cf::Kv, b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(v.get(Cf::Kv, b"stale").unwrap(), None, "install replaces, not merges");
        assert_eq!(v.get(Cf::RaftLog, b"not-in-snapshot").unwrap(), None);
        assert_eq!(meta::revisions(&*v).unwrap().0, 9);
        assert!(interrupted_install(&dst).unwrap().is_none());

        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = verify_snapshot(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
