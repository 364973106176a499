//! What the workload controllers share when they act on pods (Kubernetes'
//! `RealPodControl` in `controller_utils.go`): pod creation in slow-start batches and pod
//! deletion pinned to a uid, each recording the Events Kubernetes records on the owner
//! (SuccessfulCreate/FailedCreate, SuccessfulDelete/FailedDelete), and ownership patches.

use std::sync::Mutex;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use super::events::{reference, EventType, Recorder};
use super::expectations::Expectations;
use super::ownership::OwnerChange;
use super::sync_error::{api_err, is_status, SyncError};
use super::workqueue::Key;
use crate::tasks::context::TaskContext;

/// Adopts and releases children of any kind: each one's whole ownerReferences list, pinned
/// to the resourceVersion it was computed from, so a concurrent change makes this a 409 and
/// the owner looks again. A child already gone is no failure.
pub async fn patch_owners<K>(
    ctx: &TaskContext,
    api: &Api<K>,
    kind: &str,
    adopt: &[OwnerChange],
    release: &[OwnerChange],
) -> Result<(), SyncError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for change in adopt.iter().chain(release) {
        let patch = json!({"metadata": {
            "resourceVersion": change.resource_version,
            "ownerReferences": change.owner_references,
        }});
        let result = api.patch(&change.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        ctx.status.record(result.is_ok());
        match result {
            Ok(_) => tracing::debug!(kind, name = %change.name, "updated ownership"),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_err(format!("claiming {kind} {}", change.name))(e)),
        }
    }
    Ok(())
}

/// A pod chosen for deletion (deleted with a uid precondition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: Option<String>,
}

/// Kubernetes' slow start: batch sizes 1, 2, 4, … summing to `count`.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut left, mut size) = (count, 1usize);
    while left > 0 {
        let n = size.min(left);
        batches.push(n);
        left -= n;
        size *= 2;
    }
    batches
}

/// Acts on pods for one owner, recording Events on it.
pub struct PodControl<'a> {
    pub ctx: &'a TaskContext,
    pub recorder: &'a Recorder,
    pub owner: ObjectReference,
    pub api: Api<Pod>,
}

impl<'a> PodControl<'a> {
    /// Acts on pods through `api` for `owner`, recording Events on it.
    pub fn new<K>(ctx: &'a TaskContext, recorder: &'a Recorder, owner: &K, api: &Api<Pod>) -> PodControl<'a>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        PodControl { ctx, recorder, owner: reference(owner), api: api.clone() }
    }

    /// Adopts and releases pods (see [`patch_owners`]).
    pub async fn patch_owners(&self, adopt: &[OwnerChange], release: &[OwnerChange]) -> Result<(), SyncError> {
        patch_owners(self.ctx, &self.api, "pod", adopt, release).await
    }

    /// Creates `pods` for the owner at `key` (see `create`), each batch's names expected
    /// before the next batch goes out. Nothing to create sends nothing.
    pub async fn create_expected(
        &self,
        expectations: &Mutex<Expectations>,
        key: &Key,
        pods: Vec<Pod>,
    ) -> Result<(), SyncError> {
        if pods.is_empty() {
            return Ok(());
        }
        tracing::info!(count = pods.len(), "creating pods");
        self.create(pods, |names| expectations.lock().unwrap().expect_created(key, names)).await
    }

    /// Deletes `pods` of the owner at `key` (see `delete`), their uids expected gone first.
    /// Nothing to delete sends nothing.
    pub async fn delete_expected(
        &self,
        expectations: &Mutex<Expectations>,
        key: &Key,
        pods: &[PodRef],
    ) -> Result<(), SyncError> {
        if pods.is_empty() {
            return Ok(());
        }
        tracing::info!(count = pods.len(), "deleting pods");
        expectations.lock().unwrap().expect_deleted(key, pods.iter().filter_map(|p| p.uid.clone()));
        self.delete(pods).await
    }

    /// Creates `pods` in slow-start batches (1, 2, 4, …) so a failing admission costs one
    /// request, not five hundred; `created` gets each batch's names before the next batch
    /// goes out (the caller's expectations). The first failure skips the rest, as in
    /// Kubernetes.
    pub async fn create(&self, pods: Vec<Pod>, mut created: impl FnMut(Vec<String>)) -> Result<(), SyncError> {
        let params = PostParams::default();
        let mut pods = pods.into_iter();
        for batch in slow_start_batches(pods.len()) {
            let now: Vec<Pod> = pods.by_ref().take(batch).collect();
            let results = join_all(now.iter().map(|pod| self.api.create(&params, pod))).await;
            let mut names = Vec::new();
            let mut failure = None;
            for result in results {
                self.ctx.status.record(result.is_ok());
                match result {
                    Ok(pod) => names.push(pod.metadata.name.unwrap_or_default()),
                    Err(e) => failure = Some(e),
                }
            }
            created(names.clone());
            for name in &names {
                let message = format!("Created pod: {name}");
                self.recorder.publish(&self.owner, EventType::Normal, "SuccessfulCreate", &message).await;
            }
            if let Some(e) = failure {
                let message = format!("Error creating: {e}");
                self.recorder.publish(&self.owner, EventType::Warning, "FailedCreate", &message).await;
                return Err(api_err("creating pods")(e));
            }
        }
        Ok(())
    }

    /// Deletes `pods`, each only if it is still the pod decided about (uid precondition: a
    /// same-named replacement is left alone). Already gone or replaced is not a failure.
    pub async fn delete(&self, pods: &[PodRef]) -> Result<(), SyncError> {
        let results = join_all(pods.iter().map(|p| {
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: p.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            async move { (p, self.api.delete(&p.name, &params).await) }
        }))
        .await;
        let mut failure = None;
        for (pod, result) in results {
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(_) => {
                    let message = format!("Deleted pod: {}", pod.name);
                    self.recorder.publish(&self.owner, EventType::Normal, "SuccessfulDelete", &message).await;
                }
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    let message = format!("Error deleting: {e}");
                    self.recorder.publish(&self.owner, EventType::Warning, "FailedDelete", &message).await;
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) => Err(api_err("deleting pods")(e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }
}
