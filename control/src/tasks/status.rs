//! The status write every workload controller ends its sync with: through the `status`
//! subresource, pinned to the resourceVersion the status was computed from.

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
