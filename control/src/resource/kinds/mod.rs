//! The strategies of the built-in kinds, one static [`Strategy`](super::strategy::Strategy)
//! per kind, grouped by API group: [`core`] (v1), [`apps`], [`batch`], [`other`]
//! (coordination.k8s.io, autoscaling), [`policy`] (disruption budgets, priority classes, limit
//! ranges, network policies, controller revisions), [`rbac`]. Each names its kind's defaulting and validation
//! (`resource::validate`), typed decoding (`resource::typed`), create-time preparation,
//! patch schema (`resource::patch_schema`) and printer (`resource::printers`); the resource
//! table points each entry at one of them.

pub mod apps;
pub mod batch;
pub mod core;
pub mod other;
pub mod policy;
pub mod rbac;

use serde_json::Value;

/// `PrepareForCreate` of kinds with a status subresource: status starts empty — as an
/// empty struct, which kube-apiserver returns as `status: {}` (the typed round trip then
/// fills the fields Go never omits, such as a ReplicaSet's `replicas: 0`).
pub(crate) fn clear_status(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), Value::Object(Default::default()));
    }
}

/// `PrepareForCreate` of kinds that keep what they were given.
pub(crate) fn keep_as_given(_obj: &mut Value) {}
