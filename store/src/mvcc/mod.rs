//! Multi-version concurrency control with etcd's semantics, over a [`KvEngine`] view.
//!
//! Layered like etcd's `mvcc` package:
//! * [`read`] — ranges at a revision over a read-only view (`ReadView`/`TxnRead`);
//! * [`write::WriteTxn`] — the mutations of one log entry (`TxnWrite`);
//! * [`txn`] — etcd `Txn` validation and execution on a `WriteTxn`;
//! * [`compact`] — physical removal of superseded versions;
//! * [`history`] — events by revision for watch catch-up, and `HashKV`.
//!
//! Revisions: every committed mutation gets the next main revision; the operations of one
//! txn share it with increasing sub-revisions. A new store is at revision 1.
//!
//! [`KvEngine`]: crate::engine::KvEngine

pub mod compact;
pub mod encoding;
pub mod history;
pub mod index;
pub mod meta;
pub mod read;
pub mod txn;
pub mod write;

#[cfg(test)]
mod tests;

use berth_proto::etcdserverpb::PutRequest;

use crate::error::{Result, StoreError};

/// Checks a put before it is proposed (etcd's `checkPutRequest`).
pub fn validate_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(StoreError::InvalidArgument("value is provided".into()));
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(StoreError::InvalidArgument("lease is provided".into()));
    }
    Ok(())
}
