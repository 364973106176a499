//! Prometheus metrics of one store member (`/metrics`, text exposition format).
//!
//! Counters and histograms are updated on the request and apply paths; gauges that mirror
//! Raft state are refreshed at scrape time from openraft's metrics.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct StoreMetrics {
    registry: Registry,
    pub raft_term: Gauge,
    /// `berth_raft_leader{leader="<hex id>"} 1` (ids are 64-bit; a gauge value cannot hold them).
    pub leader: Family<Vec<(String, String)>, Gauge>,
    pub is_leader: Gauge,
    pub has_leader: Gauge,
    pub stopped: Gauge,
    pub leader_changes: Counter,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub last_log_index: Gauge,
    pub proposals_committed: Counter,
    pub proposals_failed: Counter,
    pub apply_duration: Histogram,
    pub wal_fsync_duration: Histogram,
    pub wal_fsync_appends: Histogram,
    pub apply_batch_entries: Histogram,
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
            leader: Family::default(),
            is_leader: Gauge::default(),
            has_leader: Gauge::default(),
            stopped: Gauge::default(),
            leader_changes: Counter::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            proposals_committed: Counter::default(),
            proposals_failed: Counter::default(),
            apply_duration: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            wal_fsync_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            wal_fsync_appends: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            apply_batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
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
        registry.register("raft_leader", "The current leader, as a label", m.leader.clone());
        registry.register("raft_is_leader", "1 if this member is the leader", m.is_leader.clone());
        registry.register("raft_has_leader", "1 if a leader is known", m.has_leader.clone());
        registry.register(
            "raft_stopped",
            "1 if this member's Raft core stopped on a local storage failure (see /health)",
            m.stopped.clone(),
        );
        registry.register("raft_leader_changes_seen", "Leader changes seen by this member", m.leader_changes.clone());
        registry.register("raft_commit_index", "Highest log index known committed", m.commit_index.clone());
        registry.register(
            "raft_applied_index",
            "Highest log index applied to the state machine",
            m.applied_index.clone(),
        );
        registry.register("raft_last_log_index", "Last index in the local log", m.last_log_index.clone());
        registry.register("proposals_committed", "Entries committed and applied", m.proposals_committed.clone());
        registry.register(
            "proposals_failed",
            "Proposals that failed (no leader, timeout, shutdown)",
            m.proposals_failed.clone(),
        );
        registry.register("apply_duration_seconds", "Time to apply one log entry", m.apply_duration.clone());
        registry.register("wal_fsync_duration_seconds", "Time of one group-commit fsync", m.wal_fsync_duration.clone());
        registry.register("wal_fsync_appends", "Log appends made durable by one fsync", m.wal_fsync_appends.clone());
        registry.register("apply_batch_entries", "Entries per state-machine apply call", m.apply_batch_entries.clone());
        registry.register("db_size_bytes", "Storage engine size on disk", m.db_size_bytes.clone());
        registry.register("mvcc_revision", "Current MVCC revision", m.mvcc_revision.clone());
        registry.register("mvcc_compact_revision", "Last compacted revision", m.mvcc_compact_revision.clone());
        registry.register("watchers", "Active watchers", m.watchers.clone());
        registry.register("unsynced_watchers", "Watchers catching up from history", m.unsynced_watchers.clone());
        registry.register("watch_streams", "Open watch streams", m.watch_streams.clone());
        registry.register("slow_watcher_moves", "Times a slow watcher moved to catch-up", m.slow_watcher_moves.clone());
        registry.register("leases", "Live leases", m.leases.clone());
        StoreMetrics { registry, ..m }
    }

    /// Records the current leader (`None`: no leader known).
    pub fn set_leader(&self, leader: Option<u64>) {
        self.leader.clear();
        if let Some(id) = leader {
            self.leader.get_or_create(&vec![("leader".to_string(), format!("{id:x}"))]).set(1);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let m = super::StoreMetrics::new();
        m.proposals_committed.inc();
        m.set_leader(Some(u64::MAX));
        m.apply_duration.observe(0.001);
        let text = m.encode();
        assert!(text.contains("berth_proposals_committed_total 1"), "{text}");
        assert!(text.contains("berth_apply_duration_seconds_count 1"), "{text}");
        assert!(text.contains("berth_raft_leader{leader=\"ffffffffffffffff\"} 1"), "{text}");
        assert!(text.contains("# EOF"));
    }
}
