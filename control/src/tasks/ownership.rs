//! What the workload controllers share about owners and children: label selectors from
//! `LabelSelector` objects, controller ownerReferences, Kubernetes' claim rules (adopt
//! matching orphans, release owned children that stopped matching) and pod readiness /
//! availability. Everything here is pure.

use std::collections::BTreeMap;

use berth_proto::selectors::{LabelSelector, SelectorError};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A `metav1.LabelSelector` as a matcher. Like Kubernetes' controllers, an empty selector
/// matches *nothing* here (an API-validated workload always has a non-empty one), so a
/// broken object can never adopt every pod in its namespace.
pub fn selector(sel: Option<&meta::LabelSelector>) -> Result<Option<LabelSelector>, SelectorError> {
    let Some(sel) = sel else { return Ok(None) };
    let empty = BTreeMap::new();
    let exprs = sel.match_expressions.as_deref().unwrap_or_default();
    let parsed = LabelSelector::from_parts(
        sel.match_labels.as_ref().unwrap_or(&empty),
        exprs.iter().map(|e| (e.key.as_str(), e.operator.as_str(), e.values.as_deref().unwrap_or_default())),
    )?;
    Ok((!parsed.is_empty()).then_some(parsed))
}

/// Labels of an object (empty when it has none).
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

/// The controller ownerReference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` as Kubernetes' controllers write it.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        // The garbage collector's foreground deletion waits for owned children.
        block_owner_deletion: Some(true),
    }
}

pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// How an owner relates to one candidate child (`ClaimObject` in Kubernetes'
/// `ControllerRefManager`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by this owner and still matching.
    Owned,
    /// An orphan that matches: take it (only while neither side is being deleted).
    Adopt,
    /// Controlled by this owner but no longer matching: let it go.
    Release,
    /// Not ours (another controller, or an orphan that does not match).
    Ignore,
}

/// Kubernetes' claim rule for one child of a would-be owner.
pub fn claim(owner: &ObjectMeta, selector: Option<&LabelSelector>, child: &ObjectMeta) -> Claim {
    // The selector is only evaluated where it decides something: most candidates of a
    // busy namespace belong to another controller, and matching them is wasted work.
    let matches = || selector.is_some_and(|s| s.matches(labels(child)));
    match controller_of(child) {
        Some(r) if Some(&r.uid) == owner.uid.as_ref() => {
            // A deleting owner does not release (the GC handles its children), and a
            // deleting child is left alone.
            if is_deleting(owner) || is_deleting(child) || matches() {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if !is_deleting(owner) && !is_deleting(child) && matches() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// A change of a child's ownerReferences, pinned to the resourceVersion it was decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerChange {
    pub name: String,
    pub resource_version: Option<String>,
    pub owner_references: Vec<OwnerReference>,
}

/// What an owner's claim over candidate children decides (Kubernetes' `ClaimPods` /
/// `ClaimReplicaSets`).
#[derive(Debug)]
pub struct Claimed<'a, C> {
    /// The children it owns, the ones it adopts now included.
    pub owned: Vec<&'a C>,
    /// Matching orphans it takes (its controller reference added).
    pub adopt: Vec<OwnerChange>,
    /// Owned children that stopped matching (its reference removed).
    pub release: Vec<OwnerChange>,
}

/// [`claim`] over every candidate child; `reference` is the owner's controller reference.
pub fn claim_children<'a, C>(
    owner: &ObjectMeta,
    reference: &OwnerReference,
    selector: Option<&LabelSelector>,
    children: impl IntoIterator<Item = &'a C>,
) -> Claimed<'a, C>
where
    C: kube::Resource + 'a,
{
    let mut claimed = Claimed { owned: Vec::new(), adopt: Vec::new(), release: Vec::new() };
    for child in children {
        let meta = child.meta();
        let change = |owner_references| OwnerChange {
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            owner_references,
        };
        match claim(owner, selector, meta) {
            Claim::Owned => claimed.owned.push(child),
            Claim::Adopt => {
                claimed.adopt.push(change(with_controller(meta, reference.clone())));
                claimed.owned.push(child);
            }
            Claim::Release => claimed.release.push(change(without_owner(meta, &reference.uid))),
            Claim::Ignore => {}
        }
    }
    claimed
}

/// Owner references with `owner`'s controller reference added (adoption).
pub fn with_controller(child: &ObjectMeta, reference: OwnerReference) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> =
        child.owner_references.clone().unwrap_or_default().into_iter().filter(|r| r.uid != reference.uid).collect();
    refs.push(reference);
    refs
}

/// Owner references without `owner_uid` (release).
pub fn without_owner(child: &ObjectMeta, owner_uid: &str) -> Vec<OwnerReference> {
    child.owner_references.clone().unwrap_or_default().into_iter().filter(|r| r.uid != owner_uid).collect()
}

/// Kubernetes' `IsPodActive`: not finished and not being deleted.
pub fn pod_is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed")) && !is_deleting(&pod.metadata)
}

/// When the pod's Ready condition last became True, if it is ready now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn pod_is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Kubernetes' `IsPodAvailable`: ready, and for at least `min_ready_seconds`.
pub fn pod_is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(min_ready_seconds.into()) < now,
    }
}

/// When a ready-but-not-yet-available pod becomes available (for requeueing).
pub fn pod_available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    let since = ready_since(pod)??;
    Some(since + SignedDuration::from_secs(min_ready_seconds.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn meta_with(labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("child".into()),
            uid: Some("child-uid".into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            owner_references: owner
                .map(|uid| vec![OwnerReference { uid: uid.into(), controller: Some(true), ..Default::default() }]),
            ..Default::default()
        }
    }

    #[test]
    fn claim_rules() {
        let owner = ObjectMeta { name: Some("rs".into()), uid: Some("rs-uid".into()), ..Default::default() };
        let sel = selector(Some(&meta::LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }))
        .unwrap();
        let sel = sel.as_ref();
        assert_eq!(claim(&owner, sel, &meta_with(&[("app", "web")], Some("rs-uid"))), Claim::Owned);
        assert_eq!(claim(&owner, sel, &meta_with(&[("app", "web")], None)), Claim::Adopt);
        assert_eq!(claim(&owner, sel, &meta_with(&[("app", "db")], Some("rs-uid"))), Claim::Release);
        assert_eq!(claim(&owner, sel, &meta_with(&[("app", "web")], Some("other"))), Claim::Ignore);
        assert_eq!(claim(&owner, sel, &meta_with(&[("app", "db")], None)), Claim::Ignore);
        let mut deleting = meta_with(&[("app", "web")], None);
        deleting.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(claim(&owner, sel, &deleting), Claim::Ignore, "a deleting orphan is not adopted");
        assert_eq!(claim(&owner, None, &meta_with(&[("app", "web")], None)), Claim::Ignore, "empty selector");
    }

    #[test]
    fn adoption_keeps_other_owners() {
        let mut child = meta_with(&[], None);
        child.owner_references =
            Some(vec![OwnerReference { uid: "x".into(), controller: Some(false), ..Default::default() }]);
        let owner = ObjectMeta { name: Some("rs".into()), uid: Some("rs-uid".into()), ..Default::default() };
        let refs = with_controller(&child, controller_ref("apps/v1", "ReplicaSet", &owner));
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].block_owner_deletion, Some(true));
        child.owner_references = Some(refs);
        assert_eq!(without_owner(&child, "rs-uid").len(), 1);
    }
}
