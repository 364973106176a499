//! Carries a [`HistoryPlan`](super::HistoryPlan) out through the API (Kubernetes'
//! `realHistory`): ownership patches and revision-number raises pinned to the
//! resourceVersion they were decided on, creation with the hash-collision check, and
//! deletions pinned to uid and resourceVersion.

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{json, Value};

use super::{hash_label, Current, RevisionRef};
use crate::tasks::context::TaskContext;
use crate::tasks::ownership::OwnerChange;
use crate::tasks::status::write_status;
use crate::tasks::sync_error::{api_err, is_status, SyncError};

/// The owner's current revision once it exists.
#[derive(Debug)]
pub enum Ensured {
    Revision {
        name: String,
        /// The `controller-revision-hash` its pods carry.
        hash: String,
    },
    /// A revision of *another* template already has the name this one needs: the owner's
    /// `status.collisionCount` must go up (which changes the hash), then sync again.
    /// Carries the create's `409 AlreadyExists`.
    Collision(kube::Error),
}

/// Kubernetes' answer to [`Ensured::Collision`]: raises `owner`'s `status.collisionCount`
/// (`collision_count` reaches it) through the status subresource, pinned to the
/// resourceVersion the colliding hash was computed from, and fails the sync with the
/// create's 409 — the status change brings the owner back with a new hash.
pub async fn raise_collision_count<K>(
    ctx: &TaskContext,
    owner: &K,
    collision_count: fn(&mut K) -> &mut Option<i32>,
    conflict: kube::Error,
) -> SyncError
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut updated = owner.clone();
    let count = collision_count(&mut updated);
    *count = Some(count.unwrap_or(0).saturating_add(1));
    match write_status(ctx, &updated).await {
        Err(e) => e,
        Ok(_) => api_err("hash collision with another template's ControllerRevision; collisionCount raised")(conflict),
    }
}

/// Acts on one namespace's ControllerRevisions for one owner.
pub struct RevisionControl<'a> {
    pub ctx: &'a TaskContext,
    pub api: Api<ControllerRevision>,
}

impl<'a> RevisionControl<'a> {
    pub fn new(ctx: &'a TaskContext, namespace: &str) -> RevisionControl<'a> {
        RevisionControl { ctx, api: Api::namespaced(ctx.client.clone(), namespace) }
    }

    /// Adopts and releases revisions: each one's whole ownerReferences list, pinned to the
    /// resourceVersion it was computed from (a concurrent change is a 409: look again).
    /// A revision already gone is no failure.
    pub async fn patch_owners(&self, adopt: &[OwnerChange], release: &[OwnerChange]) -> Result<(), SyncError> {
        crate::tasks::pod_control::patch_owners(self.ctx, &self.api, "ControllerRevision", adopt, release).await
    }

    /// Makes the planned current revision exist with its number (`fallback_hash`: the
    /// hash of a revision without the label, the owner's template hash).
    pub async fn ensure_current(&self, current: &Current, fallback_hash: &str) -> Result<Ensured, SyncError> {
        match current {
            Current::Existing { revision, hash, bump_to } => {
                if let Some(number) = bump_to {
                    self.raise(revision, *number).await?;
                }
                let hash = hash.clone().unwrap_or_else(|| fallback_hash.to_string());
                Ok(Ensured::Revision { name: revision.name.clone(), hash })
            }
            Current::Create(revision) => self.create(revision, fallback_hash).await,
        }
    }

    /// Raises a revision's number (a rollback made it current again), pinned to the
    /// resourceVersion it was judged at.
    async fn raise(&self, revision: &RevisionRef, number: i64) -> Result<(), SyncError> {
        let patch = json!({"metadata": {"resourceVersion": revision.resource_version}, "revision": number});
        let result = self.api.patch(&revision.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        self.ctx.status.record(result.is_ok());
        match result {
            Ok(_) => {
                tracing::info!(revision = %revision.name, number, "revision is current again");
                Ok(())
            }
            Err(e) => Err(api_err(format!("updating ControllerRevision {}", revision.name))(e)),
        }
    }

    /// Kubernetes' `CreateControllerRevision` for one name: created, or already there
    /// with the same data (an earlier sync the cache has not shown yet), or a collision.
    async fn create(&self, revision: &ControllerRevision, fallback_hash: &str) -> Result<Ensured, SyncError> {
        let name = revision.metadata.name.clone().unwrap_or_default();
        let ensured = |r: &ControllerRevision| Ensured::Revision {
            name: name.clone(),
            hash: hash_label(r).unwrap_or(fallback_hash).to_string(),
        };
        let result = self.api.create(&PostParams::default(), revision).await;
        self.ctx.status.record(result.is_ok());
        let exists = match result {
            Ok(created) => {
                tracing::info!(revision = %name, number = created.revision, "created revision");
                return Ok(ensured(&created));
            }
            Err(e) if is_status(&e, 409) => e,
            Err(e) => return Err(api_err(format!("creating ControllerRevision {name}"))(e)),
        };
        let found = self.api.get(&name).await;
        self.ctx.status.record(found.is_ok());
        let found = found.map_err(api_err(format!("reading ControllerRevision {name}")))?;
        let data = |r: &ControllerRevision| r.data.as_ref().map(|d| d.0.clone()).unwrap_or(Value::Null);
        if data(&found) == data(revision) {
            return Ok(ensured(&found));
        }
        tracing::info!(revision = %name, "hash collision with another template's revision");
        Ok(Ensured::Collision(exists))
    }

    /// Deletes expired revisions, each only as it was judged (uid and resourceVersion
    /// preconditions: one raised by a rollback meanwhile stays). Gone or changed is no
    /// failure.
    pub async fn delete(&self, expired: &[RevisionRef]) -> Result<(), SyncError> {
        for revision in expired {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: revision.uid.clone(),
                    resource_version: revision.resource_version.clone(),
                }),
                ..Default::default()
            };
            let result = self.api.delete(&revision.name, &params).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(_) => tracing::debug!(revision = %revision.name, "deleted old revision"),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => return Err(api_err(format!("deleting ControllerRevision {}", revision.name))(e)),
            }
        }
        Ok(())
    }
}
