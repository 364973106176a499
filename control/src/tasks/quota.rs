//! The ResourceQuota controller (Kubernetes' `resourcequota-controller`): keeps each
//! quota's `status.hard` equal to `spec.hard` and `status.used` equal to what the stored
//! objects of its namespace consume — which is how deletions and finished pods free quota
//! (admission only ever adds; see `registry::quota`).
//!
//! Exactness: one sweep reads every quota and then every object it needs at one store
//! revision, and writes a quota's status pinned to the quota's revision at that point. A
//! create admitted after the read changed the quota's revision (it writes `status.used` in
//! its own transaction), so the stale recomputation fails with 409 and the next sweep
//! starts over: `status.used` never loses a concurrent create.
//!
//! Kubernetes recomputes on object deletion events and every 5 minutes; this controller
//! sweeps every [`SWEEP_EVERY`] instead (reads are local and only cover namespaces that
//! have quotas).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::resources::{self, ResourceInfo};
use crate::registry::quota::{self, QuotaState};
use crate::registry::{storage, Part};
use crate::tasks::context::TaskContext;
use crate::tasks::periodic::Every;
use berth_proto::Quantity;

/// How often every quota is recomputed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The status a quota should have: `hard` from `spec.hard` (canonical quantities), `used`
/// measured over `objects` (the namespace's objects of every resource the quota tracks).
pub fn desired_status(
    quota_obj: &Value,
    objects: &[(&ResourceInfo, &Value)],
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let hard: BTreeMap<String, String> = quota_obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?.canonical())))
        .collect();
    let used: BTreeMap<String, String> =
        hard.keys().map(|name| (name.clone(), quota::used_for(name, objects, now).canonical())).collect();
    json!({"hard": hard, "used": used})
}

/// One sweep over every quota. Returns how many statuses were written.
async fn sweep(ctx: &TaskContext) -> Result<usize, ApiError> {
    let store = ctx.registry.store();
    let quota_info = resources::find("", "v1", "resourcequotas").expect("resourcequotas are served");
    let quota_prefix = storage::prefix(quota_info, None);
    let quotas = storage::scan(store, &quota_prefix, &quota_prefix, 0, 0).await?;
    let revision = quotas.revision;
    let now = chrono::Utc::now();
    // Objects of one (resource, namespace), read once per sweep at the quotas' revision.
    let mut listed: BTreeMap<(&'static str, &'static str, String), Vec<Value>> = BTreeMap::new();
    let mut written = 0;
    for stored in &quotas.items {
        let obj = &stored.object;
        if QuotaState::from_object(obj).scoped {
            continue;
        }
        let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) else { continue };
        let names: Vec<String> = obj
            .pointer("/spec/hard")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut infos: Vec<&'static ResourceInfo> = names.iter().flat_map(|n| quota::resources_for(n)).collect();
        infos.sort_by_key(|i| (i.group, i.plural));
        infos.dedup_by_key(|i| (i.group, i.plural));
        for info in &infos {
            let key = (info.group, info.plural, ns.to_string());
            if !listed.contains_key(&key) {
                let prefix = storage::prefix(info, Some(ns));
                let page = storage::scan(store, &prefix, &prefix, 0, revision).await?;
                listed.insert(key.clone(), page.items.into_iter().map(|s| s.object).collect());
            }
        }
        let objects: Vec<(&ResourceInfo, &Value)> = infos
            .iter()
            .flat_map(|info| listed[&(info.group, info.plural, ns.to_string())].iter().map(move |o| (*info, o)))
            .collect();
        let status = desired_status(obj, &objects, now);
        if obj.get("status") == Some(&status) {
            continue;
        }
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let result = ctx
            .modify_pinned(quota_info, Some(ns), name, stored.mod_revision, Part::Status, |q| {
                q["status"] = status.clone();
            })
            .await;
        ctx.status.record(result.is_ok());
        match result {
            Ok(()) => {
                tracing::debug!(namespace = ns, quota = name, used = %status["used"], "quota usage updated");
                written += 1;
            }
            // A create (or an edit) got there first: recomputed on the next sweep.
            Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound(_)) => {}
            Err(e) => tracing::warn!(namespace = ns, quota = name, error = %e, "updating quota status"),
        }
    }
    Ok(written)
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    tracing::info!("resourcequota controller started");
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let Some(swept) = every.pass(tokio::time::timeout(Duration::from_secs(30), sweep(&ctx))).await else {
            return;
        };
        match swept {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "resourcequota sweep failed"),
            Err(_) => tracing::warn!("resourcequota sweep timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_spec_and_objects() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let q = json!({"spec": {"hard": {"pods": "5", "requests.cpu": "2000m", "count/pods": "10"}}});
        let running = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]},
                             "status": {"phase": "Running"}});
        let done = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]},
                          "status": {"phase": "Succeeded"}});
        let objects = vec![(pods, &running), (pods, &running), (pods, &done)];
        let status = desired_status(&q, &objects, chrono::Utc::now());
        assert_eq!(
            status,
            json!({"hard": {"count/pods": "10", "pods": "5", "requests.cpu": "2"},
                   "used": {"count/pods": "3", "pods": "2", "requests.cpu": "1"}})
        );
        assert_eq!(desired_status(&q, &[], chrono::Utc::now())["used"]["pods"], "0");
    }
}
