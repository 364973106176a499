//! What a pod's spec means for the Linux part of a CRI container config (pure), as the
//! kubelet computes it: cgroup limits from `resources` (cpu shares from the request, CFS
//! quota from the limit, the memory limit, the OOM score by QoS class) and the security
//! context from the container's `securityContext` over the pod's.

use berth_proto::cri::{
    Capability, Int64Value, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
};
use berth_proto::model::qos::{pod_qos_class, QosClass};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::cgroups::{cpu_millis, memory_bytes};

/// The CFS period the kubelet uses (100 ms).
pub const CPU_PERIOD_US: i64 = 100_000;
/// The kubelet's floor for cpu shares and for a CFS quota.
const MIN_SHARES: i64 = 2;
const MIN_QUOTA_US: i64 = 1_000;

/// The cgroup settings of `container` in `pod`; `node_memory` (bytes) scales the OOM score
/// of Burstable pods.
pub fn resources(pod: &Pod, container: &Container, node_memory: u64) -> LinuxContainerResources {
    let quantity = |list: &str, name: &str| {
        let r = container.resources.as_ref()?;
        let map = if list == "limits" { r.limits.as_ref() } else { r.requests.as_ref() }?;
        map.get(name).map(|q| q.0.clone())
    };
    let cpu_limit = quantity("limits", "cpu").and_then(|q| cpu_millis(&q)).filter(|m| *m > 0);
    // A limit without a request requests the limit (the API server defaults it so).
    let cpu_request = quantity("requests", "cpu").and_then(|q| cpu_millis(&q)).or(cpu_limit);
    let cpu_shares = cpu_request.map_or(MIN_SHARES, |m| ((m as i64) * 1024 / 1000).max(MIN_SHARES));
    let cpu_quota = cpu_limit.map_or(0, |m| ((m as i64) * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US));
    let memory_limit = quantity("limits", "memory").and_then(|q| memory_bytes(&q)).unwrap_or(0) as i64;
    let memory_request =
        quantity("requests", "memory").and_then(|q| memory_bytes(&q)).unwrap_or(memory_limit as u64) as i64;
    let json = serde_json::to_value(pod).unwrap_or_default();
    let oom_score_adj = match pod_qos_class(&json) {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let share = if node_memory == 0 { 0 } else { 1000 * memory_request / node_memory as i64 };
            (1000 - share).clamp(2, 999)
        }
    };
    LinuxContainerResources {
        cpu_period: if cpu_quota > 0 { CPU_PERIOD_US } else { 0 },
        cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: memory_limit,
        oom_score_adj,
        ..Default::default()
    }
}

/// The security context of `container` in `pod`: the container's fields, else the pod's;
/// `allowPrivilegeEscalation: false` sets no_new_privs.
pub fn security_context(pod: &Pod, container: &Container) -> LinuxContainerSecurityContext {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    let run_as_group = sc.run_as_group.or(pod_sc.run_as_group);
    let mut groups: Vec<i64> = pod_sc.supplemental_groups.clone().unwrap_or_default();
    groups.extend(pod_sc.fs_group);
    let capabilities = sc.capabilities.as_ref().map(|c| Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    LinuxContainerSecurityContext {
        capabilities,
        privileged: sc.privileged.unwrap_or(false),
        run_as_user: run_as_user.map(|value| Int64Value { value }),
        run_as_group: run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: groups,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        ..Default::default()
    }
}

/// The Linux part of the container config.
pub fn container_linux(pod: &Pod, container: &Container, node_memory: u64) -> LinuxContainerConfig {
    LinuxContainerConfig {
        resources: Some(resources(pod, container, node_memory)),
        security_context: Some(security_context(pod, container)),
    }
}

/// The kubelet's `runAsNonRoot` check, given the uid the image runs as (`None`: the image
/// names its user by name, which cannot be verified): the message of the
/// `CreateContainerConfigError`, if the container must not start.
pub fn verify_run_as_non_root(pod: &Pod, container: &Container, image_uid: Option<i64>) -> Option<String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let non_root = sc.and_then(|s| s.run_as_non_root).or(pod_sc.and_then(|s| s.run_as_non_root)).unwrap_or(false);
    if !non_root {
        return None;
    }
    let user = sc.and_then(|s| s.run_as_user).or(pod_sc.and_then(|s| s.run_as_user));
    match (user, image_uid) {
        (Some(0), _) => Some("container's runAsUser breaks non-root policy".into()),
        (Some(_), _) => None,
        (None, Some(0)) => Some("container has runAsNonRoot and image will run as root".into()),
        (None, Some(_)) => None,
        (None, None) => {
            Some("container has runAsNonRoot and image has non-numeric user, cannot verify user is non-root".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(container: serde_json::Value, pod_sc: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"securityContext": pod_sc, "containers": [container]}}),
        )
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    #[test]
    fn resources_follow_the_kubelet() {
        let gib = 1u64 << 30;
        let (pod, c) = pod_with(
            serde_json::json!({"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}),
            serde_json::json!({}),
        );
        let r = resources(&pod, &c, 4 * gib);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (512, 50_000, CPU_PERIOD_US));
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(r.oom_score_adj, -997, "limits only: Guaranteed");
        let (pod, c) = pod_with(serde_json::json!({"name": "c"}), serde_json::json!({}));
        let r = resources(&pod, &c, 4 * gib);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes, r.oom_score_adj), (2, 0, 0, 1000));
        let (pod, c) = pod_with(
            serde_json::json!({"name": "c", "resources": {"requests": {"cpu": "1m", "memory": "1Gi"}}}),
            serde_json::json!({}),
        );
        let r = resources(&pod, &c, 4 * gib);
        assert_eq!((r.cpu_shares, r.oom_score_adj), (2, 750));
    }

    #[test]
    fn security_context_merges_the_pods_and_the_containers() {
        let (pod, c) = pod_with(
            serde_json::json!({"name": "c", "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}),
            serde_json::json!({"runAsUser": 5, "runAsGroup": 3000, "fsGroup": 2000}),
        );
        let sc = security_context(&pod, &c);
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        assert_eq!(sc.run_as_group, Some(Int64Value { value: 3000 }));
        assert_eq!(sc.supplemental_groups, vec![2000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        let caps = sc.capabilities.unwrap();
        assert_eq!((caps.add_capabilities, caps.drop_capabilities), (vec!["NET_ADMIN".into()], vec!["ALL".into()]));
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_image_user() {
        let (pod, c) = pod_with(serde_json::json!({"name": "c"}), serde_json::json!({"runAsNonRoot": true}));
        assert!(verify_run_as_non_root(&pod, &c, Some(0)).unwrap().contains("image will run as root"));
        assert_eq!(verify_run_as_non_root(&pod, &c, Some(1000)), None);
        assert!(verify_run_as_non_root(&pod, &c, None).unwrap().contains("non-numeric user"));
        let (pod, c) = pod_with(
            serde_json::json!({"name": "c", "securityContext": {"runAsUser": 0}}),
            serde_json::json!({"runAsNonRoot": true}),
        );
        assert_eq!(
            verify_run_as_non_root(&pod, &c, Some(1000)).unwrap(),
            "container's runAsUser breaks non-root policy"
        );
        let (pod, c) = pod_with(serde_json::json!({"name": "c"}), serde_json::json!({}));
        assert_eq!(verify_run_as_non_root(&pod, &c, Some(0)), None);
    }
}
