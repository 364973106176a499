//! Prometheus metrics of one store member (`/metrics`, text exposition format).
//!
//! Counters and histograms are updated on the request and apply paths; gauges that mirror
//! Raft state are refreshed at scrape time from openraft's metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct StoreMetrics {
    registry: Registry,
    pub raft_term: Gauge,
    pub leader_id: Gauge<u64, AtomicU64>,
    pub is_leader: Gauge,
    pub has_leader: Gauge,
    pub leader_changes: Counter,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub last_log_index: Gauge,
    pub proposals_committed: Counter,
    pub proposals_failed: Counter,
    pub apply_duration: Histogram,
    pub wal_fsync_duration: Histogram,
    pub db_size_bytes: Gauge,
    pub mvcc_revision: Gauge,
    pub mvcc_compact_revision: Gauge,
    pub watchers: Gauge,
    pub unsynced_watchers: Gauge,
    pub watch_streams: Gauge,
    pub slow_watcher_moves: Gauge,
    pub leases: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreMetrics {
    pub fn new() -> StoreMetrics {
        let mut registry = Registry::with_prefix("berth");
        let m = StoreMetrics {
            raft_term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            has_leader: Gauge::default(),
            leader_changes: Counter::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            proposals_committed: Counter::default(),
            proposals_failed: Counter::default(),
            apply_duration: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            wal_fsync_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            db_size_bytes: Gauge::default(),
            mvcc_revision: Gauge::default(),
            mvcc_compact_revision: Gauge::default(),
            watchers: Gauge::default(),
            unsynced_watchers: Gauge::default(),
            watch_streams: Gauge::default(),
            slow_watcher_moves: Gauge::default(),
            leases: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("raft_term", "Current Raft term", m.raft_term.clone());
        registry.register(
            "raft_leader_id",
            "Member id of the current leader (0: none)",
            m.leader_id.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 if this member is the leader",
            m.is_leader.clone(),
        );
        registry.register(
            "raft_has_leader",
            "1 if a leader is known",
            m.has_leader.clone(),
        );
        registry.register(
            "raft_leader_changes_seen",
            "Leader changes seen by this member",
            m.leader_changes.clone(),
        );
        registry.register(
            "raft_commit_index",
            "Highest log index known committed",
            m.commit_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Highest log index applied to the state machine",
            m.applied_index.clone(),
        );
        registry.register(
            "raft_last_log_index",
            "Last index in the local log",
            m.last_log_index.clone(),
        );
        registry.register(
            "proposals_committed",
            "Entries committed and applied",
            m.proposals_committed.clone(),
        );
        registry.register(
            "proposals_failed",
            "Proposals that failed (no leader, timeout, shutdown)",
            m.proposals_failed.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Time to apply one log entry",
            m.apply_duration.clone(),
        );
        registry.register(
            "wal_fsync_duration_seconds",
            "Time of one group-commit fsync",
            m.wal_fsync_duration.clone(),
        );
        registry.register(
            "db_size_bytes",
            "Storage engine size on disk",
            m.db_size_bytes.clone(),
        );
        registry.register(
            "mvcc_revision",
            "Current MVCC revision",
            m.mvcc_revision.clone(),
        );
        registry.register(
            "mvcc_compact_revision",
            "Last compacted revision",
            m.mvcc_compact_revision.clone(),
        );
        registry.register("watchers", "Active watchers", m.watchers.clone());
        registry.register(
            "unsynced_watchers",
            "Watchers catching up from history",
            m.unsynced_watchers.clone(),
        );
        registry.register(
            "watch_streams",
            "Open watch streams",
            m.watch_streams.clone(),
        );
        registry.register(
            "slow_watcher_moves",
            "Times a slow watcher moved to catch-up",
            m.slow_watcher_moves.clone(),
        );
        registry.register("leases", "Live leases", m.leases.clone());
        StoreMetrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
