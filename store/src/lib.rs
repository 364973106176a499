//! Berth's replicated key-value store.
//!
//! An etcd-compatible store built from openraft (replication), RocksDB (durability) and an
//! MVCC layer with etcd's semantics. See `DESIGN.md` ("Store") for the specification.
//!
//! * [`engine`] — storage capability traits, RocksDB and in-memory implementations;
//! * [`mvcc`] — revisions, ranges, txns, compaction, history;
//! * [`watch`] — the watch hub (synced/unsynced watchers);
//! * [`lease`] — lease deadlines on the leader;
//! * [`raft`] — openraft wiring: log store, state machine, snapshots, peer transport;
//! * [`node`] — a running member and its in-process API ([`Store`]);
//! * [`etcd`] and [`server`] — the etcd v3 gRPC API and the listeners (client and peer
//!   ports); `server::peer` also starts a whole member (`StoreNode::start`), so the node never
//!   depends on its servers;
//! * [`request`] — what may be proposed (the poison-entry guard);
//! * [`restore`] — seeding a new member's data directory from a backup.

pub mod config;
pub mod engine;
pub mod error;
pub mod etcd;
pub mod failpoints;
pub mod idle;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod raft;
pub mod request;
pub mod restore;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watch;

pub use config::{ClusterState, StoreConfig};
pub use error::{Result, StoreError};
pub use node::{Store, StoreNode};
pub use raft::peers::NetworkFaults;
