//! Keeps Kubernetes' default RBAC objects (`crate::rbac_defaults`) and the system
//! PriorityClasses in the store: creates any that are missing, as kube-apiserver's
//! `rbac/bootstrap-roles` and `scheduling/bootstrap-system-priority-classes` do at startup,
//! and leaves existing ones — an operator's edits included — alone.

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::periodic::Every;
use crate::tasks::context::TaskContext;

const SWEEP_EVERY: Duration = Duration::from_secs(30);

async fn ensure<K>(api: &Api<K>, objects: Vec<serde_json::Value>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    for value in objects {
        let Ok(object) = serde_json::from_value::<K>(value) else { continue };
        let name = object.meta().name.clone().unwrap_or_default();
        match api.get_opt(&name).await {
            Ok(Some(_)) => {}
            Ok(None) => match api.create(&PostParams::default(), &object).await {
                Ok(_) => tracing::info!(%name, kind = %K::kind(&()), "created a default object"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => tracing::warn!(%name, error = %e, "creating a default object"),
            },
            Err(e) => tracing::debug!(%name, error = %e, "reading a default object"),
        }
    }
}

/// `system-node-critical` and `system-cluster-critical`, with kube-apiserver's values and
/// descriptions.
fn system_priority_classes() -> Vec<serde_json::Value> {
    use crate::resource::validate::policy::SYSTEM_PRIORITY_CLASSES;
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value)| {
            let description = if *name == "system-node-critical" {
                "Used for system critical pods that must not be moved from their current node."
            } else {
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
            };
            serde_json::json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description})
        })
        .collect()
}

/// Creates missing defaults every [`SWEEP_EVERY`] until `cancel`.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let priority_classes: Api<PriorityClass> = Api::all(ctx.client.clone());
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let pass = async {
            ensure(&roles, crate::rbac_defaults::cluster_roles()).await;
            ensure(&bindings, crate::rbac_defaults::cluster_role_bindings()).await;
            ensure(&priority_classes, system_priority_classes()).await;
        };
        if every.pass(pass).await.is_none() {
            return;
        }
    }
}
