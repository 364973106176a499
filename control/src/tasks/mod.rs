//! The leader-only tasks this server runs (the workload controllers join them in later
//! issues):
//! * [`leases`] — publishes who leads in `kube-system` Leases and creates the system
//!   namespaces;
//! * [`events`] — the Event recorder every task uses;
//! * [`namespaces`] — finishes namespace deletion (deletes the contents, then the namespace);
//! * [`scheduler`] — binds pending pods to nodes.

pub mod events;
pub mod leases;
pub mod namespaces;
pub mod scheduler;

use std::sync::Arc;

use crate::supervisor::TaskFn;

/// Every leader task, by name.
pub fn all() -> Vec<(&'static str, TaskFn)> {
    vec![
        ("leader-leases", Arc::new(|ctx, cancel| Box::pin(leases::run(ctx, cancel)))),
        ("namespace-controller", Arc::new(|ctx, cancel| Box::pin(namespaces::run(ctx, cancel)))),
        ("scheduler", Arc::new(|ctx, cancel| Box::pin(scheduler::run(ctx, cancel)))),
    ]
}
