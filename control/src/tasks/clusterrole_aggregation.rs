//! ClusterRole aggregation (kube-controller-manager's `clusterrole-aggregation`): a
//! ClusterRole with an `aggregationRule` holds, as its rules, the rules of every other
//! ClusterRole matching one of its `clusterRoleSelectors` — how `admin`, `edit` and `view`
//! grow when a chart adds a role labelled `rbac.authorization.k8s.io/aggregate-to-view`.
//! [`aggregated_rules`] is the pure decision; a sweep every second writes what differs.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::selectors::LabelSelector;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::tasks::context::TaskContext;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The rules `role` should hold (pure): `None` when it is no aggregation; else the rules
/// of the other ClusterRoles its selectors match, in name order, without repeats.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors: Vec<LabelSelector> = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .iter()
        .flatten()
        .filter_map(|s| {
            let labels = s.match_labels.clone().unwrap_or_default();
            let expressions: Vec<(String, String, Vec<String>)> = s
                .match_expressions
                .iter()
                .flatten()
                .map(|e| (e.key.clone(), e.operator.clone(), e.values.clone().unwrap_or_default()))
                .collect();
            LabelSelector::from_parts(
                labels.iter(),
                expressions.iter().map(|(k, o, v)| (k.as_str(), o.as_str(), v.as_slice())),
            )
            .ok()
        })
        .collect();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|other| other.metadata.name != role.metadata.name)
        .filter(|other| {
            let labels = other.metadata.labels.clone().unwrap_or_default();
            selectors.iter().any(|s| !s.is_empty() && s.matches(&labels))
        })
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in sources.iter().flat_map(|r| r.rules.iter().flatten()) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    Some(rules)
}

/// Keeps every aggregated ClusterRole's rules current until `cancel`.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let roles = ctx.informers.store::<ClusterRole>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let all = roles.state();
        for role in &all {
            let Some(rules) = aggregated_rules(role, &all) else { continue };
            if role.rules.clone().unwrap_or_default() == rules {
                continue;
            }
            let name = role.metadata.name.clone().unwrap_or_default();
            let patch = serde_json::json!({"rules": rules});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => tracing::info!(role = %name, rules = rules.len(), "aggregated a ClusterRole's rules"),
                Err(e) => tracing::debug!(role = %name, error = %e, "aggregating a ClusterRole"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(v: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn an_aggregation_holds_the_rules_of_the_roles_its_selectors_match() {
        // The Kubernetes docs' example.
        let monitoring = role(serde_json::json!({"metadata": {"name": "monitoring"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}}));
        let endpoints = role(serde_json::json!({"metadata": {"name": "monitoring-endpoints",
            "labels": {"rbac.example.com/aggregate-to-monitoring": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["services", "endpointslices", "pods"], "verbs": ["get", "list", "watch"]}]}));
        let unrelated = role(serde_json::json!({"metadata": {"name": "other"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}));
        let all = vec![monitoring.clone(), endpoints.clone(), unrelated.clone()];
        let rules = aggregated_rules(&monitoring, &all).unwrap();
        assert_eq!(rules, endpoints.rules.clone().unwrap());
        assert_eq!(aggregated_rules(&unrelated, &all), None);
        // The defaults: view feeds edit, edit feeds admin.
        let defaults: Vec<Arc<ClusterRole>> = crate::rbac_defaults::cluster_roles().into_iter().map(role).collect();
        let named = |n: &str| defaults.iter().find(|r| r.metadata.name.as_deref() == Some(n)).unwrap().clone();
        for name in ["view", "edit", "admin"] {
            let r = named(name);
            assert_eq!(aggregated_rules(&r, &defaults).unwrap(), r.rules.clone().unwrap(), "{name} is its aggregation");
        }
    }
}
