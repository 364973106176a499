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
// maxSurge / maxUnavailable.

/// Kubernetes' `GetScaledValueFromIntOrPercent`: a count, or a percentage of `total`
/// rounded up or down.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%') {
            Some(p) => {
                let percent: i64 = p.trim().parse().unwrap_or(0);
                let scaled = percent * i64::from(total);
                let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
                v as i32
            }
            None => s.trim().parse().unwrap_or(0),
        },
    }
}

/// Kubernetes' `ResolveFenceposts`: (maxSurge, maxUnavailable) for `desired` replicas;
/// surge rounds up, unavailability down, and both 0 becomes unavailability 1 (a rollout
/// must be able to make progress).
pub fn resolve_fenceposts(surge: Option<&IntOrString>, unavailable: Option<&IntOrString>, desired: i32) -> (i32, i32) {
    let surge = scaled_value(surge, desired, true).max(0);
    let unavailable = scaled_value(unavailable, desired, false).max(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = ru.map_or(Some(&default), |r| r.max_surge.as_ref());
    let unavailable = ru.map_or(Some(&default), |r| r.max_unavailable.as_ref());
    resolve_fenceposts(surge, unavailable, desired_replicas(d))
}

/// Kubernetes' `MaxSurge`.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// Kubernetes' `MaxUnavailable` (never more than the desired replicas).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = desired_replicas(d);
    if !is_rolling(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

// ---------------------------------------------------------------------------------------
// The pod-template hash.

/// Kubernetes' `SafeEncodeString` alphabet: no vowels (no words), no confusable characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes' `ComputeHash`: FNV-32a of the template, then of the collision count as four
/// little-endian bytes, printed in decimal and mapped through the safe alphabet. (Go hashes
/// a `spew` dump of the struct; we hash its canonical JSON, so the values differ from
/// Kubernetes' but are just as stable.)
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv32a::default();
    hasher.write(&serde_json::to_vec(template).expect("a template serializes"));
    if let Some(c) = collision_count {
        hasher.write(&(c as u32).to_le_bytes());
    }
    let decimal = (hasher.finish() as u32).to_string();
    decimal.bytes().map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char).collect()
}

/// FNV-1a, 32 bits.
struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Fnv32a(0x811c_9dc5)
    }
}

impl Hasher for Fnv32a {
    fn finish(&self) -> u64 {
        self.0.into()
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// Kubernetes' `EqualIgnoreHash`: templates equal up to the `pod-template-hash` label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> PodTemplateSpec {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut() {
            if let Some(labels) = meta.labels.as_mut() {
                labels.remove(POD_TEMPLATE_HASH);
                if labels.is_empty() {
                    meta.labels = None;
                }
            }
        }
        t
    }
    strip(a) == strip(b)
}

// ---------------------------------------------------------------------------------------
// Conditions.

pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: same status and reason → unchanged; same status →
/// keeps the transition time.
fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
    }
}

/// Kubernetes' `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = desired_replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Kubernetes' `DeploymentProgressing`: any sign of progress since the last status.
fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Time left before the progress deadline counted from `cond`'s last update (negative
/// once it has passed).
fn deadline_left(cond: &DeploymentCondition, deadline_seconds: i32, now: Timestamp) -> Option<SignedDuration> {
    let from = cond.last_update_time.as_ref()?.0;
    Some((from + SignedDuration::from_secs(deadline_seconds.into())).duration_since(now))
}

// ---------------------------------------------------------------------------------------
// Annotations.

fn annotations_mut(rs: &mut ReplicaSet) -> &mut BTreeMap<String, String> {
    rs.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

fn skipped_annotation(key: &str) -> bool {
    [LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO].contains(&key)
}

/// Kubernetes' `SetReplicasAnnotations`; true when something changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = annotations_mut(rs);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(&rs.metadata, DESIRED_REPLICAS) != Some(desired)
        || int_annotation(&rs.metadata, MAX_REPLICAS) != Some(max)
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises
/// the revision (recording the previous one in the revision history when re-used by a
/// rollback), and on creation sets the replica annotations. True when something changed.
fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    if let Some(da) = d.metadata.annotations.as_ref() {
        let a = annotations_mut(rs);
        for (k, v) in da {
            if !skipped_annotation(k) && a.get(k) != Some(v) {
                a.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    let a = annotations_mut(rs);
    let old = a.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(r) => match r.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_revision < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            let mut total = history.len() + old.len() + 1;
            while total > MAX_REVISION_HISTORY_CHARS && !revisions.is_empty() {
                total -= revisions.remove(0).len() + 1;
            }
            revisions.push(&old);
            let joined = revisions.join(",");
            a.insert(REVISION_HISTORY.into(), joined);
        }
    }
    if !exists {
        let desired = desired_replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
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

    fn set_revision(&mut self, revision: &str) {
        if self.annotations.get(REVISION).map(String::as_str) != Some(revision) {
            self.annotations.insert(REVISION.into(), revision.into());
        }
    }

    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: finds the ReplicaSet of the current
    /// template (or creates it when `create`), syncing revisions and annotations.
    fn get_all(&mut self, create: bool) {
        let tmpl = template(self.d);
        if self.new.is_none() {
            // The oldest ReplicaSet with this template (Kubernetes' `FindNewReplicaSet`).
            self.new = self.rses.iter().position(|rs| {
                rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &tmpl))
            });
        }
        let max_old = self.old_indices().iter().map(|i| revision(&self.rses[*i])).max().unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new {
            let mut rs = self.rses[i].clone();
            let annotated = set_new_rs_annotations(self.d, &mut rs, new_revision, true);
            let min_ready = min_ready_seconds(self.d);
            let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
            if annotated || min_ready_changed {
                rs.spec.get_or_insert_with(Default::default).min_ready_seconds = min_ready;
                self.rses[i] = rs;
                self.dirty.insert(i);
            }
            let revision = annotation(&self.rses[i].metadata, REVISION).unwrap_or_default().to_string();
            self.set_revision(&revision);
            if progress_deadline(self.d).is_some() && condition(&self.status, PROGRESSING).is_none() {
                let name = self.rses[i].metadata.name.clone().unwrap_or_default();
                let msg = format!("Found new replica set {name:?}");
                set_condition(&mut self.status, new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.now));
            }
            return;
        }
        if !create {
            return;
        }
        let hash = compute_hash(&tmpl, self.status.collision_count);
        let mut rs_template = tmpl.clone();
        rs_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.metadata.name.as_deref().unwrap_or_default());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                labels: rs_template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![ownership::controller_ref("apps/v1", "Deployment", &self.d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready_seconds(self.d),
                selector,
                template: Some(rs_template),
            }),
            status: None,
        };
        set_new_rs_annotations(self.d, &mut rs, new_revision, false);
        self.rses.push(rs);
        let i = self.rses.len() - 1;
        self.new = Some(i);
        self.created = Some(i);
        let count = self.new_rs_new_replicas(i);
        set_spec_replicas(&mut self.rses[i], count);
        if count > 0 {
            self.events.push((
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {count}"),
            ));
        }
        self.set_revision(&new_revision.to_string());
        if progress_deadline(self.d).is_some() {
            let msg = format!("Created new replica set {name:?}");
            set_condition(&mut self.status, new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg, self.now));
        }
    }

    /// Kubernetes' `NewRSNewReplicas`.
    fn new_rs_new_replicas(&self, new: usize) -> i32 {
        let desired = desired_replicas(self.d);
        let current = spec_replicas(&self.rses[new]);
        if !is_rolling(self.d) {
            return desired;
        }
        let max_total = desired + max_surge(self.d);
        let pods = self.sum(&self.all_indices(), pods_upper_bound);
        if pods >= max_total {
            return current;
        }
        current + (max_total - pods).min(desired - current).max(0)
    }

    /// Kubernetes' `scaleReplicaSet`: sets size and replica annotations; true when the size
    /// changed.
    fn scale_rs(&mut self, i: usize, new_scale: i32, operation: &str) -> bool {
        let desired = desired_replicas(self.d);
        let max = desired + max_surge(self.d);
        let old_scale = spec_replicas(&self.rses[i]);
        let resize = old_scale != new_scale;
        if !resize && !replicas_annotations_need_update(&self.rses[i], desired, max) {
            return false;
        }
        let rs = &mut self.rses[i];
        set_spec_replicas(rs, new_scale);
        set_replicas_annotations(rs, desired, max);
        self.dirty.insert(i);
        if resize {
            let name = rs.metadata.name.clone().unwrap_or_default();
            self.events.push((
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {operation} replica set {name} from {old_scale} to {new_scale}"),
            ));
        }
        resize
    }

    /// Kubernetes' `scaleReplicaSetAndRecordEvent`.
    fn scale_rs_and_record(&mut self, i: usize, new_scale: i32) -> bool {
        let current = spec_replicas(&self.rses[i]);
        if current == new_scale {
            return false;
        }
        let operation = if current < new_scale { "up" } else { "down" };
        self.scale_rs(i, new_scale, operation)
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&mut self) -> bool {
        self.get_all(false);
        let desired = desired_replicas(self.d);
        self.active(&self.all_indices())
            .iter()
            .any(|i| int_annotation(&self.rses[*i].metadata, DESIRED_REPLICAS).is_some_and(|n| n != desired))
    }

    /// Kubernetes' `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let cond = condition(&self.status, PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return;
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        if is_paused(self.d) && !paused_cond {
            let c = new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), self.now);
            set_condition(&mut self.status, c);
        } else if !is_paused(self.d) && paused_cond {
            let c = new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), self.now);
            set_condition(&mut self.status, c);
        }
    }

    /// Kubernetes' `sync`: scaling (proportional), and history cleanup while paused.
    fn sync_scale(&mut self) {
        self.get_all(false);
        self.scale();
        if is_paused(self.d) {
            self.cleanup();
        }
        self.sync_status();
    }

    /// Kubernetes' `scale`.
    fn scale(&mut self) {
        let desired = desired_replicas(self.d);
        if let Some(i) = self.active_or_latest() {
            if spec_replicas(&self.rses[i]) != desired {
                self.scale_rs_and_record(i, desired);
            }
            return;
        }
        if let Some(new) = self.new {
            if self.is_saturated(new) {
                for i in self.active(&self.old_indices()) {
                    self.scale_rs_and_record(i, 0);
                }
                return;
            }
        }
        if !is_rolling(self.d) {
            return;
        }
        let mut all = self.active(&self.all_indices());
        let current = self.sum(&all, spec_replicas);
        let allowed = if desired > 0 { desired + max_surge(self.d) } else { 0 };
        let to_add = allowed - current;
        let operation = match to_add.cmp(&0) {
            Ordering::Greater => {
                // Larger first; among equals, newer first.
                all.sort_by(|a, b| {
                    let (x, y) = (&self.rses[*a], &self.rses[*b]);
                    spec_replicas(y).cmp(&spec_replicas(x)).then_with(|| by_creation(y, x, self.now))
                });
                "up"
            }
            Ordering::Less => {
                // Larger first; among equals, older first.
                all.sort_by(|a, b| {
                    let (x, y) = (&self.rses[*a], &self.rses[*b]);
                    spec_replicas(y).cmp(&spec_replicas(x)).then_with(|| by_creation(x, y, self.now))
                });
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        for i in &all {
            let rs = &self.rses[*i];
            if to_add != 0 {
                let p = proportion(rs, self.d, to_add, added);
                sizes.push(spec_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(spec_replicas(rs));
            }
        }
        for (n, i) in all.iter().enumerate() {
            if n == 0 && to_add != 0 {
                // Leftovers go to the largest ReplicaSet.
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_rs(*i, sizes[n], operation);
        }
    }

    /// Kubernetes' `FindActiveOrLatest`: the only active ReplicaSet, or the newest when
    /// none is active; None when several are active.
    fn active_or_latest(&self) -> Option<usize> {
        if self.rses.is_empty() {
            return None;
        }
        let active = self.active(&self.all_indices());
        match active.len() {
            0 => self.new.or_else(|| self.old_indices().last().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    /// Kubernetes' `IsSaturated`.
    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.rses[i];
        let desired = desired_replicas(self.d);
        spec_replicas(rs) == desired
            && int_annotation(&rs.metadata, DESIRED_REPLICAS) == Some(desired)
            && status_available(rs) == desired
    }

    /// Kubernetes' `rolloutRolling`.
    fn rollout_rolling(&mut self) {
        self.get_all(true);
        let new = self.new.expect("get_all(true) yields a new ReplicaSet");
        if self.reconcile_new_rs(new) || self.reconcile_old_rses(new) {
            return self.sync_rollout_status();
        }
        if deployment_complete(self.d, &self.status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `reconcileNewReplicaSet`.
    fn reconcile_new_rs(&mut self, new: usize) -> bool {
        let desired = desired_replicas(self.d);
        let current = spec_replicas(&self.rses[new]);
        match current.cmp(&desired) {
            Ordering::Equal => false,
            Ordering::Greater => self.scale_rs_and_record(new, desired),
            Ordering::Less => {
                let count = self.new_rs_new_replicas(new);
                self.scale_rs_and_record(new, count)
            }
        }
    }

    /// Kubernetes' `reconcileOldReplicaSets`.
    fn reconcile_old_rses(&mut self, new: usize) -> bool {
        let old = self.active(&self.old_indices());
        if self.sum(&old, spec_replicas) == 0 {
            return false;
        }
        let all_pods = self.sum(&self.all_indices(), spec_replicas);
        let min_available = desired_replicas(self.d) - max_unavailable(self.d);
        let new_rs = &self.rses[new];
        let new_unavailable = (spec_replicas(new_rs) - available_lower_bound(new_rs)).max(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(&old, max_scaled_down);
        let scaled = self.scale_down_old_for_rolling(&old);
        cleaned + scaled > 0
    }

    /// Kubernetes' `cleanupUnhealthyReplicas`: shrink old ReplicaSets by their unavailable
    /// pods first (they cost no availability and would block the rollout).
    fn cleanup_unhealthy(&mut self, old: &[usize], max_cleanup: i32) -> i32 {
        let mut total = 0;
        for &i in old {
            if total >= max_cleanup {
                break;
            }
            let rs = &self.rses[i];
            let replicas = spec_replicas(rs);
            let unhealthy = replicas - available_lower_bound(rs);
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let count = (max_cleanup - total).min(unhealthy);
            self.scale_rs_and_record(i, replicas - count);
            total += count;
        }
        total
    }

    /// Kubernetes' `scaleDownOldReplicaSetsForRollingUpdate`.
    fn scale_down_old_for_rolling(&mut self, old: &[usize]) -> i32 {
        let min_available = desired_replicas(self.d) - max_unavailable(self.d);
        let available = self.sum(&self.all_indices(), available_lower_bound);
        if available <= min_available {
            return 0;
        }
        let budget = available - min_available;
        let mut total = 0;
        for &i in old {
            if total >= budget {
                break;
            }
            let replicas = spec_replicas(&self.rses[i]);
            if replicas == 0 {
                continue;
            }
            let count = replicas.min(budget - total);
            self.scale_rs_and_record(i, replicas - count);
            total += count;
        }
        total
    }

    /// Kubernetes' `rolloutRecreate`: old to zero, wait for their pods to be gone, then the
    /// new ReplicaSet at full size.
    fn rollout_recreate(&mut self) {
        self.get_all(false);
        let mut scaled_down = false;
        for i in self.active(&self.old_indices()) {
            scaled_down |= self.scale_rs_and_record(i, 0);
        }
        if scaled_down || self.old_pods_running() {
            return self.sync_rollout_status();
        }
        if self.new.is_none() {
            self.get_all(true);
        }
        let new = self.new.expect("get_all(true) yields a new ReplicaSet");
        self.scale_rs_and_record(new, desired_replicas(self.d));
        if deployment_complete(self.d, &self.status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `oldPodsRunning`.
    fn old_pods_running(&self) -> bool {
        let old = self.old_indices();
        if self.sum(&old, status_replicas) > 0 {
            return true;
        }
        old.iter().any(|i| {
            let uid = self.rses[*i].metadata.uid.as_deref().unwrap_or_default();
            self.live_pods.get(uid).copied().unwrap_or(0) > 0
        })
    }

    /// Kubernetes' `cleanupDeployment`: old ReplicaSets beyond revisionHistoryLimit,
    /// lowest revision first, only when fully scaled down and observed so.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).filter(|l| *l != i32::MAX) else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| Some(*i) != self.created && !ownership::is_deleting(&self.rses[*i].metadata))
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| {
            let (x, y) = (&self.rses[*a], &self.rses[*b]);
            revision(x).cmp(&revision(y)).then_with(|| by_creation(x, y, self.now))
        });
        for &i in cleanable.iter().take(excess as usize) {
            let rs = &self.rses[i];
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || self.dirty.contains(&i)
            {
                continue;
            }
            self.delete.push(Removal {
                name: rs.metadata.name.clone().unwrap_or_default(),
                uid: rs.metadata.uid.clone(),
                resource_version: rs.metadata.resource_version.clone(),
            });
        }
    }

    /// Kubernetes' `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all_indices();
        let available = self.sum(&all, status_available);
        let total = self.sum(&all, spec_replicas);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(self.sum(&all, status_replicas)),
            updated_replicas: Some(self.new.map_or(0, |i| status_replicas(&self.rses[i]))),
            ready_replicas: Some(self.sum(&all, status_ready)),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let cond = if available >= desired_replicas(self.d) - max_unavailable(self.d) {
            new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.".into(), self.now)
        } else {
            let msg = "Deployment does not have minimum availability.".into();
            new_condition(AVAILABLE, "False", MIN_UNAVAILABLE, msg, self.now)
        };
        set_condition(&mut status, cond);
        status
    }

    /// Kubernetes' `syncDeploymentStatus` (scaling and paused syncs: no progress estimate).
    fn sync_status(&mut self) {
        self.status = self.calculate_status();
    }

    /// Kubernetes' `syncRolloutStatus`: counts, plus the Progressing condition.
    fn sync_rollout_status(&mut self) {
        let mut new_status = self.calculate_status();
        let deadline = progress_deadline(self.d);
        if deadline.is_none() {
            remove_condition(&mut new_status, PROGRESSING);
        }
        let old = self.d.status.clone().unwrap_or_default();
        let current = condition(&self.status, PROGRESSING).cloned();
        let complete_already = new_status.replicas == new_status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        let new_name = self.new.map(|i| self.rses[i].metadata.name.clone().unwrap_or_default());
        let d_name = self.d.metadata.name.clone().unwrap_or_default();
        let subject = match &new_name {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!("Deployment {d_name:?}"),
        };
        if let (Some(seconds), false) = (deadline, complete_already) {
            if deployment_complete(self.d, &new_status) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(&mut new_status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, self.now));
            } else if deployment_progressing(&old, &new_status) {
                let msg = format!("{subject} is progressing.");
                let mut cond = new_condition(PROGRESSING, "True", RS_UPDATED, msg, self.now);
                // Same reason again still refreshes lastUpdateTime: that is what progress is.
                if let Some(c) = &current {
                    if c.status == "True" {
                        cond.last_transition_time = c.last_transition_time.clone();
                    }
                    remove_condition(&mut new_status, PROGRESSING);
                }
                set_condition(&mut new_status, cond);
            } else if self.timed_out(&new_status, seconds) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(&mut new_status, new_condition(PROGRESSING, "False", TIMED_OUT, msg, self.now));
            }
        }
        if new_status == old {
            self.requeue_after = self.requeue_stuck(&new_status);
        }
        self.status = new_status;
    }

    /// Kubernetes' `DeploymentTimedOut`.
    fn timed_out(&self, status: &DeploymentStatus, seconds: i32) -> bool {
        let Some(cond) = condition(status, PROGRESSING) else { return false };
        match cond.reason.as_deref() {
            Some(NEW_RS_AVAILABLE) => false,
            Some(TIMED_OUT) => true,
            _ => deadline_left(cond, seconds, self.now).is_some_and(|left| left.is_negative()),
        }
    }

    /// Kubernetes' `requeueStuckDeployment`: when to check the progress deadline again.
    fn requeue_stuck(&self, status: &DeploymentStatus) -> Option<Duration> {
        let seconds = progress_deadline(self.d)?;
        let current = condition(self.d.status.as_ref()?, PROGRESSING)?;
        if deployment_complete(self.d, status) || current.reason.as_deref() == Some(TIMED_OUT) {
            return None;
        }
        let left = deadline_left(current, seconds, self.now)?.max(SignedDuration::ZERO);
        // Timestamps have one-second resolution: look a little after the deadline.
        Some(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(1100))
    }
}

/// Kubernetes' `GetProportion`: how many replicas `rs` gets of `to_add`, given `added`
/// already handed out.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `getReplicaSetFraction`: `rs`'s share of the new size, by the size it had
/// relative to the Deployment's previous maximum (its max-replicas annotation).
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let desired = desired_replicas(d);
    if desired == 0 {
        return -spec_replicas(rs);
    }
    let deployment_max = desired + max_surge(d);
    let annotated = int_annotation(&rs.metadata, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(spec_replicas(rs)) * f64::from(deployment_max) / f64::from(annotated);
    size.round() as i32 - spec_replicas(rs)
}

#[cfg(test)]
mod tests;
