//! The ResourceQuota controller (Kubernetes' `resourcequota-controller`): keeps each
//! quota's `status.hard` equal to `spec.hard` and `status.used` equal to what the objects
//! of its namespace consume — which is how deletions and finished pods free quota
//! (admission only ever adds; see `registry::quota`).
//!
//! Quotas and the objects they count come from the shared informers ([`kinds`]); a
//! quota's status is written through its `status` subresource, pinned to the quota's
//! resourceVersion the recomputation started from.
//!
//! Exactness: admission writes a create's usage into `status.used` in the create's own
//! transaction, so a create changes the quota's resourceVersion and a recomputation that
//! started before it fails with 409: `status.used` never loses a concurrent create.
//! The informers may lag each other, though — the quota's cache may show a create whose
//! object the pods' cache does not have yet — so a recomputation that would *lower* a
//! usage (or set one for the first time) is redone from a linearizable list of the
//! namespace's counted objects before it is written. Lowering is what deletions and
//! finished pods do; everything else writes from the caches alone.
//!
//! Kubernetes recomputes on object deletion events and every 5 minutes; this controller
//! sweeps every [`SWEEP_EVERY`] instead (reads are local and only cover namespaces that
//! have quotas).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::registry::quota::{self, QuotaState};
use crate::resource::table::ResourceInfo;
use crate::tasks::context::TaskContext;
use crate::tasks::dynamic;
use crate::tasks::kinds::{self, Converted, KindStore};
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

/// Whether `desired` lowers a usage `current` records, or sets one it lacks (pure).
pub fn lowers_usage(current: &Value, desired: &Value) -> bool {
    let quantity = |v: &Value| v.as_str().and_then(|s| Quantity::parse(s).ok());
    desired["used"].as_object().into_iter().flatten().any(|(name, wanted)| {
        match (quantity(&current["used"][name.as_str()]), quantity(wanted)) {
            (Some(have), Some(wanted)) => wanted < have,
            _ => true,
        }
    })
}

struct Controller {
    quotas: Store<ResourceQuota>,
    /// The informer of each counted kind, started when a quota first counts it.
    kinds: HashMap<&'static str, KindStore>,
    /// The counted objects as JSON (what `registry::quota` works on).
    encoded: Converted<Value>,
}

impl Controller {
    /// The cached objects of `info` in `ns`, as JSON.
    fn cached(&mut self, ctx: &TaskContext, info: &'static ResourceInfo, ns: &str) -> Vec<Arc<Value>> {
        let kind = self.kinds.entry(info.plural).or_insert_with(|| kinds::store(&ctx.informers, info));
        let objects = kind.objects();
        let here = objects.into_iter().filter(|o| o.meta().namespace.as_deref() == Some(ns));
        here.filter_map(|o| self.encoded.get(o, |o| Some(o.to_json()))).collect()
    }

    /// One sweep over every quota. Returns how many statuses were written.
    async fn sweep(&mut self, ctx: &TaskContext) -> usize {
        let now = chrono::Utc::now();
        let mut written = 0;
        for cached in self.quotas.state() {
            let obj = serde_json::to_value(cached.as_ref()).unwrap_or_default();
            if QuotaState::from_object(&obj).scoped {
                continue;
            }
            let Some(ns) = cached.metadata.namespace.clone() else { continue };
            let infos = counted_resources(&obj);
            let mut listed: Vec<(&'static ResourceInfo, Arc<Value>)> = Vec::new();
            for info in &infos {
                listed.extend(self.cached(ctx, info, &ns).into_iter().map(|o| (*info, o)));
            }
            let objects: Vec<(&ResourceInfo, &Value)> = listed.iter().map(|(i, o)| (*i, o.as_ref())).collect();
            let mut status = desired_status(&obj, &objects, now);
            if obj.get("status") == Some(&status) {
                continue;
            }
            if lowers_usage(&obj["status"], &status) {
                // The caches may lag the quota: count from the store itself.
                match list_counted(ctx, &infos, &ns).await {
                    Ok(fresh) => {
                        let objects: Vec<(&ResourceInfo, &Value)> = fresh.iter().map(|(i, o)| (*i, o)).collect();
                        status = desired_status(&obj, &objects, now);
                    }
                    Err(e) => {
                        tracing::debug!(namespace = ns, error = %e, "listing what a quota counts");
                        continue;
                    }
                }
                if obj.get("status") == Some(&status) {
                    continue;
                }
            }
            let name = cached.name_any();
            let patch = json!({"metadata": {"resourceVersion": cached.resource_version()}, "status": status});
            let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
            let result = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            ctx.status.record(result.is_ok());
            match result {
                Ok(_) => {
                    tracing::debug!(namespace = ns, quota = name, used = %status["used"], "quota usage updated");
                    written += 1;
                }
                // A create (or an edit) got there first: recomputed on the next sweep.
                Err(e) if dynamic::lost_a_race(&e) => {}
                Err(e) => tracing::warn!(namespace = ns, quota = name, error = %e, "updating quota status"),
            }
        }
        self.encoded.finish_pass();
        written
    }
}

/// The resources whose objects a quota counts.
fn counted_resources(quota_obj: &Value) -> Vec<&'static ResourceInfo> {
    let names = quota_obj.pointer("/spec/hard").and_then(Value::as_object).into_iter().flat_map(|m| m.keys());
    let mut infos: Vec<&'static ResourceInfo> = names.flat_map(|n| quota::resources_for(n)).collect();
    infos.sort_by_key(|i| (i.group, i.plural));
    infos.dedup_by_key(|i| (i.group, i.plural));
    infos
}

/// The namespace's objects of `infos`, listed through the API (a linearizable read).
async fn list_counted(
    ctx: &TaskContext,
    infos: &[&'static ResourceInfo],
    ns: &str,
) -> Result<Vec<(&'static ResourceInfo, Value)>, kube::Error> {
    let mut out = Vec::new();
    for info in infos {
        let list = dynamic::api(&ctx.client, info, Some(ns)).list(&Default::default()).await?;
        for item in list.items {
            out.push((*info, serde_json::to_value(item).unwrap_or_default()));
        }
    }
    Ok(out)
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    tracing::info!("resourcequota controller started");
    let quotas = ctx.informers.store::<ResourceQuota>();
    let mut controller = Controller { quotas, kinds: HashMap::new(), encoded: Converted::default() };
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let Some(swept) = every.pass(tokio::time::timeout(Duration::from_secs(30), controller.sweep(&ctx))).await
        else {
            return;
        };
        if swept.is_err() {
            tracing::warn!("resourcequota sweep timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::table as resources;

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
