//! Every namespace's service-account basics, as kube-controller-manager's
//! `serviceaccount-controller` and `root-ca-cert-publisher` keep them: a `default`
//! ServiceAccount, and the `kube-root-ca.crt` ConfigMap holding the cluster CA (`ca.crt`)
//! that pods' token volumes project. Both are re-created if deleted, and the ConfigMap is
//! put back if edited. Namespaces being deleted are left alone.
//!
//! [`missing`] is the pure decision for one namespace; the sync writes what it says.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::workqueue::{self, Change, Key, WorkQueue, Workers};
use crate::serviceaccount::admission::ROOT_CA_CONFIGMAP;
use crate::tasks::context::TaskContext;

pub const DEFAULT_ACCOUNT: &str = "default";
const CA_KEY: &str = "ca.crt";

/// What one namespace lacks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing {
    pub account: bool,
    /// The ConfigMap is absent (`Some(true)`) or holds another CA (`Some(false)`).
    pub root_ca: Option<bool>,
}

/// What namespace `ns` lacks (pure): `ca_pem` is the cluster CA to publish (`None`: none).
pub fn missing(
    ns: Option<&Namespace>,
    account: Option<&ServiceAccount>,
    root_ca: Option<&ConfigMap>,
    ca_pem: Option<&str>,
) -> Missing {
    let active = ns.is_some_and(|n| {
        n.metadata.deletion_timestamp.is_none()
            && n.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Active") == "Active"
    });
    if !active {
        return Missing::default();
    }
    let root_ca = ca_pem.and_then(|pem| match root_ca {
        None => Some(true),
        Some(cm) if cm.data.as_ref().and_then(|d| d.get(CA_KEY)).map(String::as_str) != Some(pem) => Some(false),
        Some(_) => None,
    });
    Missing { account: account.is_none(), root_ca }
}

struct Controller {
    client: kube::Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
    config_maps: Store<ConfigMap>,
    ca_pem: Option<String>,
}

fn root_ca_config_map(ns: &str, pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(ROOT_CA_CONFIGMAP.into()),
            namespace: Some(ns.into()),
            annotations: Some(
                [("kubernetes.io/description".to_string(), "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string())]
                    .into(),
            ),
            ..Default::default()
        },
        data: Some([(CA_KEY.to_string(), pem.to_string())].into()),
        ..Default::default()
    }
}

async fn sync(c: Arc<Controller>, key: Key) -> Result<(), kube::Error> {
    let ns_name = key.name.as_str();
    let ns = c.namespaces.get(&ObjectRef::new(ns_name));
    let account = c.accounts.get(&ObjectRef::new(DEFAULT_ACCOUNT).within(ns_name));
    let root_ca = c.config_maps.get(&ObjectRef::new(ROOT_CA_CONFIGMAP).within(ns_name));
    let todo = missing(ns.as_deref(), account.as_deref(), root_ca.as_deref(), c.ca_pem.as_deref());
    let ok_if_exists = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        // The namespace went away or started terminating meanwhile.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => Ok(()),
        other => other,
    };
    if todo.account {
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta { name: Some(DEFAULT_ACCOUNT.into()), ..Default::default() },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns_name);
        ok_if_exists(api.create(&PostParams::default(), &sa).await.map(drop))?;
        tracing::debug!(namespace = ns_name, "created the default ServiceAccount");
    }
    if let (Some(absent), Some(pem)) = (todo.root_ca, c.ca_pem.as_deref()) {
        let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns_name);
        let cm = root_ca_config_map(ns_name, pem);
        if absent {
            ok_if_exists(api.create(&PostParams::default(), &cm).await.map(drop))?;
        } else {
            let patch = serde_json::json!({"data": {CA_KEY: pem}});
            let params = kube::api::PatchParams::default();
            ok_if_exists(api.patch(ROOT_CA_CONFIGMAP, &params, &kube::api::Patch::Merge(&patch)).await.map(drop))?;
        }
        tracing::debug!(namespace = ns_name, "published the cluster CA");
    }
    Ok(())
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let queue = WorkQueue::new(cancel.clone());
    let resync = Arc::new(Notify::new());
    let namespaces = workqueue::primary_informer::<Namespace>(&ctx.informers, queue.clone(), resync.clone());
    // A change to a namespace's default account or CA ConfigMap (a deletion, an edit)
    // syncs that namespace.
    let by_namespace = |queue: Arc<WorkQueue>, resync: Arc<Notify>, name: &'static str| {
        move |ns: Option<&str>, obj_name: Option<&str>, change_is_resync: bool| {
            if change_is_resync {
                resync.notify_one();
            } else if obj_name == Some(name) {
                queue.add(Key::new("", ns.unwrap_or_default()));
            }
        }
    };
    let on_account = by_namespace(queue.clone(), resync.clone(), DEFAULT_ACCOUNT);
    let accounts = ctx.informers.subscribe(move |change: Change<'_, ServiceAccount>| match change {
        Change::Object { obj, .. } => {
            on_account(obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref(), false)
        }
        Change::Resynced => on_account(None, None, true),
    });
    let on_config_map = by_namespace(queue.clone(), resync.clone(), ROOT_CA_CONFIGMAP);
    let config_maps = ctx.informers.subscribe(move |change: Change<'_, ConfigMap>| match change {
        Change::Object { obj, .. } => {
            on_config_map(obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref(), false)
        }
        Change::Resynced => on_config_map(None, None, true),
    });
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        namespaces: namespaces.clone(),
        accounts,
        config_maps,
        ca_pem: ctx.settings.cluster_ca.as_ref().map(|ca| ca.issued.cert_pem.clone()),
    });
    let workers = Workers { kind: "ServiceAccount", count: 2, resync_every: Duration::from_secs(60) };
    workqueue::run_controller(&ctx.informers, workers, queue, resync, namespaces, controller, sync, cancel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(phase: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "shop"}, "status": {"phase": phase}})).unwrap()
    }

    #[test]
    fn an_active_namespace_gets_its_account_and_the_current_ca() {
        let active = namespace("Active");
        let everything = missing(Some(&active), None, None, Some("PEM"));
        assert_eq!(everything, Missing { account: true, root_ca: Some(true) });
        let sa = ServiceAccount::default();
        let stale = root_ca_config_map("shop", "OLD");
        assert_eq!(missing(Some(&active), Some(&sa), Some(&stale), Some("PEM")).root_ca, Some(false));
        let current = root_ca_config_map("shop", "PEM");
        assert_eq!(missing(Some(&active), Some(&sa), Some(&current), Some("PEM")), Missing::default());
        // No CA (--insecure): only the account.
        assert_eq!(missing(Some(&active), None, None, None), Missing { account: true, root_ca: None });
        // Terminating or gone: nothing.
        assert_eq!(missing(Some(&namespace("Terminating")), None, None, Some("PEM")), Missing::default());
        assert_eq!(missing(None, None, None, Some("PEM")), Missing::default());
    }
}
