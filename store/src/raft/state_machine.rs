//! openraft's state machine: applies committed entries to MVCC data, leases and member
//! attributes, then tells the watch hub and the lessor.
//!
//! Durability: each entry is one engine write holding its data *and* the applied log id,
//! so after a crash the state machine resumes exactly after the last entry it applied.
//! These writes are not fsynced (the log already is; they share its WAL, see
//! `engine::rocks`), and a snapshot fsyncs the WAL before the log it covers may be purged.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::{ApplyError, ApplyResult, InternalRequest, ResultBatch};
use berth_proto::etcdserverpb::{CompactionResponse, LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot};
use prost::Message;
use tokio::sync::watch;

use super::codec::{decode, encode};
use super::snapshot::{self, SnapshotDir, SnapshotFile};
use super::types::{
    storage_error, storage_read_error, Entry, LogId, SnapshotMeta, StorageError, StoreResponse, StoredMembership,
    TypeConfig,
};
use crate::engine::{Cf, Durability, KvEngine, WriteBatch};
use crate::error::{Result, StoreError};
use crate::failpoints;
use crate::lease::Lessor;
use crate::metrics::StoreMetrics;
use crate::mvcc::index::KeyIndex;
use crate::mvcc::{compact, meta, txn, write::WriteTxn};
use crate::watch::WatchHub;

/// State the rest of the member reads while the state machine applies.
pub struct Shared {
    pub engine: Arc<dyn KvEngine>,
    pub hub: Arc<WatchHub>,
    pub lessor: Arc<Lessor>,
    pub metrics: Arc<StoreMetrics>,
    pub revision: AtomicI64,
    pub compacted: AtomicI64,
    /// Index of the last applied entry, for read-index waiters.
    pub applied: watch::Sender<u64>,
    /// Client requests applied since the last snapshot (a snapshot is due every
    /// `--snapshot-count` of them, as in etcd; entries may hold many requests).
    pub requests_since_snapshot: std::sync::atomic::AtomicU64,
    /// A reclaim of compacted history's space is running (see `apply_entry`).
    pub reclaiming: Arc<std::sync::atomic::AtomicBool>,
}

/// Side effects of an applied entry, performed after its write reached the engine.
#[derive(Default)]
struct Effects {
    granted: Option<(i64, i64)>,
    revoked: Option<i64>,
    compacted: Option<i64>,
}

pub struct StateMachine {
    shared: Arc<Shared>,
    /// Latest version of every live key (see `mvcc::index`).
    index: KeyIndex,
    snapshots: SnapshotDir,
    revision: i64,
    compacted: i64,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl StateMachine {
    /// Opens the state machine, finishing an interrupted snapshot install. (A checkpoint
    /// never holds more than the local state: making it flushed that state to disk.)
    pub fn open(shared: Arc<Shared>, snapshots: SnapshotDir) -> Result<StateMachine> {
        let engine = shared.engine.clone();
        if let Some(path) = snapshot::interrupted_install(&*engine)? {
            tracing::warn!(snapshot = %path.display(), "finishing an interrupted snapshot install");
            snapshot::install_snapshot(&*engine, &path)?;
        }
        let view = engine.view();
        let (revision, compacted) = meta::revisions(&*view)?;
        shared.lessor.load(&*view)?;
        let index = KeyIndex::build(&*view)?;
        drop(view);
        shared.revision.store(revision, Ordering::SeqCst);
        shared.compacted.store(compacted, Ordering::SeqCst);
        shared.applied.send_replace(read_applied(&*engine)?.map_or(0, |l| l.index));
        Ok(StateMachine { shared, index, snapshots, revision, compacted })
    }

    fn execute(&self, txn: &mut WriteTxn, req: InternalRequest, fx: &mut Effects) -> Result<ApplyKind> {
        let kind = match req.request {
            Some(Request::Put(p)) => {
                let mut r = txn.put(&p)?;
                r.header = txn.header();
                ApplyKind::Put(r)
            }
            Some(Request::DeleteRange(d)) => {
                let mut r = txn.delete_range(&d)?;
                r.header = txn.header();
                ApplyKind::DeleteRange(r)
            }
            Some(Request::Txn(t)) => ApplyKind::Txn(txn::execute_txn(txn, &t)?),
            Some(Request::Compaction(c)) => {
                compact::check_compact(c.revision, self.revision, self.compacted)?;
                let view = txn.view();
                let removed = compact::compact(view, c.revision, txn.batch_mut())?;
                tracing::info!(revision = c.revision, removed, "compacted");
                fx.compacted = Some(c.revision);
                ApplyKind::Compaction(CompactionResponse { header: header(self.revision) })
            }
            Some(Request::LeaseGrant(g)) => {
                txn.grant_lease(g.id, g.ttl)?;
                fx.granted = Some((g.id, g.ttl));
                ApplyKind::LeaseGrant(LeaseGrantResponse {
                    header: header(self.revision),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                })
            }
            Some(Request::LeaseRevoke(r)) => {
                txn.revoke_lease(r.id)?;
                fx.revoked = Some(r.id);
                ApplyKind::LeaseRevoke(LeaseRevokeResponse { header: txn.header() })
            }
            Some(Request::PublishMember(m)) => {
                txn.batch_mut().put(Cf::Meta, meta::member_key(m.id), m.encode_to_vec());
                ApplyKind::Done(ResponseHeader { revision: self.revision, ..Default::default() })
            }
            Some(Request::ForgetMember(f)) => {
                txn.batch_mut().delete(Cf::Meta, meta::member_key(f.id));
                ApplyKind::Done(ResponseHeader { revision: self.revision, ..Default::default() })
            }
            Some(Request::Batch(_)) => return Err(StoreError::InvalidArgument("nested request batch".into())),
            None => return Err(StoreError::InvalidArgument("empty request".into())),
        };
        Ok(kind)
    }

    /// Runs one client request as a step of `txn`. Deterministic rejections become the
    /// request's result; anything else (engine failure) stops the state machine.
    fn run_step(&self, txn: &mut WriteTxn, req: InternalRequest, fx: &mut Effects) -> Result<ApplyResult> {
        match txn.step(|t| self.execute(t, req, fx)) {
            Ok(kind) => Ok(ApplyResult { result: Some(kind) }),
            Err(e) if e.is_deterministic() => Ok(ApplyResult {
                result: Some(ApplyKind::Error(ApplyError { code: e.code() as i32, message: e.to_string() })),
            }),
            Err(e) => Err(e),
        }
    }

    /// Applies one entry (possibly a batch of client requests): one engine write, then the
    /// side effects.
    fn apply_entry(&mut self, entry: Entry) -> Result<StoreResponse> {
        let started = Instant::now();
        let engine = self.shared.engine.clone();
        let view = engine.view();
        let want_prev_kv = self.shared.hub.wants_prev_kv();
        let mut txn = WriteTxn::new(&*view, self.revision, self.compacted).with_index(&self.index, want_prev_kv);
        let mut fx = Effects::default();
        let mut extra = WriteBatch::default();
        let done =
            |revision| ApplyResult { result: Some(ApplyKind::Done(ResponseHeader { revision, ..Default::default() })) };
        let result = match entry.payload {
            EntryPayload::Blank => done(self.revision),
            EntryPayload::Normal(payload) => match payload.decode() {
                // The entry passed the log's checksum, so these are the bytes the leader
                // proposed and every replica decodes them the same way: a request that
                // cannot be decoded (proposed by a version without today's admission
                // limits) fails as a request, identically everywhere, and apply goes on.
                Err(e) => {
                    tracing::warn!(error = %e, index = entry.log_id.index, "refusing an undecodable entry");
                    let refused = StoreError::InvalidArgument(format!("request cannot be applied: {e}"));
                    ApplyResult {
                        result: Some(ApplyKind::Error(ApplyError {
                            code: refused.code() as i32,
                            message: refused.to_string(),
                        })),
                    }
                }
                Ok(InternalRequest { request: Some(Request::Batch(batch)) }) => {
                    self.shared.requests_since_snapshot.fetch_add(batch.requests.len() as u64, Ordering::Relaxed);
                    let mut results = Vec::with_capacity(batch.requests.len());
                    for req in batch.requests {
                        let batchable =
                            matches!(req.request, Some(Request::Put(_) | Request::DeleteRange(_) | Request::Txn(_)));
                        results.push(if batchable {
                            self.run_step(&mut txn, req, &mut fx)?
                        } else {
                            let e = StoreError::InvalidArgument("request cannot be batched".into());
                            ApplyResult {
                                result: Some(ApplyKind::Error(ApplyError {
                                    code: e.code() as i32,
                                    message: e.to_string(),
                                })),
                            }
                        });
                    }
                    ApplyResult { result: Some(ApplyKind::Batch(ResultBatch { results })) }
                }
                Ok(req) => {
                    self.shared.requests_since_snapshot.fetch_add(1, Ordering::Relaxed);
                    self.run_step(&mut txn, req, &mut fx)?
                }
            },
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m);
                extra.put(Cf::Meta, meta::MEMBERSHIP, encode(&stored)?);
                done(self.revision)
            }
        };
        let changes = txn.finish();
        drop(view);
        let mut batch = changes.batch;
        batch.ops.extend(extra.ops);
        batch.put(Cf::Meta, meta::APPLIED, encode(&Some(entry.log_id))?);
        engine.write(batch, Durability::Buffered)?;

        let revision = changes.revision;
        self.revision = revision;
        self.shared.revision.store(revision, Ordering::SeqCst);
        if let Some(c) = fx.compacted {
            self.compacted = c;
            self.shared.compacted.store(c, Ordering::SeqCst);
            // Give the compacted history's space back, off the apply path, so the
            // database follows the live data plus the retained history (etcd: defragment).
            crate::engine::reclaim_in_background(self.shared.engine.clone(), &Cf::MVCC, self.shared.reclaiming.clone());
            self.shared.hub.set_compacted(c);
        }
        if let Some((id, ttl)) = fx.granted {
            self.shared.lessor.on_granted(id, ttl);
        }
        if let Some(id) = fx.revoked {
            self.shared.lessor.on_revoked(id);
        }
        if !changes.events.is_empty() {
            self.index.apply_events(&changes.events);
            failpoints::hit(failpoints::APPLY_BEFORE_WATCH_NOTIFY);
            self.shared.hub.notify(revision, &changes.events, changes.prev_kv_complete);
        }
        self.shared.metrics.apply_duration.observe(started.elapsed().as_secs_f64());
        Ok(StoreResponse(result))
    }

    fn reload_after_install(&mut self, meta: &SnapshotMeta) -> Result<()> {
        let view = self.shared.engine.view();
        let (revision, compacted) = meta::revisions(&*view)?;
        self.shared.lessor.load(&*view)?;
        self.index = KeyIndex::build(&*view)?;
        drop(view);
        self.revision = revision;
        self.compacted = compacted;
        self.shared.revision.store(revision, Ordering::SeqCst);
        self.shared.compacted.store(compacted, Ordering::SeqCst);
        self.shared.hub.reset_to(revision, compacted);
        self.shared.applied.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }
}

fn read_applied(engine: &dyn KvEngine) -> Result<Option<LogId>> {
    match engine.view().get(Cf::Meta, meta::APPLIED)? {
        Some(bytes) => decode("applied log id", &bytes),
        None => Ok(None),
    }
}

/// Takes snapshots: checkpoints of the engine (see `raft::snapshot`).
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    snapshots: SnapshotDir,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.shared.requests_since_snapshot.store(0, Ordering::Relaxed);
        let engine = self.shared.engine.clone();
        let snapshots = self.snapshots.clone();
        let meta = tokio::task::spawn_blocking(move || snapshots.take(&*engine))
            .await
            .map_err(|e| storage_error(StoreError::io("snapshot task", e)))?
            .map_err(storage_error)?;
        tracing::info!(snapshot = %meta.snapshot_id, "took snapshot");
        let dir = self.snapshots.dir.join(format!("checkpoint-{}", meta.snapshot_id));
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotFile::Checkpoint(dir)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let view = self.shared.engine.view();
        let membership = match view.get(Cf::Meta, meta::MEMBERSHIP).map_err(storage_read_error)? {
            Some(bytes) => decode("membership", &bytes).map_err(storage_read_error)?,
            None => StoredMembership::default(),
        };
        drop(view);
        Ok((read_applied(&*self.shared.engine).map_err(storage_read_error)?, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<StoreResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut last = None;
        for entry in entries {
            let log_id = entry.log_id;
            let normal = matches!(entry.payload, EntryPayload::Normal(_));
            responses.push(self.apply_entry(entry).map_err(|e| {
                tracing::error!(error = %e, index = log_id.index, "applying an entry failed; stopping");
                storage_error(e)
            })?);
            if normal {
                self.shared.metrics.proposals_committed.inc();
            }
            last = Some(log_id.index);
        }
        self.shared.metrics.apply_batch_entries.observe(responses.len() as f64);
        if let Some(index) = last {
            self.shared.applied.send_replace(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { shared: self.shared.clone(), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(SnapshotFile::File(self.snapshots.incoming_path())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotFile>) -> Result<(), StorageError> {
        let SnapshotFile::File(source) = *snapshot else {
            return Err(storage_error(StoreError::Raft("can only install a received snapshot file".into())));
        };
        let engine = self.shared.engine.clone();
        let snapshots = self.snapshots.clone();
        let installed_meta = meta.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            // Keep the file under its final name until the install is complete: an
            // interrupted install is redone from it at start-up.
            let path = snapshots.path_for(&installed_meta.snapshot_id);
            if source != path {
                std::fs::rename(&source, &path)
                    .map_err(|e| StoreError::io(format!("saving snapshot {}", path.display()), e))?;
                snapshot::sync_dir(&snapshots.dir)?;
            }
            failpoints::hit(failpoints::SNAPSHOT_INSTALL);
            snapshot::install_snapshot(&*engine, &path)?;
            snapshots.adopt_installed(&*engine, &installed_meta)?;
            let _ = std::fs::remove_file(&path);
            Ok(())
        })
        .await
        .map_err(|e| storage_error(StoreError::io("snapshot install task", e)))?
        .map_err(storage_error)?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        self.reload_after_install(meta).map_err(storage_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.snapshots.current().map_err(storage_read_error)?;
        Ok(current.map(|(dir, meta)| Snapshot { meta, snapshot: Box::new(SnapshotFile::Checkpoint(dir)) }))
    }
}
