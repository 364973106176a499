//! In-process 3-member clusters: replication, forwarding, failover, restart, snapshot
//! catch-up, membership changes, partitions and leases across leader changes.

use std::time::Duration;

use berth_proto::etcdserverpb::*;
use berth_store::testing::*;
use berth_store::StoreError;
use berth_testkit::{eventually, init_tracing};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_replicate_and_followers_forward_and_read_linearizably() {
    init_tracing();
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = c.follower_of(leader);
    // A write sent to a follower is forwarded to the leader.
    let resp = c.node(follower).put(put("k", "from-follower")).await.unwrap();
    let rev = resp.header.unwrap().revision;
    // Linearizable reads on every member see it immediately (read index).
    for (_, n) in c.running() {
        assert_eq!(value_of(n, "k", false).await.as_deref(), Some("from-follower"));
    }
    // Serializable reads converge.
    for (_, n) in c.running() {
        eventually(Duration::from_secs(5), "serializable read catches up", async || {
            (value_of(n, "k", true).await.as_deref() == Some("from-follower")).then_some(())
        })
        .await;
    }
    // Every member reports the same revision and the same hash.
    let mut hashes = vec![];
    for (_, n) in c.running() {
        eventually(Duration::from_secs(5), "applied everywhere", async || (n.revision() == rev).then_some(())).await;
        hashes.push(n.hash_kv(rev).await.unwrap().hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "replicas differ: {hashes:?}");
    // Txn through a follower.
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b"k".to_vec(),
            target: compare::CompareTarget::Value as i32,
            result: compare::CompareResult::Equal as i32,
            target_union: Some(compare::TargetUnion::Value(b"from-follower".to_vec())),
            range_end: vec![],
        }],
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put("k2", "txn"))) }],
        failure: vec![],
    };
    assert!(c.node(follower).txn(txn).await.unwrap().succeeded);
    assert_eq!(value_of(c.node(leader), "k2", false).await.as_deref(), Some("txn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_elects_a_new_leader_and_the_old_one_catches_up() {
    init_tracing();
    let mut c = Cluster::start(3, |_| {}).await;
    let old = c.leader().await;
    for i in 0..20 {
        c.node(old).put(put(&format!("before/{i}"), "v")).await.unwrap();
    }
    c.stop(old).await;
    let new = c.leader().await;
    assert_ne!(new, old);
    for i in 0..20 {
        c.node(new).put(put(&format!("after/{i}"), "v")).await.unwrap();
    }
    c.restart(old).await;
    let restarted = c.node(old).clone();
    eventually(Duration::from_secs(15), "restarted member catches up", async || {
        (value_of(&restarted, "after/19", true).await.is_some()).then_some(())
    })
    .await;
    // Acknowledged writes from before the kill survived on it too.
    assert_eq!(value_of(&restarted, "before/0", true).await.as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_member_catches_up_by_snapshot_after_log_purge() {
    init_tracing();
    let mut c = Cluster::start(3, |cfg| {
        cfg.snapshot_count = 50;
        cfg.snapshot_catchup_entries = 10;
    })
    .await;
    let leader = c.leader().await;
    let lagging = c.follower_of(leader);
    c.stop(lagging).await;
    for i in 0..300 {
        c.node(leader).put(put(&format!("s/{i:03}"), &"x".repeat(100))).await.unwrap();
    }
    // The leader has snapshotted and purged its log past what the lagging member has.
    let leader_node = c.node(leader).clone();
    eventually(Duration::from_secs(10), "the leader snapshots and purges its log", async || {
        leader_node.raft().metrics().borrow().purged.filter(|p| p.index > 50)
    })
    .await;
    c.restart(lagging).await;
    let node = c.node(lagging).clone();
    eventually(Duration::from_secs(20), "lagging member has everything", async || {
        (value_of(&node, "s/299", true).await.is_some()).then_some(())
    })
    .await;
    // openraft publishes metrics after the install is applied: poll, don't sample once.
    eventually(Duration::from_secs(5), "caught up through a snapshot install", async || {
        node.raft().metrics().borrow().snapshot.map(|_| ())
    })
    .await;
    let rev = c.node(leader).revision();
    eventually(Duration::from_secs(10), "same revision", async || (node.revision() == rev).then_some(())).await;
    assert_eq!(node.hash_kv(rev).await.unwrap().hash, c.node(leader).hash_kv(rev).await.unwrap().hash);
    let count = node
        .range(RangeRequest {
            key: b"s/".to_vec(),
            range_end: b"s0".to_vec(),
            count_only: true,
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .count;
    assert_eq!(count, 300);
}

/// Cuts member `index` off from every other member.
fn cut_off(c: &Cluster, index: usize) {
    let id = c.node(index).id;
    for (_, n) in c.running() {
        if n.id != id {
            c.faults.cut(id, n.id);
        }
    }
}

/// The leader the members other than `excluded` elect.
async fn majority_leader(c: &Cluster, excluded: usize) -> usize {
    let majority: Vec<usize> = c.running().map(|(i, _)| i).filter(|i| *i != excluded).collect();
    eventually(Duration::from_secs(15), "majority leader", async || {
        majority.iter().copied().find(|i| c.node(*i).is_leader())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_loses_writes_and_majority_moves_on() {
    init_tracing();
    let c = Cluster::start(3, |_| {}).await;
    let old = c.leader().await;
    cut_off(&c, old);
    // The majority elects a new leader and accepts writes.
    let new = majority_leader(&c, old).await;
    c.node(new).put(put("side", "majority")).await.unwrap();
    // The isolated old leader cannot commit: its write fails (never acknowledged).
    let lost = c.node(old).put(put("side", "minority")).await;
    assert!(matches!(lost, Err(StoreError::Timeout) | Err(StoreError::NoLeader)), "{lost:?}");
    // Nor serve a linearizable read.
    assert!(c.node(old).range(get("side")).await.is_err());
    c.faults.heal();
    let healed = c.node(old).clone();
    eventually(Duration::from_secs(15), "old leader converges", async || {
        (value_of(&healed, "side", false).await.as_deref() == Some("majority")).then_some(())
    })
    .await;
}

/// A write whose entry reached a leader's log, and was then truncated there by a newer
/// leader, is answered indeterminate (`Timeout`), never re-proposed. openraft reports the
/// truncation as `ForwardToLeader`, exactly as it reports "not leader" for a request it
/// refused; the store used to retry both. But a truncated copy proves nothing about the
/// other copies: with five members the entry can sit on the deposed leader and one follower,
/// be truncated on the former by a leader the other three elected, and still commit when
/// that follower wins the next election — a retry then applies the write twice (a guarded
/// txn answered "guard failed" for the write that took effect). Here (three members) the
/// entry has a single copy, which makes the truncation deterministic to stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_truncated_from_a_deposed_leaders_log_is_indeterminate() {
    init_tracing();
    let c = Cluster::start(3, |_| {}).await;
    let old = c.leader().await;
    cut_off(&c, old);
    // A guarded create on the isolated leader: appended to its log, replicated nowhere.
    let isolated = c.node(old).clone();
    let write = tokio::spawn(async move {
        let compare = Compare {
            key: b"only-once".to_vec(),
            target: compare::CompareTarget::Create as i32,
            result: compare::CompareResult::Equal as i32,
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            ..Default::default()
        };
        let create = RequestOp { request: Some(request_op::Request::RequestPut(put("only-once", "v"))) };
        isolated.txn(TxnRequest { compare: vec![compare], success: vec![create], failure: vec![] }).await
    });
    let new = majority_leader(&c, old).await;
    // The new leader's first replication to the old one truncates the entry there.
    c.faults.heal();
    let answer = tokio::time::timeout(Duration::from_secs(15), write).await.expect("answered").unwrap();
    assert!(
        matches!(answer, Err(StoreError::Timeout)),
        "a write truncated from the proposer's log must be indeterminate, not re-proposed: {answer:?}"
    );
    c.node(new).put(put("after", "heal")).await.unwrap();
    let revision = replicas_agree(&c).await;
    assert!(revision > 0);
    // Here its only copy was truncated: it never took effect.
    assert_eq!(value_of(c.node(new), "only-once", false).await, None);
}

/// Found by the Jepsen harness: with the leader behind a DROP firewall (requests vanish,
/// nothing answers), a follower forwarded its read index to the old leader and waited the
/// whole request timeout, failing reads long after the majority had a new leader. The read
/// must instead move on to the new leader and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_the_majority_survive_a_silent_old_leader() {
    init_tracing();
    let c = Cluster::start(3, |_| {}).await;
    let old = c.leader().await;
    c.node(old).put(put("k", "before")).await.unwrap();
    let old_id = c.node(old).id;
    for (_, n) in c.running() {
        if n.id != old_id {
            c.faults.silence(old_id, n.id);
        }
    }
    // Issued at once, while the follower still believes in the old leader.
    let follower = c.follower_of(old);
    let read = c.node(follower).range(get("k")).await;
    assert!(read.is_ok(), "a linearizable read on the majority side failed: {read:?}");
    c.faults.heal();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_add_learner_promote_and_remove() {
    init_tracing();
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    c.node(leader).put(put("m", "1")).await.unwrap();
    // Add a fourth member through a follower (forwarded), as a learner.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let follower = c.follower_of(leader);
    let added = c
        .node(follower)
        .member_add(MemberAddRequest { peer_ur_ls: vec![url.clone()], is_learner: true })
        .await
        .unwrap();
    let new_id = added.member.unwrap().id;
    assert_eq!(added.members.len(), 4);
    assert_eq!(
        c.node(leader)
            .member_add(MemberAddRequest { peer_ur_ls: vec![url.clone()], is_learner: true })
            .await
            .unwrap_err(),
        StoreError::PeerUrlExists
    );
    // Start it with --initial-cluster-state existing semantics.
    let dir = tempfile::tempdir().unwrap();
    let mut config = berth_store::StoreConfig::single("m3", dir.path().to_path_buf(), "http://127.0.0.1:1", &url);
    config.initial_cluster = c
        .members
        .iter()
        .map(|m| (m.name.clone(), vec![m.peer_url.clone()]))
        .chain([("m3".to_string(), vec![url.clone()])])
        .collect();
    config.initial_cluster_state = berth_store::ClusterState::Existing;
    tune(&mut config);
    let node = berth_store::StoreNode::start(config.clone(), listener, c.faults.clone()).await.unwrap();
    assert_eq!(node.id, new_id, "the new member found its id among the peers");
    eventually(Duration::from_secs(10), "learner catches up", async || {
        (value_of(&node, "m", true).await.is_some()).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "learner promoted", async || c.node(leader).member_promote(new_id).await.ok())
        .await;
    let members = c.node(leader).member_list(true).await.unwrap().members;
    assert!(members.iter().all(|m| !m.is_learner));
    assert_eq!(c.node(leader).member_promote(new_id).await.unwrap_err(), StoreError::MemberNotLearner);
    // Named once it published its attributes.
    eventually(Duration::from_secs(10), "new member published its name", async || {
        let list = c.node(leader).member_list(false).await.ok()?;
        list.members.iter().any(|m| m.id == new_id && m.name == "m3").then_some(())
    })
    .await;
    // Its peer URL can be updated (etcd's member update); a taken URL is refused.
    let updated = c
        .node(follower)
        .member_update(MemberUpdateRequest { id: new_id, peer_ur_ls: vec![url.replace("127.0.0.1", "localhost")] })
        .await
        .unwrap();
    assert!(updated.members.iter().any(|m| m.id == new_id && m.peer_ur_ls[0].contains("localhost")));
    let taken = c.members[0].peer_url.clone();
    assert_eq!(
        c.node(leader).member_update(MemberUpdateRequest { id: new_id, peer_ur_ls: vec![taken] }).await.unwrap_err(),
        StoreError::PeerUrlExists
    );
    assert_eq!(
        c.node(leader).member_update(MemberUpdateRequest { id: 42, peer_ur_ls: vec![url.clone()] }).await.unwrap_err(),
        StoreError::MemberNotFound
    );
    // Remove it again.
    let after = c.node(leader).member_remove(new_id).await.unwrap();
    assert_eq!(after.members.len(), 3);
    assert_eq!(c.node(leader).member_remove(new_id).await.unwrap_err(), StoreError::MemberNotFound);
    node.shutdown().await;
    c.node(leader).put(put("m", "2")).await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_change_never_expires_a_live_lease_and_expiry_deletes_keys() {
    init_tracing();
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = c.follower_of(leader);
    let lease = c.node(follower).lease_grant(LeaseGrantRequest { ttl: 3, id: 0 }).await.unwrap();
    assert!(lease.ttl >= 3);
    c.node(follower)
        .put(PutRequest { key: b"eph".to_vec(), value: b"v".to_vec(), lease: lease.id, ..Default::default() })
        .await
        .unwrap();
    let (mut watch, mut events) = c.node(follower).watch();
    watch.create(WatchCreateRequest { key: b"eph".to_vec(), ..Default::default() }).await;
    assert!(events.recv().await.unwrap().created);
    // Keep it alive through a follower while the leader dies.
    assert!(c.node(follower).lease_keep_alive(lease.id).await.unwrap().ttl > 0);
    c.stop(leader).await;
    let new = c.leader().await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ka = c.node(new).lease_keep_alive(lease.id).await.unwrap();
        assert!(ka.ttl > 0, "lease alive across the leader change");
    }
    assert_eq!(value_of(c.node(new), "eph", false).await.as_deref(), Some("v"));
    let ttl = c.node(new).lease_time_to_live(LeaseTimeToLiveRequest { id: lease.id, keys: true }).await.unwrap();
    assert_eq!(ttl.keys, vec![b"eph".to_vec()]);
    // Stop keeping it alive: it expires, the key goes, watchers see the DELETE.
    let deleted = eventually(Duration::from_secs(15), "lease expiry", async || {
        let resp = tokio::time::timeout(Duration::from_millis(200), events.recv()).await.ok()??;
        resp.events.into_iter().find(|e| e.r#type == berth_proto::mvccpb::event::EventType::Delete as i32)
    })
    .await;
    assert_eq!(deleted.kv.unwrap().key, b"eph");
    assert_eq!(
        c.node(new).lease_time_to_live(LeaseTimeToLiveRequest { id: lease.id, keys: false }).await.unwrap().ttl,
        -1
    );
    assert_eq!(c.node(new).lease_keep_alive(lease.id).await.unwrap().ttl, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_restart_keeps_acknowledged_writes_and_watches_resume() {
    init_tracing();
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = c.follower_of(leader);
    let mut acked = vec![];
    for i in 0..50 {
        let r = c.node(leader).put(put(&format!("w/{i:02}"), "v")).await.unwrap();
        acked.push(r.header.unwrap().revision);
    }
    c.stop(follower).await;
    c.restart(follower).await;
    let node = c.node(follower).clone();
    // A watch on the restarted follower from the first revision sees every write, in order.
    let (mut w, mut rx) = node.watch();
    w.create(WatchCreateRequest {
        key: b"w/".to_vec(),
        range_end: b"w0".to_vec(),
        start_revision: acked[0],
        ..Default::default()
    })
    .await;
    let mut seen = vec![];
    while seen.len() < 50 {
        let resp = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        seen.extend(resp.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    assert_eq!(seen, acked);
}

/// A peer request stamped with another cluster's ID, or with none, is refused before it
/// reaches Raft (etcd's "cluster ID mismatch"); only `ClusterInfo`, which a joining member
/// asks to learn the ID, is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_refuse_requests_from_another_cluster() {
    use berth_proto::berthraftpb::raft_peer_client::RaftPeerClient;
    use berth_proto::berthraftpb::{ClusterInfoRequest, RaftPayload, ReadIndexRequest};
    use berth_store::raft::peers::CLUSTER_ID_METADATA;

    init_tracing();
    let ours = Cluster::start(3, |_| {}).await;
    let theirs = Cluster::start(1, |config| config.initial_cluster_token = "another-cluster".into()).await;
    let leader = ours.leader().await;
    let (our_id, their_id) = (ours.node(leader).cluster_id, theirs.node(0).cluster_id);
    assert_ne!(our_id, their_id);
    let term_before = ours.node(leader).raft().metrics().borrow().current_term;

    let mut client = RaftPeerClient::connect(ours.members[leader].peer_url.clone()).await.unwrap();
    fn stamped<T>(cluster: Option<u64>, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(id) = cluster {
            request.metadata_mut().insert(CLUSTER_ID_METADATA, format!("{id:x}").parse().unwrap());
        }
        request
    }
    // This cluster's own stamp is served.
    client.read_index(stamped(Some(our_id), ReadIndexRequest {})).await.expect("a member of the cluster is served");
    // Another cluster's stamp, no stamp or a garbled one: refused, whatever the RPC.
    for cluster in [Some(their_id), None] {
        let refused = client.read_index(stamped(cluster, ReadIndexRequest {})).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("cluster ID mismatch"), "{}", refused.message());
        let vote = client.vote(stamped(cluster, RaftPayload { data: b"garbage".to_vec() })).await.unwrap_err();
        assert_eq!(vote.code(), tonic::Code::FailedPrecondition, "{vote:?}");
    }
    let mut garbled = tonic::Request::new(ReadIndexRequest {});
    garbled.metadata_mut().insert(CLUSTER_ID_METADATA, "not-hex".parse().unwrap());
    let refused = client.read_index(garbled).await.unwrap_err();
    assert!(refused.message().contains("not a hexadecimal cluster ID"), "{}", refused.message());
    // A joining member learns the cluster ID from ClusterInfo, which needs no stamp.
    let info = client.cluster_info(ClusterInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.cluster_id, our_id);
    // Nothing reached Raft: the term did not move, and the cluster still serves writes.
    assert_eq!(ours.node(leader).raft().metrics().borrow().current_term, term_before);
    ours.node(leader).put(put("still", "serving")).await.unwrap();
}
