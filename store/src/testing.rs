//! Test support (the `testing` feature): an in-process cluster of store members on
//! loopback, with a shared fault injector to cut links, and the request helpers the store's
//! tests share. Every member is shut down when the cluster is dropped, also on test
//! failure. `berth_control::testing` starts its API servers on this cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::etcdserverpb::{PutRequest, RangeRequest};
use berth_testkit::eventually;

use crate::{NetworkFaults, Store, StoreConfig, StoreError, StoreNode};
use tokio::net::TcpListener;

/// One member: its data directory and configuration outlive a stop, so it can restart.
pub struct Member {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub peer_url: String,
    pub config: StoreConfig,
    pub node: Option<Store>,
}

/// Members `m0`, `m1`, … of one Raft group on loopback.
pub struct Cluster {
    pub members: Vec<Member>,
    pub faults: Arc<NetworkFaults>,
}

/// Timeouts for tests.
pub fn tune(config: &mut StoreConfig) {
    // Faster than etcd's defaults so tests converge quickly; same ratios.
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(5);
}

async fn free_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

impl Cluster {
    /// Starts `n` members (configured by [`tune`], then `adjust`) and waits for a leader.
    pub async fn start(n: usize, adjust: impl Fn(&mut StoreConfig)) -> Cluster {
        let faults = Arc::new(NetworkFaults::default());
        let mut listeners = Vec::new();
        let mut initial = Vec::new();
        for i in 0..n {
            let (l, url) = free_listener().await;
            initial.push((format!("m{i}"), vec![url.clone()]));
            listeners.push((l, url));
        }
        let mut members = Vec::new();
        let mut starts = Vec::new();
        for (i, (listener, url)) in listeners.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let name = format!("m{i}");
            let mut config = StoreConfig::single(&name, dir.path().to_path_buf(), "http://127.0.0.1:1", &url);
            config.initial_cluster = initial.clone();
            tune(&mut config);
            adjust(&mut config);
            let faults = faults.clone();
            let c = config.clone();
            starts.push(tokio::spawn(async move { StoreNode::start(c, listener, faults).await }));
            members.push(Member { name, dir, peer_url: url, config, node: None });
        }
        for (m, s) in members.iter_mut().zip(starts) {
            m.node = Some(s.await.unwrap().expect("member starts"));
        }
        let cluster = Cluster { members, faults };
        cluster.leader().await;
        cluster
    }

    /// The handle of running member `i`.
    pub fn node(&self, i: usize) -> &Store {
        self.members[i].node.as_ref().expect("member running")
    }

    /// The running members and their indexes.
    pub fn running(&self) -> impl Iterator<Item = (usize, &Store)> {
        self.members.iter().enumerate().filter_map(|(i, m)| m.node.as_ref().map(|n| (i, n)))
    }

    /// Index of the member every running member agrees leads (waits for it).
    pub async fn leader(&self) -> usize {
        eventually(Duration::from_secs(15), "an agreed leader", async || {
            let leaders: Vec<Option<u64>> = self.running().map(|(_, n)| n.leader()).collect();
            let first = leaders.first().copied().flatten()?;
            if !leaders.iter().all(|l| *l == Some(first)) {
                return None;
            }
            self.running().find(|(_, n)| n.id == first && n.is_leader()).map(|(i, _)| i)
        })
        .await
    }

    /// A running member other than `leader`.
    pub fn follower_of(&self, leader: usize) -> usize {
        self.running().map(|(i, _)| i).find(|i| *i != leader).expect("a follower")
    }

    /// Stops a member (like a crash: nothing is flushed beyond what was synced).
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.members[i].node.take() {
            node.shutdown().await;
        }
    }

    /// Restarts a stopped member on its old data directory and peer port.
    pub async fn restart(&mut self, i: usize) {
        let addr = self.members[i].peer_url.trim_start_matches("http://").to_string();
        let config = self.members[i].config.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        let node = loop {
            // The previous incarnation may still hold the port or the database lock for a
            // moment while its last tasks wind down.
            let attempt = async {
                let listener = TcpListener::bind(&addr).await.map_err(|e| StoreError::io("bind", e))?;
                StoreNode::start(config.clone(), listener, self.faults.clone()).await
            };
            match attempt.await {
                Ok(n) => break n,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "restart attempt");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("member {i} did not restart: {e}"),
            }
        };
        self.members[i].node = Some(node);
    }

    /// Stops every member.
    pub async fn shutdown(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.faults.heal();
        // The test runtime stops every task when it ends; cancelling the members' tokens
        // closes their servers and loops right away.
        for m in &mut self.members {
            if let Some(node) = m.node.take() {
                node.shutdown_token().cancel();
            }
        }
    }
}

/// A plain put of `key` = `value`.
pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

/// A linearizable read of `key`.
pub fn get(key: &str) -> RangeRequest {
    RangeRequest { key: key.into(), ..Default::default() }
}

/// `key`'s value on `node` (None when absent or the read fails).
pub async fn value_of(node: &Store, key: &str, serializable: bool) -> Option<String> {
    let resp = node.range(RangeRequest { key: key.into(), serializable, ..Default::default() }).await.ok()?;
    resp.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Waits until every running member has applied the same log index, then checks that
/// they hold the same data (etcd's `HashKV` at that revision). Returns the revision.
pub async fn replicas_agree(c: &Cluster) -> i64 {
    let (index, revision) = eventually(Duration::from_secs(20), "every member applied the same index", async || {
        let applied: Vec<(u64, i64)> = c.running().map(|(_, n)| (n.applied_index(), n.revision())).collect();
        let first = applied[0];
        applied.iter().all(|a| *a == first).then_some(first)
    })
    .await;
    let mut hashes = Vec::new();
    for (i, n) in c.running() {
        let h = n.hash_kv(revision).await.unwrap_or_else(|e| panic!("member {i} hash: {e}"));
        hashes.push((i, h.hash));
    }
    assert!(hashes.windows(2).all(|w| w[0].1 == w[1].1), "replicas differ at index {index}: {hashes:?}");
    revision
}
