//! The KV and Watch API of the in-process store.

use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::InternalRequest;
use berth_proto::etcdserverpb::request_op::Request as OpRequest;
use berth_proto::etcdserverpb::*;
use berth_proto::keys::KeyRange;
use tokio::sync::mpsc;

use super::StoreNode;
use crate::error::{Result, StoreError};
use crate::mvcc::{self, meta, read, txn, write::WriteTxn};
use crate::request;
use crate::watch::WatchStream;

fn unexpected(kind: ApplyKind) -> StoreError {
    StoreError::Raft(format!("unexpected apply result {kind:?}"))
}

/// True when every range of a read-only txn asked for serializable reads.
fn txn_serializable(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(OpRequest::RequestRange(r)) => r.serializable,
        Some(OpRequest::RequestTxn(t)) => txn_serializable(t),
        _ => true,
    })
}

/// True when every operation of a txn touches single keys (compares included).
fn txn_single_keys(req: &TxnRequest) -> bool {
    req.compare.iter().all(|c| KeyRange::from_etcd(&c.key, &c.range_end).is_single_key())
        && req.success.iter().chain(&req.failure).all(|op| match &op.request {
            Some(OpRequest::RequestRange(r)) => KeyRange::from_etcd(&r.key, &r.range_end).is_single_key(),
            Some(OpRequest::RequestTxn(t)) => txn_single_keys(t),
            _ => true,
        })
}

impl StoreNode {
    /// Runs a read against a consistent view of the local state machine. A `small` read
    /// (one key: microseconds) runs right here; anything that may scan many keys runs on the
    /// blocking pool, so it cannot stall the async workers. (Handing every read to the pool
    /// cost more in thread wake-ups than the reads themselves.)
    async fn read_local<T: Send + 'static>(
        &self,
        small: bool,
        f: impl FnOnce(&dyn crate::engine::ReadView, i64, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.shared.engine.clone();
        let read = move || {
            let view = engine.view();
            let (current, compacted) = meta::revisions(&*view)?;
            f(&*view, current, compacted)
        };
        if small {
            return read();
        }
        tokio::task::spawn_blocking(read).await.map_err(|e| StoreError::io("read task", e))?
    }

    /// etcd `Range`: linearizable unless `serializable`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let small = KeyRange::from_etcd(&req.key, &req.range_end).is_single_key();
        self.range_sized(req, small).await
    }

    /// [`range`](Self::range) for a prefix the caller knows holds a handful of keys (say the
    /// ResourceQuotas of one namespace, read on every create): it runs on the calling task,
    /// because a hand-off to the blocking pool costs more than such a read.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn range_few(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.range_sized(req, true).await
    }

    async fn range_sized(&self, req: RangeRequest, small: bool) -> Result<RangeResponse> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if !req.serializable {
            self.barrier().await?;
        }
        let mut resp =
            self.read_local(small, move |view, current, compacted| read::range(view, &req, current, compacted)).await?;
        resp.header = self.header(resp.header.map_or(0, |h| h.revision));
        Ok(resp)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        mvcc::validate_put(&req)?;
        match self.propose(InternalRequest { request: Some(Request::Put(req)) }).await? {
            ApplyKind::Put(mut r) => {
                r.header = self.header(r.header.map_or(0, |h| h.revision));
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        match self.propose(InternalRequest { request: Some(Request::DeleteRange(req)) }).await? {
            ApplyKind::DeleteRange(mut r) => {
                r.header = self.header(r.header.map_or(0, |h| h.revision));
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// etcd `Txn`. Read-only txns are served locally after a read barrier (as etcd does);
    /// the others go through the log.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        // Read-only txns are not proposed, but run the same recursive code: same limits.
        request::admit_txn(&req)?;
        let mut resp = if txn::is_read_only(&req) {
            if !txn_serializable(&req) {
                self.barrier().await?;
            }
            let small = txn_single_keys(&req);
            self.read_local(small, move |view, current, compacted| {
                let mut t = WriteTxn::new(view, current, compacted);
                txn::execute_txn(&mut t, &req)
            })
            .await?
        } else {
            match self.propose(InternalRequest { request: Some(Request::Txn(req)) }).await? {
                ApplyKind::Txn(r) => r,
                other => return Err(unexpected(other)),
            }
        };
        resp.header = self.header(resp.header.map_or(0, |h| h.revision));
        Ok(resp)
    }

    /// etcd `Compact`. With `physical`, returns once this member has compacted too.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        let physical = req.physical;
        let kind = self.propose(InternalRequest { request: Some(Request::Compaction(req)) }).await?;
        let ApplyKind::Compaction(_) = kind else {
            return Err(unexpected(kind));
        };
        if physical {
            self.barrier().await?;
        }
        Ok(CompactionResponse { header: self.header(self.revision()) })
    }

    /// Opens a watch stream served from this member's state.
    pub fn watch(&self) -> (WatchStream, mpsc::Receiver<WatchResponse>) {
        WatchStream::open(self.shared.hub.clone())
    }
}
