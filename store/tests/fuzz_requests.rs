//! Fuzzing the replicated write path: random and adversarial etcd requests (deep and wide
//! txns, huge and empty keys, every compare target and result, out-of-range enum values,
//! negative and future revisions, compactions, leases) go through propose → apply on an
//! in-process 3-member cluster, half through the public API (admission included) and half
//! straight into the Raft log (as a member running an older version could put them there).
//! The cluster must stay live and every replica must hold the same data.
//!
//! Bounded by default (CI); a longer run is the same test with a time budget:
//!
//! ```sh
//! BERTH_FUZZ_SECONDS=1800 cargo test --release -p berth-store --test fuzz_requests -- --nocapture
//! ```
//!
//! `BERTH_FUZZ_SEED` replays a run (every failure prints its seed).

use std::time::{Duration, Instant};

use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::{InternalRequest, RequestBatch};
use berth_proto::etcdserverpb::compare::TargetUnion;
use berth_proto::etcdserverpb::*;
use berth_store::raft::StoreRequest;
use berth_store::request::MAX_REQUEST_BYTES;
use berth_store::testing::*;
use berth_store::Store;
use berth_testkit::init_tracing;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Gen {
    rng: StdRng,
    /// Operations left for the request being generated (nested txns branch: without a
    /// budget a tree could grow without bound).
    budget: usize,
}

impl Gen {
    fn key(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..20) {
            0 => Vec::new(),
            1 => vec![0],
            2 => vec![0xff; self.rng.random_range(1..4)],
            3 => vec![b'h'; self.rng.random_range(10_000..200_000)],
            4 => (0..self.rng.random_range(1..64)).map(|_| self.rng.random()).collect(),
            _ => format!("k{}", self.rng.random_range(0..40)).into_bytes(),
        }
    }

    fn range_end(&mut self, key: &[u8]) -> Vec<u8> {
        match self.rng.random_range(0..6) {
            0 => vec![0],
            1 => {
                let mut end = key.to_vec();
                if let Some(last) = end.last_mut() {
                    *last = last.wrapping_add(1);
                }
                end
            }
            2 => self.key(),
            _ => Vec::new(),
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..12) {
            0 => vec![b'v'; self.rng.random_range(100_000..1_700_000)],
            1 => Vec::new(),
            _ => format!("v{}", self.rng.random::<u16>()).into_bytes(),
        }
    }

    fn revision(&mut self) -> i64 {
        match self.rng.random_range(0..6) {
            0 => -self.rng.random_range(1..1000),
            1 => self.rng.random_range(0..1_000_000_000),
            2 => i64::MAX,
            _ => self.rng.random_range(0..200),
        }
    }

    fn small_int(&mut self) -> i32 {
        // Mostly valid enum values, sometimes not.
        if self.rng.random_bool(0.1) {
            self.rng.random_range(-3..50)
        } else {
            self.rng.random_range(0..5)
        }
    }

    fn compare(&mut self) -> Compare {
        let key = self.key();
        let target_union = match self.rng.random_range(0..6) {
            0 => Some(TargetUnion::Version(self.revision())),
            1 => Some(TargetUnion::CreateRevision(self.revision())),
            2 => Some(TargetUnion::ModRevision(self.revision())),
            3 => Some(TargetUnion::Value(self.value())),
            4 => Some(TargetUnion::Lease(self.rng.random())),
            _ => None,
        };
        Compare {
            range_end: self.range_end(&key),
            key,
            result: self.small_int(),
            target: self.small_int(),
            target_union,
        }
    }

    fn range(&mut self) -> RangeRequest {
        let key = self.key();
        RangeRequest {
            range_end: self.range_end(&key),
            key,
            limit: self.rng.random_range(-2..20),
            revision: self.revision(),
            sort_order: self.small_int(),
            sort_target: self.small_int(),
            serializable: self.rng.random(),
            keys_only: self.rng.random(),
            count_only: self.rng.random(),
            min_mod_revision: self.revision(),
            max_mod_revision: self.revision(),
            min_create_revision: self.revision(),
            max_create_revision: self.revision(),
        }
    }

    fn put(&mut self) -> PutRequest {
        PutRequest {
            key: self.key(),
            value: self.value(),
            lease: if self.rng.random_bool(0.1) { self.rng.random() } else { 0 },
            prev_kv: self.rng.random(),
            ignore_value: self.rng.random_bool(0.05),
            ignore_lease: self.rng.random_bool(0.05),
        }
    }

    fn delete(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        DeleteRangeRequest { range_end: self.range_end(&key), key, prev_kv: self.rng.random() }
    }

    fn op(&mut self, depth: usize) -> RequestOp {
        self.budget = self.budget.saturating_sub(1);
        let request = match self.rng.random_range(0..10) {
            0..=2 => request_op::Request::RequestRange(self.range()),
            3..=5 => request_op::Request::RequestPut(self.put()),
            6 | 7 => request_op::Request::RequestDeleteRange(self.delete()),
            _ if depth < 60 && self.budget > 0 => request_op::Request::RequestTxn(self.txn(depth + 1)),
            _ => request_op::Request::RequestRange(self.range()),
        };
        RequestOp { request: Some(request) }
    }

    fn txn(&mut self, depth: usize) -> TxnRequest {
        // Sometimes a chain deep enough to exceed every limit, sometimes wide.
        if depth == 1 && self.rng.random_bool(0.1) {
            let levels = self.rng.random_range(20..60);
            let mut t = TxnRequest { success: vec![self.op(60)], ..Default::default() };
            for _ in 1..levels {
                t = TxnRequest {
                    compare: vec![self.compare()],
                    success: vec![RequestOp { request: Some(request_op::Request::RequestTxn(t)) }],
                    failure: vec![self.op(60)],
                };
            }
            return t;
        }
        let width = |g: &mut Gen| {
            let w = if g.rng.random_bool(0.05) { g.rng.random_range(100..200) } else { g.rng.random_range(0..4) };
            w.min(g.budget)
        };
        let (nc, ns, nf) = (width(self), width(self), width(self));
        let deeper = depth + 2;
        TxnRequest {
            compare: (0..nc).map(|_| self.compare()).collect(),
            success: (0..ns).map(|_| self.op(deeper)).collect(),
            failure: (0..nf).map(|_| self.op(deeper)).collect(),
        }
    }

    fn request(&mut self) -> InternalRequest {
        self.budget = 1500;
        let request = match self.rng.random_range(0..20) {
            0..=5 => Request::Put(self.put()),
            6 | 7 => Request::DeleteRange(self.delete()),
            8..=15 => Request::Txn(self.txn(1)),
            16 => Request::Compaction(CompactionRequest { revision: self.revision(), physical: self.rng.random() }),
            17 => Request::LeaseGrant(LeaseGrantRequest {
                ttl: if self.rng.random_bool(0.1) { i64::MAX } else { self.rng.random_range(-5..10_000_000_000) },
                id: if self.rng.random() { 0 } else { self.rng.random_range(-3..100) },
            }),
            18 => Request::LeaseRevoke(LeaseRevokeRequest { id: self.rng.random_range(-3..100) }),
            _ => {
                let n = self.rng.random_range(0..6);
                let requests = (0..n).map(|_| InternalRequest { request: Some(Request::Put(self.put())) }).collect();
                Request::Batch(RequestBatch { requests })
            }
        };
        InternalRequest { request: Some(request) }
    }
}

/// Every call answers (with a result or an error) well within this: requests carry a 5 s
/// timeout of their own in these tests.
const CALL_BOUND: Duration = Duration::from_secs(30);

/// A short description of a request for failure messages (a request may be megabytes).
fn summarize(req: &InternalRequest) -> String {
    let text = format!("{req:?}");
    let cut = text.char_indices().nth(600).map_or(text.len(), |(i, _)| i);
    format!("{} ({} bytes encoded)", &text[..cut], req.encoded_len())
}

/// The checks versions before the poison-entry fix made: size and etcd's txn rules per
/// level, but no depth or tree-wide limits.
fn passed_old_admission(req: &InternalRequest) -> bool {
    match &req.request {
        Some(Request::Txn(t)) => berth_store::mvcc::txn::validate_txn(t).is_ok(),
        Some(Request::Batch(b)) => b.requests.iter().all(passed_old_admission),
        _ => true,
    }
}

/// The request's kind and size: enough to find it again with the seed.
fn kind_of(req: &InternalRequest) -> String {
    let kind = match &req.request {
        Some(Request::Put(_)) => "put",
        Some(Request::DeleteRange(_)) => "delete-range",
        Some(Request::Txn(_)) => "txn",
        Some(Request::Compaction(_)) => "compaction",
        Some(Request::LeaseGrant(_)) => "lease-grant",
        Some(Request::LeaseRevoke(_)) => "lease-revoke",
        _ => "other",
    };
    format!("a {kind} of {} bytes", req.encoded_len())
}

/// Sends a request through the public API of a member (admission included).
async fn through_api(node: &Store, req: InternalRequest) -> Result<(), berth_store::StoreError> {
    // Errors are expected; a panic or a hang is not (the request timeout bounds each call).
    match req.request {
        Some(Request::Put(p)) => node.put(p).await.map(drop),
        Some(Request::DeleteRange(d)) => node.delete_range(d).await.map(drop),
        Some(Request::Txn(t)) => node.txn(t).await.map(drop),
        Some(Request::Compaction(c)) => node.compact(c).await.map(drop),
        Some(Request::LeaseGrant(g)) => node.lease_grant(g).await.map(drop),
        Some(Request::LeaseRevoke(r)) => node.lease_revoke(r.id).await.map(drop),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_and_adversarial_requests_never_stop_or_split_the_cluster() {
    init_tracing();
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let budget =
        Duration::from_secs(std::env::var("BERTH_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    eprintln!("fuzz seed {seed} (BERTH_FUZZ_SEED={seed} replays it), budget {budget:?}");
    let mut g = Gen { rng: StdRng::seed_from_u64(seed), budget: 0 };
    let c = Cluster::start(3, |_| {}).await;
    let started = Instant::now();
    let (mut via_api, mut raw, mut rounds) = (0u64, 0u64, 0u64);
    while started.elapsed() < budget {
        // A round: a burst of concurrent requests (so several share a batch entry), then a
        // check that the cluster is live and the replicas agree.
        let leader = c.leader().await;
        if std::env::var_os("BERTH_FUZZ_VERBOSE").is_some() {
            eprintln!("fuzz round {rounds}: {via_api} via the API, {raw} raw so far");
        }
        let mut calls = Vec::new();
        for _ in 0..32 {
            let req = g.request();
            let verbose = std::env::var_os("BERTH_FUZZ_VERBOSE").is_some();
            let call_no = via_api + raw;
            if verbose {
                eprintln!("call {call_no}: {}", summarize(&req));
            }
            let member = g.rng.random_range(0..3);
            let node = c.node(member).clone();
            if g.rng.random_bool(0.5) {
                via_api += 1;
                calls.push(tokio::spawn(async move {
                    let summary = if verbose { summarize(&req) } else { kind_of(&req) };
                    let started = Instant::now();
                    let Ok(result) = tokio::time::timeout(CALL_BOUND, through_api(&node, req)).await else {
                        panic!("seed {seed}: a request got no answer in {CALL_BOUND:?}: {summary}");
                    };
                    if verbose {
                        eprintln!("call {call_no} answered in {:?}: {result:?}", started.elapsed());
                    }
                }));
            } else if req.encoded_len() <= MAX_REQUEST_BYTES && passed_old_admission(&req) {
                // Straight into the log on the leader, past today's admission: what an
                // older version (which checked only sizes and etcd's per-level rules)
                // could have committed.
                raw += 1;
                let node = c.node(leader).clone();
                calls.push(tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        node.raft().client_write(StoreRequest::new(&req)),
                    )
                    .await;
                    if verbose {
                        eprintln!("call {call_no} (raw) answered");
                    }
                }));
            }
        }
        for call in calls {
            call.await.unwrap_or_else(|e| panic!("seed {seed}: a request task panicked: {e}"));
        }
        rounds += 1;
        for (i, n) in c.running() {
            if let Some(reason) = n.stopped_reason() {
                panic!("seed {seed}: member {i} stopped after {rounds} rounds: {reason}");
            }
        }
        let key = format!("live-{rounds}");
        c.node(rounds as usize % 3)
            .put(put(&key, "ok"))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the cluster stopped serving writes: {e}"));
        replicas_agree(&c).await;
    }
    eprintln!(
        "fuzz: {} requests ({via_api} through the API, {raw} straight into the log) in {rounds} rounds, {:?}; cluster live, replicas agree",
        via_api + raw,
        started.elapsed()
    );
    assert!(rounds > 0);
}
