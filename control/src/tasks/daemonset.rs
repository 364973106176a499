//! The DaemonSet controller: one pod of each DaemonSet on every eligible node, as
//! Kubernetes' `DaemonSetsController` does.
//!
//! * [`plan`] is the pure decision (which nodes need a pod, which pods go, the rolling
//!   update, the status).
//! * [`run`] is the leader task: a [`Controller`] of DaemonSets owning pods and watching
//!   Nodes, whose reconcile carries a plan out through the API. A Node change that matters
//!   to placement (labels, taints, cordon, readiness) or a Node's arrival or removal
//!   requeues every DaemonSet; heartbeats do not. Creations go out in slow-start batches
//!   and are remembered (expectations) until the pod cache shows them, so a sync racing
//!   its own writes never puts two pods on one node. Deletions carry a uid precondition.
//! * Each sync first brings the DaemonSet's ControllerRevision history up to date
//!   ([`crate::tasks::revisions`], Kubernetes' `constructHistory`): the current template's
//!   revision exists and is the newest, and its hash is what new pods carry; once the
//!   pods are handled, old revisions beyond `revisionHistoryLimit` that no pod uses go.
//!
//! Pods are not bound here: each new pod carries a required node affinity on
//! `metadata.name` and the scheduler binds it, as in Kubernetes since 1.12.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::controller::{Action, Controller, Reconcile};
use super::events::{reference, EventType, Recorder};
use super::expectations::Expectations;
use super::owner_index::OwnerIndex;
use super::ownership;
use super::pod_control::PodControl;
use super::revisions::control::{raise_collision_count, Ensured, RevisionControl};
use super::revisions::{self, expired, plan_history, HistoryPlan, Limit, Owner};
use super::status::write_status_if_changed;
use super::sync_error::SyncError;
use super::workqueue::{Change, Key};
use crate::tasks::context::TaskContext;
use plan::{new_pod, plan_daemonset, revision_hash};

const WORKERS: usize = 2;
/// Safety net for missed events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
const COMPONENT: &str = "daemonset-controller";

/// What of a Node decides where daemons run: labels, taints, cordon, Ready. A change of
/// anything else (heartbeats, images, addresses) requeues nothing.
fn placement_fingerprint(node: &Node) -> String {
    let spec = node.spec.as_ref();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    json!({
        "labels": node.metadata.labels,
        "taints": spec.and_then(|s| s.taints.as_ref()),
        "unschedulable": spec.and_then(|s| s.unschedulable),
        "ready": ready,
    })
    .to_string()
}

/// Which DaemonSets a Node change requeues: every one, when something that decides
/// placement changed ([`placement_fingerprint`]) or the Node came or went, or when the
/// Node informer re-listed; none for a heartbeat.
fn placement_changes(daemonsets: Store<DaemonSet>) -> impl Fn(Change<'_, Node>) -> Vec<Key> + Send + Sync {
    let seen: Mutex<HashMap<String, String>> = Mutex::default();
    let every_daemonset = move || daemonsets.state().iter().map(|ds| Key::of(ds.as_ref())).collect();
    move |change| match change {
        Change::Object { obj, deleted } => {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let mut seen = seen.lock().unwrap();
            let changed = if deleted {
                seen.remove(&name).is_some()
            } else {
                let print = placement_fingerprint(obj);
                seen.insert(name, print.clone()).is_none_or(|old| old != print)
            };
            drop(seen);
            if changed {
                every_daemonset()
            } else {
                Vec::new()
            }
        }
        Change::Resynced => every_daemonset(),
    }
}

/// Carries out the DaemonSet decision through the API.
struct Reconciler {
    ctx: TaskContext,
    /// The pods each owner may claim (its own and its namespace's orphans).
    pod_owners: Arc<OwnerIndex<Pod>>,
    /// The revisions each owner may claim, likewise.
    revision_owners: Arc<OwnerIndex<ControllerRevision>>,
    nodes: Store<Node>,
    expectations: Mutex<Expectations>,
    recorder: Recorder,
}

impl Reconciler {
    /// Kubernetes' `constructHistory` carried out: adopts and releases revisions, makes the
    /// current template's revision exist as the newest, and returns the hash its pods
    /// carry. On a hash collision the DaemonSet's `status.collisionCount` goes up (pinned
    /// to the resourceVersion the hash was computed from) and the sync starts over.
    async fn current_revision(
        &self,
        ds: &DaemonSet,
        control: &RevisionControl<'_>,
        history: &HistoryPlan<'_>,
        template_hash: &str,
    ) -> Result<String, SyncError> {
        control.patch_owners(&history.adopt, &history.release).await?;
        match control.ensure_current(&history.current, template_hash).await? {
            Ensured::Revision { hash, .. } => Ok(hash),
            Ensured::Collision(e) => {
                let count: fn(&mut DaemonSet) -> &mut Option<i32> =
                    |ds| &mut ds.status.get_or_insert_with(Default::default).collision_count;
                Err(raise_collision_count(&self.ctx, ds, count, e).await)
            }
        }
    }
}

impl Reconcile<DaemonSet> for Reconciler {
    type Error = SyncError;

    #[tracing::instrument(skip_all, fields(daemonset = %key))]
    async fn reconcile(&self, key: &Key, ds: Arc<DaemonSet>) -> Result<Action, SyncError> {
        let owner_uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let template_hash = revision_hash(&ds);
        let owner = Owner {
            kind: "DaemonSet",
            meta: &ds.metadata,
            selector: ds.spec.as_ref().map(|s| &s.selector),
            template: &template,
            hash: &template_hash,
        };
        let candidates = self.revision_owners.claimable(&key.namespace, owner_uid);
        let candidates: Vec<&ControllerRevision> = candidates.iter().map(|r| r.as_ref()).collect();
        let revision_control = RevisionControl::new(&self.ctx, &key.namespace);
        // A DaemonSet being deleted keeps no history: the garbage collector removes it.
        let history = (!ownership::is_deleting(&ds.metadata)).then(|| plan_history(&owner, &candidates));
        let hash = match &history {
            None => template_hash.clone(),
            Some(history) => self.current_revision(&ds, &revision_control, history, &template_hash).await?,
        };

        let pods = self.pod_owners.claimable(&key.namespace, owner_uid);
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let nodes = self.nodes.state();
        let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
        let manage = self.expectations.lock().unwrap().satisfied(key, &pods);
        let plan = plan_daemonset(&ds, &hash, &nodes, &pods, manage, Timestamp::now());
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);

        let control = PodControl::new(&self.ctx, &self.recorder, &*ds, &pod_api);
        control.patch_owners(&plan.adopt, &plan.release).await?;
        for failed in &plan.failed {
            let message = format!(
                "Found failed daemon pod {}/{} on node {}, will try to kill it",
                key.namespace, failed.pod, failed.node
            );
            self.recorder.publish(&reference(&*ds), EventType::Warning, "FailedDaemonPod", &message).await;
        }
        // Deletions first, as Kubernetes' `syncNodes` (a replaced pod frees its host ports).
        let deleted = control.delete_expected(&self.expectations, key, &plan.delete).await;
        let pods = plan.create_on.iter().map(|node| new_pod(&ds, node, &plan.hash)).collect();
        let created = control.create_expected(&self.expectations, key, pods).await;
        deleted?;
        created?;

        write_status_if_changed(&self.ctx, &*ds, &plan.status).await?;
        // Kubernetes' `cleanupHistory`, only once the pods this controller expects are in
        // the cache: a revision is kept while any pod carries its hash.
        if let Some(history) = history.filter(|_| manage) {
            let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit);
            let is_live =
                |r: &ControllerRevision| revisions::hash_label(r).is_some_and(|h| plan.live_hashes.contains(h));
            revision_control.delete(&expired(&history.old, limit, Limit::CountingLive, is_live)).await?;
        }
        Ok(plan.requeue_after.into())
    }

    fn forget(&self, key: &Key) {
        self.expectations.lock().unwrap().forget(key);
    }
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let controller = Controller::<DaemonSet>::new("daemonset", &ctx.informers)
        // Pod events enqueue their owners; the pods themselves are read through the index.
        .owns::<Pod>(|ds| ds.spec.as_ref().map(|s| &s.selector))
        // A revision changed or deleted by hand is put right (or adopted) at once.
        .owns::<ControllerRevision>(|ds| ds.spec.as_ref().map(|s| &s.selector))
        .watches::<Node, _>(placement_changes(ctx.informers.store::<DaemonSet>()))
        .workers(WORKERS)
        .resync_every(RESYNC_EVERY);
    let reconciler = Reconciler {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        pod_owners: ctx.informers.owner_index::<Pod>(),
        revision_owners: ctx.informers.owner_index::<ControllerRevision>(),
        nodes: ctx.informers.store::<Node>(),
        ctx,
        expectations: Mutex::default(),
    };
    controller.run(Arc::new(reconciler), cancel).await;
}
