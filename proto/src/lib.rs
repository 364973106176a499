//! Berth's wire contracts.
//!
//! * [`mvccpb`] and [`etcdserverpb`]: the etcd v3 client API (same packages, services and
//!   field numbers as etcd 3.5), served by every Berth server on its client port.
//! * [`berthraftpb`]: the peer-port protocol between replicas of the store.
//! * [`cri`]: the Container Runtime Interface v1 (`runtime.v1` RuntimeService and
//!   ImageService, as containerd 1.6+ serves them), client side; the agent dials it.
//! * [`model`]: Kubernetes resource-model helpers (quantities, QoS, ...) written once for all
//!   crates; the most used names are re-exported here.
//! * [`selectors`]: Kubernetes label and field selectors, shared by the API server and clients.
//! * [`error`]: the parsers' error types, gathered in [`Error`].
//! * [`identity`]: the servers' identity Leases, how clients find every server.
//! * [`protobuf`]: Kubernetes' protobuf encoding of API objects, through the Kubernetes
//!   schemas (`protos/k8s`).
//! * [`kubeconfig`]: the admin kubeconfig and Berth's `berth.dev/servers` extension, written
//!   by servers and `berthctl up`, read by every client.
//!
//! No I/O lives here: only generated message and service types and small helpers on them.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod berthraftpb {
    tonic::include_proto!("berthraftpb");
}

/// CRI v1 (`runtime.v1`): schema in `protos/cri/v1/api.proto`.
pub mod cri {
    tonic::include_proto!("runtime.v1");
}
pub mod bootstrap_token;
pub mod error;
pub mod identity;
pub mod keys;
pub mod kubeconfig;
pub mod model;
pub mod pki;
pub mod protobuf;
pub mod selectors;
pub mod tls;

pub use error::Error;
pub use model::qos::{pod_qos_class, QosClass};
pub use model::quantity::{Quantity, QuantityError};
