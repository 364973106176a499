//! One running store member: the openraft node with its storage and the background tasks;
//! and the in-process `Store` API every front end (etcd gRPC, the peer port, the Kubernetes
//! API server, tests) calls. The node never calls its servers: whoever starts it starts the
//! peer server through the hook [`StoreNode::open`] takes (see `server::peer`).
//!
//! The API is split by concern: [`propose`] (writes through the leader, linearizable read
//! barrier), [`kv`], [`leases`], [`members`], [`maintenance`].

pub mod bootstrap;
pub mod compactor;
mod kv;
mod leases;
mod maintenance;
mod members;
pub(crate) mod propose;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::{InternalRequest, MemberAttributes};
use berth_proto::etcdserverpb::ResponseHeader;
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use maintenance::{SnapshotBackup, StatusReport, ETCD_API_VERSION};
pub(crate) use propose::Attempt;

use crate::config::StoreConfig;
use crate::engine::rocks::RocksEngine;
use crate::engine::KvEngine;
use crate::error::{Result, StoreError};
use crate::lease::Lessor;
use crate::metrics::StoreMetrics;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::peers::{NetworkFaults, PeerClients};
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::{Shared, StateMachine};
use crate::raft::types::Raft;
use crate::raft::PeerNode;
use crate::watch::{HubConfig, WatchHub};

/// A handle to a running member; cheap to clone.
pub type Store = Arc<StoreNode>;

pub struct StoreNode {
    pub id: u64,
    pub cluster_id: u64,
    pub config: StoreConfig,
    raft: Raft,
    shared: Arc<Shared>,
    log: LogStore,
    snapshots: SnapshotDir,
    peers: Arc<PeerClients>,
    read_index: propose::ReadIndexQueue,
    batcher: propose::Batcher,
    shutdown: CancellationToken,
}

/// How often the primary looks for expired leases.
const LEASE_SWEEP: Duration = Duration::from_millis(250);
/// Most lease revokes proposed per sweep (etcd bounds revokes per second likewise).
const MAX_REVOKES_PER_SWEEP: usize = 500;

impl StoreNode {
    /// Opens storage, resolves identity and starts Raft; calls `start_peer_server` once the
    /// node exists and before it bootstraps a cluster or starts its background tasks (the
    /// order a member needs: peers can reach it before it campaigns). Returns once the member
    /// runs (it may not have a leader yet).
    pub(crate) async fn open(
        config: StoreConfig,
        faults: Arc<NetworkFaults>,
        start_peer_server: impl FnOnce(&Store),
    ) -> Result<Store> {
        config.validate()?;
        config.check_schemes(config.tls.is_some())?;
        let engine: Arc<dyn KvEngine> = Arc::new(RocksEngine::open(&config.data_dir.join("db"))?);
        let identity = bootstrap::resolve(&config, &*engine).await?;
        let metrics = Arc::new(StoreMetrics::new());
        let hub = WatchHub::new(
            engine.clone(),
            HubConfig { progress_notify_interval: config.watch_progress_notify_interval, ..HubConfig::default() },
        )?;
        hub.set_identity(identity.cluster_id, identity.member_id);
        let (applied, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            hub,
            lessor: Arc::new(Lessor::new(Lessor::min_ttl_for(config.election_timeout))),
            metrics,
            revision: Default::default(),
            compacted: Default::default(),
            applied,
            requests_since_snapshot: Default::default(),
            reclaiming: Default::default(),
        });
        let log = LogStore::open(engine.clone(), shared.metrics.clone())?;
        let snapshots = SnapshotDir::open(config.data_dir.join("snapshots"))?;
        let state_machine = StateMachine::open(shared.clone(), snapshots.clone())?;
        let peers = Arc::new(PeerClients::new(
            identity.member_id,
            identity.cluster_id,
            faults,
            config.tls.as_ref().map(|t| t.dial.clone()),
        ));
        let raft_config = openraft::Config {
            cluster_name: config.initial_cluster_token.clone(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: openraft_election_timeouts(config.election_timeout).0,
            election_timeout_max: openraft_election_timeouts(config.election_timeout).1,
            install_snapshot_timeout: 30_000,
            max_payload_entries: 1000,
            replication_lag_threshold: config.snapshot_catchup_entries,
            // Snapshots are triggered by applied requests (see `snapshot_trigger`), not entries.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
            // Purge in steps proportional to the snapshot interval (openraft's default of
            // 256 would keep small-interval logs forever).
            purge_batch_size: (config.snapshot_count / 4).clamp(1, 256),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let raft = Raft::new(
            identity.member_id,
            Arc::new(raft_config),
            Network { peers: peers.clone() },
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| StoreError::Raft(e.to_string()))?;

        let node = Arc::new_cyclic(|weak| StoreNode {
            id: identity.member_id,
            cluster_id: identity.cluster_id,
            config: config.clone(),
            raft,
            shared,
            log,
            snapshots,
            peers,
            read_index: propose::ReadIndexQueue::spawn(weak.clone()),
            batcher: propose::Batcher::spawn(weak.clone()),
            shutdown: CancellationToken::new(),
        });

        start_peer_server(&node);

        if let Some(members) = identity.initial_members {
            let initialized = node.raft.is_initialized().await.map_err(|e| StoreError::Raft(e.to_string()))?;
            if !initialized {
                tracing::info!(members = members.len(), "bootstrapping a new cluster");
                if let Err(e) = node.raft.initialize(members).await {
                    // Another initial member's bootstrap entry may have arrived first.
                    tracing::debug!(error = %e, "initialize");
                }
            }
        }
        node.spawn_background_tasks();
        tracing::info!(
            member = format!("{:x}", node.id),
            cluster = format!("{:x}", node.cluster_id),
            name = %config.name,
            "store member started"
        );
        Ok(node)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.shared.hub
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.shared.metrics
    }

    pub fn engine(&self) -> &Arc<dyn KvEngine> {
        &self.shared.engine
    }

    /// Fault hooks (tests).
    pub fn faults(&self) -> &Arc<NetworkFaults> {
        &self.peers.faults
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The member's view of the leader; `None` too once this member's Raft core stopped
    /// (its last view of the leader is stale from then on).
    pub fn leader(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.running_state.as_ref().ok().and(m.current_leader)
    }

    /// Why this member can no longer serve, once its Raft core stopped (only local storage
    /// failures or corruption stop it; see `raft::state_machine`).
    pub fn stopped_reason(&self) -> Option<String> {
        self.raft.metrics().borrow().running_state.as_ref().err().map(|fatal| fatal.to_string())
    }

    /// etcd's `/health` verdict: healthy while the Raft core runs and knows a leader.
    pub fn health(&self) -> std::result::Result<(), String> {
        if let Some(reason) = self.stopped_reason() {
            return Err(format!("RAFT STOPPED: {reason}"));
        }
        match self.leader() {
            Some(_) => Ok(()),
            None => Err("RAFT NO LEADER".into()),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn revision(&self) -> i64 {
        self.shared.revision.load(Ordering::SeqCst)
    }

    pub fn compacted_revision(&self) -> i64 {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// A response header for this member at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.current_term(),
        })
    }

    /// The peer address of member `id` per the current membership.
    fn peer_node(&self, id: u64) -> Option<PeerNode> {
        self.raft.metrics().borrow().membership_config.membership().get_node(&id).cloned()
    }

    /// Stops Raft and every task of this member. Idempotent.
    pub async fn shutdown(&self) {
        if self.shutdown.is_cancelled() {
            return;
        }
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let _ = self.shared.engine.sync_wal();
        tracing::info!(member = format!("{:x}", self.id), "store member stopped");
    }

    fn spawn_background_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let token = self.shutdown.clone();
        tokio::spawn(leadership_loop(weak.clone(), token.clone()));
        tokio::spawn(publish_attributes(weak.clone(), token.clone()));
        if self.config.join.is_some() {
            tokio::spawn(promote_self(weak.clone(), token.clone()));
        }
        tokio::spawn(snapshot_trigger(weak.clone(), token.clone()));
        tokio::spawn(compactor::run(weak.clone(), self.config.auto_compaction, token.clone()));
        let hub = self.shared.hub.clone();
        let interval = self.config.watch_progress_notify_interval;
        let t = token.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = tick.tick() => hub.tick_progress(),
                }
            }
        });
    }
}

/// Follows Raft's metrics: publishes term and leader to metrics and watch headers, and runs
/// the primary's duties (lease expiry) exactly while this member leads.
async fn leadership_loop(node: std::sync::Weak<StoreNode>, shutdown: CancellationToken) {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft.metrics()) else {
        return;
    };
    let mut primary: Option<CancellationToken> = None;
    let mut last_leader = None;
    loop {
        let (state, term, leader) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term, m.current_leader)
        };
        let Some(n) = node.upgrade() else { return };
        n.shared.hub.set_term(term);
        if leader != last_leader {
            if leader.is_some() {
                n.shared.metrics.leader_changes.inc();
            }
            last_leader = leader;
        }
        let leading = state == ServerState::Leader;
        if leading && primary.is_none() {
            let token = shutdown.child_token();
            tokio::spawn(run_primary(Arc::downgrade(&n), token.clone()));
            primary = Some(token);
        } else if !leading {
            if let Some(token) = primary.take() {
                token.cancel();
                n.shared.lessor.demote();
                tracing::info!(term, "no longer leader: lease expiry stopped");
            }
        }
        drop(n);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// The leader's duties. Starts once the leader has applied its term's first entry (so the
/// lease set is current), then gives every lease a full TTL and sweeps expired ones.
async fn run_primary(node: std::sync::Weak<StoreNode>, token: CancellationToken) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let ready = tokio::select! {
            _ = token.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(5), n.raft.ensure_linearizable()) => r,
        };
        if matches!(ready, Ok(Ok(_))) {
            n.shared.lessor.promote();
            tracing::info!(term = n.current_term(), "leading: lease expiry started");
            break;
        }
        drop(n);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sweep = tokio::time::interval(LEASE_SWEEP);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = sweep.tick() => {}
        }
        let Some(n) = node.upgrade() else { return };
        for id in n.shared.lessor.take_expired(MAX_REVOKES_PER_SWEEP) {
            crate::failpoints::hit(crate::failpoints::LEASE_EXPIRY);
            let n = n.clone();
            tokio::spawn(async move {
                let req = InternalRequest {
                    request: Some(Request::LeaseRevoke(berth_proto::etcdserverpb::LeaseRevokeRequest { id })),
                };
                match n.propose(req).await {
                    Ok(_) | Err(StoreError::LeaseNotFound) => {
                        tracing::debug!(lease = id, "expired lease revoked")
                    }
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry");
                        n.shared.lessor.revoke_failed(id);
                    }
                }
            });
        }
    }
}

/// Announces this member's name and client URLs (etcd's publish), retrying until it lands.
async fn publish_attributes(node: std::sync::Weak<StoreNode>, shutdown: CancellationToken) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let attrs = MemberAttributes {
            id: n.id,
            name: n.config.name.clone(),
            client_urls: n.config.advertise_client_urls.clone(),
        };
        let req = InternalRequest { request: Some(Request::PublishMember(attrs)) };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = n.propose(req) => r,
        };
        match result {
            Ok(_) => {
                tracing::info!(name = %n.config.name, "published member attributes");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "publishing member attributes; retrying"),
        }
        drop(n);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// `--join`: once caught up, promote this learner to voter (retrying while not ready).
async fn promote_self(node: std::sync::Weak<StoreNode>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let Some(n) = node.upgrade() else { return };
        match n.member_promote(n.id).await {
            Ok(_) => {
                tracing::info!("promoted from learner to voting member");
                return;
            }
            Err(StoreError::MemberNotLearner) => return,
            Err(StoreError::MemberNotFound) => {
                tracing::error!("this member is not in the cluster any more; not promoting");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "not promoted yet"),
        }
    }
}

impl StoreNode {
    pub(crate) fn snapshot_dir(&self) -> &SnapshotDir {
        &self.snapshots
    }
}

/// Log bytes between snapshots at most, whatever `--snapshot-count` says: bounds disk use
/// and recovery time for large values, and keeps the log within its memtable (see
/// `engine::rocks`).
const SNAPSHOT_LOG_BYTES: u64 = 64 << 20;

/// Asks Raft for a snapshot every `--snapshot-count` applied client requests (etcd's
/// meaning of the flag; a log entry may carry many requests), or every
/// [`SNAPSHOT_LOG_BYTES`] of log.
async fn snapshot_trigger(node: std::sync::Weak<StoreNode>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(n) = node.upgrade() else { return };
        let due = n.shared.requests_since_snapshot.load(Ordering::Relaxed) >= n.config.snapshot_count
            || n.log.appended_bytes() >= SNAPSHOT_LOG_BYTES;
        if due {
            // Reset here too so a slow build is not requested again every tick.
            n.shared.requests_since_snapshot.store(0, Ordering::Relaxed);
            n.log.take_appended_bytes();
            if let Err(e) = n.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "triggering a snapshot");
            }
        }
    }
}

/// openraft's (min, max) election timeouts, in ms, for etcd's `--election-timeout` E.
///
/// openraft 0.9 makes a follower that knows a leader wait `leader_lease + timeout` before it
/// campaigns, with `leader_lease = max` and `timeout` drawn from [min, max): with etcd's
/// reading (E..2E) a lost leader is replaced only after 3E–4E, and the Jepsen harness saw
/// ~4 s without a leader in a 3-node partition. Halving keeps etcd's behaviour instead:
/// campaigns start 1.25E–1.5E after the last heartbeat (etcd: E–2E), and the other
/// followers' leases (0.75E) have expired by then, so the first campaign can win.
pub fn openraft_election_timeouts(election_timeout: std::time::Duration) -> (u64, u64) {
    let e = election_timeout.as_millis() as u64;
    (e / 2, e * 3 / 4)
}
