//! The etcd v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance) as thin adapters over the
//! in-process [`Store`](crate::node::Store). Errors become statuses with etcd's codes and
//! messages.

mod cluster;
mod kv;
mod lease;
mod maintenance;
mod watch;

pub use cluster::ClusterService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use watch::WatchService;

type ResultOf<T> = Result<tonic::Response<T>, tonic::Status>;

fn reply<T>(result: crate::error::Result<T>) -> ResultOf<T> {
    result.map(tonic::Response::new).map_err(Into::into)
}
