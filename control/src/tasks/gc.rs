//! The garbage collector: carries out `ownerReferences` cascades.
//!
//! * **Background** — an owner is gone: dependents with no other live owner are deleted;
//!   dependents that still have one lose the dangling reference.
//! * **Foreground** — an owner being deleted with the `foregroundDeletion` finalizer: its
//!   dependents are deleted, and once no dependent with `blockOwnerDeletion` remains the
//!   finalizer is removed, which completes the owner's deletion.
//! * **Orphan** — an owner being deleted with the `orphan` finalizer: dependents lose
//!   their reference to it (and live on); then the finalizer is removed.
//!
//! Each sweep reads every object's metadata from the shared informers of every served
//! kind ([`super::kinds`]), decides with the pure [`plan`], then acts through the
//! API like any client. The caches may lag the store, so before acting on "the owner is
//! gone" the owner's absence is confirmed with a (linearizable) GET — a dependent created
//! right after its owner is never collected because the owner's cache was behind. Every
//! write is pinned to the resourceVersion (or uid) the decision was made on.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::registry::{Propagation, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::resource::table::{self as resources, ResourceInfo};
use crate::tasks::context::TaskContext;
use crate::tasks::dynamic;
use crate::tasks::kinds::{self, Converted, KindStore};
use crate::tasks::sync_error::is_status;

const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Writes in flight at once (a large cascade is thousands of deletes).
const CONCURRENCY: usize = 64;

/// One `ownerReferences` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: bool,
}

impl OwnerRef {
    /// The `ownerReferences` entry as the API takes it.
    fn to_json(&self) -> serde_json::Value {
        let mut entry = json!({"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid});
        if self.controller {
            entry["controller"] = json!(true);
        }
        if self.block_owner_deletion {
            entry["blockOwnerDeletion"] = json!(true);
        }
        entry
    }
}

/// What the collector needs to know of one object.
#[derive(Debug, Clone)]
pub struct Obj {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: i64,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub owners: Vec<OwnerRef>,
}

impl Obj {
    pub fn from_meta(info: &'static ResourceInfo, meta: &ObjectMeta) -> Option<Obj> {
        let owners = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
                controller: r.controller == Some(true),
                block_owner_deletion: r.block_owner_deletion == Some(true),
            })
            .collect();
        Some(Obj {
            info,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            owners,
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    fn target(&self) -> Target {
        Target {
            info: self.info,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            resource_version: self.resource_version,
        }
    }
}

/// The object an action writes, as the decision saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete a dependent whose owners are all gone or deleting in the foreground.
    /// `confirm_absent`: owners the snapshot lacks, to re-check before acting.
    Delete { target: Target, propagation: Propagation, confirm_absent: Vec<OwnerRef> },
    /// Drop these owner uids from a dependent's `ownerReferences`.
    RemoveOwners { target: Target, uids: Vec<String>, confirm_absent: Vec<OwnerRef> },
    /// The owner's dependents are handled: remove the finalizer that held it.
    RemoveFinalizer { target: Target, finalizer: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    Live,
    Absent,
    Orphaning,
    WaitingForDependents,
}

/// Decides what to do about every object in the snapshot (pure).
pub fn plan<O: Borrow<Obj>>(objects: &[O]) -> Vec<Action> {
    let objects: Vec<&Obj> = objects.iter().map(Borrow::borrow).collect();
    let by_uid: HashMap<&str, &Obj> = objects.iter().map(|o| (o.uid.as_str(), *o)).collect();
    let owners_with_dependents: HashSet<&str> =
        objects.iter().flat_map(|o| o.owners.iter().map(|r| r.uid.as_str())).collect();
    let state_of = |r: &OwnerRef| match by_uid.get(r.uid.as_str()) {
        None => OwnerState::Absent,
        Some(o) if o.deleting && o.has_finalizer(ORPHAN_FINALIZER) => OwnerState::Orphaning,
        Some(o) if o.deleting && o.has_finalizer(FOREGROUND_FINALIZER) => OwnerState::WaitingForDependents,
        Some(_) => OwnerState::Live,
    };
    let mut actions = Vec::new();
    for dep in objects.iter().filter(|o| !o.owners.is_empty()) {
        let states: Vec<(&OwnerRef, OwnerState)> = dep.owners.iter().map(|r| (r, state_of(r))).collect();
        let absent: Vec<OwnerRef> =
            states.iter().filter(|(_, s)| *s == OwnerState::Absent).map(|(r, _)| (*r).clone()).collect();
        let orphaning: Vec<String> =
            states.iter().filter(|(_, s)| *s == OwnerState::Orphaning).map(|(r, _)| r.uid.clone()).collect();
        let has_live = states.iter().any(|(_, s)| *s == OwnerState::Live);
        let waiting = states.iter().any(|(_, s)| *s == OwnerState::WaitingForDependents);
        if !orphaning.is_empty() {
            // Orphaning owners let go first; what remains is decided on the next sweep.
            actions.push(Action::RemoveOwners { target: dep.target(), uids: orphaning, confirm_absent: vec![] });
        } else if has_live {
            // Kept alive by a live owner: only drop references to owners that are gone or
            // going (Kubernetes does the same, so the live owner is the only one left).
            let mut uids: Vec<String> = absent.iter().map(|r| r.uid.clone()).collect();
            uids.extend(
                states.iter().filter(|(_, s)| *s == OwnerState::WaitingForDependents).map(|(r, _)| r.uid.clone()),
            );
            if !uids.is_empty() {
                actions.push(Action::RemoveOwners { target: dep.target(), uids, confirm_absent: absent });
            }
        } else if !dep.deleting {
            // Every owner is gone or deleting in the foreground. A dependent that itself has
            // dependents is deleted in the foreground too, so the wait propagates down.
            let propagation = if waiting && owners_with_dependents.contains(dep.uid.as_str()) {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            actions.push(Action::Delete { target: dep.target(), propagation, confirm_absent: absent });
        }
    }
    for owner in objects.iter().filter(|o| o.deleting) {
        let dependents = || objects.iter().filter(|d| d.owners.iter().any(|r| r.uid == owner.uid));
        if owner.has_finalizer(ORPHAN_FINALIZER) && dependents().next().is_none() {
            actions.push(Action::RemoveFinalizer { target: owner.target(), finalizer: ORPHAN_FINALIZER });
        } else if owner.has_finalizer(FOREGROUND_FINALIZER)
            && !owner.has_finalizer(ORPHAN_FINALIZER)
            && !dependents().any(|d| d.owners.iter().any(|r| r.uid == owner.uid && r.block_owner_deletion))
        {
            actions.push(Action::RemoveFinalizer { target: owner.target(), finalizer: FOREGROUND_FINALIZER });
        }
    }
    actions
}

/// Every object the informers hold.
fn snapshot(kinds: &[KindStore], decoded: &mut Converted<Obj>) -> Vec<Arc<Obj>> {
    let mut all = Vec::new();
    for kind in kinds {
        let objects = kind.objects().into_iter();
        all.extend(objects.filter_map(|cached| decoded.get(cached, |c| Obj::from_meta(kind.info, c.meta()))));
    }
    decoded.finish_pass();
    all
}

/// How long an owner a GET found alive is taken as alive without asking again. Owners the
/// informers do not hold (custom resources) are always "missing" from the snapshot, so
/// without this every dependent of a live custom object would cost a GET every sweep.
const PRESENT_FOR: Duration = Duration::from_secs(5);

/// What confirming owners' absence learns, shared by a sweep's concurrent actions.
struct OwnerChecks {
    /// The custom resources served, listed at most once per sweep (on first need).
    custom: tokio::sync::OnceCell<Vec<&'static ResourceInfo>>,
    /// Owners (by uid) a GET found alive, and when; kept across sweeps.
    present: Arc<Mutex<HashMap<String, Instant>>>,
}

impl OwnerChecks {
    fn recently_present(&self, uid: &str) -> bool {
        let mut present = self.present.lock().expect("owner memo");
        present.retain(|_, at| at.elapsed() < PRESENT_FOR);
        present.contains_key(uid)
    }

    /// The served resource of an owner reference's kind, built-in or custom.
    async fn resource(&self, ctx: &TaskContext, owner: &OwnerRef) -> Option<&'static ResourceInfo> {
        if let Some(info) = resources::find_kind(&owner.api_version, &owner.kind) {
            return Some(info.storage());
        }
        let custom = self.custom.get_or_init(|| async { dynamic::served_custom_resources(&ctx.client).await }).await;
        custom
            .iter()
            .copied()
            .find(|r| r.api_version() == owner.api_version && r.kind == owner.kind)
            .map(|r| r.storage())
    }
}

/// True when a linearizable read confirms the owner no longer exists (same uid).
async fn confirmed_absent(ctx: &TaskContext, checks: &OwnerChecks, dependent: &Target, owner: &OwnerRef) -> bool {
    if checks.recently_present(&owner.uid) {
        return false;
    }
    // A kind this server does not serve cannot be checked; leave the dependent alone.
    let Some(info) = checks.resource(ctx, owner).await else { return false };
    let api = dynamic::api(&ctx.client, info, dependent.namespace.as_deref());
    match api.get(&owner.name).await {
        Ok(found) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
            checks.present.lock().expect("owner memo").insert(owner.uid.clone(), Instant::now());
            false
        }
        Ok(_) => true,
        Err(e) => is_status(&e, 404),
    }
}

async fn all_confirmed_absent(
    ctx: &TaskContext,
    checks: &OwnerChecks,
    dependent: &Target,
    owners: &[OwnerRef],
) -> bool {
    for owner in owners {
        if !confirmed_absent(ctx, checks, dependent, owner).await {
            return false;
        }
    }
    true
}

/// A merge patch of `target`'s metadata, pinned to the resourceVersion it was decided on
/// (in a patch, a resourceVersion is a precondition).
async fn pinned_patch(ctx: &TaskContext, target: &Target, mut metadata: serde_json::Value) -> Result<(), kube::Error> {
    metadata["resourceVersion"] = json!(target.resource_version.to_string());
    let api = dynamic::api(&ctx.client, target.info, target.namespace.as_deref());
    let patch = json!({ "metadata": metadata });
    api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

fn policy(propagation: Propagation) -> PropagationPolicy {
    match propagation {
        Propagation::Background => PropagationPolicy::Background,
        Propagation::Foreground => PropagationPolicy::Foreground,
        Propagation::Orphan => PropagationPolicy::Orphan,
    }
}

async fn act(ctx: &TaskContext, checks: &OwnerChecks, current: &HashMap<&str, &Obj>, action: Action) {
    let result = match &action {
        Action::Delete { target, propagation, confirm_absent } => {
            if !all_confirmed_absent(ctx, checks, target, confirm_absent).await {
                return;
            }
            tracing::debug!(kind = target.info.kind, name = %target.name, "collecting a dependent");
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(target.uid.clone()), resource_version: None }),
                propagation_policy: Some(policy(*propagation)),
                ..Default::default()
            };
            let api = dynamic::api(&ctx.client, target.info, target.namespace.as_deref());
            api.delete(&target.name, &params).await.map(|_| ())
        }
        Action::RemoveOwners { target, uids, confirm_absent } => {
            if !all_confirmed_absent(ctx, checks, target, confirm_absent).await {
                return;
            }
            let Some(obj) = current.get(target.uid.as_str()) else { return };
            let kept: Vec<serde_json::Value> =
                obj.owners.iter().filter(|r| !uids.contains(&r.uid)).map(OwnerRef::to_json).collect();
            let kept = if kept.is_empty() { serde_json::Value::Null } else { json!(kept) };
            pinned_patch(ctx, target, json!({ "ownerReferences": kept })).await
        }
        Action::RemoveFinalizer { target, finalizer } => {
            let Some(obj) = current.get(target.uid.as_str()) else { return };
            let kept: Vec<&String> = obj.finalizers.iter().filter(|f| f != finalizer).collect();
            pinned_patch(ctx, target, json!({ "finalizers": kept })).await
        }
    };
    match result {
        Ok(()) => ctx.status.record(true),
        // Someone else got there first (deleted, changed): the next sweep re-decides.
        Err(e) if dynamic::lost_a_race(&e) => {}
        Err(e) => {
            ctx.status.record(false);
            tracing::debug!(error = %e, ?action, "garbage collection write failed");
        }
    }
}

async fn sweep(
    ctx: &TaskContext,
    kinds: &[KindStore],
    decoded: &mut Converted<Obj>,
    present: &Arc<Mutex<HashMap<String, Instant>>>,
) {
    let objects = snapshot(kinds, decoded);
    let actions = plan(&objects);
    let by_uid: HashMap<&str, &Obj> = objects.iter().map(|o| (o.uid.as_str(), o.as_ref())).collect();
    let checks = OwnerChecks { custom: Default::default(), present: present.clone() };
    futures::stream::iter(actions).for_each_concurrent(CONCURRENCY, |a| act(ctx, &checks, &by_uid, a)).await;
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    // Events are not collected, as in Kubernetes (the garbage collector's default ignored
    // resources): they carry no ownerReferences, and watching them would
    // cost the leader a decode of every Event the cluster records.
    let kinds = kinds::kinds_where(&ctx.informers, |info| !(info.group.is_empty() && info.kind == "Event"));
    // Never decide on a partial picture: an owner not listed yet would look gone.
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let mut decoded = Converted::default();
    let present = Arc::new(Mutex::new(HashMap::new()));
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        if every.pass(sweep(&ctx, &kinds, &mut decoded, &present)).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::table::RESOURCES;

    fn info(plural: &str) -> &'static ResourceInfo {
        RESOURCES.iter().find(|r| r.plural == plural && !r.is_alias()).unwrap()
    }

    fn obj(plural: &str, name: &str, owners: &[(&str, bool)]) -> Obj {
        Obj {
            info: info(plural),
            namespace: Some("default".into()),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: 7,
            deleting: false,
            finalizers: vec![],
            owners: owners
                .iter()
                .map(|(owner, block)| OwnerRef {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: owner.to_string(),
                    uid: format!("uid-{owner}"),
                    controller: false,
                    block_owner_deletion: *block,
                })
                .collect(),
        }
    }

    fn deleting(mut o: Obj, finalizer: &str) -> Obj {
        o.deleting = true;
        o.finalizers.push(finalizer.into());
        o
    }

    #[test]
    fn live_owners_keep_dependents() {
        let objects = [obj("replicasets", "rs", &[]), obj("pods", "p", &[("rs", true)])];
        assert!(plan(&objects).is_empty());
    }

    #[test]
    fn background_deletes_dependents_of_a_gone_owner_after_confirming() {
        let objects = [obj("pods", "p", &[("rs", true)])];
        match plan(&objects).as_slice() {
            [Action::Delete { target, propagation: Propagation::Background, confirm_absent }] => {
                assert_eq!(target.name, "p");
                assert_eq!(confirm_absent[0].name, "rs");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_live_owner_only_loses_the_dangling_reference() {
        let objects = [obj("replicasets", "b", &[]), obj("pods", "p", &[("a", false), ("b", false)])];
        match plan(&objects).as_slice() {
            [Action::RemoveOwners { uids, .. }] => assert_eq!(uids, &["uid-a"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreground_deletes_dependents_then_releases_the_owner() {
        let owner = deleting(obj("replicasets", "rs", &[]), FOREGROUND_FINALIZER);
        let objects = [owner.clone(), obj("pods", "p", &[("rs", true)])];
        let actions = plan(&objects);
        assert!(matches!(&actions[..], [Action::Delete { confirm_absent, .. }] if confirm_absent.is_empty()));
        // A terminating blocking dependent still holds the owner.
        let mut p = obj("pods", "p", &[("rs", true)]);
        p.deleting = true;
        assert!(plan(&[owner.clone(), p]).is_empty());
        // Non-blocking dependents do not hold it.
        let mut p = obj("pods", "p", &[("rs", false)]);
        p.deleting = true;
        assert!(matches!(
            &plan(&[owner.clone(), p])[..],
            [Action::RemoveFinalizer { finalizer: FOREGROUND_FINALIZER, .. }]
        ));
        assert!(matches!(&plan(&[owner])[..], [Action::RemoveFinalizer { finalizer: FOREGROUND_FINALIZER, .. }]));
    }

    #[test]
    fn foreground_propagates_to_dependents_that_have_dependents() {
        let d = deleting(obj("deployments", "d", &[]), FOREGROUND_FINALIZER);
        let mut rs = obj("replicasets", "rs", &[("d", true)]);
        rs.owners[0].kind = "Deployment".into();
        let pod = obj("pods", "p", &[("rs", true)]);
        let actions = plan(&[d, rs, pod]);
        assert!(actions.iter().any(|a| matches!(a,
            Action::Delete { target, propagation: Propagation::Foreground, .. } if target.name == "rs")));
    }

    #[test]
    fn orphan_removes_references_then_the_finalizer() {
        let owner = deleting(obj("replicasets", "rs", &[]), ORPHAN_FINALIZER);
        let actions = plan(&[owner.clone(), obj("pods", "p", &[("rs", true)])]);
        assert!(matches!(&actions[..], [Action::RemoveOwners { uids, .. }] if uids == &["uid-rs"]));
        assert!(matches!(&plan(&[owner])[..], [Action::RemoveFinalizer { finalizer: ORPHAN_FINALIZER, .. }]));
    }
}
