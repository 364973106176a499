//! [`Expectations`]: a pod-managing controller's own creations and deletions that the pod
//! cache has not reflected yet, per owner (Kubernetes' `ControllerExpectations`). The
//! ReplicaSet, DaemonSet and Job controllers hold back from creating or deleting pods
//! for an owner until its expectations are satisfied, so a sync running before its own
//! writes came back through the watch never double-creates or double-deletes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::ownership;
use super::workqueue::Key;

/// An expectation not met by then is dropped (a lost watch event must not wedge an owner
/// forever); Kubernetes waits five minutes, our watch is local.
const EXPECTATIONS_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Pending {
    /// Names of pods created but not yet seen in the cache.
    adds: HashSet<String>,
    /// Uids of pods deleted but still in the cache without a deletionTimestamp.
    deletes: HashSet<String>,
    since: Instant,
}

/// This controller's own writes that the pod cache has not reflected yet, per owner
/// (checked against the cache instead of counted from events, as Kubernetes does, so an
/// event seen before the write returned cannot be missed).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: HashMap<Key, Pending>,
}

impl Expectations {
    /// Whether everything expected for `key` is visible in `pods` (those it may claim).
    pub fn satisfied(&mut self, key: &Key, pods: &[&Pod]) -> bool {
        let Some(p) = self.pending.get_mut(key) else { return true };
        if p.since.elapsed() > EXPECTATIONS_TTL {
            tracing::warn!(owner = %key, adds = p.adds.len(), deletes = p.deletes.len(), "expectations expired");
            self.pending.remove(key);
            return true;
        }
        // Indexed once: comparing each of up to 500 pending names against every pod of a
        // 10,000-pod namespace was the controller's biggest cost (berth-bench-control profile).
        let names: HashSet<&str> = pods.iter().filter_map(|pod| pod.metadata.name.as_deref()).collect();
        p.adds.retain(|name| !names.contains(name.as_str()));
        if !p.deletes.is_empty() {
            let live: HashSet<&str> = pods
                .iter()
                .filter(|pod| !ownership::is_deleting(&pod.metadata))
                .filter_map(|pod| pod.metadata.uid.as_deref())
                .collect();
            p.deletes.retain(|uid| live.contains(uid.as_str()));
        }
        let done = p.adds.is_empty() && p.deletes.is_empty();
        if done {
            self.pending.remove(key);
        }
        done
    }

    fn entry(&mut self, key: &Key) -> &mut Pending {
        let p = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            adds: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        p.since = Instant::now();
        p
    }

    /// Pods `key` created (by name), to be seen in the cache before it manages pods again.
    pub fn expect_created(&mut self, key: &Key, names: impl IntoIterator<Item = String>) {
        self.entry(key).adds.extend(names);
    }

    /// Pods `key` deleted (by uid), to be seen gone or deleting before it manages pods again.
    pub fn expect_deleted(&mut self, key: &Key, uids: impl IntoIterator<Item = String>) {
        self.entry(key).deletes.extend(uids);
    }

    /// Drops `key`'s expectations (the owner is gone).
    pub fn forget(&mut self, key: &Key) {
        self.pending.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str) -> Pod {
        let metadata = ObjectMeta { name: Some(name.into()), uid: Some(format!("uid-{name}")), ..Default::default() };
        Pod { metadata, ..Default::default() }
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let key = Key::new("default", "web");
        let mut e = Expectations::default();
        e.expect_created(&key, ["web-abcde".to_string()]);
        assert!(!e.satisfied(&key, &[]));
        let p = pod("web-abcde");
        assert!(e.satisfied(&key, &[&p]));
        e.expect_deleted(&key, ["uid-web-abcde".to_string()]);
        assert!(!e.satisfied(&key, &[&p]));
        assert!(e.satisfied(&key, &[]));
    }

    #[test]
    fn a_deleting_pod_meets_its_deletion() {
        let key = Key::new("default", "web");
        let mut e = Expectations::default();
        e.expect_deleted(&key, ["uid-web-abcde".to_string()]);
        let mut p = pod("web-abcde");
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(e.satisfied(&key, &[&p]));
    }

    #[test]
    fn forgetting_an_owner_drops_its_expectations() {
        let key = Key::new("default", "web");
        let mut e = Expectations::default();
        e.expect_created(&key, ["web-abcde".to_string()]);
        e.forget(&key);
        assert!(e.satisfied(&key, &[]));
    }
}
