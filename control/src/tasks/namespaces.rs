//! Namespace deletion: a deleted namespace is `Terminating` until everything in it is
//! gone; this task deletes the contents (pods gracefully, like any client would), then
//! clears `spec.finalizers`, which completes the namespace's deletion.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::resources::{self, RESOURCES};
use crate::registry::{object, storage, DeleteOptions, Part};
use crate::tasks::context::TaskContext;
use crate::tasks::periodic::Every;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Deletes what is left in `ns`; true when nothing is left.
async fn empty_namespace(ctx: &TaskContext, ns: &str) -> bool {
    let mut empty = true;
    for info in RESOURCES.iter().filter(|r| r.namespaced && !r.is_legacy_alias()) {
        let prefix = storage::prefix(info, Some(ns));
        let Ok(page) = storage::scan(ctx.registry.store(), &prefix, &prefix, 0, 0).await else {
            return false;
        };
        for item in page.items {
            empty = false;
            if object::is_deleting(&item.object) && info.kind != "Pod" {
                continue;
            }
            let name = object::name(&item.object).unwrap_or_default().to_string();
            let result = ctx.registry.delete(info, Some(ns), &name, &DeleteOptions::default()).await;
            ctx.status.record(result.is_ok());
        }
    }
    empty
}

async fn sweep(ctx: &TaskContext) {
    let ns_info = resources::find("", "v1", "namespaces").expect("served");
    let prefix = storage::prefix(ns_info, None);
    let Ok(page) = storage::scan(ctx.registry.store(), &prefix, &prefix, 0, 0).await else { return };
    for ns in page.items.into_iter().filter(|s| object::is_deleting(&s.object)) {
        let name = object::name(&ns.object).unwrap_or_default().to_string();
        if !empty_namespace(ctx, &name).await {
            continue;
        }
        // Pinned to the state this decision was made on.
        let result = ctx
            .modify_pinned(ns_info, None, &name, ns.mod_revision, Part::Whole, |next| {
                next["spec"]["finalizers"] = json!([]);
            })
            .await;
        ctx.status.record(result.is_ok());
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        if every.pass(sweep(&ctx)).await.is_none() {
            return;
        }
    }
}
