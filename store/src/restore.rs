//! Disaster recovery: seeding a fresh data directory from a backup (`Maintenance.Snapshot`,
//! `berthctl snapshot save`, `etcdctl snapshot save`), as `etcdutl snapshot restore` does.
//!
//! The backup's data (MVCC keys and history, revisions, leases) is copied into a new
//! database; everything that describes the *old* cluster is left out: the applied log id,
//! the membership and the published member attributes. The member then starts as a new
//! cluster member (`--initial-cluster-state new` with the new `--initial-cluster`):
//! bootstrap derives its ids, Raft initializes the new membership at log index 0, and the
//! state machine keeps the restored revision, so resourceVersions continue where the backup
//! ended. Every member of the new cluster is restored from the same file, so all replicas
//! start from identical state.
//!
//! A backup streamed by `Maintenance.Snapshot` is the snapshot file, zero-padded to a
//! multiple of 512 bytes, followed by the SHA-256 of everything before it (etcd's layout).
//! The hash is checked when present; the snapshot file's own CRC is always checked.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::engine::rocks::RocksEngine;
use crate::engine::{Cf, Durability, KvEngine, WriteBatch};
use crate::error::{Result, StoreError};
use crate::mvcc::meta;
use crate::raft::snapshot::SnapshotReader;

/// Bytes of state written per batch while restoring.
const BATCH_BYTES: usize = 4 << 20;
/// Length of the SHA-256 trailer of a streamed backup.
const HASH_LEN: u64 = 32;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The MVCC revision of the backup (the restored store continues from it).
    pub revision: i64,
    /// The compacted revision of the backup.
    pub compact_revision: i64,
    /// MVCC records (key versions) restored.
    pub kv_records: u64,
    /// Whether the backup carried etcd's SHA-256 trailer (and it matched).
    pub hash_checked: bool,
}

/// True for state-machine records that describe the backed-up cluster rather than its data.
fn belongs_to_old_cluster(cf: Cf, key: &[u8]) -> bool {
    cf == Cf::Meta
        && (key == meta::APPLIED
            || key == meta::MEMBERSHIP
            || key == meta::INSTALLING
            || key.starts_with(meta::MEMBER_PREFIX))
}

/// Reads the whole backup: checks the snapshot's CRC and, when the file carries etcd's
/// trailer (zero padding to a multiple of 512 bytes, then the SHA-256 of everything before
/// the hash), the hash. Returns whether a hash was checked. Anything else after the snapshot
/// is corruption.
pub fn check_backup(path: &Path) -> Result<bool> {
    let mut reader = SnapshotReader::open(path)?;
    while reader.next_entry()?.is_some() {}
    let snapshot_len = reader.consumed();
    drop(reader);
    let corrupt = |detail: &str| StoreError::corrupt(format!("backup {}", path.display()), detail);
    let io = |e| StoreError::io(format!("reading {}", path.display()), e);
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len == snapshot_len {
        return Ok(false); // a raw snapshot file: its CRC was the check
    }
    let padded = snapshot_len.div_ceil(512) * 512;
    if len != padded + HASH_LEN {
        return Err(corrupt("unexpected bytes after the snapshot (not a Berth backup, or damaged)"));
    }
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    while offset < padded {
        let n = ((padded - offset) as usize).min(buf.len());
        file.read_exact(&mut buf[..n]).map_err(io)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let mut stored = [0u8; HASH_LEN as usize];
    file.read_exact(&mut stored).map_err(io)?;
    if hasher.finalize().as_slice() != stored {
        return Err(corrupt("SHA-256 mismatch: the file is damaged"));
    }
    Ok(true)
}

/// Writes a new store database under `data_dir` from the backup at `backup`. Refuses a data
/// directory that already holds a database.
pub fn restore_backup(backup: &Path, data_dir: &Path) -> Result<RestoreSummary> {
    let db_dir = data_dir.join("db");
    if db_dir.exists() {
        return Err(StoreError::Config(format!(
            "{} already holds a database; restore into a new --data-dir",
            data_dir.display()
        )));
    }
    // Read (and check) the whole backup before creating anything.
    let hash_checked = check_backup(backup)?;
    let staging = data_dir.join("db.restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| StoreError::io(format!("removing {}", staging.display()), e))?;
    }
    let kv_records = {
        let engine = RocksEngine::open(&staging)?;
        let mut reader = SnapshotReader::open(backup)?;
        let mut batch = WriteBatch::default();
        let mut bytes = 0;
        let mut kv_records = 0u64;
        while let Some((cf, key, value)) = reader.next_entry()? {
            if belongs_to_old_cluster(cf, &key) {
                continue;
            }
            if cf == Cf::Kv {
                kv_records += 1;
            }
            bytes += key.len() + value.len();
            batch.put(cf, key, value);
            if bytes >= BATCH_BYTES {
                engine.write(std::mem::take(&mut batch), Durability::Buffered)?;
                bytes = 0;
            }
        }
        // The last write is synced, and the shared WAL makes every earlier one durable too.
        engine.write(batch, Durability::Sync)?;
        kv_records
    };
    // Publish the database under its final name only once it is complete: a crash leaves
    // a `db.restoring` that the next restore removes, never a half-restored `db`.
    std::fs::rename(&staging, &db_dir).map_err(|e| StoreError::io(format!("renaming to {}", db_dir.display()), e))?;
    crate::raft::snapshot::sync_dir(data_dir)?;
    let engine = RocksEngine::open(&db_dir)?;
    let (revision, compact_revision) = meta::revisions(&*engine.view())?;
    Ok(RestoreSummary { revision, compact_revision, kv_records, hash_checked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::raft::snapshot::{meta_of_view, write_snapshot};

    /// A snapshot file of a store at revision 9 with one key, one lease, old membership and
    /// member attributes.
    fn backup_file(dir: &Path) -> std::path::PathBuf {
        let src = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        batch.put(Cf::Kv, b"k1".to_vec(), b"v1".to_vec());
        batch.put(Cf::Revs, b"r".to_vec(), b"k1".to_vec());
        batch.put(Cf::Meta, meta::REVISION, meta::i64_value(9));
        batch.put(Cf::Meta, meta::lease_key(7), meta::i64_value(60));
        batch.put(Cf::Meta, meta::member_key(42), b"old member".to_vec());
        batch.put(Cf::Meta, meta::APPLIED, b"old applied".to_vec());
        batch.put(Cf::Meta, meta::MEMBERSHIP, b"old membership".to_vec());
        src.write(batch, Durability::Buffered).unwrap();
        let path = dir.join("raw.snap");
        let view = src.view();
        let mut m = meta_of_view(&*view, String::new()).unwrap_or_default();
        m.snapshot_id = "x".into();
        write_snapshot(&*view, &m, &path).unwrap();
        path
    }

    /// The file as `Maintenance.Snapshot` streams it: padded to 512 bytes plus the SHA-256.
    fn with_trailer(raw: &Path, out: &Path) {
        let mut bytes = std::fs::read(raw).unwrap();
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        let hash = Sha256::digest(&bytes);
        bytes.extend_from_slice(&hash);
        std::fs::write(out, bytes).unwrap();
    }

    #[test]
    fn restore_keeps_data_and_drops_the_old_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let raw = backup_file(dir.path());
        let streamed = dir.path().join("backup.db");
        with_trailer(&raw, &streamed);
        let data_dir = dir.path().join("member");
        let summary = restore_backup(&streamed, &data_dir).unwrap();
        assert_eq!(summary, RestoreSummary { revision: 9, compact_revision: 0, kv_records: 1, hash_checked: true });
        let engine = RocksEngine::open(&data_dir.join("db")).unwrap();
        let view = engine.view();
        assert_eq!(view.get(Cf::Kv, b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(view.get(Cf::Meta, &meta::lease_key(7)).unwrap(), Some(meta::i64_value(60)));
        assert_eq!(view.get(Cf::Meta, &meta::member_key(42)).unwrap(), None);
        assert_eq!(view.get(Cf::Meta, meta::APPLIED).unwrap(), None);
        assert_eq!(view.get(Cf::Meta, meta::MEMBERSHIP).unwrap(), None);
        drop(view);
        drop(engine);

        let err = restore_backup(&streamed, &data_dir).unwrap_err().to_string();
        assert!(err.contains("already holds a database"), "{err}");
        // A raw snapshot file (no trailer) restores too, checked by its CRC alone.
        let other = dir.path().join("member2");
        assert!(!restore_backup(&raw, &other).unwrap().hash_checked);
    }

    #[test]
    fn damaged_backups_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let raw = backup_file(dir.path());
        let streamed = dir.path().join("backup.db");
        with_trailer(&raw, &streamed);
        let mut bytes = std::fs::read(&streamed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1; // the hash
        std::fs::write(&streamed, &bytes).unwrap();
        let data_dir = dir.path().join("member");
        let err = restore_backup(&streamed, &data_dir).unwrap_err().to_string();
        assert!(err.contains("SHA-256 mismatch"), "{err}");
        assert!(!data_dir.join("db").exists());
        bytes.truncate(bytes.len() - 7);
        std::fs::write(&streamed, &bytes).unwrap();
        let err = restore_backup(&streamed, &data_dir).unwrap_err().to_string();
        assert!(err.contains("unexpected bytes"), "{err}");
    }
}
