//! Namespace deletion: a deleted namespace is `Terminating` until everything in it is
//! gone; this task deletes the contents (pods gracefully, like any client would), then
//! clears `spec.finalizers`, which completes the namespace's deletion.
//!
//! Terminating namespaces come from the shared Namespace informer; their contents are
//! listed through the API (only while a namespace terminates, as Kubernetes' namespace
//! controller lists every resource of it), and every write is an API request.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::resource::table::RESOURCES;
use crate::tasks::context::TaskContext;
use crate::tasks::dynamic;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Deletes what is left in `ns`; true when nothing is left.
async fn empty_namespace(ctx: &TaskContext, ns: &str) -> bool {
    let mut empty = true;
    let Ok(custom) = dynamic::custom_resources(&ctx.client).await else {
        return false;
    };
    let built_in = RESOURCES.iter().filter(|r| !r.is_alias());
    for info in built_in.chain(custom).filter(|r| r.namespaced) {
        let api = dynamic::api(&ctx.client, info, Some(ns));
        let Ok(list) = api.list(&Default::default()).await else {
            return false;
        };
        for item in list.items {
            empty = false;
            // A terminating pod is deleted again: its grace period may be shortened.
            if item.metadata.deletion_timestamp.is_some() && info.kind != "Pod" {
                continue;
            }
            let result = api.delete(&item.name_any(), &DeleteParams::default()).await;
            ctx.status.record(result.is_ok());
        }
    }
    empty
}

async fn sweep(ctx: &TaskContext, namespaces: &kube::runtime::reflector::Store<Namespace>) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    for ns in namespaces.state().iter().filter(|n| n.metadata.deletion_timestamp.is_some()) {
        let name = ns.name_any();
        if !empty_namespace(ctx, &name).await {
            continue;
        }
        // Pinned to the state this decision was made on: a resourceVersion in a patch is
        // a precondition.
        let patch = json!({
            "metadata": {"resourceVersion": ns.resource_version()},
            "spec": {"finalizers": []},
        });
        let result = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        ctx.status.record(result.is_ok());
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let namespaces = ctx.informers.store::<Namespace>();
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        if every.pass(sweep(&ctx, &namespaces)).await.is_none() {
            return;
        }
    }
}
