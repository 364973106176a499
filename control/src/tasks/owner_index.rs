//! Which objects each controller owns, kept beside a shared informer's cache (see
//! [`Informers::owner_index`](super::workqueue::Informers::owner_index)).
//!
//! A workload controller may only claim its own children and the orphans of its
//! namespace; everything controlled by someone else is ignored by the claim rules anyway.
//! Reading just those — instead of every pod of the namespace on every sync — is what
//! Kubernetes' `PodControllerUIDIndex` and orphan index (`FilterPodsByOwner`) are for:
//! with ten 1,000-pod ReplicaSets in one namespace, each sync visited 10,000 pods, and the
//! syncs run many times a second while pods are created and bound.
//!
//! The index holds keys, not objects: the objects are read from the informer's store, so
//! a key whose object is gone by then is skipped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

use super::ownership::controller_of;

/// Where an object is filed: under its controller's uid, or as an orphan of its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Bucket {
    Controller(String),
    Orphan(String),
}

impl Bucket {
    fn of(meta: &ObjectMeta) -> Bucket {
        match controller_of(meta) {
            Some(owner) => Bucket::Controller(owner.uid.clone()),
            None => Bucket::Orphan(meta.namespace.clone().unwrap_or_default()),
        }
    }
}

/// An object's namespace and name.
type ObjKey = (String, String);

fn key_of(meta: &ObjectMeta) -> ObjKey {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

#[derive(Debug, Default)]
struct State {
    members: HashMap<Bucket, HashSet<ObjKey>>,
    bucket_of: HashMap<ObjKey, Bucket>,
}

impl State {
    fn insert(&mut self, meta: &ObjectMeta) {
        let key = key_of(meta);
        let bucket = Bucket::of(meta);
        if self.bucket_of.get(&key) == Some(&bucket) {
            return;
        }
        self.remove_key(&key);
        self.members.entry(bucket.clone()).or_default().insert(key.clone());
        self.bucket_of.insert(key, bucket);
    }

    fn remove_key(&mut self, key: &ObjKey) {
        let Some(old) = self.bucket_of.remove(key) else { return };
        if let Some(members) = self.members.get_mut(&old) {
            members.remove(key);
            if members.is_empty() {
                self.members.remove(&old);
            }
        }
    }

    fn keys_in(&self, bucket: &Bucket) -> impl Iterator<Item = &ObjKey> {
        self.members.get(bucket).into_iter().flatten()
    }
}

/// Children per controller uid and orphans per namespace, for one kind of object.
#[derive(Debug, Default)]
pub struct OwnerIndex {
    state: RwLock<State>,
}

impl OwnerIndex {
    /// An object was added or changed (its controller may be new).
    pub fn apply(&self, meta: &ObjectMeta) {
        self.state.write().unwrap().insert(meta);
    }

    pub fn remove(&self, meta: &ObjectMeta) {
        self.state.write().unwrap().remove_key(&key_of(meta));
    }

    /// The informer re-listed: the index becomes exactly `metas`.
    pub fn rebuild<'a>(&self, metas: impl IntoIterator<Item = &'a ObjectMeta>) {
        let mut fresh = State::default();
        metas.into_iter().for_each(|m| fresh.insert(m));
        *self.state.write().unwrap() = fresh;
    }

    /// Names of the objects of `namespace` controlled by `owner_uid`, then of its orphans.
    fn candidate_keys(&self, namespace: &str, owner_uid: &str) -> Vec<ObjKey> {
        let state = self.state.read().unwrap();
        let owned = state.keys_in(&Bucket::Controller(owner_uid.to_string())).filter(|(ns, _)| ns == namespace);
        owned.chain(state.keys_in(&Bucket::Orphan(namespace.to_string()))).cloned().collect()
    }

    /// What an owner in `namespace` with uid `owner_uid` may claim, read from `store`: the
    /// objects it controls and the orphans of its namespace.
    pub fn claimable<K>(&self, store: &Store<K>, namespace: &str, owner_uid: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        self.candidate_keys(namespace, owner_uid)
            .into_iter()
            .filter_map(|(ns, name)| store.get(&ObjectRef::new(&name).within(&ns)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(ns: &str, name: &str, controller: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            owner_references: controller
                .map(|uid| vec![OwnerReference { uid: uid.into(), controller: Some(true), ..Default::default() }]),
            ..Default::default()
        }
    }

    fn names(index: &OwnerIndex, ns: &str, uid: &str) -> Vec<String> {
        let mut names: Vec<String> = index.candidate_keys(ns, uid).into_iter().map(|(_, n)| n).collect();
        names.sort();
        names
    }

    #[test]
    fn an_owner_sees_its_children_and_its_namespaces_orphans_only() {
        let index = OwnerIndex::default();
        index.apply(&meta("a", "mine", Some("rs1")));
        index.apply(&meta("a", "theirs", Some("rs2")));
        index.apply(&meta("a", "orphan", None));
        index.apply(&meta("b", "orphan-elsewhere", None));
        // A reference to our uid from another namespace is not ours.
        index.apply(&meta("b", "cross-namespace", Some("rs1")));
        assert_eq!(names(&index, "a", "rs1"), ["mine", "orphan"]);
        assert_eq!(names(&index, "a", "rs2"), ["orphan", "theirs"]);
    }

    #[test]
    fn adoption_release_and_deletion_move_an_object() {
        let index = OwnerIndex::default();
        index.apply(&meta("a", "p", None));
        assert_eq!(names(&index, "a", "rs1"), ["p"]);
        index.apply(&meta("a", "p", Some("rs2")));
        assert!(names(&index, "a", "rs1").is_empty(), "adopted by another: not claimable");
        index.apply(&meta("a", "p", Some("rs1")));
        assert_eq!(names(&index, "a", "rs1"), ["p"]);
        index.remove(&meta("a", "p", Some("rs1")));
        assert!(names(&index, "a", "rs1").is_empty());
        assert!(index.state.read().unwrap().members.is_empty(), "empty buckets are dropped");
    }

    #[test]
    fn a_rebuild_replaces_everything() {
        let index = OwnerIndex::default();
        index.apply(&meta("a", "stale", Some("rs1")));
        index.rebuild([&meta("a", "fresh", Some("rs1"))]);
        assert_eq!(names(&index, "a", "rs1"), ["fresh"]);
    }
}
