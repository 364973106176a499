//! What may enter the Raft log: the admission check every replicated request passes
//! before it is proposed, and the limits it enforces.
//!
//! A committed entry is decoded and applied by every member, and replayed after every
//! restart until a snapshot covers it. A request that the apply path cannot decode would
//! therefore be a *poison entry*: every replica would fail on it, forever. So the proposer
//! refuses whatever apply could not handle, using limits derived from apply's own decoder:
//!
//! * **Nesting.** prost refuses messages nested deeper than its recursion limit (100). A
//!   txn nested `d` levels deep sits, inside a log entry (`InternalRequest` → `RequestBatch`
//!   → `InternalRequest` → `TxnRequest` → `RequestOp` → …), [`entry_depth`]`(d)` messages
//!   down; responses travel the same way back to a follower (`ProposeBatchResponse` →
//!   `ProposeOutcome` → `ApplyResult` → `TxnResponse` → …). [`MAX_TXN_DEPTH`] keeps both
//!   well inside the limit (a unit test decodes the deepest admissible entry and response).
//! * **Operations.** etcd caps each level of a txn at `--max-txn-ops` (128); Berth also
//!   caps the whole tree at [`MAX_TXN_TOTAL_OPS`], so a 1.5 MiB request cannot make every
//!   replica run hundreds of thousands of ranges inside one apply.
//! * **Size.** etcd's `--max-request-bytes` (1.5 MiB) for the encoded request.
//!
//! Apply still treats an undecodable or inadmissible entry (say, proposed by an older
//! version) as a *failed request* — the same outcome on every replica — never as a reason
//! to stop (see `raft::state_machine`).

use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::InternalRequest;
use berth_proto::etcdserverpb::request_op::Request as OpRequest;
use berth_proto::etcdserverpb::TxnRequest;
use prost::Message;

use crate::error::{Result, StoreError};
use crate::mvcc::{self, txn};

/// etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Deepest txn nesting admitted (a txn with no nested txn has depth 1). etcd sets no
/// explicit limit; its decoder's is far above anything a client nests. Berth's keeps every
/// admissible entry and its response at most [`entry_depth`]`(32)` = 69 messages deep,
/// against prost's recursion limit of 100.
pub const MAX_TXN_DEPTH: usize = 32;

/// Operations (compares and requests, nested txns included) admitted in one txn tree.
pub const MAX_TXN_TOTAL_OPS: usize = 8 * txn::MAX_TXN_OPS;

/// prost's fixed recursion limit (`prost::RECURSION_LIMIT`, private): a message nested
/// this many levels below the top-level one fails to decode.
pub const DECODER_RECURSION_LIMIT: usize = 100;

/// How many messages below a log entry's top-level `InternalRequest` the deepest message
/// of a txn nested `txn_depth` levels sits, when the txn travels inside a batch entry:
/// `InternalRequest`(0) → `RequestBatch`(1) → `InternalRequest`(2) → `TxnRequest`(3) →
/// `RequestOp`(4) → `TxnRequest`(5) … → `RequestOp` → `PutRequest`. The responses are no
/// deeper: `ProposeBatchResponse`(0) → `ProposeOutcome`(1) → `ApplyResult`(2) →
/// `TxnResponse`(3) → `ResponseOp`(4) … → `ResponseOp` → `RangeResponse` → `KeyValue`.
pub const fn entry_depth(txn_depth: usize) -> usize {
    3 + 2 * txn_depth.saturating_sub(1) + 3
}

const _: () = assert!(entry_depth(MAX_TXN_DEPTH) < DECODER_RECURSION_LIMIT);

/// Admits `req` into the Raft log, or says why not. Every path that proposes calls this:
/// the client APIs, a follower's forwarded batch (checked again on the leader, which may run
/// a newer version than the follower) and the internal writers.
pub fn admit(req: &InternalRequest) -> Result<()> {
    if req.encoded_len() > MAX_REQUEST_BYTES {
        return Err(StoreError::RequestTooLarge);
    }
    admit_shape(req, true)
}

fn admit_shape(req: &InternalRequest, top_level: bool) -> Result<()> {
    match &req.request {
        Some(Request::Put(p)) => mvcc::validate_put(p),
        Some(Request::DeleteRange(d)) if d.key.is_empty() => Err(StoreError::EmptyKey),
        Some(Request::DeleteRange(_)) => Ok(()),
        Some(Request::Txn(t)) => admit_txn(t),
        Some(Request::Batch(b)) if top_level => b.requests.iter().try_for_each(|r| admit_shape(r, false)),
        Some(Request::Batch(_)) => Err(StoreError::InvalidArgument("nested request batch".into())),
        Some(Request::LeaseGrant(g)) if g.ttl > crate::lease::MAX_LEASE_TTL => Err(StoreError::LeaseTtlTooLarge),
        Some(
            Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
            | Request::PublishMember(_)
            | Request::ForgetMember(_),
        ) => Ok(()),
        None => Err(StoreError::InvalidArgument("empty request".into())),
    }
}

/// etcd's txn checks (per-level op count, empty keys, duplicate keys) plus the tree-wide
/// limits above.
pub fn admit_txn(t: &TxnRequest) -> Result<()> {
    let shape = txn_shape(t);
    if shape.depth > MAX_TXN_DEPTH {
        return Err(StoreError::TxnTooDeep { limit: MAX_TXN_DEPTH });
    }
    if shape.ops > MAX_TXN_TOTAL_OPS {
        return Err(StoreError::TooManyOps);
    }
    txn::validate_txn(t)
}

/// Depth and total operation count of a txn tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnShape {
    pub depth: usize,
    pub ops: usize,
}

/// Measures a txn tree without recursing on the call stack (the tree arrived from a client
/// and is as deep as the transport's decoder allowed).
pub fn txn_shape(root: &TxnRequest) -> TxnShape {
    let mut shape = TxnShape { depth: 0, ops: 0 };
    let mut stack = vec![(root, 1usize)];
    while let Some((t, depth)) = stack.pop() {
        shape.depth = shape.depth.max(depth);
        shape.ops += t.compare.len() + t.success.len() + t.failure.len();
        for op in t.success.iter().chain(&t.failure) {
            if let Some(OpRequest::RequestTxn(nested)) = &op.request {
                stack.push((nested, depth + 1));
            }
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
    use berth_proto::berthraftpb::propose_outcome::Outcome;
    use berth_proto::berthraftpb::{ApplyResult, ProposeBatchResponse, ProposeOutcome, RequestBatch};
    use berth_proto::etcdserverpb::response_op::Response;
    use berth_proto::etcdserverpb::{PutRequest, RangeResponse, RequestOp, ResponseOp, TxnResponse};
    use berth_proto::mvccpb::KeyValue;

    use super::*;

    fn nested_txn(depth: usize) -> TxnRequest {
        let put =
            RequestOp { request: Some(OpRequest::RequestPut(PutRequest { key: b"k".to_vec(), ..Default::default() })) };
        let mut t = TxnRequest { success: vec![put], ..Default::default() };
        for _ in 1..depth {
            t = TxnRequest {
                success: vec![RequestOp { request: Some(OpRequest::RequestTxn(t)) }],
                ..Default::default()
            };
        }
        t
    }

    fn nested_response(depth: usize) -> TxnResponse {
        let range = ResponseOp {
            response: Some(Response::ResponseRange(RangeResponse {
                kvs: vec![KeyValue { key: b"k".to_vec(), ..Default::default() }],
                ..Default::default()
            })),
        };
        let mut t = TxnResponse { responses: vec![range], ..Default::default() };
        for _ in 1..depth {
            t = TxnResponse {
                responses: vec![ResponseOp { response: Some(Response::ResponseTxn(t)) }],
                ..Default::default()
            };
        }
        t
    }

    fn in_batch(t: TxnRequest) -> InternalRequest {
        InternalRequest {
            request: Some(Request::Batch(RequestBatch {
                requests: vec![InternalRequest { request: Some(Request::Txn(t)) }],
            })),
        }
    }

    #[test]
    fn the_deepest_admissible_entry_and_its_response_decode() {
        let entry = in_batch(nested_txn(MAX_TXN_DEPTH));
        admit(&entry).expect("admissible");
        let bytes = entry.encode_to_vec();
        assert_eq!(InternalRequest::decode(bytes.as_slice()).expect("decodes"), entry);

        let resp = ProposeBatchResponse {
            outcomes: vec![ProposeOutcome {
                outcome: Some(Outcome::Applied(ApplyResult {
                    result: Some(ApplyKind::Txn(nested_response(MAX_TXN_DEPTH))),
                })),
            }],
        };
        let bytes = resp.encode_to_vec();
        assert_eq!(ProposeBatchResponse::decode(bytes.as_slice()).expect("decodes"), resp);
    }

    #[test]
    fn the_decoder_limit_is_what_the_depth_formula_assumes() {
        // One level past the limit no longer decodes: if prost raised its limit this test
        // says so, and if it lowered it the test above fails.
        let too_deep = (DECODER_RECURSION_LIMIT - 6) / 2 + 2;
        assert!(entry_depth(too_deep) >= DECODER_RECURSION_LIMIT);
        let bytes = in_batch(nested_txn(too_deep)).encode_to_vec();
        let err = InternalRequest::decode(bytes.as_slice()).expect_err("past the recursion limit");
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn deep_and_wide_txns_are_refused_before_proposal() {
        let deep = InternalRequest { request: Some(Request::Txn(nested_txn(MAX_TXN_DEPTH + 1))) };
        assert_eq!(admit(&deep), Err(StoreError::TxnTooDeep { limit: MAX_TXN_DEPTH }));
        // The 263-byte request of the report: 50 levels.
        let fifty = InternalRequest { request: Some(Request::Txn(nested_txn(50))) };
        assert!(fifty.encoded_len() < 400);
        assert!(admit(&fifty).is_err());

        // 128 ops on each of 9 levels: every level within etcd's limit, the tree not.
        let mut wide = nested_txn(1);
        for _ in 0..9 {
            let mut ops: Vec<RequestOp> = (0..127)
                .map(|i| RequestOp {
                    request: Some(OpRequest::RequestRange(berth_proto::etcdserverpb::RangeRequest {
                        key: format!("r{i}").into_bytes(),
                        ..Default::default()
                    })),
                })
                .collect();
            ops.push(RequestOp { request: Some(OpRequest::RequestTxn(wide)) });
            wide = TxnRequest { success: ops, ..Default::default() };
        }
        assert_eq!(txn_shape(&wide).depth, 10);
        assert_eq!(admit(&InternalRequest { request: Some(Request::Txn(wide)) }), Err(StoreError::TooManyOps));
    }

    #[test]
    fn nested_batches_and_empty_requests_are_refused() {
        let inner = in_batch(nested_txn(1));
        let outer = InternalRequest { request: Some(Request::Batch(RequestBatch { requests: vec![inner] })) };
        assert!(matches!(admit(&outer), Err(StoreError::InvalidArgument(_))));
        assert!(matches!(admit(&InternalRequest { request: None }), Err(StoreError::InvalidArgument(_))));
    }
}
