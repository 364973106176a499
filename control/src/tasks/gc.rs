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
//! Each sweep reads every object from this server's watch cache, decides with the pure
//! [`plan`], then acts. The cache may lag the store, so before acting on "the owner is
//! gone" the owner's absence is confirmed with a linearizable read — a dependent created
//! right after its owner is never collected because the owner's cache was behind. Every
//! write is pinned to the resourceVersion (or uid) the decision was made on.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::resources::{self, ResourceInfo, RESOURCES};
use crate::cache::Filter;
use crate::registry::{object, DeleteOptions, Part, Propagation, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::tasks::context::TaskContext;
use crate::tasks::periodic::Every;

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
    pub block_owner_deletion: bool,
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
    pub fn from_value(info: &'static ResourceInfo, v: &Value) -> Option<Obj> {
        let owners = object::meta(v)
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some(OwnerRef {
                    api_version: r["apiVersion"].as_str()?.to_string(),
                    kind: r["kind"].as_str()?.to_string(),
                    name: r["name"].as_str()?.to_string(),
                    uid: r["uid"].as_str()?.to_string(),
                    block_owner_deletion: r["blockOwnerDeletion"] == true,
                })
            })
            .collect();
        Some(Obj {
            info,
            namespace: object::namespace(v).map(String::from),
            name: object::name(v)?.to_string(),
            uid: object::meta_str(v, "uid")?.to_string(),
            resource_version: object::resource_version(v).and_then(|r| r.parse().ok()).unwrap_or(0),
            deleting: object::is_deleting(v),
            finalizers: object::finalizers(v),
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

/// The [`Obj`]s of the previous sweep, by the cached object they were read from. The
/// watch cache keeps an unchanged object's `Arc`, so most objects are not decoded again:
/// with ten thousand pods and as many Events, decoding all of them every second was
/// several percent of the leader's CPU. Holding the `Arc` keeps its address from being
/// reused by another object while the entry exists.
#[derive(Default)]
struct Decoded {
    by_address: HashMap<usize, (Arc<Value>, Arc<Obj>)>,
}

/// Every object this server's cache holds.
async fn snapshot(ctx: &TaskContext, decoded: &mut Decoded) -> Result<Vec<Arc<Obj>>, ApiError> {
    let mut all = Vec::new();
    let mut next = HashMap::with_capacity(decoded.by_address.len());
    for info in RESOURCES.iter().filter(|r| !r.is_legacy_alias()) {
        let filter = Filter { resource: info.plural, ..Default::default() };
        let (items, _) = ctx.cache.get(info).list(&filter, 0).await?;
        for value in items {
            let address = Arc::as_ptr(&value) as usize;
            let obj = match decoded.by_address.remove(&address) {
                Some((_, obj)) => obj,
                None => match Obj::from_value(info, &value) {
                    Some(obj) => Arc::new(obj),
                    None => continue,
                },
            };
            all.push(obj.clone());
            next.insert(address, (value, obj));
        }
    }
    decoded.by_address = next;
    Ok(all)
}

/// True when a linearizable read confirms the owner no longer exists (same uid).
async fn confirmed_absent(ctx: &TaskContext, dependent: &Target, owner: &OwnerRef) -> bool {
    let Some(info) = resources::find_kind(&owner.api_version, &owner.kind).map(|i| i.storage()) else {
        // A kind this server does not serve cannot be checked; leave the dependent alone.
        return false;
    };
    let namespace = if info.namespaced { dependent.namespace.as_deref() } else { None };
    match ctx.registry.get(info, namespace, &owner.name, true).await {
        Ok(found) => object::meta_str(&found, "uid") != Some(owner.uid.as_str()),
        Err(ApiError::NotFound(_)) => true,
        Err(_) => false,
    }
}

async fn all_confirmed_absent(ctx: &TaskContext, dependent: &Target, owners: &[OwnerRef]) -> bool {
    for owner in owners {
        if !confirmed_absent(ctx, dependent, owner).await {
            return false;
        }
    }
    true
}

/// A change to `target`'s metadata, pinned to the resourceVersion it was decided on.
async fn pinned_modify(ctx: &TaskContext, target: &Target, change: impl Fn(&mut Value)) -> Result<(), ApiError> {
    let ns = target.namespace.as_deref();
    ctx.modify_pinned(target.info, ns, &target.name, target.resource_version, Part::Whole, change).await
}

async fn act(ctx: &TaskContext, action: Action) {
    let result = match &action {
        Action::Delete { target, propagation, confirm_absent } => {
            if !all_confirmed_absent(ctx, target, confirm_absent).await {
                return;
            }
            tracing::debug!(kind = target.info.kind, name = %target.name, "collecting a dependent");
            let opts = DeleteOptions {
                precondition_uid: Some(target.uid.clone()),
                propagation: *propagation,
                ..Default::default()
            };
            ctx.registry.delete(target.info, target.namespace.as_deref(), &target.name, &opts).await.map(|_| ())
        }
        Action::RemoveOwners { target, uids, confirm_absent } => {
            if !all_confirmed_absent(ctx, target, confirm_absent).await {
                return;
            }
            pinned_modify(ctx, target, |obj| {
                let meta = object::meta_mut(obj);
                if let Some(refs) = meta.get_mut("ownerReferences").and_then(Value::as_array_mut) {
                    refs.retain(|r| !uids.iter().any(|u| r["uid"] == u.as_str()));
                    if refs.is_empty() {
                        meta.remove("ownerReferences");
                    }
                }
            })
            .await
        }
        Action::RemoveFinalizer { target, finalizer } => {
            pinned_modify(ctx, target, |obj| {
                let kept: Vec<String> = object::finalizers(obj).into_iter().filter(|f| f != finalizer).collect();
                object::meta_mut(obj).insert("finalizers".into(), json!(kept));
            })
            .await
        }
    };
    match result {
        Ok(()) => ctx.status.record(true),
        // Someone else got there first (deleted, changed): the next sweep re-decides.
        Err(ApiError::NotFound(_)) | Err(ApiError::Conflict { .. }) => {}
        Err(e) => {
            ctx.status.record(false);
            tracing::debug!(error = %e, ?action, "garbage collection write failed");
        }
    }
}

async fn sweep(ctx: &TaskContext, decoded: &mut Decoded) {
    let objects = match snapshot(ctx, decoded).await {
        Ok(o) => o,
        Err(e) => return tracing::debug!(error = %e, "garbage collector snapshot"),
    };
    let actions = plan(&objects);
    futures::stream::iter(actions).for_each_concurrent(CONCURRENCY, |a| act(ctx, a)).await;
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let mut decoded = Decoded::default();
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        if every.pass(sweep(&ctx, &mut decoded)).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(plural: &str) -> &'static ResourceInfo {
        RESOURCES.iter().find(|r| r.plural == plural && !r.is_legacy_alias()).unwrap()
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
