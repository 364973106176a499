//! The built-in ingress controller's control side (k3s ships Traefik the same way): the
//! IngressClass `berth` (controller `berth.dev/ingress`, the cluster's default class) is
//! created when missing, and every Ingress of that class — named, or unnamed while `berth`
//! is the default — gets the Ready nodes' InternalIPs as `status.loadBalancer.ingress`
//! (the ADDRESS column), since every agent proxies Ingress traffic on its node address,
//! port 80. Which Ingresses are served is `berth_proto::model::ingress::is_served`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use berth_proto::model::ingress::{is_served, CLASS, CONTROLLER, DEFAULT_CLASS_ANNOTATION};

use super::service_lb::ingress_ips;
use crate::periodic::Every;
use crate::tasks::context::TaskContext;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The class as it is created.
pub fn default_class() -> IngressClass {
    serde_json::from_value(json!({
        "metadata": {"name": CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER}
    }))
    .expect("a valid IngressClass")
}

fn current_ips(ingress: &Ingress) -> Vec<String> {
    let lb = ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    lb.and_then(|lb| lb.ingress.as_ref()).into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let ingresses = ctx.informers.store::<Ingress>();
    let classes = ctx.informers.store::<IngressClass>();
    let nodes = ctx.informers.store::<Node>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let class_api: Api<IngressClass> = Api::all(ctx.client.clone());
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let node_list = nodes.state();
        let node_refs: Vec<&Node> = node_list.iter().map(|n| n.as_ref()).collect();
        let wanted = ingress_ips(&node_refs);
        let class_list = classes.state();
        let class_refs: Vec<&IngressClass> = class_list.iter().map(|c| c.as_ref()).collect();
        let pass = async {
            if !class_refs.iter().any(|c| c.metadata.name.as_deref() == Some(CLASS)) {
                super::endpoints::record(&ctx, class_api.create(&PostParams::default(), &default_class()).await);
            }
            for ingress in ingresses.state().iter().filter(|i| is_served(i, &class_refs)) {
                if current_ips(ingress) == wanted {
                    continue;
                }
                let addresses: Vec<serde_json::Value> = wanted.iter().map(|ip| json!({"ip": ip})).collect();
                let patch = json!({
                    "metadata": {"resourceVersion": ingress.resource_version()},
                    "status": {"loadBalancer": {"ingress": addresses}}
                });
                let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ingress.namespace().unwrap_or_default());
                let result =
                    api.patch_status(&ingress.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
                if result.is_ok() {
                    tracing::info!(ingress = %ingress.name_any(), ips = ?wanted, "ingress addresses set");
                }
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

    #[test]
    fn the_created_class_is_the_default() {
        let class = default_class();
        assert_eq!(class.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str), Some("true"));
        assert_eq!(class.spec.unwrap().controller.as_deref(), Some(CONTROLLER));
    }
}
