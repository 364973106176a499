//! The node side of an agent: the `Node` object it registers ([`build_node`], pure), its
//! conditions ([`node_conditions`], pure), registration ([`register`]), and the heartbeat
//! loop ([`heartbeat`]) that renews the node's Lease in `kube-node-lease` every period and
//! posts conditions when they change and at least every `status_report`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::model::well_known;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::NodeTemplate;
use crate::error::{AgentError, Result};
use crate::host::{go_arch, HostInfo, Pressure};
use crate::runtime::now;

pub const KUBELET_VERSION: &str = "v1.33.0-berth";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Everything that makes one node's `Node` object.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub template: Arc<NodeTemplate>,
    pub host: Arc<HostInfo>,
    /// The kubelet endpoint port (status.daemonEndpoints.kubeletEndpoint.Port).
    pub kubelet_port: u16,
    /// `fake://0.1.0`, `process://0.1.0`.
    pub runtime_version: String,
}

/// The Node object to register: labels, taints, capacity, addresses, nodeInfo, endpoint
/// and current conditions.
pub fn build_node(id: &NodeIdentity, pressure: Pressure, now: Timestamp) -> Node {
    let t = &id.template;
    let mut labels: BTreeMap<String, String> = BTreeMap::from([
        (well_known::LABEL_HOSTNAME.to_string(), id.name.clone()),
        (well_known::LABEL_OS.to_string(), "linux".to_string()),
        (well_known::LABEL_ARCH.to_string(), go_arch().to_string()),
        (well_known::LABEL_BETA_OS.to_string(), "linux".to_string()),
        (well_known::LABEL_BETA_ARCH.to_string(), go_arch().to_string()),
    ]);
    labels.extend(t.labels.clone());
    let mut resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(t.capacity.cpu.clone())),
        ("memory".to_string(), Quantity(t.capacity.memory.clone())),
        ("pods".to_string(), Quantity(t.capacity.pods.to_string())),
    ]);
    if let Some(e) = &t.capacity.ephemeral_storage {
        resources.insert("ephemeral-storage".into(), Quantity(e.clone()));
    }
    Node {
        metadata: ObjectMeta { name: Some(id.name.clone()), labels: Some(labels), ..Default::default() },
        spec: Some(NodeSpec { taints: (!t.taints.is_empty()).then(|| t.taints.clone()), ..Default::default() }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: t.node_ip.to_string() },
                NodeAddress { type_: "Hostname".into(), address: id.host.hostname.clone() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: id.kubelet_port as i32 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: go_arch().into(),
                boot_id: id.host.boot_id.clone(),
                container_runtime_version: id.runtime_version.clone(),
                kernel_version: id.host.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: id.host.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: id.host.os_image.clone(),
                system_uuid: id.host.machine_id.clone(),
                ..Default::default()
            }),
            conditions: Some(node_conditions(pressure, None, now)),
            phase: None,
            ..Default::default()
        }),
    }
}

/// Ready plus the three pressure conditions; `lastTransitionTime` is kept from `previous`
/// while a condition's status holds, `lastHeartbeatTime` is `now`.
pub fn node_conditions(p: Pressure, previous: Option<&[NodeCondition]>, now: Timestamp) -> Vec<NodeCondition> {
    let make = |type_: &str, on: bool, reason: &str, message: &str| {
        let status = if on { "True" } else { "False" };
        let since = previous
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }
    };
    vec![
        if p.memory {
            make("MemoryPressure", true, "KubeletHasInsufficientMemory", "node has insufficient memory available")
        } else {
            make("MemoryPressure", false, "KubeletHasSufficientMemory", "node has sufficient memory available")
        },
        if p.disk {
            make("DiskPressure", true, "KubeletHasDiskPressure", "node has disk pressure")
        } else {
            make("DiskPressure", false, "KubeletHasNoDiskPressure", "node has no disk pressure")
        },
        if p.pid {
            make("PIDPressure", true, "KubeletHasInsufficientPID", "node has insufficient PID available")
        } else {
            make("PIDPressure", false, "KubeletHasSufficientPID", "node has sufficient PID available")
        },
        make("Ready", true, "KubeletReady", "berth-agent is posting ready status"),
    ]
}

/// Shared by every node of a process: one client (one connection pool) and a cap on
/// concurrent writes.
#[derive(Clone)]
pub struct ApiAccess {
    pub client: kube::Client,
    pub writes: Arc<Semaphore>,
    /// Timeout for one API write.
    pub timeout: Duration,
    /// The cluster's Services, for containers' Service environment variables (None: the
    /// hollow nodes of scale tests, which set none).
    pub services: Option<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>>,
    /// The projected service-account tokens of this node's pods.
    pub tokens: Arc<crate::sa_token::TokenCache>,
    /// The cluster CA callers of the agent's port must present a certificate of (None:
    /// an `--insecure` cluster, the port serves plain HTTP).
    pub client_ca_pem: Option<String>,
}

impl ApiAccess {
    pub fn new(client: kube::Client, max_concurrent_writes: usize) -> ApiAccess {
        ApiAccess {
            client,
            writes: Arc::new(Semaphore::new(max_concurrent_writes.max(1))),
            timeout: Duration::from_secs(15),
            services: None,
            tokens: Arc::default(),
            client_ca_pem: None,
        }
    }

    /// Runs one API write under the concurrency cap and the timeout.
    pub async fn write<T>(
        &self,
        what: impl Into<String>,
        f: impl std::future::Future<Output = kube::Result<T>>,
    ) -> Result<T> {
        let what = what.into();
        let _permit = self.writes.acquire().await.expect("the write semaphore is never closed");
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(|e| AgentError::api(what, e)),
            Err(_) => Err(AgentError::Timeout { what }),
        }
    }
}

fn merged_taints(existing: Option<&Vec<Taint>>, ours: &[Taint]) -> Vec<Taint> {
    let mut all: Vec<Taint> = ours.to_vec();
    for t in existing.into_iter().flatten() {
        if !all.iter().any(|o| o.key == t.key && o.effect == t.effect) {
            all.push(t.clone());
        }
    }
    all
}

/// Creates the Node, or — when it exists (an agent restart) — updates its labels, taints
/// and status. Returns the node's uid.
pub async fn register(api: &ApiAccess, node: &Node) -> Result<String> {
    let nodes: Api<Node> = Api::all(api.client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    match api.write(format!("registering node {name}"), nodes.create(&PostParams::default(), node)).await {
        Ok(created) => return Ok(created.metadata.uid.unwrap_or_default()),
        Err(AgentError::Api { source: kube::Error::Api(s), .. }) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let existing = api.write(format!("reading node {name}"), nodes.get(&name)).await?;
    let taints = merged_taints(
        existing.spec.as_ref().and_then(|s| s.taints.as_ref()),
        node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default(),
    );
    let patch = json!({"metadata": {"labels": node.metadata.labels}, "spec": {"taints": taints}});
    api.write(format!("updating node {name}"), nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))
        .await?;
    let mut status = node.status.clone().unwrap_or_default();
    status.conditions = status.conditions.map(|cs| {
        let prev = existing.status.as_ref().and_then(|s| s.conditions.as_deref());
        let now = now();
        cs.into_iter()
            .map(|mut c| {
                if let Some(p) = prev.and_then(|p| p.iter().find(|p| p.type_ == c.type_ && p.status == c.status)) {
                    c.last_transition_time = p.last_transition_time.clone().or(Some(Time(now)));
                }
                c
            })
            .collect()
    });
    api.write(
        format!("updating node {name} status"),
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))),
    )
    .await?;
    Ok(existing.metadata.uid.unwrap_or_default())
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(api: &ApiAccess, name: &str, node_uid: &str, duration: Duration) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(api.client.clone(), LEASE_NAMESPACE);
    let renew = MicroTime(Timestamp::now());
    let patch =
        json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": duration.as_secs(), "renewTime": renew}});
    let params = PatchParams::default();
    let merge = Patch::Merge(&patch);
    match api.write(format!("renewing lease {name}"), leases.patch(name, &params, &merge)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: (!node_uid.is_empty()).then(|| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.into(),
                            uid: node_uid.into(),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(duration.as_secs() as i32),
                    renew_time: Some(renew),
                    ..Default::default()
                }),
            };
            api.write(format!("creating lease {name}"), leases.create(&PostParams::default(), &lease)).await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Pause between attempts of a failed lease renewal.
const RENEW_RETRY: Duration = Duration::from_millis(250);

/// Runs `attempt` again every [`RENEW_RETRY`] while it fails, until `deadline` (the next
/// regular renewal) or `cancel`; returns the last outcome. A renewal that failed because
/// the agent's server just died goes through the balancer's next server within a fraction
/// of a second instead of waiting a whole renewal period, as kubelet retries its lease
/// update.
async fn retry_until<F, Fut>(deadline: Instant, cancel: &CancellationToken, mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    loop {
        let result = attempt().await;
        if result.is_ok() || cancel.is_cancelled() || Instant::now() + RENEW_RETRY >= deadline {
            return result;
        }
        if let Err(e) = &result {
            tracing::debug!(error = %e, "lease renewal failed; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => return result,
            _ = tokio::time::sleep(RENEW_RETRY) => {}
        }
    }
}

/// Registers the node (retrying until it works or `cancel`), then renews its Lease every
/// `lease_renew` starting after `offset` (so many nodes spread their renewals), and posts
/// conditions when `pressure` changes and every `status_report`. Returns on `cancel`.
pub async fn heartbeat(
    api: ApiAccess,
    id: NodeIdentity,
    offset: Duration,
    pressure: Arc<dyn Fn() -> Pressure + Send + Sync>,
    cancel: CancellationToken,
) {
    let hb = id.template.heartbeat;
    let mut last = pressure();
    let mut node_uid = match register_until_done(&api, &id, last, &cancel).await {
        Some(uid) => uid,
        None => return,
    };
    let mut conditions = node_conditions(last, None, now());
    let mut last_report = Instant::now();
    let mut last_renewed = Instant::now();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(offset) => {}
    }
    let mut tick = tokio::time::interval(hb.lease_renew);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // After a gap in renewals (API unreachable, agent paused) the node lifecycle
        // controller may have marked the node Unknown: post conditions at once so it
        // becomes Ready again without waiting for the periodic report.
        let mut after_gap = false;
        let renewal = || renew_lease(&api, &id.name, &node_uid, hb.lease_duration);
        match retry_until(Instant::now() + hb.lease_renew, &cancel, renewal).await {
            Ok(()) => {
                after_gap = last_renewed.elapsed() > hb.lease_renew * 2;
                last_renewed = Instant::now();
            }
            Err(e) => tracing::warn!(node = %id.name, error = %e, "lease renewal failed"),
        }
        let p = pressure();
        if p == last && !after_gap && last_report.elapsed() < hb.status_report {
            continue;
        }
        let next = node_conditions(p, Some(&conditions), now());
        let nodes: Api<Node> = Api::all(api.client.clone());
        let patch = json!({"status": {"conditions": next}});
        let result = api
            .write(
                format!("posting node {} conditions", id.name),
                nodes.patch_status(&id.name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
        match result {
            Ok(_) => {
                conditions = next;
                last = p;
                last_report = Instant::now();
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(node = %id.name, "node object is gone; registering again");
                match register_until_done(&api, &id, p, &cancel).await {
                    Some(uid) => node_uid = uid,
                    None => return,
                }
            }
            Err(e) => tracing::warn!(node = %id.name, error = %e, "posting node conditions failed"),
        }
    }
}

async fn register_until_done(
    api: &ApiAccess,
    id: &NodeIdentity,
    pressure: Pressure,
    cancel: &CancellationToken,
) -> Option<String> {
    let mut wait = Duration::from_millis(200);
    loop {
        match register(api, &build_node(id, pressure, now())).await {
            Ok(uid) => {
                tracing::debug!(node = %id.name, "node registered");
                return Some(uid);
            }
            Err(e) => tracing::warn!(node = %id.name, error = %e, "node registration failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Capacity;

    fn identity() -> NodeIdentity {
        let mut t = NodeTemplate::default();
        t.labels.insert("zone".into(), "a".into());
        t.taints = crate::config::parse_taints("--register-with-taints", "gpu=yes:NoSchedule").unwrap();
        t.capacity = Capacity { cpu: "8".into(), memory: "32Gi".into(), pods: 50, ephemeral_storage: None };
        NodeIdentity {
            name: "n1".into(),
            template: Arc::new(t),
            host: Arc::new(HostInfo { hostname: "h1".into(), machine_id: "m".into(), ..Default::default() }),
            kubelet_port: 10250,
            runtime_version: "fake://0.1.0".into(),
        }
    }

    #[test]
    fn node_object_carries_identity_and_shape() {
        let n = build_node(&identity(), Pressure::default(), Timestamp::from_second(1).unwrap());
        let labels = n.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
        assert!(labels.contains_key("kubernetes.io/arch"));
        assert_eq!(n.spec.as_ref().unwrap().taints.as_ref().unwrap()[0].key, "gpu");
        let s = n.status.unwrap();
        assert_eq!(s.capacity.as_ref().unwrap()["pods"], Quantity("50".into()));
        assert_eq!(s.allocatable.as_ref().unwrap()["cpu"], Quantity("8".into()));
        assert_eq!(s.addresses.as_ref().unwrap()[0].address, "127.0.0.1");
        assert_eq!(s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
        assert_eq!(s.node_info.unwrap().kubelet_version, KUBELET_VERSION);
        let ready = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let first = node_conditions(Pressure::default(), None, t0);
        let second = node_conditions(Pressure { memory: true, ..Default::default() }, Some(&first), t1);
        let get = |cs: &[NodeCondition], t: &str| cs.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get(&second, "MemoryPressure").status, "True");
        assert_eq!(get(&second, "MemoryPressure").last_transition_time, Some(Time(t1)));
        assert_eq!(get(&second, "DiskPressure").last_transition_time, Some(Time(t0)));
        assert_eq!(get(&second, "DiskPressure").last_heartbeat_time, Some(Time(t1)));
    }

    #[test]
    fn registration_keeps_foreign_taints() {
        let ours = crate::config::parse_taints("--register-with-taints", "a=1:NoSchedule").unwrap();
        let existing = crate::config::parse_taints("--register-with-taints", "a=0:NoSchedule,b:NoExecute").unwrap();
        let m = merged_taints(Some(&existing), &ours);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].value.as_deref(), Some("1"));
        assert_eq!(m[1].key, "b");
    }
}
