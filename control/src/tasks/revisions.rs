//! The ControllerRevision history of DaemonSets and StatefulSets, shared by both
//! controllers: Kubernetes' `pkg/controller/history`, the DaemonSet controller's
//! `constructHistory` / `cleanupHistory` and the StatefulSet controller's
//! `getStatefulSetRevisions` / `truncateHistory`. It is what the real
//! `kubectl rollout history` and `kubectl rollout undo` read for these kinds.
//!
//! * A revision is named `NAME-<hash>` after the owner's *template hash* — the hash its
//!   pods' `controller-revision-hash` label carries (Kubernetes hashes the revision's
//!   data instead; keeping the template hash means pods that ran before revisions
//!   existed are not replaced).
//! * Its `data` is what Kubernetes stores, and what kubectl applies to the owner as a
//!   strategic merge patch to roll back: `{"spec":{"template":{…,"$patch":"replace"}}}`.
//! * Its labels are the template's (which the owner's selector matches: kubectl lists a
//!   history by that selector) plus `controller-revision-hash`; the owner controls it, so
//!   the garbage collector deletes it with the owner. Matching orphans are adopted and
//!   owned revisions that stop matching are released, as for pods.
//! * The owner's template is *the current revision*: the revision whose data equals the
//!   template (the highest-numbered one if several do). When the template changes, the
//!   current revision is created — or, for a rollback to an old template, the old one
//!   reused — with a number one above every other revision's.
//! * Old revisions beyond `revisionHistoryLimit` are deleted oldest first, never one
//!   still live (see [`Limit`] for how the two controllers count).
//!
//! [`plan_history`] and [`expired`] are the pure decisions; [`control`] carries them out
//! through the API.

pub mod control;

use std::collections::BTreeMap;

use berth_proto::model::well_known::LABEL_CONTROLLER_REVISION_HASH;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use crate::tasks::ownership::{self, OwnerChange};

/// `revisionHistoryLimit` when the owner has none (the API defaults it to this anyway).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// Kubernetes' `ControllerRevisionName` keeps a revision name within the 253 characters
/// of a DNS subdomain: the owner's name is cut to this many.
const MAX_PREFIX: usize = 223;

/// The DaemonSet or StatefulSet a history belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// `DaemonSet` or `StatefulSet` (apps/v1).
    pub kind: &'static str,
    pub meta: &'a ObjectMeta,
    pub selector: Option<&'a LabelSelector>,
    pub template: &'a PodTemplateSpec,
    /// The template hash a new revision of `template` is named and labelled by.
    pub hash: &'a str,
}

/// A revision's name: `NAME-<hash>` (Kubernetes' `ControllerRevisionName`).
pub fn revision_name(owner_name: &str, hash: &str) -> String {
    let prefix = match owner_name.char_indices().nth(MAX_PREFIX) {
        Some((cut, _)) => &owner_name[..cut],
        None => owner_name,
    };
    format!("{prefix}-{hash}")
}

/// The `data` Kubernetes stores for a template (the DaemonSet and StatefulSet
/// controllers' `getPatch`): a strategic merge patch that replaces the owner's template.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(t) = template.as_object_mut() {
        go_zero_values(t);
        t.insert("$patch".into(), json!("replace"));
    } else {
        template = json!({"$patch": "replace"});
    }
    json!({"spec": {"template": template}})
}

/// What Go's encoding of a template has that the omitted-when-empty Rust one lacks: struct
/// fields `omitempty` cannot drop — the template's `metadata` with its `creationTimestamp`
/// (`null`) and each container's `resources` (`{}`). kubectl decides that a rollback is a
/// no-op by comparing the revision's data *byte for byte* with its own Go encoding of the
/// object (as of kubectl 1.32), so the data is written as kube-controller-manager writes
/// it. Should a kubectl encode differently, an undo to the current template merely sends
/// a patch that changes nothing.
fn go_zero_values(template: &mut serde_json::Map<String, Value>) {
    let meta = template.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    for container in containers_mut(template) {
        container.entry("resources").or_insert_with(|| json!({}));
    }
}

/// The pod template a revision's data holds (`ApplyRevision` on the template alone),
/// without Go's zero values ([`go_zero_values`]; they mean "none" anyway); `None` for data
/// that is not such a patch.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    let t = template.as_object_mut()?;
    t.remove("$patch");
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        if meta.get("creationTimestamp") == Some(&Value::Null) {
            meta.remove("creationTimestamp");
        }
    }
    for container in containers_mut(t) {
        if container.get("resources") == Some(&json!({})) {
            container.remove("resources");
        }
    }
    serde_json::from_value(template).ok()
}

/// Every container object of a template's JSON (init, app and ephemeral).
fn containers_mut(
    template: &mut serde_json::Map<String, Value>,
) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
    let spec = template.get_mut("spec").and_then(Value::as_object_mut);
    spec.into_iter().flat_map(|spec| {
        spec.iter_mut()
            .filter(|(k, _)| matches!(k.as_str(), "initContainers" | "containers" | "ephemeralContainers"))
            .filter_map(|(_, list)| list.as_array_mut())
            .flatten()
            .filter_map(Value::as_object_mut)
    })
}

/// A revision's `controller-revision-hash` label.
pub fn hash_label(revision: &ControllerRevision) -> Option<&str> {
    ownership::labels(&revision.metadata).get(LABEL_CONTROLLER_REVISION_HASH).map(String::as_str)
}

fn data_equals(revision: &ControllerRevision, data: &Value) -> bool {
    revision.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// The revision of `owner`'s template, numbered `number` (Kubernetes'
/// `NewControllerRevision`; the owner's annotations are copied, so `rollout history`
/// shows its change-cause).
pub fn new_revision(owner: &Owner<'_>, number: i64) -> ControllerRevision {
    let mut labels: BTreeMap<String, String> =
        owner.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(LABEL_CONTROLLER_REVISION_HASH.into(), owner.hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(owner.meta.name.as_deref().unwrap_or_default(), owner.hash)),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            annotations: owner.meta.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![ownership::controller_ref("apps/v1", owner.kind, owner.meta)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(owner.template))),
        revision: number,
    }
}

/// A revision chosen for a write: deletions carry its uid and resourceVersion, so a
/// revision that changed since it was judged is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRef {
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl RevisionRef {
    pub fn of(revision: &ControllerRevision) -> RevisionRef {
        RevisionRef {
            name: revision.metadata.name.clone().unwrap_or_default(),
            uid: revision.metadata.uid.clone(),
            resource_version: revision.metadata.resource_version.clone(),
        }
    }
}

/// The owner's current revision, as one sync finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    /// An existing revision holds the template; raise its number to `bump_to` when set
    /// (the template changed back to it: a rollback).
    Existing {
        revision: RevisionRef,
        /// Its `controller-revision-hash` label, when it has one.
        hash: Option<String>,
        bump_to: Option<i64>,
    },
    /// No revision holds the template yet: create this one.
    Create(Box<ControllerRevision>),
}

/// What one sync does to an owner's history.
#[derive(Debug)]
pub struct HistoryPlan<'a> {
    /// Matching orphan revisions to adopt, and owned ones that stopped matching.
    pub adopt: Vec<OwnerChange>,
    pub release: Vec<OwnerChange>,
    pub current: Current,
    /// Every other revision of the owner (the ones adopted now included).
    pub old: Vec<&'a ControllerRevision>,
}

/// Decides the owner's current revision among `candidates`, the revisions it may claim
/// (its own and its namespace's orphans). Kubernetes' `constructHistory`: the current
/// revision's number must be above every old one's.
pub fn plan_history<'a>(owner: &Owner<'_>, candidates: &[&'a ControllerRevision]) -> HistoryPlan<'a> {
    let selector = ownership::selector(owner.selector).ok().flatten();
    let reference = ownership::controller_ref("apps/v1", owner.kind, owner.meta);
    let claimed = ownership::claim_children(owner.meta, &reference, selector.as_ref(), candidates.iter().copied());
    let data = revision_data(owner.template);
    let expected_name = revision_name(owner.meta.name.as_deref().unwrap_or_default(), owner.hash);
    // Several revisions may hold the template (e.g. adopted ones): the highest-numbered
    // one is current (as in Kubernetes), then the one named as this controller names it.
    let current = claimed
        .owned
        .iter()
        .copied()
        .filter(|r| data_equals(r, &data))
        .max_by_key(|r| (r.revision, r.metadata.name.as_deref() == Some(expected_name.as_str())));
    let old: Vec<&ControllerRevision> =
        claimed.owned.iter().copied().filter(|r| current.is_none_or(|c| !std::ptr::eq(*r, c))).collect();
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0).saturating_add(1);
    let current = match current {
        Some(c) => Current::Existing {
            revision: RevisionRef::of(c),
            hash: hash_label(c).map(str::to_string),
            bump_to: (c.revision < next).then_some(next),
        },
        None => Current::Create(Box::new(new_revision(owner, next))),
    };
    HistoryPlan { adopt: claimed.adopt, release: claimed.release, current, old }
}

/// How live old revisions count against `revisionHistoryLimit`, where Kubernetes' two
/// controllers differ. Live revisions are never deleted either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The DaemonSet's `cleanupHistory`: at most `limit` old revisions in all; live ones
    /// count and are skipped.
    CountingLive,
    /// The StatefulSet's `truncateHistory`: at most `limit` old revisions besides the live
    /// ones.
    BesidesLive,
}

/// The old revisions to delete to keep the history within `limit` (negative counts as 0;
/// `None` is [`DEFAULT_HISTORY_LIMIT`]), lowest numbers first, never one `is_live`.
pub fn expired(
    old: &[&ControllerRevision],
    limit: Option<i32>,
    rule: Limit,
    is_live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<RevisionRef> {
    let limit = usize::try_from(limit.unwrap_or(DEFAULT_HISTORY_LIMIT)).unwrap_or(0);
    let mut dead: Vec<&ControllerRevision> = old.iter().copied().filter(|r| !is_live(r)).collect();
    let counted = match rule {
        Limit::CountingLive => old.len(),
        Limit::BesidesLive => dead.len(),
    };
    let excess = counted.saturating_sub(limit);
    dead.sort_by(|a, b| (a.revision, &a.metadata.name).cmp(&(b.revision, &b.metadata.name)));
    dead.into_iter().take(excess).map(RevisionRef::of).collect()
}

#[cfg(test)]
mod tests;
