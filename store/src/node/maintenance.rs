//! The Maintenance API: status, HashKV, snapshot backups.

use std::path::PathBuf;

use berth_proto::etcdserverpb::{HashKvResponse, StatusResponse};

use super::StoreNode;
use crate::error::{Result, StoreError};
use crate::mvcc::{history, read};
use crate::raft::snapshot;

/// The etcd API version Berth speaks (reported by Status, as etcd reports its own version).
pub const ETCD_API_VERSION: &str = "3.5.0";

pub type StatusReport = StatusResponse;

/// A backup written to a temporary file, removed when dropped.
pub struct SnapshotBackup {
    pub path: PathBuf,
    pub revision: i64,
    pub size: u64,
}

impl Drop for SnapshotBackup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl StoreNode {
    /// Last committed log index as this member knows it.
    pub fn committed_index(&self) -> u64 {
        self.log.committed_index().unwrap_or(0)
    }

    pub fn status(&self) -> StatusReport {
        let m = self.raft.metrics().borrow().clone();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == self.id);
        let db_size = self.shared.engine.size_bytes() as i64;
        StatusResponse {
            header: self.header(self.revision()),
            version: ETCD_API_VERSION.into(),
            db_size,
            leader: self.leader().unwrap_or(0),
            raft_index: self.committed_index().max(m.last_applied.map_or(0, |l| l.index)),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map_or(0, |l| l.index),
            errors: self.stopped_reason().map(|r| format!("raft stopped: {r}")).into_iter().collect(),
            db_size_in_use: db_size,
            is_learner: !voter,
        }
    }

    /// etcd `HashKV`: a hash of the MVCC data up to `revision` (0: current).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let engine = self.shared.engine.clone();
        let (hash, compacted, rev) = tokio::task::spawn_blocking(move || -> Result<(u32, i64, i64)> {
            let view = engine.view();
            let (current, compacted) = crate::mvcc::meta::revisions(&*view)?;
            let rev = read::resolve_revision(revision, current, compacted)?;
            Ok((history::hash_kv(&*view, rev)?, compacted, rev))
        })
        .await
        .map_err(|e| StoreError::io("hash task", e))??;
        Ok(HashKvResponse {
            header: self.header(self.revision()),
            hash,
            compact_revision: compacted,
            hash_revision: rev,
        })
    }

    /// etcd `Defragment`: gives the space of compacted history back, now.
    pub async fn defragment(&self) -> Result<()> {
        let engine = self.shared.engine.clone();
        tokio::task::spawn_blocking(move || engine.reclaim(&crate::engine::Cf::MVCC))
            .await
            .map_err(|e| StoreError::io("defragment task", e))?
    }

    /// Writes a backup of the current state to a temporary file.
    pub async fn snapshot_backup(&self) -> Result<SnapshotBackup> {
        let engine = self.shared.engine.clone();
        let path = self.snapshots.dir.join(format!("backup-{}.tmp", rand::random::<u64>()));
        let target = path.clone();
        let (revision, size) = tokio::task::spawn_blocking(move || -> Result<(i64, u64)> {
            let view = engine.view();
            let (current, _) = crate::mvcc::meta::revisions(&*view)?;
            let mut meta = snapshot::meta_of_view(&*view, String::new())?;
            meta.snapshot_id = snapshot::snapshot_id(meta.last_log_id);
            let size = snapshot::write_snapshot(&*view, &meta, &target)?;
            Ok((current, size))
        })
        .await
        .map_err(|e| StoreError::io("snapshot task", e))??;
        Ok(SnapshotBackup { path, revision, size })
    }
}
