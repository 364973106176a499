//! The StatefulSet controller's decision, pure: given a StatefulSet and the pods of its
//! namespace, one sync yields the pods to create and delete and the status. It follows
//! Kubernetes' `StatefulSetControl.updateStatefulSet`:
//! * pods have stable identities `NAME-<ordinal>` for ordinals `start … start+replicas-1`;
//!   a pod is only ever created under its own name, so the API's name uniqueness makes
//!   "at most one pod per identity" hold even while an old pod is terminating or stuck on
//!   an unreachable node: nothing is created until that pod object is really gone;
//! * `OrderedReady` creates in ordinal order, each pod Running and Ready (and available
//!   for minReadySeconds) before the next, and scales down from the highest ordinal, one
//!   pod at a time; `Parallel` creates and deletes without waiting;
//! * `RollingUpdate` replaces pods from the highest ordinal down to `partition`, one at a
//!   time, each waiting for the previous to be healthy; pods below the partition keep (and
//!   are recreated at) the current revision. `OnDelete` only uses the new template for
//!   pods that were deleted.
//!
//! Revisions are ControllerRevisions named `NAME-<template hash>`, which the controller
//! keeps (`crate::tasks::revisions`) and hands in as [`Revisions`]: the update revision
//! (the set's template) and the current one, whose template pods below the partition are
//! (re)created from. A current revision without a ControllerRevision (one recorded before
//! Berth kept them) has its template recovered from a live pod of that revision; if none
//! is left, such a pod gets the update revision.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::tasks::deployment::plan::compute_hash;
use crate::tasks::ownership::{self, OwnerChange};
use crate::tasks::pod_control::PodRef;
use crate::tasks::revisions::revision_name;

pub use berth_proto::model::well_known::LABEL_CONTROLLER_REVISION_HASH as CONTROLLER_REVISION_HASH;
pub use berth_proto::model::well_known::LABEL_POD_INDEX as POD_INDEX_LABEL;
pub use berth_proto::model::well_known::LABEL_STATEFULSET_POD_NAME as POD_NAME_LABEL;

/// The ordinal of a pod of the set named `set` (`web-3` → 3), if the name fits.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

fn is_parallel(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel")
}

fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()) == Some("OnDelete")
}

/// `spec.updateStrategy.rollingUpdate.partition` (0 when unset or OnDelete).
pub fn partition(set: &StatefulSet) -> i32 {
    if is_on_delete(set) {
        return 0;
    }
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0)
}

fn template(set: &StatefulSet) -> PodTemplateSpec {
    set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// The hash of the set's template and collision count.
pub fn template_hash(set: &StatefulSet) -> String {
    // No collisions and a collision count of 0 are the same revision (the first status
    // write turns the one into the other).
    let collisions = set.status.as_ref().and_then(|s| s.collision_count).filter(|c| *c != 0);
    compute_hash(&template(set), collisions)
}

/// The revision name of the set's template: `NAME-<hash>`.
pub fn update_revision(set: &StatefulSet) -> String {
    revision_name(set.metadata.name.as_deref().unwrap_or_default(), &template_hash(set))
}

/// The revisions one sync works with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Revisions {
    /// The update revision's name: the revision of the set's template.
    pub update: String,
    /// The current revision's name (`status.currentRevision`, or the update revision
    /// before there is one).
    pub current: String,
    /// The current revision's template, from its ControllerRevision; `None` when it is the
    /// update revision or has no ControllerRevision.
    pub current_template: Option<PodTemplateSpec>,
}

impl Revisions {
    /// The revisions as the set's status names them (the update revision named after the
    /// template before the status has one), with no ControllerRevision read: for a set
    /// being deleted, whose history is left to the garbage collector.
    pub fn from_status(set: &StatefulSet) -> Revisions {
        let named = |r: Option<&String>| r.filter(|r| !r.is_empty()).cloned();
        let status = set.status.as_ref();
        let update = named(status.and_then(|s| s.update_revision.as_ref())).unwrap_or_else(|| update_revision(set));
        let current = named(status.and_then(|s| s.current_revision.as_ref())).unwrap_or_else(|| update.clone());
        Revisions { update, current, current_template: None }
    }
}

pub fn pod_revision(pod: &Pod) -> Option<&str> {
    ownership::labels(&pod.metadata).get(CONTROLLER_REVISION_HASH).map(String::as_str)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_terminating(pod: &Pod) -> bool {
    ownership::is_deleting(&pod.metadata)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Failed" | "Succeeded"))
}

/// `isRunningAndReady`.
pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && ownership::pod_is_ready(pod)
}

/// `isHealthy` with minReadySeconds: running, ready long enough, not terminating.
fn healthy(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    running_and_ready(pod) && ownership::pod_is_available(pod, min_ready, now) && !is_terminating(pod)
}

/// The pod of ordinal `ordinal` from `template` at `revision` (Kubernetes'
/// `newStatefulSetPod` + `setPodRevision`): stable name, hostname and subdomain, identity
/// labels, controller reference.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_ref("apps/v1", "StatefulSet", &set.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A revision's template recovered from one of its live pods: what the pod got from the
/// template, without what the controller, the scheduler and the API added per pod.
pub fn template_from_pod(pod: &Pod) -> PodTemplateSpec {
    let mut labels = pod.metadata.labels.clone().unwrap_or_default();
    for k in [POD_NAME_LABEL, POD_INDEX_LABEL, CONTROLLER_REVISION_HASH] {
        labels.remove(k);
    }
    let mut spec = pod.spec.clone().unwrap_or_default();
    spec.node_name = None;
    spec.hostname = None;
    spec.subdomain = None;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: pod.metadata.annotations.clone(),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

/// Why a sync stopped early (OrderedReady waits), for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A pod is terminating; nothing is created or deleted past it.
    Terminating(String),
    /// A pod is not Running and Ready (or not yet available) yet.
    NotReady(String),
}

/// Everything one sync of a StatefulSet does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatefulSetPlan {
    pub adopt: Vec<OwnerChange>,
    pub release: Vec<OwnerChange>,
    /// Pods to create, in order (each under its stable name).
    pub create: Vec<Pod>,
    /// Pods to delete, in order; `recreate` marks failed pods being replaced.
    pub delete: Vec<PodRef>,
    pub recreate: Vec<String>,
    /// The revisions of the owned pods, terminating ones included: their
    /// ControllerRevisions are kept.
    pub live_revisions: BTreeSet<String>,
    pub wait: Option<Wait>,
    pub status: StatefulSetStatus,
    pub requeue_after: Option<Duration>,
}

/// A slot of the desired set: an existing pod, or one this sync creates.
enum Slot<'a> {
    Pod(&'a Pod),
    Planned { revision: String },
}

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef { name: pod.metadata.name.clone().unwrap_or_default(), uid: pod.metadata.uid.clone() }
}

/// Decides one sync of `set` at `revisions` over the pods it may claim (its own and its
/// namespace's orphans; see the module docs).
pub fn plan_statefulset(set: &StatefulSet, revisions: &Revisions, pods: &[&Pod], now: Timestamp) -> StatefulSetPlan {
    let mut plan = StatefulSetPlan::default();
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let selector = ownership::selector(set.spec.as_ref().map(|s| &s.selector)).ok().flatten();
    let reference = ownership::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    // Only pods named like members are claimed (Kubernetes' `isMemberOf`).
    let ordinal = |pod: &Pod| pod.metadata.name.as_deref().and_then(|n| ordinal_of(set_name, n));
    let members = pods.iter().copied().filter(|pod| ordinal(pod).is_some());
    let claimed = ownership::claim_children(&set.metadata, &reference, selector.as_ref(), members);
    (plan.adopt, plan.release) = (claimed.adopt, claimed.release);
    let owned: BTreeMap<i32, &Pod> = claimed.owned.into_iter().filter_map(|pod| Some((ordinal(pod)?, pod))).collect();
    plan.live_revisions = owned.values().filter_map(|p| pod_revision(p)).map(str::to_string).collect();
    let update_rev = revisions.update.clone();
    let current_rev = if revisions.current.is_empty() { update_rev.clone() } else { revisions.current.clone() };
    let min_ready = min_ready_seconds(set);
    plan.status = status(set, owned.values().copied(), &current_rev, &update_rev, now);
    if min_ready > 0 {
        plan.requeue_after = owned
            .values()
            .filter(|p| running_and_ready(p) && !ownership::pod_is_available(p, min_ready, now))
            .filter_map(|p| ownership::pod_available_at(p, min_ready))
            .min()
            .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(100));
    }
    if ownership::is_deleting(&set.metadata) {
        // The garbage collector removes the pods; only the status is kept.
        return plan;
    }

    let (start, count) = (start_ordinal(set), replicas(set));
    let end = start.saturating_add(count);
    let monotonic = !is_parallel(set);
    let part = partition(set);
    let update_template = template(set);
    // Pods below the partition are (re)created at the current revision: its
    // ControllerRevision's template, or one recovered from a live pod of that revision.
    let current_template = if current_rev == update_rev {
        None
    } else {
        revisions.current_template.clone().or_else(|| {
            owned.values().find(|p| pod_revision(p) == Some(current_rev.as_str())).map(|p| template_from_pod(p))
        })
    };
    let revision_for = |ordinal: i32| -> (&PodTemplateSpec, &str) {
        match &current_template {
            Some(t) if !is_on_delete(set) && ordinal < start.saturating_add(part) => (t, current_rev.as_str()),
            _ => (&update_template, update_rev.as_str()),
        }
    };
    let mut slots: Vec<Slot> = Vec::new();
    let condemned: Vec<&Pod> = owned.iter().filter(|(o, _)| **o < start || **o >= end).map(|(_, p)| *p).collect();
    let first_unhealthy = (start..end)
        .filter_map(|o| owned.get(&o).copied())
        .chain(condemned.iter().copied())
        .find(|p| !running_and_ready(p) || is_terminating(p))
        .and_then(|p| p.metadata.name.clone());

    // Replicas, in ordinal order.
    for ordinal in start..end {
        let Some(pod) = owned.get(&ordinal).copied() else {
            let (template, revision) = revision_for(ordinal);
            plan.create.push(new_pod(set, template, revision, ordinal));
            slots.push(Slot::Planned { revision: revision.to_string() });
            if monotonic {
                return plan;
            }
            continue;
        };
        slots.push(Slot::Pod(pod));
        let name = pod.metadata.name.clone().unwrap_or_default();
        if is_terminating(pod) {
            // Its replacement waits until the old object is gone (at most one per identity).
            if monotonic {
                plan.wait = Some(Wait::Terminating(name));
                return plan;
            }
            continue;
        }
        if is_finished(pod) {
            // Deleted now, recreated once gone.
            plan.delete.push(pod_ref(pod));
            plan.recreate.push(name);
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic && !healthy(pod, min_ready, now) {
            plan.wait = Some(Wait::NotReady(name));
            return plan;
        }
    }

    // Scale down: highest ordinal first.
    for pod in condemned.iter().rev() {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if is_terminating(pod) {
            if monotonic {
                plan.wait = Some(Wait::Terminating(name));
                return plan;
            }
            continue;
        }
        // In order, only a healthy pod — or the first unhealthy one — may go.
        if monotonic && !running_and_ready(pod) && first_unhealthy.as_deref() != Some(name.as_str()) {
            plan.wait = Some(Wait::NotReady(name));
            return plan;
        }
        plan.delete.push(pod_ref(pod));
        if monotonic {
            return plan;
        }
    }

    if is_on_delete(set) {
        return plan;
    }
    // Rolling update: from the highest ordinal down to the partition, one pod at a time.
    for (index, slot) in slots.iter().enumerate().rev() {
        if (index as i32) < part {
            break;
        }
        match slot {
            Slot::Pod(pod) => {
                if pod_revision(pod) != Some(update_rev.as_str()) && !is_terminating(pod) {
                    plan.delete.push(pod_ref(pod));
                    return plan;
                }
                if !healthy(pod, min_ready, now) {
                    plan.wait = Some(Wait::NotReady(pod.metadata.name.clone().unwrap_or_default()));
                    return plan;
                }
            }
            Slot::Planned { revision } => {
                if *revision != update_rev {
                    break;
                }
                // Being created: not healthy yet.
                return plan;
            }
        }
    }
    plan
}

/// Kubernetes' status computation over the owned pods, then `completeRollingUpdate`.
fn status<'a>(
    set: &StatefulSet,
    pods: impl Iterator<Item = &'a Pod>,
    current_rev: &str,
    update_rev: &str,
    now: Timestamp,
) -> StatefulSetStatus {
    let previous = set.status.clone().unwrap_or_default();
    let min_ready = min_ready_seconds(set);
    let mut s = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: Some(previous.collision_count.unwrap_or(0)),
        current_revision: Some(current_rev.to_string()),
        update_revision: Some(update_rev.to_string()),
        conditions: previous.conditions,
        ..Default::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for pod in pods {
        let live = !is_terminating(pod);
        if live {
            s.replicas += 1;
        }
        if running_and_ready(pod) {
            ready += 1;
            if ownership::pod_is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if live {
            let revision = pod_revision(pod);
            if revision == Some(current_rev) {
                current += 1;
            }
            if revision == Some(update_rev) {
                updated += 1;
            }
        }
    }
    s.ready_replicas = Some(ready);
    s.available_replicas = Some(available);
    s.current_replicas = Some(current);
    s.updated_replicas = Some(updated);
    // The rollout is complete: the update revision becomes the current one.
    if !is_on_delete(set) && updated == s.replicas && ready == s.replicas {
        s.current_replicas = Some(updated);
        s.current_revision = Some(update_rev.to_string());
    }
    s
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
