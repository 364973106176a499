//! The PodDisruptionBudgets preemption weighs (kube-scheduler's PDB lister): per budget
//! its namespace, selector, `status.disruptionsAllowed` (kept by the disruption
//! controller) and `status.disruptedPods` (evictions the API already granted), fed by a
//! watch. Budgets only make preemption *prefer* some victims over others, so decisions
//! never wait for this list: an unknown budget just counts as absent.

use std::collections::{BTreeMap, HashSet};

use berth_proto::selectors::LabelSelector;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::facts::PodFacts;
use crate::tasks::ownership;

/// One budget, as preemption reads it.
#[derive(Debug, Clone)]
pub struct Budget {
    pub namespace: String,
    /// `None` selects nothing: kube-scheduler's `filterPodsWithPDBViolation` skips budgets
    /// with a missing, empty or invalid selector.
    selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
    /// Names in `status.disruptedPods`: their eviction was already counted by the API, so
    /// deleting them again spends nothing.
    disrupted: HashSet<String>,
}

impl Budget {
    pub fn of(pdb: &PodDisruptionBudget) -> Budget {
        let spec = pdb.spec.as_ref();
        let selector = ownership::selector(spec.and_then(|s| s.selector.as_ref())).ok().flatten();
        let status = pdb.status.as_ref();
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector,
            allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Whether deleting `pod` spends this budget.
    pub fn covers(&self, pod: &PodFacts) -> bool {
        let (namespace, name) = pod.namespace_and_name();
        namespace == self.namespace
            && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
            && !self.disrupted.contains(name)
    }
}

/// Every budget by `namespace/name` (ordered, so decisions are repeatable).
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    by_key: BTreeMap<String, Budget>,
    /// Keys seen during a re-list (watch restarted): what is not seen again is gone.
    relisting: Option<HashSet<String>>,
}

fn key(pdb: &PodDisruptionBudget) -> String {
    format!("{}/{}", pdb.metadata.namespace.as_deref().unwrap_or(""), pdb.metadata.name.as_deref().unwrap_or(""))
}

impl Budgets {
    pub fn iter(&self) -> impl Iterator<Item = &Budget> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn applied(&mut self, pdb: &PodDisruptionBudget) {
        let key = key(pdb);
        if let Some(seen) = self.relisting.as_mut() {
            seen.insert(key.clone());
        }
        self.by_key.insert(key, Budget::of(pdb));
    }

    pub fn deleted(&mut self, pdb: &PodDisruptionBudget) {
        self.by_key.remove(&key(pdb));
    }

    pub fn relist_started(&mut self) {
        self.relisting = Some(HashSet::new());
    }

    pub fn relist_done(&mut self) {
        if let Some(seen) = self.relisting.take() {
            self.by_key.retain(|k, _| seen.contains(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pdb(name: &str, selector: serde_json::Value, allowed: i32) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
            "spec": {"selector": selector, "minAvailable": 1},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0,
                       "disruptedPods": {"evicted": "2025-01-01T00:00:00Z"}}}))
        .unwrap()
    }

    fn facts(namespace: &str, name: &str, labels: serde_json::Value) -> PodFacts {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": []}}))
            .unwrap();
        PodFacts::of(&pod)
    }

    #[test]
    fn a_budget_covers_selected_pods_of_its_namespace_not_yet_evicted() {
        let b = Budget::of(&pdb("web", json!({"matchLabels": {"app": "web"}}), 1));
        assert_eq!(b.allowed, 1);
        assert!(b.covers(&facts("d", "w1", json!({"app": "web"}))));
        assert!(!b.covers(&facts("other", "w1", json!({"app": "web"}))), "another namespace");
        assert!(!b.covers(&facts("d", "db", json!({"app": "db"}))));
        assert!(!b.covers(&facts("d", "evicted", json!({"app": "web"}))), "already in disruptedPods");
        let empty = Budget::of(&pdb("all", json!({}), 0));
        assert!(
            !empty.covers(&facts("d", "w1", json!({"app": "web"}))),
            "kube-scheduler: an empty selector selects nothing"
        );
    }

    #[test]
    fn a_relist_forgets_budgets_not_seen_again() {
        let mut budgets = Budgets::default();
        budgets.applied(&pdb("a", json!({}), 0));
        budgets.applied(&pdb("b", json!({}), 0));
        budgets.relist_started();
        budgets.applied(&pdb("b", json!({}), 2));
        budgets.relist_done();
        assert_eq!(budgets.iter().map(|b| b.allowed).collect::<Vec<_>>(), [2]);
        budgets.deleted(&pdb("b", json!({}), 2));
        assert!(budgets.is_empty());
    }
}
