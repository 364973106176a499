//! The leader-only task supervisor.
//!
//! It follows openraft's metrics: when this server is the Raft leader *and* has applied an
//! entry of its own term (the blank entry every new leader appends — before that its state
//! machine may still lack writes the previous leader committed), it starts every task with
//! a fresh cancellation token; when it stops being leader, or the term changes, it cancels
//! them and waits (bounded) for them to end. Tasks write through the API with a
//! resourceVersion precondition on every update, so a deposed leader's late write fails
//! with 409 instead of overwriting newer state; and before they start, the leader claims
//! the leader epoch with its term, to which every write of its tasks is fenced (see
//! `registry::fence`): a write of an older term's tasks can then never commit, even one
//! that spans objects (a binding that would over-commit a node).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_store::Store;
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::registry::fence;
use crate::tasks::context::{TaskContext, TaskFn};

/// How long a cancelled task may take to finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Pure decision: should tasks run, and for which term.
pub fn should_lead(is_leader: bool, current_term: u64, applied_term: Option<u64>) -> Option<u64> {
    (is_leader && applied_term == Some(current_term)).then_some(current_term)
}

struct Running {
    term: u64,
    cancel: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        for h in self.handles {
            let abort = h.abort_handle();
            if tokio::time::timeout(STOP_GRACE, h).await.is_err() {
                tracing::warn!("a leader task did not stop in time; aborting it");
                abort.abort();
            }
        }
    }
}

/// Builds the API client of one leadership term's tasks (its writes fenced to the term).
pub type TermClient = Arc<dyn Fn(u64) -> kube::Client + Send + Sync>;

/// How long claiming the leader epoch may take before the supervisor tries again.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before claiming again after a failed claim.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// Runs the supervisor until `shutdown`.
pub async fn run(
    store: Store,
    tasks: Vec<(&'static str, TaskFn)>,
    base: TaskContext,
    term_client: TermClient,
    shutdown: CancellationToken,
) {
    let mut metrics = store.raft().metrics();
    let mut running: Option<Running> = None;
    // Set while this server leads but has not claimed the leader epoch yet.
    let mut claim_pending = false;
    loop {
        let decision = {
            let m = metrics.borrow_and_update();
            let is_leader = m.state == ServerState::Leader && m.current_leader == Some(store.id);
            should_lead(is_leader, m.current_term, m.last_applied.as_ref().map(|l| l.leader_id.get_term()))
        };
        match (&running, decision) {
            (Some(r), Some(term)) if r.term == term => {}
            (_, decision) => {
                if let Some(r) = running.take() {
                    tracing::info!(term = r.term, "stepping down: stopping leader tasks");
                    base.status.leading.store(false, Ordering::SeqCst);
                    r.stop().await;
                }
                claim_pending = false;
                if let Some(term) = decision {
                    // Before any task of this term writes: from the claim on, no write of an
                    // older term's tasks can commit (see `registry::fence`).
                    match tokio::time::timeout(CLAIM_TIMEOUT, fence::claim(&store, term)).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => {
                            tracing::warn!(term, "a newer leader has claimed the leader epoch; not starting tasks");
                            claim_pending = true;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(term, error = %e, "claiming the leader epoch failed; retrying");
                            claim_pending = true;
                        }
                        Err(_) => {
                            tracing::warn!(term, "claiming the leader epoch timed out; retrying");
                            claim_pending = true;
                        }
                    }
                }
                if let (Some(term), false) = (decision, claim_pending) {
                    tracing::info!(term, "leading: starting leader tasks");
                    let cancel = shutdown.child_token();
                    let informers = crate::tasks::workqueue::Informers::new(base.client.clone(), cancel.clone());
                    let ctx = TaskContext { term, informers, client: term_client(term), ..base.clone() };
                    let handles = tasks
                        .iter()
                        .map(|(name, f)| {
                            let fut = f(ctx.clone(), cancel.clone());
                            let name = *name;
                            tokio::spawn(async move {
                                fut.await;
                                tracing::debug!(task = name, "leader task ended");
                            })
                        })
                        .collect();
                    base.status.term.store(term, Ordering::SeqCst);
                    base.status.starts.fetch_add(1, Ordering::SeqCst);
                    base.status.leading.store(true, Ordering::SeqCst);
                    running = Some(Running { term, cancel, handles });
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(CLAIM_RETRY), if claim_pending => {}
        }
    }
    if let Some(r) = running.take() {
        base.status.leading.store(false, Ordering::SeqCst);
        r.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leads_only_after_applying_its_own_term() {
        assert_eq!(should_lead(true, 3, Some(3)), Some(3));
        assert_eq!(should_lead(true, 3, Some(2)), None, "the term's first entry is not applied yet");
        assert_eq!(should_lead(false, 3, Some(3)), None);
        assert_eq!(should_lead(true, 1, None), None);
    }
}
