//! Regression: a request that apply cannot decode must never stop the cluster.
//!
//! A txn nested 50 levels deep (263 bytes) used to be accepted, committed, and then fail
//! to decode on every replica, stopping each member's Raft core for good (and again after
//! every restart, since the entry is replayed).

use std::time::Duration;

use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::InternalRequest;
use berth_proto::etcdserverpb::*;
use berth_store::raft::StoreRequest;
use berth_store::request::MAX_TXN_DEPTH;
use berth_store::testing::*;
use berth_store::StoreError;
use berth_testkit::{eventually, init_tracing};
use prost::Message;

fn nested_txn(depth: usize) -> TxnRequest {
    let mut t = TxnRequest {
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put("deep", "x"))) }],
        ..Default::default()
    };
    for _ in 1..depth {
        t = TxnRequest {
            success: vec![RequestOp { request: Some(request_op::Request::RequestTxn(t)) }],
            ..Default::default()
        };
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deeply_nested_txn_is_refused_and_an_undecodable_entry_fails_alone() {
    init_tracing();
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = c.follower_of(leader);
    c.node(leader).put(put("before", "1")).await.unwrap();

    // The report's request: refused before it reaches the log, on the leader and through
    // a follower, with a clear error; nothing is written.
    let deep = nested_txn(50);
    assert!(deep.encoded_len() < 300, "{} bytes", deep.encoded_len());
    let rev = c.node(leader).revision();
    for i in [leader, follower] {
        let err = c.node(i).txn(deep.clone()).await.expect_err("too deep");
        assert_eq!(err, StoreError::TxnTooDeep { limit: MAX_TXN_DEPTH });
        assert_eq!(err.to_string(), "etcdserver: txn request is nested too deeply (at most 32 levels)");
    }
    // The deepest admissible txn works.
    c.node(follower).txn(nested_txn(MAX_TXN_DEPTH)).await.expect("admissible depth");
    assert_eq!(value_of(c.node(leader), "deep", false).await.as_deref(), Some("x"));
    assert!(c.node(leader).revision() > rev);

    // An entry that bypassed admission (as one proposed by an older version would): every
    // replica applies it as a failed request, identically, and goes on. A member that is
    // down meanwhile applies it from the log when it comes back.
    let late = (0..3).find(|i| *i != leader && *i != follower).expect("a third member");
    c.stop(late).await;
    let poison = StoreRequest::new(&InternalRequest { request: Some(Request::Txn(nested_txn(50))) });
    let written = c.node(leader).raft().client_write(poison).await.expect("committed");
    match written.data.0.result {
        Some(ApplyKind::Error(e)) => assert!(e.message.contains("request cannot be applied"), "{}", e.message),
        other => panic!("expected a failed request, got {other:?}"),
    }
    c.node(follower).put(put("after", "2")).await.expect("the cluster keeps serving writes");
    c.restart(late).await;
    for (i, n) in c.running() {
        assert_eq!(n.health(), Ok(()), "member {i}");
        assert_eq!(value_of(n, "after", false).await.as_deref(), Some("2"));
    }
    replicas_agree(&c).await;

    // Restarts replay the entry cleanly.
    for i in 0..3 {
        c.stop(i).await;
        c.restart(i).await;
    }
    c.leader().await;
    c.node(0).put(put("restarted", "3")).await.expect("writes after restarts");
    let rev = replicas_agree(&c).await;
    for (i, n) in c.running() {
        assert_eq!(n.health(), Ok(()), "member {i}");
        assert!(n.revision() >= rev);
        assert_eq!(n.status().errors, Vec::<String>::new());
    }
    eventually(Duration::from_secs(5), "reads on every member", async || {
        for (_, n) in c.running() {
            value_of(n, "restarted", false).await?;
        }
        Some(())
    })
    .await;
}
