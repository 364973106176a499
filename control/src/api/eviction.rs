//! `POST pods/{name}/eviction`, honouring PodDisruptionBudgets as kube-apiserver's eviction
//! REST does: a pod that is done, pending or already going is deleted at once; a pod no
//! budget covers too; with one budget, the eviction spends one of its
//! `disruptionsAllowed` (recording the pod in `disruptedPods`, in one guarded write of the
//! budget) or is refused with 429, which `kubectl drain` retries; more than one budget is a
//! 500, as in Kubernetes. [`spend`] is the decision; the handler reads and writes.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::body::{decode_body, delete_options};
use super::{json_response, ApiRequest, ApiState};
use crate::registry::{storage, Part, WriteOptions};
use crate::resource::{self, ApiError, Cause};
use crate::tasks::disruption::budget_selector;

/// Whether the pod is beyond budgets: finished, not yet running, or already being deleted
/// (`canIgnorePDB`).
fn ignores_budgets(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed" | "Pending"))
        || !pod["metadata"]["deletionTimestamp"].is_null()
}

fn is_ready(pod: &Value) -> bool {
    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(pod.clone())
        .is_ok_and(|p| crate::tasks::ownership::pod_is_ready(&p))
}

fn refused(message: &str, cause: String) -> ApiError {
    ApiError::TooManyRequests {
        message: message.to_string(),
        causes: vec![Cause { reason: "DisruptionBudget".into(), message: cause, field: String::new() }],
    }
}

/// What evicting `pod` does to `pdb`: `None` to evict without spending (an unready pod
/// while the budget is healthy), the budget with one disruption spent, or the 429.
pub fn spend(pdb: &Value, pod: &Value, now: &str) -> Result<Option<Value>, ApiError> {
    let status = &pdb["status"];
    let int = |k: &str| status[k].as_i64().unwrap_or(0);
    if !is_ready(pod) {
        let policy = pdb["spec"]["unhealthyPodEvictionPolicy"].as_str().unwrap_or("IfHealthyBudget");
        if policy == "AlwaysAllow" || (int("currentHealthy") >= int("desiredHealthy") && int("desiredHealthy") > 0) {
            return Ok(None);
        }
    }
    let name = pdb["metadata"]["name"].as_str().unwrap_or_default();
    if int("observedGeneration") < pdb["metadata"]["generation"].as_i64().unwrap_or(0) {
        return Err(refused(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            format!("The disruption budget {name} is still being processed by the server."),
        ));
    }
    if int("disruptionsAllowed") <= 0 {
        return Err(refused(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int("desiredHealthy"),
                int("currentHealthy")
            ),
        ));
    }
    let mut next = pdb.clone();
    next["status"]["disruptionsAllowed"] = json!(int("disruptionsAllowed") - 1);
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    if !next["status"]["disruptedPods"].is_object() {
        next["status"]["disruptedPods"] = json!({});
    }
    next["status"]["disruptedPods"][pod_name] = json!(now);
    Ok(Some(next))
}

fn budgets_info() -> &'static resource::ResourceInfo {
    resource::find("policy", "v1", "poddisruptionbudgets").expect("served")
}

/// The budgets of the pod's namespace whose selector takes it (the disruption
/// controller's selection).
async fn budgets_of(state: &ApiState, namespace: &str, pod: &Value) -> Result<Vec<Value>, ApiError> {
    let prefix = storage::prefix(budgets_info(), Some(namespace));
    let page = state.registry.storage().scan(&prefix, &prefix, 0, 0).await?;
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
    Ok(page.items.into_iter().map(|s| s.object).filter(|pdb| budget_selector(pdb)(&labels)).collect())
}

pub async fn eviction(state: &ApiState, req: ApiRequest) -> Result<Response, ApiError> {
    let body = decode_body(&req).await?;
    let name = req.target.name.clone().expect("routed with a name");
    let namespace = req.target.namespace.clone().unwrap_or_else(|| "default".into());
    let opts = delete_options(&req.query, body.get("deleteOptions").unwrap_or(&Value::Null))?;
    let pods = req.target.info.storage();
    let pod = state.registry.get(pods, Some(&namespace), &name, true).await?;
    if !ignores_budgets(&pod) {
        let budgets = budgets_of(state, &namespace, &pod).await?;
        match budgets.as_slice() {
            [] => {}
            [pdb] => {
                let pdb_info = budgets_info();
                let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
                let write = WriteOptions { dry_run: opts.dry_run, ..Default::default() };
                let result = state
                    .registry
                    .modify(pdb_info, Some(&namespace), &pdb_name, Part::Status, &write, |current| {
                        // An unready pod the budget can spare leaves the budget as it is.
                        Ok(spend(current, &pod, &now)?.unwrap_or_else(|| current.clone()))
                    })
                    .await;
                result?;
            }
            _ => {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                        .into(),
                ))
            }
        }
    }
    state.registry.delete(pods, Some(&namespace), &name, &opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> Value {
        json!({"metadata": {"name": "web-1"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn pdb(allowed: i64, healthy: i64, desired: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 1}, "spec": {},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                       "currentHealthy": healthy, "desiredHealthy": desired}})
    }

    #[test]
    fn an_eviction_spends_the_budget_or_is_refused() {
        let spent = spend(&pdb(1, 3, 2), &pod(true), "2026-12-06T10:00:00Z").unwrap().unwrap();
        assert_eq!(spent["status"]["disruptionsAllowed"], 0);
        assert_eq!(spent["status"]["disruptedPods"], json!({"web-1": "2026-12-06T10:00:00Z"}));
        let refused = spend(&pdb(0, 2, 2), &pod(true), "now").unwrap_err();
        assert_eq!(refused.code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.to_string(), "Cannot evict pod as it would violate the pod's disruption budget.");
        assert_eq!(
            refused.status()["details"]["causes"][0]["message"],
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
        // An unready pod goes without spending while the budget is healthy.
        assert_eq!(spend(&pdb(0, 2, 2), &pod(false), "now").unwrap(), None);
        let mut stale = pdb(5, 3, 1);
        stale["metadata"]["generation"] = json!(2);
        assert!(spend(&stale, &pod(true), "now").is_err());
    }
}
