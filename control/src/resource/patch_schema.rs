//! Patch metadata for the built-in kinds: a small type graph mirroring the Go struct tags
//! (`patchStrategy`, `patchMergeKey`, retainKeys) of k8s.io/api, plus the few SSA-only
//! "atomic" markers (`+structType=atomic` / `+mapType=atomic`).
//!
//! Strategic merge patch and server-side apply both walk objects with this graph. Anything not
//! listed here is [`Ty::Unknown`]: maps merge, lists are replaced atomically — exactly what the
//! Go code does for a field without tags.
//!
//! Tags verified against k8s.io/api (core/v1, apps/v1, batch/v1, autoscaling/v2):
//! - ObjectMeta: finalizers (merge, primitive), ownerReferences (merge, uid)
//! - PodSpec: volumes (merge,retainKeys, name), initContainers / containers / ephemeralContainers
//!   (merge, name), imagePullSecrets (merge, name), hostAliases (merge, ip),
//!   topologySpreadConstraints (merge, topologyKey), resourceClaims (merge,retainKeys, name),
//!   schedulingGates (merge, name); tolerations and readinessGates carry no strategy (atomic).
//! - Container / EphemeralContainer: ports (merge, containerPort), env (merge, name),
//!   volumeMounts (merge, mountPath), volumeDevices (merge, devicePath).
//! - PodStatus: conditions (merge, type), podIPs / hostIPs (merge, ip),
//!   resourceClaimStatuses (merge,retainKeys, name).
//! - DeploymentSpec.strategy (retainKeys); every workload/Job/Namespace/Service/HPA status
//!   conditions (merge, type).
//! - ServiceSpec.ports (merge, port); NodeSpec.podCIDRs (merge, primitive), NodeSpec.taints atomic;
//!   NodeStatus.addresses / conditions (merge, type); ServiceAccount.secrets (merge, name).

use serde_json::Value;

/// A node of the type graph: which struct a JSON object at some position corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    /// No metadata known: maps merge, lists replace.
    Unknown,
    /// A known kind whose only structured part is `metadata` (ConfigMap, Secret, Event, ...).
    GenericRoot,
    PodRoot,
    DeploymentRoot,
    /// ReplicaSet, DaemonSet and StatefulSet share the same shape for patching purposes.
    WorkloadRoot,
    JobRoot,
    CronJobRoot,
    ServiceRoot,
    NodeRoot,
    NamespaceRoot,
    ServiceAccountRoot,
    HpaRoot,
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    DeploymentSpec,
    WorkloadSpec,
    JobSpec,
    CronJobSpec,
    JobTemplateSpec,
    /// Any status whose only tagged field is `conditions` (merge on `type`).
    ConditionsStatus,
    ServiceSpec,
    NodeSpec,
    NodeStatus,
}

/// How a list-valued field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// No `patchStrategy`: the patch value replaces the list.
    Atomic,
    /// `patchStrategy:"merge"`; `key` is `patchMergeKey` (None for lists of primitives, which union).
    Merge { key: Option<&'static str> },
}

/// Patch metadata of one field of a struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    /// Type of the value (for lists: of each element).
    pub ty: Ty,
    pub list: ListStrategy,
    /// `retainKeys` in the patch strategy. The server honours `$retainKeys` wherever it appears,
    /// so this is informational (kept to mirror the tags and for diff generators).
    pub retain_keys: bool,
    /// The value is owned as a whole by server-side apply (atomic struct or map).
    pub atomic: bool,
}

impl FieldMeta {
    const fn of(ty: Ty) -> Self {
        FieldMeta { ty, list: ListStrategy::Atomic, retain_keys: false, atomic: false }
    }
    const fn keyed(ty: Ty, key: &'static str) -> Self {
        FieldMeta { ty, list: ListStrategy::Merge { key: Some(key) }, retain_keys: false, atomic: false }
    }
    const fn set() -> Self {
        FieldMeta { ty: Ty::Unknown, list: ListStrategy::Merge { key: None }, retain_keys: false, atomic: false }
    }
    const fn retain(mut self) -> Self {
        self.retain_keys = true;
        self
    }
    const fn atomic() -> Self {
        FieldMeta { ty: Ty::Unknown, list: ListStrategy::Atomic, retain_keys: false, atomic: true }
    }
    /// Merge key of a keyed merge list.
    pub fn merge_key(&self) -> Option<&'static str> {
        match self.list {
            ListStrategy::Merge { key } => key,
            ListStrategy::Atomic => None,
        }
    }
    pub fn is_merge_list(&self) -> bool {
        matches!(self.list, ListStrategy::Merge { .. })
    }
}

/// The root type of a served kind (its strategy's `patch_schema`); [`Ty::Unknown`] for
/// anything else. For tests, which name kinds; requests reach the root through their resource.
#[cfg(test)]
pub(crate) fn root(kind: &str) -> Ty {
    super::RESOURCES.iter().find(|r| r.kind == kind).map_or(Ty::Unknown, |r| r.strategy.patch_schema)
}

/// Metadata of field `name` inside a value of type `ty`.
pub fn field(ty: Ty, name: &str) -> FieldMeta {
    use Ty::*;
    let meta = match (ty, name) {
        (Unknown, _) => None,
        (
            GenericRoot | PodRoot | DeploymentRoot | WorkloadRoot | JobRoot | CronJobRoot | ServiceRoot | NodeRoot
            | NamespaceRoot | ServiceAccountRoot | HpaRoot,
            "metadata",
        ) => Some(FieldMeta::of(ObjectMeta)),
        (PodRoot, "spec") => Some(FieldMeta::of(PodSpec)),
        (PodRoot, "status") => Some(FieldMeta::of(PodStatus)),
        (DeploymentRoot, "spec") => Some(FieldMeta::of(DeploymentSpec)),
        (WorkloadRoot, "spec") => Some(FieldMeta::of(WorkloadSpec)),
        (JobRoot, "spec") => Some(FieldMeta::of(JobSpec)),
        (CronJobRoot, "spec") => Some(FieldMeta::of(CronJobSpec)),
        (ServiceRoot, "spec") => Some(FieldMeta::of(ServiceSpec)),
        (NodeRoot, "spec") => Some(FieldMeta::of(NodeSpec)),
        (NodeRoot, "status") => Some(FieldMeta::of(NodeStatus)),
        (DeploymentRoot | WorkloadRoot | JobRoot | ServiceRoot | NamespaceRoot | HpaRoot, "status") => {
            Some(FieldMeta::of(ConditionsStatus))
        }
        (ServiceAccountRoot, "secrets") => Some(FieldMeta::keyed(Unknown, "name")),
        (ObjectMeta, "finalizers") => Some(FieldMeta::set()),
        (ObjectMeta, "ownerReferences") => Some(FieldMeta::keyed(Unknown, "uid")),
        (PodTemplateSpec | JobTemplateSpec, "metadata") => Some(FieldMeta::of(ObjectMeta)),
        (PodTemplateSpec, "spec") => Some(FieldMeta::of(PodSpec)),
        (JobTemplateSpec, "spec") => Some(FieldMeta::of(JobSpec)),
        (PodSpec, "volumes") => Some(FieldMeta::keyed(Unknown, "name").retain()),
        (PodSpec, "initContainers" | "containers" | "ephemeralContainers") => Some(FieldMeta::keyed(Container, "name")),
        (PodSpec, "imagePullSecrets") => Some(FieldMeta::keyed(Unknown, "name")),
        (PodSpec, "hostAliases") => Some(FieldMeta::keyed(Unknown, "ip")),
        (PodSpec, "topologySpreadConstraints") => Some(FieldMeta::keyed(Unknown, "topologyKey")),
        (PodSpec, "resourceClaims") => Some(FieldMeta::keyed(Unknown, "name").retain()),
        (PodSpec, "schedulingGates") => Some(FieldMeta::keyed(Unknown, "name")),
        (Container, "ports") => Some(FieldMeta::keyed(Unknown, "containerPort")),
        (Container, "env") => Some(FieldMeta::keyed(Unknown, "name")),
        (Container, "volumeMounts") => Some(FieldMeta::keyed(Unknown, "mountPath")),
        (Container, "volumeDevices") => Some(FieldMeta::keyed(Unknown, "devicePath")),
        (PodStatus, "conditions") => Some(FieldMeta::keyed(Unknown, "type")),
        (PodStatus, "podIPs" | "hostIPs") => Some(FieldMeta::keyed(Unknown, "ip")),
        (PodStatus, "resourceClaimStatuses") => Some(FieldMeta::keyed(Unknown, "name").retain()),
        (DeploymentSpec, "strategy") => Some(FieldMeta::of(Unknown).retain()),
        // LabelSelector is `+structType=atomic`; only server-side apply cares.
        (DeploymentSpec | WorkloadSpec | JobSpec, "selector") => Some(FieldMeta::atomic()),
        (DeploymentSpec | WorkloadSpec | JobSpec, "template") => Some(FieldMeta::of(PodTemplateSpec)),
        (CronJobSpec, "jobTemplate") => Some(FieldMeta::of(JobTemplateSpec)),
        (ConditionsStatus | NodeStatus, "conditions") => Some(FieldMeta::keyed(Unknown, "type")),
        (NodeStatus, "addresses") => Some(FieldMeta::keyed(Unknown, "type")),
        (NodeSpec, "podCIDRs") => Some(FieldMeta::set()),
        (ServiceSpec, "ports") => Some(FieldMeta::keyed(Unknown, "port")),
        // ServiceSpec.selector is `+mapType=atomic`.
        (ServiceSpec, "selector") => Some(FieldMeta::atomic()),
        _ => None,
    };
    meta.unwrap_or(FieldMeta::of(Unknown))
}

/// Equality as Go sees decoded JSON: all numbers are float64, so `1` equals `1.0`.
pub fn val_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64()),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_tags() {
        let c = field(field(field(field(root("Deployment"), "spec").ty, "template").ty, "spec").ty, "containers");
        assert_eq!(c.merge_key(), Some("name"));
        assert_eq!(field(c.ty, "ports").merge_key(), Some("containerPort"));
        assert_eq!(field(c.ty, "volumeMounts").merge_key(), Some("mountPath"));
        let pod_spec = field(root("Pod"), "spec").ty;
        assert_eq!(field(pod_spec, "tolerations").list, ListStrategy::Atomic);
        assert!(field(pod_spec, "volumes").retain_keys);
        assert_eq!(field(field(root("Node"), "spec").ty, "taints").list, ListStrategy::Atomic);
        assert_eq!(field(field(root("Node"), "status").ty, "addresses").merge_key(), Some("type"));
        let meta = field(root("ConfigMap"), "metadata").ty;
        assert_eq!(field(meta, "finalizers").list, ListStrategy::Merge { key: None });
        assert_eq!(field(meta, "ownerReferences").merge_key(), Some("uid"));
        let cron = field(field(field(root("CronJob"), "spec").ty, "jobTemplate").ty, "spec").ty;
        assert_eq!(field(field(field(cron, "template").ty, "spec").ty, "initContainers").merge_key(), Some("name"));
        assert_eq!(root("Widget"), Ty::Unknown);
        assert_eq!(field(Ty::Unknown, "containers").list, ListStrategy::Atomic);
    }
}
