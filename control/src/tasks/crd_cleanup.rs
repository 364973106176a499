//! CustomResourceDefinition deletion, as kube-apiserver's finalizer controller does it: a
//! deleted CRD keeps `customresourcecleanup.apiextensions.k8s.io` while its objects exist;
//! this task deletes them (one `deletecollection` per namespace, so objects' own
//! finalizers are honoured) and drops the finalizer when none is left, which completes the
//! CRD's deletion and takes its resource out of discovery on every server.
//!
//! Until then the resource is still served for reads and deletes, and refuses creates
//! (`registry::create`), so nothing new appears while it empties.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::resource::custom::{resources_of, CLEANUP_FINALIZER};
use crate::tasks::context::TaskContext;
use crate::tasks::dynamic;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Whether `crd` is deleted and waits for this task.
fn awaits_cleanup(crd: &Value) -> bool {
    crd["metadata"]["deletionTimestamp"].is_string()
        && crd["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|f| f == CLEANUP_FINALIZER))
}

/// Deletes what is left of `crd`'s objects; true when nothing is left.
async fn empty_resource(ctx: &TaskContext, crd: &Value) -> Result<bool, kube::Error> {
    let Some(info) = resources_of(crd).first().copied() else {
        // Nothing was ever served (a definition that could not be): nothing to delete.
        return Ok(true);
    };
    let all = dynamic::api(&ctx.client, info, None);
    let left = all.list_metadata(&ListParams::default().limit(500)).await?;
    if left.items.is_empty() {
        return Ok(true);
    }
    let mut namespaces: Vec<Option<String>> = left.items.iter().map(|o| o.metadata.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        let api = dynamic::api(&ctx.client, info, ns.as_deref());
        let result = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
        ctx.status.record(result.is_ok());
    }
    Ok(false)
}

async fn sweep(ctx: &TaskContext, definitions: &Store<CustomResourceDefinition>) {
    // From the shared informer: a sweep with no deleted CRD costs no request.
    let waiting: Vec<Value> = definitions
        .state()
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_some())
        .filter_map(|c| serde_json::to_value(c.as_ref()).ok())
        .filter(awaits_cleanup)
        .collect();
    for crd in &waiting {
        match empty_resource(ctx, crd).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "custom resource cleanup");
                continue;
            }
        }
        let finalizers: Vec<&Value> = crd["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| *f != CLEANUP_FINALIZER)
            .collect();
        // Pinned to the state this was decided on: a resourceVersion in a patch is a
        // precondition.
        let patch =
            json!({"metadata": {"resourceVersion": crd["metadata"]["resourceVersion"], "finalizers": finalizers}});
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let crds = crate::resource::find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("served");
        let result =
            dynamic::api(&ctx.client, crds, None).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        ctx.status.record(result.is_ok());
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let definitions = ctx.informers.store::<CustomResourceDefinition>();
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        if every.pass(sweep(&ctx, &definitions)).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deleted_definitions_with_the_finalizer_wait() {
        let live = json!({"metadata": {"finalizers": [CLEANUP_FINALIZER]}});
        let deleted =
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [CLEANUP_FINALIZER]}});
        let done = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": []}});
        assert!(!awaits_cleanup(&live) && awaits_cleanup(&deleted) && !awaits_cleanup(&done));
    }
}
