//! A pod's quality-of-service class (`status.qosClass`), computed once for the API server
//! (which sets it at create time) and `berthctl describe` (which shows it when unset).
//!
//! The rules are Kubernetes' `ComputePodQOS`: only `cpu` and `memory` count, only values
//! above zero count, quantities are compared by value (`1` equals `1000m`), and init
//! containers count like containers. A pod is `Guaranteed` when every container limits both
//! cpu and memory and the summed requests equal the summed limits; `BestEffort` when nothing
//! counts; otherwise `Burstable`.
//!
//! The pod is read as the API server stores it, after defaulting: a container's request for
//! a resource it only limits *is* that limit (`SetDefaults_Pod`), so a spec that has not been
//! defaulted yet gets the same answer.

use std::collections::BTreeMap;

use serde_json::Value;

use super::quantity::Quantity;

/// `v1.PodQOSClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The wire value of `status.qosClass`.
    pub fn as_str(&self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl std::fmt::Display for QosClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resources QoS looks at (`isSupportedQoSComputeResource`).
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// The QoS class of a pod given as JSON (`{"spec": {"containers": [...]}}`).
pub fn pod_qos_class(pod: &Value) -> QosClass {
    let spec = &pod["spec"];
    let containers = ["containers", "initContainers"].into_iter().filter_map(|k| spec[k].as_array()).flatten();
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    for container in containers {
        let resources = &container["resources"];
        let positive = |list: &str, name: &str| {
            resources[list][name].as_str().and_then(|text| Quantity::parse(text).ok()).filter(|q| q.nanos() > 0)
        };
        let mut limited = 0;
        for name in QOS_RESOURCES {
            let limit = positive("limits", name);
            let request = if resources["requests"].get(name).is_some() { positive("requests", name) } else { limit };
            if let Some(request) = request {
                requests.entry(name).or_default().add(&request);
            }
            if let Some(limit) = limit {
                limits.entry(name).or_default().add(&limit);
                limited += 1;
            }
        }
        if limited < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    let requests_equal_limits =
        requests.len() == limits.len() && requests.iter().all(|(name, r)| limits.get(name) == Some(r));
    if guaranteed && requests_equal_limits {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    fn one(resources: Value) -> Value {
        pod(json!([{"name": "c", "resources": resources}]))
    }

    #[test]
    fn classes_as_kubernetes_computes_them() {
        let cases: Vec<(&str, Value, QosClass)> = vec![
            ("no resources", one(json!({})), QosClass::BestEffort),
            ("empty lists", one(json!({"requests": {}, "limits": {}})), QosClass::BestEffort),
            ("zero requests do not count", one(json!({"requests": {"cpu": "0", "memory": "0"}})), QosClass::BestEffort),
            (
                "only ephemeral-storage",
                one(json!({"requests": {"ephemeral-storage": "1Gi"}, "limits": {"ephemeral-storage": "1Gi"}})),
                QosClass::BestEffort,
            ),
            (
                "limits only: requests default to them",
                one(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
                QosClass::Guaranteed,
            ),
            (
                "equal requests and limits",
                one(
                    json!({"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}),
                ),
                QosClass::Guaranteed,
            ),
            // Regression (issue 16): the registry compared raw strings, so `1` vs `1000m` was
            // Burstable, and it counted ephemeral-storage.
            (
                "equal by value, written differently",
                one(json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}})),
                QosClass::Guaranteed,
            ),
            (
                "ephemeral-storage does not count",
                one(json!({
                    "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1Gi"}
                })),
                QosClass::Guaranteed,
            ),
            ("a request only", one(json!({"requests": {"cpu": "1"}})), QosClass::Burstable),
            ("cpu limited, memory not", one(json!({"limits": {"cpu": "1"}})), QosClass::Burstable),
            (
                "request below limit",
                one(json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})),
                QosClass::Burstable,
            ),
            (
                "one container without limits",
                pod(json!([
                    {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "b", "resources": {}}
                ])),
                QosClass::Burstable,
            ),
            (
                "init containers count",
                json!({"spec": {
                    "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "100m"}}}]
                }}),
                QosClass::Burstable,
            ),
        ];
        for (what, pod, class) in cases {
            assert_eq!(pod_qos_class(&pod), class, "{what}");
        }
        assert_eq!(QosClass::BestEffort.to_string(), "BestEffort");
    }
}
