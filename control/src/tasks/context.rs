//! What every leader task gets to work with ([`TaskContext`]), the signature a task has
//! ([`TaskFn`]) and the counters the tasks report to ([`SupervisorStatus`]). Kept with the
//! tasks so that they depend on nothing of the supervisor that starts them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// What a task gets to work with.
#[derive(Clone)]
pub struct TaskContext {
    /// An API client over the in-process router: tasks are ordinary API clients.
    pub client: kube::Client,
    pub registry: Registry,
    /// This server's name (the holder identity in Leases).
    pub server: String,
    pub term: u64,
    pub status: Arc<SupervisorStatus>,
    /// This server's watch cache: tasks that sweep every object read it, not the store.
    pub cache: Arc<crate::cache::WatchCache>,
    pub settings: Arc<super::Settings>,
    /// The informers the tasks of this leadership term share (a fresh set per term).
    pub informers: Arc<super::workqueue::Informers>,
}

impl TaskContext {
    /// Applies `change` to the stored object as a system write, pinned to
    /// `resource_version`, the version the decision was made on: if the object changed
    /// since, the write fails with 409 instead of landing on newer state.
    pub async fn modify_pinned(
        &self,
        info: &crate::api::resources::ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        resource_version: i64,
        part: crate::registry::Part,
        change: impl Fn(&mut serde_json::Value),
    ) -> Result<(), crate::api::error::ApiError> {
        use crate::registry::{object, WriteOptions};
        let opts = WriteOptions { skip_update_rules: true, ..Default::default() };
        self.registry
            .modify(info, namespace, name, part, &opts, |current| {
                let mut next = current.clone();
                change(&mut next);
                object::set_resource_version(&mut next, resource_version);
                Ok(next)
            })
            .await
            .map(|_| ())
    }
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
