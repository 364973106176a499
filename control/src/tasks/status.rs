//! The status write every workload controller ends its sync with: through the `status`
//! subresource, pinned to the resourceVersion the status was computed from.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetStatus, ReplicaSet, ReplicaSetStatus, StatefulSet, StatefulSetStatus,
};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use kube::api::{Api, PostParams};

use super::sync_error::{api_err, is_status, SyncError};
use crate::tasks::context::TaskContext;

/// Writes `updated`'s status through the status subresource, pinned to the resourceVersion
/// `updated` carries (the one its status was computed from): if the object changed since,
/// the write is a 409 and the key comes back. `Ok(false)`: the object is gone.
pub async fn write_status<K>(ctx: &TaskContext, updated: &K) -> Result<bool, SyncError>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let meta = updated.meta();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), meta.namespace.as_deref().unwrap_or_default());
    let result = api.replace_status(meta.name.as_deref().unwrap_or_default(), &PostParams::default(), updated).await;
    ctx.status.record(result.is_ok());
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) => Err(api_err("updating status")(e)),
    }
}

/// A kind whose whole status its controller computes.
pub trait WithStatus {
    type Status: PartialEq + Clone;
    fn status_ref(&self) -> Option<&Self::Status>;
    fn status_mut(&mut self) -> &mut Option<Self::Status>;
}

macro_rules! with_status {
    ($($kind:ty => $status:ty),* $(,)?) => {$(
        impl WithStatus for $kind {
            type Status = $status;
            fn status_ref(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn status_mut(&mut self) -> &mut Option<$status> {
                &mut self.status
            }
        }
    )*};
}

with_status!(
    ReplicaSet => ReplicaSetStatus,
    DaemonSet => DaemonSetStatus,
    StatefulSet => StatefulSetStatus,
    Job => JobStatus,
);

/// Writes `status` as `obj`'s (see `write_status`) unless `obj` already has it: no request
/// then. `Ok(false)`: the object is gone.
pub async fn write_status_if_changed<K>(ctx: &TaskContext, obj: &K, status: &K::Status) -> Result<bool, SyncError>
where
    K: WithStatus
        + kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if obj.status_ref() == Some(status) {
        return Ok(true);
    }
    let mut updated = obj.clone();
    *updated.status_mut() = Some(status.clone());
    write_status(ctx, &updated).await
}
