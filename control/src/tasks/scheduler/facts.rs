//! What the scheduler needs to know about a pod and a node, extracted once from the API
//! objects so the per-node loop compares integers instead of parsing strings.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use berth_proto::model::quantity;

/// kube-scheduler's defaults for a container without a cpu/memory request, used only for
/// *scoring* (`schedutil.GetNonzeroRequests`): otherwise a node full of best-effort pods
/// would look empty and attract every new pod.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Taint the node lifecycle controller puts on a node whose Ready condition is False (or
/// missing), and on one whose condition is Unknown. We derive them from the condition so
/// readiness filters pods exactly as the taint would, tolerations included.
pub use berth_proto::model::well_known::TAINT_NODE_NOT_READY as TAINT_NOT_READY;
pub use berth_proto::model::well_known::TAINT_NODE_UNREACHABLE as TAINT_UNREACHABLE;
/// The taint a pod tolerates to be placed on a cordoned node (DaemonSets do).
pub use berth_proto::model::well_known::TAINT_NODE_UNSCHEDULABLE as TAINT_UNSCHEDULABLE;

/// Compute resources the fit filter checks (pods are counted separately).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let get = |name: &str, unit: fn(&quantity::Quantity) -> i64| {
            list.and_then(|l| l.get(name))
                .and_then(|q| quantity::Quantity::parse(&q.0).ok())
                .map_or(0, |q| unit(&q))
                .max(0)
        };
        Resources {
            milli_cpu: get("cpu", quantity::Quantity::milli_value),
            memory: get("memory", quantity::Quantity::value),
        }
    }

    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(o.milli_cpu),
            memory: self.memory.saturating_add(o.memory),
        }
    }

    pub fn minus(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(o.milli_cpu),
            memory: self.memory.saturating_sub(o.memory),
        }
    }

    fn max(self, o: Resources) -> Resources {
        Resources { milli_cpu: self.milli_cpu.max(o.milli_cpu), memory: self.memory.max(o.memory) }
    }
}

/// A host port a pod binds on its node. `ip` is empty for "every address".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two bindings conflict when protocol and port are equal and the addresses overlap
    /// (the wildcard address overlaps every address), as kube-scheduler's NodePorts.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip.is_empty() || other.ip.is_empty() || self.ip == other.ip)
    }
}

/// The numeric part of a pod, computed once per scheduling attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    /// `namespace/name`.
    pub key: String,
    pub uid: Option<String>,
    /// Effective requests (Kubernetes' `PodRequests`: init containers, sidecars, overhead).
    pub requests: Resources,
    /// The same with kube-scheduler's non-zero defaults per container, for scoring.
    pub nonzero: Resources,
    pub host_ports: Vec<HostPort>,
    /// The uid of the controller owning this pod, for spreading its replicas.
    pub owner: Option<String>,
    /// A stable hash of the key: the rotating start and tie-break are derived from it.
    pub hash: u64,
    /// `spec.priority` (set by the Priority admission; absent means 0, as in kube).
    pub priority: i32,
    /// The pod's labels: PodDisruptionBudgets select preemption victims by them.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Being deleted (graceful deletion in progress): still holds its node's resources.
    pub deleting: bool,
    /// `status.startTime`: among victims of equal priority the one started earlier is the
    /// more important (kube's `MoreImportantPod`); `None` counts as started last.
    pub start_time: Option<Timestamp>,
}

pub fn stable_hash(s: &str) -> u64 {
    // DefaultHasher::new() uses fixed keys: the same on every server and every run.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// `spec.priority`, 0 when absent (kube's `PodPriority`).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn container_requests(c: &Container, nonzero: bool) -> Resources {
    let mut r = Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    if nonzero {
        let explicit =
            |name: &str| c.resources.as_ref().and_then(|r| r.requests.as_ref()).is_some_and(|l| l.contains_key(name));
        if !explicit("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !explicit("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// Kubernetes' `PodRequests`: app containers and restartable init containers (sidecars)
/// run together; each ordinary init container runs alone next to the sidecars started
/// before it; the pod needs the larger of the two phases, plus its overhead.
pub fn pod_requests(pod: &Pod, nonzero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut reqs = spec.containers.iter().fold(Resources::default(), |acc, c| acc.plus(container_requests(c, nonzero)));
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, nonzero);
        let phase = if c.restart_policy.as_deref() == Some("Always") {
            reqs = reqs.plus(own);
            sidecars = sidecars.plus(own);
            sidecars
        } else {
            own.plus(sidecars)
        };
        init_peak = init_peak.max(phase);
    }
    reqs = reqs.max(init_peak);
    // Overhead is added for scoring too (kube-scheduler does both).
    reqs.plus(Resources::from_list(spec.overhead.as_ref()))
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    let host_network = spec.host_network == Some(true);
    let mut out = Vec::new();
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for p in c.ports.iter().flatten() {
            // With hostNetwork the container port *is* a host port (defaulting sets
            // hostPort = containerPort; we do not rely on it having run).
            let port = p.host_port.filter(|p| *p > 0).or(host_network.then_some(p.container_port));
            let Some(port) = port.filter(|p| *p > 0) else { continue };
            let ip = p.host_ip.as_deref().unwrap_or("");
            let ip = if matches!(ip, "" | "0.0.0.0" | "::") { String::new() } else { ip.to_string() };
            let hp = HostPort { protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, port };
            if !out.contains(&hp) {
                out.push(hp);
            }
        }
    }
    out
}

impl PodFacts {
    pub fn of(pod: &Pod) -> PodFacts {
        let key = pod_key(pod);
        let owner =
            pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone());
        PodFacts {
            hash: stable_hash(&key),
            key,
            uid: pod.metadata.uid.clone(),
            requests: pod_requests(pod, false),
            nonzero: pod_requests(pod, true),
            host_ports: host_ports(pod),
            owner,
            priority: pod_priority(pod),
            labels: Arc::new(pod.metadata.labels.clone().unwrap_or_default()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            start_time: pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        }
    }

    /// The pod's namespace and name (split from the key; namespaces cannot hold a `/`).
    pub fn namespace_and_name(&self) -> (&str, &str) {
        self.key.split_once('/').unwrap_or(("", &self.key))
    }
}

/// Whether the scheduler named `scheduler` should place this pod. Pods with scheduling
/// gates wait until every gate is removed (the update requeues them).
pub fn is_pending_for(pod: &Pod, scheduler: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let name = spec.scheduler_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(super::DEFAULT_SCHEDULER);
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && name == scheduler
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

/// Succeeded and Failed pods hold no resources (kube-scheduler's informer skips them).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The scheduling-relevant part of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub unschedulable: bool,
    /// Spec taints, then the taint implied by a Ready condition that is not True.
    pub taints: Vec<Taint>,
    pub name_hash: u64,
}

impl NodeFacts {
    pub fn of(node: &Node) -> NodeFacts {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        // Allocatable falls back to capacity, as the API's defaulting does.
        let list = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let allowed_pods = list
            .and_then(|l| l.get("pods"))
            .and_then(|q| quantity::Quantity::parse(&q.0).ok())
            .map(|q| q.value())
            .unwrap_or(0);
        let spec = node.spec.as_ref();
        let mut taints: Vec<Taint> = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implied {
            if !taints.iter().any(|t| t.key == key && t.effect != "PreferNoSchedule") {
                taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Default::default() });
            }
        }
        NodeFacts {
            name_hash: stable_hash(&name),
            name,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            allocatable: Resources::from_list(list),
            allowed_pods,
            unschedulable: spec.and_then(|s| s.unschedulable) == Some(true),
            taints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})).unwrap()
    }

    fn c(name: &str, cpu: &str, mem: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    #[test]
    fn requests_sum_app_containers_and_take_the_init_peak() {
        let p = pod(json!({"containers": [c("a", "100m", "1Mi"), c("b", "200m", "1Mi")],
            "initContainers": [c("i1", "500m", "1Ki"), c("i2", "50m", "3Mi")]}));
        assert_eq!(pod_requests(&p, false), Resources { milli_cpu: 500, memory: 3 << 20 });
    }

    #[test]
    fn sidecars_run_with_app_containers_and_later_init_containers() {
        let mut sidecar = c("s", "100m", "1Mi");
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({"containers": [c("a", "200m", "1Mi")],
            "initContainers": [sidecar, c("i", "250m", "1Mi")], "overhead": {"cpu": "10m"}}));
        // app phase: 200 + 100 = 300; init phase: 250 + 100 (sidecar) = 350; + 10 overhead.
        assert_eq!(pod_requests(&p, false).milli_cpu, 360);
    }

    #[test]
    fn nonzero_defaults_only_for_missing_requests() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}, c("b", "0", "1Ki")]}));
        assert_eq!(pod_requests(&p, false), Resources { milli_cpu: 0, memory: 1024 });
        assert_eq!(pod_requests(&p, true), Resources { milli_cpu: 100, memory: DEFAULT_MEMORY_REQUEST + 1024 });
    }

    #[test]
    fn host_ports_normalise_wildcards_and_host_network() {
        let p = pod(json!({"hostNetwork": true, "containers": [{"name": "a", "image": "i",
            "ports": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "0.0.0.0"}]}]}));
        let f = PodFacts::of(&p);
        assert_eq!(
            f.host_ports,
            vec![
                HostPort { protocol: "TCP".into(), ip: "".into(), port: 80 },
                HostPort { protocol: "UDP".into(), ip: "".into(), port: 53 },
            ]
        );
        let a = HostPort { protocol: "TCP".into(), ip: "10.0.0.1".into(), port: 80 };
        let b = HostPort { protocol: "TCP".into(), ip: "10.0.0.2".into(), port: 80 };
        assert!(!a.conflicts(&b));
        assert!(a.conflicts(&f.host_ports[0]));
        assert!(!f.host_ports[1].conflicts(&f.host_ports[0]), "different protocol");
    }

    #[test]
    fn a_node_that_is_not_ready_carries_the_implied_taint() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "Unknown"}]}}))
        .unwrap();
        let f = NodeFacts::of(&node);
        assert_eq!(f.allocatable, Resources { milli_cpu: 2000, memory: 1 << 30 });
        assert_eq!(f.allowed_pods, 10);
        assert_eq!(f.taints.len(), 1);
        assert_eq!(f.taints[0].key, TAINT_UNREACHABLE);
    }
}
