//! Berth's own commands, which kubectl has no verbs for: the replicated control plane's
//! status and membership and backups (over the etcd v3 API of the servers), and the local
//! cluster that `berthctl up` starts and `berthctl down` stops.

pub mod cluster;
pub mod local;
pub mod member;
pub mod snapshot;
