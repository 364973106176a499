//! etcd `Txn`: validation before proposal, compare evaluation, and execution.
//!
//! As in etcd, every compare in the tree (the root's and those of nested txns on the taken
//! branches) is evaluated against the state *before* the txn, then the chosen operations run
//! in order; any failing operation fails the whole txn with nothing applied.

use std::collections::BTreeSet;

use berth_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use berth_proto::etcdserverpb::request_op::Request;
use berth_proto::etcdserverpb::response_op::Response;
use berth_proto::etcdserverpb::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse};
use berth_proto::keys::KeyRange;
use berth_proto::mvccpb::KeyValue;

use super::write::WriteTxn;
use crate::error::{Result, StoreError};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Bytes (keys and values) the compares and ranges of one txn may read. A txn is small, but
/// each of its up to 1,024 compares and ranges may cover the whole key space, and a write
/// txn runs them on every replica inside apply: without a bound one request could stall
/// the cluster and exhaust its memory. Deterministic (the same data on every replica), so
/// the txn fails identically everywhere. etcd has no such bound; its gRPC response limit
/// (2 GiB) comes after the work is done.
pub const MAX_TXN_RESPONSE_BYTES: usize = 64 << 20;

/// What a txn has read so far, against [`MAX_TXN_RESPONSE_BYTES`].
#[derive(Default)]
struct ReadBudget(usize);

impl ReadBudget {
    fn charge(&mut self, kvs: &[KeyValue]) -> Result<()> {
        self.0 += kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum::<usize>();
        if self.0 > MAX_TXN_RESPONSE_BYTES {
            return Err(StoreError::TxnResponseTooLarge { limit: MAX_TXN_RESPONSE_BYTES });
        }
        Ok(())
    }
}

/// Rejects malformed txns before they are proposed (etcd's `checkTxnRequest` and
/// `checkIntervals`): too many operations, empty keys, a key written twice on one path.
pub fn validate_txn(req: &TxnRequest) -> Result<()> {
    check_shape(req)?;
    branch_writes(&req.success)?;
    branch_writes(&req.failure)?;
    Ok(())
}

fn check_shape(req: &TxnRequest) -> Result<()> {
    if req.compare.len() > MAX_TXN_OPS || req.success.len() > MAX_TXN_OPS || req.failure.len() > MAX_TXN_OPS {
        return Err(StoreError::TooManyOps);
    }
    for cmp in &req.compare {
        if cmp.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(StoreError::EmptyKey),
            Some(Request::RequestPut(p)) => super::validate_put(p)?,
            Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => return Err(StoreError::EmptyKey),
            Some(Request::RequestTxn(t)) => check_shape(t)?,
            _ => {}
        }
    }
    Ok(())
}

/// Keys put and ranges deleted on one branch (nested txns included). A key may be put at
/// most once and never inside a deleted range of the same branch.
fn branch_writes(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut puts = BTreeSet::new();
    let mut deletes = Vec::new();
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) if !puts.insert(p.key.clone()) => {
                return Err(StoreError::DuplicateKey);
            }
            Some(Request::RequestDeleteRange(d)) => deletes.push(KeyRange::from_etcd(&d.key, &d.range_end)),
            Some(Request::RequestTxn(t)) => {
                let (success_puts, success_dels) = branch_writes(&t.success)?;
                let (failure_puts, failure_dels) = branch_writes(&t.failure)?;
                // Only one nested branch runs, so they may share keys with each other, but
                // neither may repeat a key of this branch.
                for key in success_puts.iter().chain(&failure_puts) {
                    if puts.contains(key) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
                puts.extend(success_puts);
                puts.extend(failure_puts);
                deletes.extend(success_dels);
                deletes.extend(failure_dels);
            }
            _ => {}
        }
    }
    if puts.iter().any(|k| deletes.iter().any(|r| r.contains(k))) {
        return Err(StoreError::DuplicateKey);
    }
    Ok((puts, deletes))
}

/// True when a txn holds only reads (it can be served without a log entry).
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(t)) => is_read_only(t),
        _ => false,
    })
}

fn compare_one(cmp: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let target = CompareTarget::try_from(cmp.target).unwrap_or(CompareTarget::Version);
    let ord = match (&cmp.target_union, target) {
        (Some(TargetUnion::Value(v)), CompareTarget::Value) => kv.value.as_slice().cmp(v.as_slice()),
        (Some(TargetUnion::Version(v)), CompareTarget::Version) => kv.version.cmp(v),
        (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => kv.create_revision.cmp(v),
        (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => kv.mod_revision.cmp(v),
        (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => kv.lease.cmp(v),
        // A target without its value compares against the zero value, as etcd's
        // generated getters do.
        (_, CompareTarget::Value) => kv.value.as_slice().cmp(&[][..]),
        (_, CompareTarget::Version) => kv.version.cmp(&0),
        (_, CompareTarget::Create) => kv.create_revision.cmp(&0),
        (_, CompareTarget::Mod) => kv.mod_revision.cmp(&0),
        (_, CompareTarget::Lease) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(cmp.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// Evaluates one compare against the pre-txn state. A missing key compares as the zero
/// KeyValue, except that a VALUE compare on a missing key is false (etcd).
fn evaluate(txn: &WriteTxn, cmp: &Compare, budget: &mut ReadBudget) -> Result<bool> {
    let range = KeyRange::from_etcd(&cmp.key, &cmp.range_end);
    let kvs = txn.live_now(&range)?;
    budget.charge(&kvs)?;
    if kvs.is_empty() {
        if cmp.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_one(cmp, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_one(cmp, kv)))
}

/// The branch decisions of the whole tree, root first, depth-first along taken branches.
fn decide_path(txn: &WriteTxn, req: &TxnRequest, path: &mut Vec<bool>, budget: &mut ReadBudget) -> Result<()> {
    let mut succeeded = true;
    for cmp in &req.compare {
        if !evaluate(txn, cmp, budget)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    let ops = if succeeded { &req.success } else { &req.failure };
    for op in ops {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            decide_path(txn, nested, path, budget)?;
        }
    }
    Ok(())
}

/// Executes `req` inside `txn`. Errors leave `txn` dirty; the caller discards it.
pub fn execute_txn(txn: &mut WriteTxn, req: &TxnRequest) -> Result<TxnResponse> {
    let mut path = Vec::new();
    let mut budget = ReadBudget::default();
    decide_path(txn, req, &mut path, &mut budget)?;
    let mut step = 0;
    let mut resp = run(txn, req, &path, &mut step, &mut budget)?;
    set_headers(&mut resp, txn.current());
    Ok(resp)
}

fn run(
    txn: &mut WriteTxn,
    req: &TxnRequest,
    path: &[bool],
    step: &mut usize,
    budget: &mut ReadBudget,
) -> Result<TxnResponse> {
    let succeeded = path[*step];
    *step += 1;
    let ops = if succeeded { &req.success } else { &req.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                let range = txn.range(r)?;
                budget.charge(&range.kvs)?;
                Response::ResponseRange(range)
            }
            Some(Request::RequestPut(p)) => Response::ResponsePut(txn.put(p)?),
            Some(Request::RequestDeleteRange(d)) => Response::ResponseDeleteRange(txn.delete_range(d)?),
            Some(Request::RequestTxn(t)) => Response::ResponseTxn(run(txn, t, path, step, budget)?),
            None => continue,
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

/// Every response in the tree carries the txn's final revision, as in etcd.
fn set_headers(resp: &mut TxnResponse, revision: i64) {
    let header = Some(berth_proto::etcdserverpb::ResponseHeader { revision, ..Default::default() });
    resp.header = header;
    for op in &mut resp.responses {
        match &mut op.response {
            Some(Response::ResponseRange(r)) => r.header = header,
            Some(Response::ResponsePut(p)) => p.header = header,
            Some(Response::ResponseDeleteRange(d)) => d.header = header,
            Some(Response::ResponseTxn(t)) => set_headers(t, revision),
            None => {}
        }
    }
}
