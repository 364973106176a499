//! History stays bounded: the leader compacts automatically (etcd's
//! `--auto-compaction-*`), and compacted history gives its disk space back.

use std::time::Duration;

use berth_proto::etcdserverpb::*;
use berth_store::config::AutoCompaction;
use berth_store::testing::*;
use berth_testkit::{eventually, init_tracing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_compacts_history_older_than_the_retention() {
    init_tracing();
    let retention = Duration::from_secs(2);
    let c = Cluster::start(3, |cfg| cfg.auto_compaction = AutoCompaction::Periodic(retention)).await;
    let leader = c.leader().await;
    let n = c.node(leader);
    n.put(put("k", "1")).await.unwrap();
    let early = n.revision();
    // Keep writing: once `retention` has passed, history up to (at least) `early` goes.
    let compacted = eventually(Duration::from_secs(20), "an automatic compaction", async || {
        n.put(put("k", "more")).await.ok()?;
        (n.compacted_revision() >= early).then(|| n.compacted_revision())
    })
    .await;
    // Never past what the retention keeps: the latest writes stay readable at their revision.
    assert!(compacted < n.revision());
    let err = n.range(RangeRequest { key: b"k".to_vec(), revision: early - 1, ..Default::default() }).await;
    assert!(matches!(err, Err(berth_store::StoreError::Compacted { .. })), "{err:?}");
    // Every replica applied the same compaction.
    replicas_agree(&c).await;
    for (_, m) in c.running() {
        assert!(m.compacted_revision() >= early);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_gives_its_space_back() {
    init_tracing();
    let c = Cluster::start(1, |_| {}).await;
    let n = c.node(0);
    let value = "v".repeat(4096);
    for _ in 0..2000 {
        n.put(put("churn", &value)).await.unwrap();
    }
    n.defragment().await.unwrap();
    let before = n.engine().size_bytes();
    n.compact(CompactionRequest { revision: n.revision(), physical: true }).await.unwrap();
    // The member reclaims in the background after applying a compaction; Defragment does
    // it at once.
    n.defragment().await.unwrap();
    let after = n.engine().size_bytes();
    // 1,999 superseded versions of 4 KiB; the Raft log (purged only after snapshots) still
    // holds its copy of them.
    let history = 1999 * 4096;
    assert!(before - after > history * 8 / 10, "{before} bytes before compaction, {after} after");
    assert_eq!(value_of(n, "churn", false).await.as_deref(), Some(value.as_str()));
}
