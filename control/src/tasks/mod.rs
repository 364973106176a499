//! The leader-only tasks this server runs:
//! * [`scheduler`] — binds pending pods to nodes;
//! * [`leases`] — publishes who leads in `kube-system` Leases and creates the system
//!   namespaces;
//! * [`replicaset`] — keeps each ReplicaSet's pods;
//! * [`deployment`] — rolls Deployments out through ReplicaSets;
//! * [`daemonset`] — one pod of each DaemonSet on every eligible node;
//! * [`statefulset`] — StatefulSet pods with stable identities, in order;
//! * [`endpoints`] — Endpoints and ([`endpointslices`]) EndpointSlices of Services with selectors;
//! * [`node_lifecycle`] — unreachable nodes: conditions, taints, evictions;
//! * [`node_ipam`] — every Node's `spec.podCIDR` from `--cluster-cidr`;
//! * [`kubernetes_service`] — the `kubernetes` Service and its endpoints: the live API servers;
//! * [`cluster_dns`] — the `kube-dns` Service: every Ready node's DNS server, used node-locally;
//! * [`ingress`] — the `berth` IngressClass and the addresses of its Ingresses;
//! * [`service_lb`] — LoadBalancer Services' addresses: the Ready nodes' InternalIPs;
//! * [`job`] — runs Jobs' pods to completion (and deletes Jobs past their TTL);
//! * [`cronjob`] — starts CronJobs' Jobs on schedule;
//! * [`quota`] — ResourceQuota `status.hard`/`status.used` (admission is in the registry);
//! * [`hpa`] — HorizontalPodAutoscalers: scale targets from metrics.k8s.io usage;
//! * [`gc`] — the garbage collector (ownerReferences cascades);
//! * [`namespaces`] — finishes namespace deletion (deletes the contents, then the namespace);
//! * [`crd_cleanup`] — finishes CustomResourceDefinition deletion (deletes its objects first);
//! * [`events`] — the Event recorder every task uses;
//! * [`context`] — what every task gets to work with;
//! * [`kinds`] and [`dynamic`] — the shared informers and API of every served kind alike
//!   (the garbage collector, namespace deletion, quota);
//! * [`ownership`] and [`workqueue`] — what the workload controllers share (claiming,
//!   pod availability; informers and the work queue).
//! * [`revisions`] — the ControllerRevision history DaemonSets and StatefulSets keep (for
//!   `kubectl rollout history` / `undo`).

pub mod bootstrap;
pub mod cluster_dns;
pub mod clusterrole_aggregation;
pub mod context;
pub mod controller;
pub mod crd_cleanup;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod dynamic;
pub mod endpoints;
pub mod endpointslices;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod hpa;
pub mod ingress;
pub mod job;
pub mod kinds;
pub mod kubernetes_service;
pub mod leases;
pub mod namespaces;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod owner_index;
pub mod ownership;
pub mod pod_control;
pub mod quota;
pub mod rbac_defaults;
pub mod replicaset;
pub mod revisions;
pub mod scheduler;
pub mod service_accounts;
pub mod service_lb;
pub mod statefulset;
pub mod status;
pub mod sync_error;
pub mod workqueue;

use std::sync::Arc;
use std::time::Duration;

use context::TaskFn;

/// Tunables of the leader tasks (`berth-server` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A node whose Lease is older than this is unreachable (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// Pods on an unreachable/not-ready node are deleted after this (`--pod-eviction-timeout`).
    pub pod_eviction_timeout: Duration,
    /// How often agents' usage is scraped for metrics.k8s.io (`--metric-resolution`).
    pub metric_resolution: Duration,
    /// How often each HPA is synced (`--horizontal-pod-autoscaler-sync-period`).
    pub hpa_sync_period: Duration,
    /// Usage/target ratios this close to 1 do not rescale (`--horizontal-pod-autoscaler-tolerance`).
    pub hpa_tolerance: f64,
    /// Scale-down stabilization of HPAs without `behavior`
    /// (`--horizontal-pod-autoscaler-downscale-stabilization`).
    pub hpa_downscale_stabilization: Duration,
    /// How often the system namespaces are re-created if something deleted them
    /// (kube-apiserver's system namespaces controller: every minute).
    pub system_namespaces_every: Duration,
    /// Where Nodes' pod CIDRs come from (`--cluster-cidr`, `--node-cidr-mask-size`); None:
    /// `--allocate-node-cidrs=false`.
    pub node_cidrs: Option<node_ipam::NodeCidrs>,
    /// The cluster CA: published to every namespace as `kube-root-ca.crt`, and signing
    /// approved client certificate requests (None: `--insecure`, no CA).
    pub cluster_ca: Option<berth_proto::pki::Ca>,
    /// The longest life of a signed client certificate (`--cluster-signing-duration`).
    pub cluster_signing_duration: Duration,
    /// What a server joining with a control-plane token fetches (see
    /// `berth_proto::pki::CONTROL_PLANE_FILES`; None: `--insecure`).
    pub control_plane_secrets: Option<std::collections::BTreeMap<String, String>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            node_monitor_grace_period: Duration::from_secs(20),
            pod_eviction_timeout: Duration::from_secs(10),
            metric_resolution: crate::usage::DEFAULT_METRIC_RESOLUTION,
            hpa_sync_period: Duration::from_secs(15),
            hpa_tolerance: 0.1,
            hpa_downscale_stabilization: Duration::from_secs(300),
            system_namespaces_every: Duration::from_secs(60),
            node_cidrs: node_ipam::NodeCidrs::parse(node_ipam::DEFAULT_CLUSTER_CIDR, node_ipam::DEFAULT_NODE_PREFIX)
                .ok(),
            cluster_ca: None,
            cluster_signing_duration: Duration::from_secs(365 * 24 * 3600),
            control_plane_secrets: None,
        }
    }
}

/// Every leader task, by name.
pub fn all() -> Vec<(&'static str, TaskFn)> {
    vec![
        ("leader-leases", Arc::new(|ctx, cancel| Box::pin(leases::run(ctx, cancel)))),
        ("namespace-controller", Arc::new(|ctx, cancel| Box::pin(namespaces::run(ctx, cancel)))),
        ("crd-cleanup", Arc::new(|ctx, cancel| Box::pin(crd_cleanup::run(ctx, cancel)))),
        ("scheduler", Arc::new(|ctx, cancel| Box::pin(scheduler::run(ctx, cancel)))),
        ("replicaset-controller", Arc::new(|ctx, cancel| Box::pin(replicaset::run(ctx, cancel)))),
        ("deployment-controller", Arc::new(|ctx, cancel| Box::pin(deployment::run(ctx, cancel)))),
        ("daemonset-controller", Arc::new(|ctx, cancel| Box::pin(daemonset::run(ctx, cancel)))),
        ("statefulset-controller", Arc::new(|ctx, cancel| Box::pin(statefulset::run(ctx, cancel)))),
        ("endpoints-controller", Arc::new(|ctx, cancel| Box::pin(endpoints::run(ctx, cancel)))),
        ("node-lifecycle-controller", Arc::new(|ctx, cancel| Box::pin(node_lifecycle::run(ctx, cancel)))),
        ("node-ipam-controller", Arc::new(|ctx, cancel| Box::pin(node_ipam::run(ctx, cancel)))),
        ("kubernetes-service", Arc::new(|ctx, cancel| Box::pin(kubernetes_service::run(ctx, cancel)))),
        ("cluster-dns-service", Arc::new(|ctx, cancel| Box::pin(cluster_dns::run(ctx, cancel)))),
        ("ingress-controller", Arc::new(|ctx, cancel| Box::pin(ingress::run(ctx, cancel)))),
        ("service-lb-controller", Arc::new(|ctx, cancel| Box::pin(service_lb::run(ctx, cancel)))),
        ("garbage-collector", Arc::new(|ctx, cancel| Box::pin(gc::run(ctx, cancel)))),
        ("job-controller", Arc::new(|ctx, cancel| Box::pin(job::run(ctx, cancel)))),
        ("cronjob-controller", Arc::new(|ctx, cancel| Box::pin(cronjob::run(ctx, cancel)))),
        ("resourcequota-controller", Arc::new(|ctx, cancel| Box::pin(quota::run(ctx, cancel)))),
        ("horizontal-pod-autoscaler", Arc::new(|ctx, cancel| Box::pin(hpa::run(ctx, cancel)))),
        ("disruption-controller", Arc::new(|ctx, cancel| Box::pin(disruption::run(ctx, cancel)))),
        ("rbac-defaults", Arc::new(|ctx, cancel| Box::pin(rbac_defaults::run(ctx, cancel)))),
        ("serviceaccount-controller", Arc::new(|ctx, cancel| Box::pin(service_accounts::run(ctx, cancel)))),
        ("bootstrap-signer", Arc::new(|ctx, cancel| Box::pin(bootstrap::run(ctx, cancel)))),
        ("clusterrole-aggregation", Arc::new(|ctx, cancel| Box::pin(clusterrole_aggregation::run(ctx, cancel)))),
    ]
}
