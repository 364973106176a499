//! The disruption controller: every PodDisruptionBudget's status, as
//! kube-controller-manager's computes it — the pods it covers (`expectedPods`), the ready
//! ones not already being evicted (`currentHealthy`), how many must stay (`desiredHealthy`,
//! from `minAvailable` or `maxUnavailable`, percentages rounded up), and so how many may go
//! now (`disruptionsAllowed`, which the eviction subresource spends). Evictions the API
//! recorded in `disruptedPods` are forgotten once their pod is gone or after two minutes.
//! [`budget_status`] is the pure decision; the loop patches what changed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::ownership::{is_deleting, labels, pod_is_active, pod_is_ready};
use crate::periodic::Every;
use crate::tasks::context::TaskContext;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long an eviction the API granted counts against the budget before its pod is gone
/// (`DeletionTimeout` in Kubernetes).
const DISRUPTION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

/// A count or a percentage of `total`, rounded up (`GetScaledValueFromIntOrPercent`).
fn scaled(value: &Value, total: i64) -> Option<i64> {
    match value {
        Value::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((percent * total + 99) / 100)
        }
        v => v.as_i64(),
    }
}

/// Which pods a budget covers, by their labels. policy/v1: an empty selector selects every
/// pod of the namespace, a missing (or broken) one none.
pub fn budget_selector(pdb: &Value) -> impl Fn(&std::collections::BTreeMap<String, String>) -> bool {
    let selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> =
        serde_json::from_value(pdb["spec"]["selector"].clone()).ok();
    let matcher = selector.as_ref().map(|s| super::ownership::selector(Some(s)));
    move |labels| match &matcher {
        Some(Ok(None)) => true,
        Some(Ok(Some(sel))) => sel.matches(labels),
        None | Some(Err(_)) => false,
    }
}

/// The budget's status given the pods of its namespace (its own selection is made here).
pub fn budget_status(pdb: &Value, pods: &[&Pod], now: chrono::DateTime<chrono::Utc>) -> Value {
    let spec = &pdb["spec"];
    let selects = budget_selector(pdb);
    let covered: Vec<&&Pod> =
        pods.iter().filter(|p| pod_is_active(p) && !is_deleting(&p.metadata) && selects(labels(&p.metadata))).collect();
    let mut disrupted = Map::new();
    for (name, at) in pdb["status"]["disruptedPods"].as_object().into_iter().flatten() {
        let fresh = at
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| now.signed_duration_since(t) < DISRUPTION_TIMEOUT);
        if fresh && covered.iter().any(|p| p.metadata.name.as_deref() == Some(name.as_str())) {
            disrupted.insert(name.clone(), at.clone());
        }
    }
    let expected = covered.len() as i64;
    let healthy = covered
        .iter()
        .filter(|p| pod_is_ready(p) && !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count() as i64;
    let desired = if let Some(min) = spec.get("minAvailable").and_then(|v| scaled(v, expected)) {
        min
    } else if let Some(max) = spec.get("maxUnavailable").and_then(|v| scaled(v, expected)) {
        (expected - max).max(0)
    } else {
        0
    };
    let allowed = (healthy - desired).max(0);
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let previous = pdb["status"]["conditions"].as_array().and_then(|c| c.first());
    let status = if allowed > 0 { "True" } else { "False" };
    let transition = match previous {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    };
    json!({
        "observedGeneration": generation,
        "disruptedPods": disrupted,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": status,
            "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": transition,
        }],
    })
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let budgets = ctx.informers.store::<PodDisruptionBudget>();
    let pods = ctx.informers.store::<Pod>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let all_pods = pods.state();
        let pass = async {
            for pdb in budgets.state() {
                let namespace = pdb.namespace().unwrap_or_default();
                let in_namespace: Vec<&Pod> = all_pods
                    .iter()
                    .map(|p| p.as_ref())
                    .filter(|p| p.metadata.namespace.as_deref() == Some(&namespace))
                    .collect();
                let Ok(current) = serde_json::to_value(pdb.as_ref()) else { continue };
                let wanted = budget_status(&current, &in_namespace, chrono::Utc::now());
                if current.get("status") == Some(&wanted) {
                    continue;
                }
                // Guarded by the resourceVersion read: an eviction that spent the budget
                // since then makes this a conflict, retried on the next pass.
                let patch = json!({"metadata": {"resourceVersion": pdb.resource_version()}, "status": wanted});
                let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
                let result = api.patch_status(&pdb.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
                super::endpoints::record(&ctx, result);
            }
        };
        if every.pass(pass).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, app: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_budget_allows_what_healthy_pods_spare() {
        let now = chrono::Utc::now();
        let pods = [pod("a", "web", true), pod("b", "web", true), pod("c", "web", false), pod("d", "db", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let pdb = |spec: Value| json!({"metadata": {"generation": 2}, "spec": spec});
        let min =
            budget_status(&pdb(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})), &refs, now);
        assert_eq!(
            (&min["expectedPods"], &min["currentHealthy"], &min["desiredHealthy"], &min["disruptionsAllowed"]),
            (&json!(3), &json!(2), &json!(1), &json!(1))
        );
        assert_eq!(min["conditions"][0]["reason"], "SufficientPods");
        let percent = budget_status(
            &pdb(json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}})),
            &refs,
            now,
        );
        // 50% of 3 rounds up to 2 unavailable: 1 must stay, 2 are healthy.
        assert_eq!((&percent["desiredHealthy"], &percent["disruptionsAllowed"]), (&json!(1), &json!(1)));
        let all = budget_status(&pdb(json!({"minAvailable": "100%", "selector": {}})), &refs, now);
        assert_eq!((&all["expectedPods"], &all["disruptionsAllowed"]), (&json!(4), &json!(0)));
        assert_eq!(all["conditions"][0]["reason"], "InsufficientPods");
        // An eviction granted a moment ago still counts; one from long ago, or of a pod
        // that is gone, does not.
        let mut spent = pdb(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}));
        let old = (now - chrono::Duration::minutes(5)).to_rfc3339();
        spent["status"] = json!({"disruptedPods": {"a": now.to_rfc3339(), "b": old, "gone": now.to_rfc3339()}});
        let status = budget_status(&spent, &refs, now);
        assert_eq!(status["disruptedPods"].as_object().unwrap().keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!((&status["currentHealthy"], &status["disruptionsAllowed"]), (&json!(1), &json!(0)));
    }
}
