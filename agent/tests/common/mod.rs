//! Helpers shared by the agent's integration tests.

use k8s_openapi::api::core::v1::Pod;

/// A pod `name` in the default namespace with the given spec.
pub fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}
