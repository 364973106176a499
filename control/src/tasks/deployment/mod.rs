//! The Deployment controller: rolls Deployments out through one ReplicaSet per pod
//! template, as Kubernetes' `DeploymentController` does.
//!
//! * [`plan`] is the pure decision (hashing, RollingUpdate and Recreate, proportional
//!   scaling, revisions and rollback re-use, history cleanup, status and conditions).
//! * [`run`] is the leader task: a [`Controller`] of Deployments owning ReplicaSets (and
//!   watching pod deletions, for Recreate), whose reconcile carries a plan out through the
//!   API. Every write carries the resourceVersion it was decided on. After writing, a
//!   Deployment waits until the caches have caught up with its own writes (resourceVersion
//!   expectations) before it decides again, so it never decides twice on the same stale
//!   picture (e.g. scales the new ReplicaSet up again before the old one's scale-down is
//!   visible).

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::controller::{Action, Controller, Reconcile};
use super::events::{reference, Recorder};
use super::ownership;
use super::sync_error::{api_err, is_status, SyncError};
use super::workqueue::{Change, Key};
use crate::tasks::context::TaskContext;
use plan::{plan_deployment, DeploymentPlan};

const WORKERS: usize = 2;
/// Safety net for missed events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// A write not seen by then is given up on (the cache is local; this only guards against
/// a lost event wedging a Deployment).
const EXPECTATIONS_TTL: Duration = Duration::from_secs(30);
const COMPONENT: &str = "deployment-controller";

/// Objects this controller wrote, at the resourceVersion each write produced.
#[derive(Debug)]
struct Pending {
    deployment: Option<u64>,
    replicasets: Vec<(String, Option<u64>)>,
    since: Instant,
}

fn rv(obj: &impl Resource) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

/// Carries out the Deployment decision through the API.
struct Reconciler {
    ctx: TaskContext,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    expectations: Mutex<HashMap<Key, Pending>>,
    recorder: Recorder,
}

impl Reconcile<Deployment> for Reconciler {
    type Error = SyncError;

    #[tracing::instrument(skip_all, fields(deployment = %key))]
    async fn reconcile(&self, key: &Key, d: Arc<Deployment>) -> Result<Action, SyncError> {
        if !self.caught_up(key, &d) {
            // The watch events of our own writes re-queue this key; this is the safety net.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let in_ns = |ns: Option<&String>| ns.map(String::as_str) == Some(key.namespace.as_str());
        let rses: Vec<Arc<ReplicaSet>> =
            self.replicasets.state().into_iter().filter(|rs| in_ns(rs.metadata.namespace.as_ref())).collect();
        let refs: Vec<&ReplicaSet> = rses.iter().map(|r| r.as_ref()).collect();
        // Only Recreate waits for old pods to be gone (Kubernetes' `oldPodsRunning`); counting
        // a namespace's pods on every sync of a rolling Deployment would be wasted work.
        let recreate =
            d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let mut live_pods: HashMap<String, usize> = HashMap::new();
        let pods = if recreate { self.pods.state() } else { Vec::new() };
        for pod in pods.iter().filter(|p| in_ns(p.metadata.namespace.as_ref())) {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded") | Some("Failed")) {
                continue;
            }
            if let Some(owner) = ownership::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet") {
                *live_pods.entry(owner.uid.clone()).or_default() += 1;
            }
        }
        let plan = plan_deployment(&d, &refs, &live_pods, Timestamp::now());
        self.execute(key, &d, plan).await
    }

    fn forget(&self, key: &Key) {
        self.expectations.lock().unwrap().remove(key);
    }
}

impl Reconciler {
    /// Whether the caches reflect every write of the last sync of `key`.
    fn caught_up(&self, key: &Key, d: &Deployment) -> bool {
        let mut all = self.expectations.lock().unwrap();
        let Some(p) = all.get(key) else { return true };
        let deployment_ok = p.deployment.is_none_or(|want| rv(d).is_none_or(|have| have >= want));
        let replicasets_ok = p.replicasets.iter().all(|(name, want)| {
            let cached = self.replicasets.get(&ObjectRef::new(name).within(&key.namespace));
            match (cached, want) {
                (None, None) => true,
                (Some(_), None) => false,
                // Not in the cache yet (just created), or older than what we wrote.
                (None, Some(_)) => false,
                (Some(rs), Some(want)) => rv(rs.as_ref()).is_none_or(|have| have >= *want),
            }
        });
        let done = (deployment_ok && replicasets_ok) || p.since.elapsed() > EXPECTATIONS_TTL;
        if done {
            all.remove(key);
        }
        done
    }

    async fn execute(&self, key: &Key, d: &Deployment, plan: DeploymentPlan) -> Result<Action, SyncError> {
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let d_api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let mut written = Pending { deployment: None, replicasets: Vec::new(), since: Instant::now() };

        for change in plan.adopt.iter().chain(&plan.release) {
            let patch = json!({"metadata": {
                "resourceVersion": change.resource_version,
                "ownerReferences": change.owner_references,
            }});
            let result = rs_api.patch(&change.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(rs) => written.replicasets.push((change.name.clone(), rv(&rs))),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(api_err(format!("claiming replica set {}", change.name))(e)),
            }
        }

        if let Some(new_rs) = &plan.create {
            let name = new_rs.metadata.name.clone().unwrap_or_default();
            tracing::info!(replicaset = %name, "creating the new replica set");
            let result = rs_api.create(&PostParams::default(), new_rs).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(rs) => written.replicasets.push((name, rv(&rs))),
                Err(e) if is_status(&e, 409) => {
                    self.name_taken(key, d, &rs_api, &d_api, &name).await?;
                    return Ok(Action::done());
                }
                Err(e) => {
                    let msg = format!("Failed to create new replica set {name:?}: {e}");
                    let reference = reference(d);
                    self.recorder.publish(&reference, super::events::EventType::Warning, "FailedCreate", &msg).await;
                    return Err(api_err(format!("creating replica set {name}"))(e));
                }
            }
        }

        for rs in &plan.update {
            let name = rs.metadata.name.clone().unwrap_or_default();
            // `rs` carries the resourceVersion it was read at.
            let result = rs_api.replace(&name, &PostParams::default(), rs).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(updated) => written.replicasets.push((name, rv(&updated))),
                Err(e) => {
                    self.remember(key, written);
                    return Err(api_err(format!("updating replica set {name}"))(e));
                }
            }
        }

        for removal in &plan.delete {
            tracing::info!(replicaset = %removal.name, "deleting an old replica set beyond the history limit");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: removal.uid.clone(),
                    resource_version: removal.resource_version.clone(),
                }),
                ..Default::default()
            };
            let result = rs_api.delete(&removal.name, &params).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(_) => written.replicasets.push((removal.name.clone(), None)),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => tracing::debug!(replicaset = %removal.name, error = %e, "history cleanup failed"),
            }
        }

        let mut latest = d.clone();
        if let Some(annotations) = &plan.annotations {
            latest.metadata.annotations = Some(annotations.clone());
            let result = d_api.replace(&key.name, &PostParams::default(), &latest).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(updated) => {
                    written.deployment = rv(&updated);
                    latest = updated;
                }
                Err(e) => {
                    self.remember(key, written);
                    return Err(api_err("updating the revision annotation")(e));
                }
            }
        }
        if let Some(status) = &plan.status {
            latest.status = Some(status.clone());
            let result = d_api.replace_status(&key.name, &PostParams::default(), &latest).await;
            self.ctx.status.record(result.is_ok());
            match result {
                Ok(updated) => written.deployment = rv(&updated),
                Err(e) => {
                    self.remember(key, written);
                    return Err(api_err("updating status")(e));
                }
            }
        }
        self.remember(key, written);

        let reference = reference(d);
        for (event_type, reason, message) in &plan.events {
            self.recorder.publish(&reference, *event_type, reason, message).await;
        }
        Ok(plan.requeue_after.into())
    }

    /// The new ReplicaSet's name exists: ours and the cache is behind (wait for it), or a
    /// hash collision (bump `status.collisionCount` so the next hash differs).
    async fn name_taken(
        &self,
        key: &Key,
        d: &Deployment,
        rs_api: &Api<ReplicaSet>,
        d_api: &Api<Deployment>,
        name: &str,
    ) -> Result<(), SyncError> {
        let existing = rs_api.get(name).await.map_err(api_err(format!("reading replica set {name}")))?;
        let ours =
            ownership::controller_of(&existing.metadata).is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref());
        let same = existing
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .zip(d.spec.as_ref().map(|s| &s.template))
            .is_some_and(|(a, b)| plan::equal_ignore_hash(a, b));
        if ours && same {
            self.remember(
                key,
                Pending { deployment: None, replicasets: vec![(name.into(), rv(&existing))], since: Instant::now() },
            );
            return Ok(());
        }
        tracing::warn!(replicaset = name, "pod-template hash collision");
        let mut updated = d.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
        let result = d_api.replace_status(&key.name, &PostParams::default(), &updated).await;
        self.ctx.status.record(result.is_ok());
        let updated = result.map_err(api_err("recording a hash collision"))?;
        self.remember(key, Pending { deployment: rv(&updated), replicasets: vec![], since: Instant::now() });
        Ok(())
    }

    fn remember(&self, key: &Key, written: Pending) {
        if written.deployment.is_some() || !written.replicasets.is_empty() {
            self.expectations.lock().unwrap().insert(key.clone(), written);
        }
    }
}

/// The Deployment a deleted pod's ReplicaSet belongs to: only Recreate cares about pods
/// (it waits for the old ones to be gone), and only about their deletion.
fn deleted_pod_owner(replicasets: Store<ReplicaSet>) -> impl Fn(Change<'_, Pod>) -> Option<Key> + Send + Sync {
    move |change| {
        let Change::Object { obj, deleted: true } = change else { return None };
        let owner = ownership::controller_of(&obj.metadata).filter(|o| o.kind == "ReplicaSet")?;
        let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
        let rs = replicasets.get(&ObjectRef::new(&owner.name).within(ns))?;
        let d = ownership::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
        Some(Key::new(ns, &d.name))
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let replicasets = ctx.informers.store::<ReplicaSet>();
    let controller = Controller::<Deployment>::new("deployment", &ctx.informers)
        .owns::<ReplicaSet>(|d| d.spec.as_ref().map(|s| &s.selector))
        .watches::<Pod, _>(deleted_pod_owner(replicasets.clone()))
        .workers(WORKERS)
        .resync_every(RESYNC_EVERY);
    let reconciler = Reconciler {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        pods: ctx.informers.store::<Pod>(),
        ctx,
        replicasets,
        expectations: Mutex::new(HashMap::new()),
    };
    controller.run(Arc::new(reconciler), cancel).await;
}
