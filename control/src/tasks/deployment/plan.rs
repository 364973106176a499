//! The Deployment controller's decision, pure: given a Deployment, the ReplicaSets of its
//! namespace and (for Recreate) how many live pods each ReplicaSet still has, one sync
//! yields the ReplicaSets to create, update (scale, annotate) and delete, the
//! Deployment's revision annotation and its status. It follows Kubernetes'
//! `pkg/controller/deployment` step by step (`syncDeployment`, `rolloutRolling`,
//! `rolloutRecreate`, `sync`/`scale`, `syncRolloutStatus`), with two deliberately more
//! conservative readings of ReplicaSet state, so that the surge and availability bounds
//! hold for *pods*, not only for `spec.replicas`, while ReplicaSet statuses lag:
//! * a ReplicaSet's pods count as `max(spec.replicas, status.replicas)` when deciding
//!   how far the new ReplicaSet may surge (pods an old ReplicaSet has not deleted yet
//!   still occupy the surge budget);
//! * a ReplicaSet's available pods count as `min(status.availableReplicas,
//!   spec.replicas)` when deciding how far old ReplicaSets may shrink (a scale-down not yet
//!   reflected in status must not be spent twice).
//!
//! This module holds the plan, the per-sync state ([`Sync`]) and field accessors; the steps
//! live in [`rollout`] (RollingUpdate, Recreate), [`scale`] (proportional scaling),
//! [`revisions`] (the new ReplicaSet, revision annotations, history cleanup), [`status`]
//! (conditions, progress deadline), [`fenceposts`] (maxSurge/maxUnavailable) and [`hash`]
//! (the pod-template hash).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::tasks::events::EventType;
use crate::tasks::ownership::{self, OwnerChange};

mod fenceposts;
mod hash;
mod revisions;
mod rollout;
mod scale;
mod status;

pub use self::fenceposts::{max_surge, max_unavailable, resolve_fenceposts, scaled_value};
pub use self::hash::{compute_hash, equal_ignore_hash};
use self::revisions::{replicas_annotations_need_update, set_replicas_annotations};
pub use self::status::{condition, deployment_complete};
use self::status::{new_condition, set_condition};

pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_DESIRED_REPLICAS as DESIRED_REPLICAS;
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_MAX_REPLICAS as MAX_REPLICAS;
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_REVISION as REVISION;
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_REVISION_HISTORY as REVISION_HISTORY;
use berth_proto::model::well_known::ANNOTATION_LAST_APPLIED as LAST_APPLIED;
pub use berth_proto::model::well_known::LABEL_POD_TEMPLATE_HASH as POD_TEMPLATE_HASH;
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Kubernetes' cap on the revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

// Condition types and reasons, as Kubernetes spells them.
pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// A ReplicaSet to delete (history cleanup), with the preconditions of the state read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Everything one sync of a Deployment does, in the order it is carried out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentPlan {
    pub adopt: Vec<OwnerChange>,
    pub release: Vec<OwnerChange>,
    /// The new ReplicaSet, when this template has none yet.
    pub create: Option<ReplicaSet>,
    /// Changed ReplicaSets, each carrying the resourceVersion it was read at.
    pub update: Vec<ReplicaSet>,
    pub delete: Vec<Removal>,
    /// The Deployment's new annotations (the revision), when they change.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The Deployment's new status, when it changes.
    pub status: Option<DeploymentStatus>,
    pub events: Vec<(EventType, &'static str, String)>,
    /// Look again then even without events (progress deadline).
    pub requeue_after: Option<Duration>,
}

// ---------------------------------------------------------------------------------------
// Small accessors.

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn set_spec_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn status_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn status_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// Pods that may exist for `rs` right now (see the module header).
fn pods_upper_bound(rs: &ReplicaSet) -> i32 {
    spec_replicas(rs).max(status_replicas(rs))
}

/// Available pods `rs` is sure to keep (see the module header).
fn available_lower_bound(rs: &ReplicaSet) -> i32 {
    status_available(rs).min(spec_replicas(rs))
}

pub fn desired_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn int_annotation(meta: &ObjectMeta, key: &str) -> Option<i32> {
    annotation(meta, key)?.parse().ok()
}

/// A ReplicaSet's revision (0 when absent or malformed).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn created(rs: &ReplicaSet, now: Timestamp) -> Timestamp {
    // A ReplicaSet this sync is about to create is the newest.
    rs.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet, now: Timestamp) -> Ordering {
    created(a, now).cmp(&created(b, now)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn is_rolling(d: &Deployment) -> bool {
    let strategy = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref());
    strategy != Some("Recreate")
}

fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|&s| s != i32::MAX)
}

fn min_ready_seconds(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.min_ready_seconds)
}

fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The sync.

/// Decides one sync of `d`. `replicasets` are the ReplicaSets of its namespace;
/// `live_pods` counts, per ReplicaSet uid, the pods that are not finished (Recreate waits
/// for them to be gone).
pub fn plan_deployment(
    d: &Deployment,
    replicasets: &[&ReplicaSet],
    live_pods: &HashMap<String, usize>,
    now: Timestamp,
) -> DeploymentPlan {
    let mut plan = DeploymentPlan::default();
    let selector = ownership::selector(d.spec.as_ref().map(|s| &s.selector)).ok().flatten();
    let reference = ownership::controller_ref("apps/v1", "Deployment", &d.metadata);
    let claimed = ownership::claim_children(&d.metadata, &reference, selector.as_ref(), replicasets.iter().copied());
    (plan.adopt, plan.release) = (claimed.adopt, claimed.release);
    let owned: Vec<ReplicaSet> = claimed.owned.into_iter().cloned().collect();
    if selector.is_none() {
        // Kubernetes refuses to act on a selector that selects everything.
        plan.events.push((EventType::Warning, "SelectingAll", "This deployment is selecting all pods.".into()));
        return plan;
    }
    let mut sync = Sync::new(d, owned, live_pods, now);
    sync.run();
    sync.finish(plan)
}

struct Sync<'a> {
    d: &'a Deployment,
    now: Timestamp,
    live_pods: &'a HashMap<String, usize>,
    /// Owned ReplicaSets, oldest first; a ReplicaSet created by this sync is appended.
    rses: Vec<ReplicaSet>,
    /// Indices of ReplicaSets changed by this sync.
    dirty: BTreeSet<usize>,
    new: Option<usize>,
    created: Option<usize>,
    status: DeploymentStatus,
    annotations: BTreeMap<String, String>,
    delete: Vec<Removal>,
    events: Vec<(EventType, &'static str, String)>,
    requeue_after: Option<Duration>,
}

impl<'a> Sync<'a> {
    fn new(
        d: &'a Deployment,
        mut rses: Vec<ReplicaSet>,
        live_pods: &'a HashMap<String, usize>,
        now: Timestamp,
    ) -> Self {
        rses.sort_by(|a, b| by_creation(a, b, now));
        Sync {
            d,
            now,
            live_pods,
            rses,
            dirty: BTreeSet::new(),
            new: None,
            created: None,
            status: d.status.clone().unwrap_or_default(),
            annotations: d.metadata.annotations.clone().unwrap_or_default(),
            delete: Vec::new(),
            events: Vec::new(),
            requeue_after: None,
        }
    }

    fn run(&mut self) {
        if ownership::is_deleting(&self.d.metadata) {
            // Kubernetes' `syncStatusOnly`.
            self.get_all(false);
            return self.sync_status();
        }
        self.check_paused_conditions();
        if is_paused(self.d) || self.is_scaling_event() {
            return self.sync_scale();
        }
        if is_rolling(self.d) {
            self.rollout_rolling()
        } else {
            self.rollout_recreate()
        }
    }

    fn finish(self, mut plan: DeploymentPlan) -> DeploymentPlan {
        plan.create = self.created.map(|i| self.rses[i].clone());
        plan.update = self.dirty.iter().filter(|i| Some(**i) != self.created).map(|i| self.rses[*i].clone()).collect();
        plan.delete = self.delete;
        if Some(&self.annotations) != self.d.metadata.annotations.as_ref()
            && !(self.annotations.is_empty() && self.d.metadata.annotations.is_none())
        {
            plan.annotations = Some(self.annotations);
        }
        if Some(&self.status) != self.d.status.as_ref() {
            plan.status = Some(self.status);
        }
        plan.events.extend(self.events);
        plan.requeue_after = self.requeue_after;
        plan
    }

    fn old_indices(&self) -> Vec<usize> {
        (0..self.rses.len()).filter(|i| Some(*i) != self.new).collect()
    }

    fn all_indices(&self) -> Vec<usize> {
        (0..self.rses.len()).collect()
    }

    fn active(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter().copied().filter(|i| spec_replicas(&self.rses[*i]) > 0).collect()
    }

    fn sum(&self, idx: &[usize], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
        idx.iter().map(|i| f(&self.rses[*i])).sum()
    }
}

#[cfg(test)]
mod tests;
