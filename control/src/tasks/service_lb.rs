//! A load balancer for `type: LoadBalancer` Services built from the nodes themselves, as
//! k3s's ServiceLB (and MetalLB in L2 mode) give one on machines without a cloud: a
//! Service's `status.loadBalancer.ingress` lists the InternalIPs of the Ready nodes, and
//! every node's service proxy answers on those addresses at the Service's ports. So
//! `EXTERNAL-IP` is not `<pending>` forever, and the address answers.
//!
//! Services with a `spec.loadBalancerClass` belong to another implementation and are left
//! alone. [`ingress_ips`] is the pure decision; the sweep patches `status` only when it
//! differs, pinned to the resourceVersion it read.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::node_lifecycle::{internal_ip, node_is_ready};
use crate::periodic::Every;
use crate::tasks::context::TaskContext;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The addresses a LoadBalancer Service answers on (pure): the Ready, schedulable nodes'
/// InternalIPs, sorted; every node when none is Ready (an address that may answer later
/// beats `<pending>`).
pub fn ingress_ips(nodes: &[&Node]) -> Vec<String> {
    let internal_ip = |n: &Node| internal_ip(n).map(String::from);
    let usable = |n: &&&Node| node_is_ready(n) && !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let mut ips: Vec<String> = nodes.iter().filter(usable).filter_map(|n| internal_ip(n)).collect();
    if ips.is_empty() {
        ips = nodes.iter().filter_map(|n| internal_ip(n)).collect();
    }
    ips.sort();
    ips.dedup();
    ips
}

/// Whether this implementation serves `svc`.
fn is_ours(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_deref()).is_none()
}

fn current_ips(svc: &Service) -> Vec<String> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let services = ctx.informers.store::<Service>();
    let nodes = ctx.informers.store::<Node>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let node_list = nodes.state();
        let node_refs: Vec<&Node> = node_list.iter().map(|n| n.as_ref()).collect();
        let wanted = ingress_ips(&node_refs);
        let pass = async {
            for svc in services.state().iter().filter(|s| is_ours(s)) {
                if current_ips(svc) == wanted {
                    continue;
                }
                let ingress: Vec<serde_json::Value> =
                    wanted.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
                let patch = json!({
                    "metadata": {"resourceVersion": svc.resource_version()},
                    "status": {"loadBalancer": {"ingress": ingress}}
                });
                let api: Api<Service> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
                match api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {
                        ctx.status.record(true);
                        tracing::info!(service = %svc.name_any(), ips = ?wanted, "load balancer addresses set");
                    }
                    Err(e) => {
                        ctx.status.record(false);
                        tracing::debug!(service = %svc.name_any(), error = %e, "setting load balancer addresses failed; retrying");
                    }
                }
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

    fn node(name: &str, ip: &str, ready: bool, unschedulable: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"unschedulable": unschedulable},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn ready_schedulable_nodes_answer_for_load_balancers() {
        let nodes = [
            node("b", "172.31.1.12", true, false),
            node("a", "172.31.1.11", true, false),
            node("c", "172.31.1.13", false, false),
            node("d", "172.31.1.14", true, true),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(ingress_ips(&refs), vec!["172.31.1.11", "172.31.1.12"]);
        let down = [node("c", "172.31.1.13", false, false)];
        assert_eq!(ingress_ips(&down.iter().collect::<Vec<_>>()), vec!["172.31.1.13"], "better than pending");
    }

    #[test]
    fn only_classless_load_balancers_are_ours() {
        let svc = |spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap()
        };
        assert!(is_ours(&svc(json!({"type": "LoadBalancer"}))));
        assert!(!is_ours(&svc(json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}))));
        assert!(!is_ours(&svc(json!({"type": "NodePort"}))));
    }
}
