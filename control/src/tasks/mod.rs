//! The leader-only tasks this server runs (the scheduler joins them in a later issue):
//! * [`leases`] — publishes who leads in `kube-system` Leases and creates the system
//!   namespaces;
//! * [`events`] — the Event recorder every task uses;
//! * [`namespaces`] — finishes namespace deletion (deletes the contents, then the namespace);
//! * [`replicaset`] — keeps each ReplicaSet's pods;
//! * [`deployment`] — rolls Deployments out through ReplicaSets;
//! * [`ownership`] and [`workqueue`] — what the workload controllers share (claiming,
//!   pod availability; informers and the work queue).

pub mod deployment;
pub mod events;
pub mod leases;
pub mod namespaces;
pub mod ownership;
pub mod replicaset;
pub mod workqueue;

use std::sync::Arc;

use crate::supervisor::TaskFn;

/// Every leader task, by name.
pub fn all() -> Vec<(&'static str, TaskFn)> {
    vec![
        ("leader-leases", Arc::new(|ctx, cancel| Box::pin(leases::run(ctx, cancel)))),
        ("namespace-controller", Arc::new(|ctx, cancel| Box::pin(namespaces::run(ctx, cancel)))),
        ("replicaset-controller", Arc::new(|ctx, cancel| Box::pin(replicaset::run(ctx, cancel)))),
        ("deployment-controller", Arc::new(|ctx, cancel| Box::pin(deployment::run(ctx, cancel)))),
    ]
}
