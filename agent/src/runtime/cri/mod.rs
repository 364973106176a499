//! The CRI side of the agent: containers from OCI images through the Container Runtime
//! Interface v1, as the kubelet runs them, against containerd.
//!
//! * [`client`]: dialling a CRI endpoint (`unix:///…`, kubelet's `--container-runtime-endpoint`
//!   format) and the typed RuntimeService/ImageService clients over it;
//! * [`cni`]: the pod network as CNI configuration (bridge + host-local on the podCIDR);
//! * [`containerd`]: the agent's own containerd (config, root, state, socket and CNI
//!   directories under the agent's data dir), started and stopped by the agent when no
//!   endpoint is given, as k3s does.
//!
//! The `Runtime` implementation on top of these (pods → sandboxes, containers, images,
//! logs, probes, streaming) is issue 18's remaining work.

pub mod client;
pub mod cni;
pub mod containerd;

pub use client::{connect, socket_path, CriClient};
pub use containerd::{Containerd, ContainerdLayout, ContainerdSettings};
