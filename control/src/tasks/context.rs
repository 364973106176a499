//! What every leader task gets to work with ([`TaskContext`]), the signature a task has
//! ([`TaskFn`]) and the counters the tasks report to ([`SupervisorStatus`]). Kept with the
//! tasks so that they depend on nothing of the supervisor that starts them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// What a task gets to work with.
#[derive(Clone)]
pub struct TaskContext {
    /// An API client over the in-process router: tasks are ordinary API clients.
    pub client: kube::Client,
    /// This server's name (the holder identity in Leases).
    pub server: String,
    pub term: u64,
    pub status: Arc<SupervisorStatus>,
    pub settings: Arc<super::Settings>,
    /// The informers the tasks of this leadership term share (a fresh set per term).
    pub informers: Arc<super::workqueue::Informers>,
}

/// A leader-only task: runs until `cancel` fires.
pub type TaskFn = Arc<dyn Fn(TaskContext, CancellationToken) -> BoxFuture<'static, ()> + Send + Sync>;

/// Observable state of the supervisor (metrics, tests).
#[derive(Debug, Default)]
pub struct SupervisorStatus {
    pub leading: AtomicBool,
    pub term: AtomicU64,
    /// Times the tasks were started.
    pub starts: AtomicU64,
    /// Task writes the store accepted / refused (conflict, timeout, no leader).
    pub writes_ok: AtomicU64,
    pub writes_rejected: AtomicU64,
}

impl SupervisorStatus {
    pub fn record(&self, ok: bool) {
        if ok {
            self.writes_ok.fetch_add(1, Ordering::SeqCst);
        } else {
            self.writes_rejected.fetch_add(1, Ordering::SeqCst);
        }
    }
}
