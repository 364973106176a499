//! The Raft layer: openraft wiring for the store.
//!
//! * [`types`] — the one `declare_raft_types!` point, and the request/response wrappers.
//! * [`log_store`] — openraft `RaftLogStorage` on the `raft_log`/`raft_meta` column families,
//!   with group-commit fsync.
//! * [`state_machine`] — openraft `RaftStateMachine`: applies entries to MVCC, leases and
//!   members, and feeds the watch hub.
//! * [`snapshot`] — the snapshot file format (build, verify, install).
//! * [`peers`] — connections to other members' peer ports (shared by [`network`] and the
//!   node's request forwarding) and the fault hooks tests cut links with.
//! * [`network`] — the peer transport's client side (tonic); the server side is
//!   `server::peer`, above the node it calls.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod peers;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use types::{NodeId, PeerNode, StoreRequest, StoreResponse, TypeConfig};
