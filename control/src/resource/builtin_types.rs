//! The k8s-openapi type of each built-in kind, for code that is generic over the kind's
//! Rust type: the leader tasks' typed informers (`tasks::kinds`) and the OpenAPI documents
//! (`api::openapi`, from the types' generated JSON schemas). One match from a kind to its
//! type, reached through a [`KindVisitor`], so adding a kind adds one line here.

use std::fmt;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What every built-in kind's type is.
pub trait BuiltinKind:
    kube::Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + fmt::Debug
    + Send
    + Sync
    + schemars::JsonSchema
    + 'static
{
}

impl<K> BuiltinKind for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + fmt::Debug
        + Send
        + Sync
        + schemars::JsonSchema
        + 'static
{
}

/// Code run with a built-in kind's type.
pub trait KindVisitor {
    type Output;
    fn visit<K: BuiltinKind>(self) -> Self::Output;
}

/// Runs `visitor` with the type of `group`'s `kind`; `None` for a kind that is not built in.
pub fn visit<V: KindVisitor>(group: &str, kind: &str, visitor: V) -> Option<V::Output> {
    Some(match (group, kind) {
        ("", "Namespace") => visitor.visit::<Namespace>(),
        ("", "Node") => visitor.visit::<Node>(),
        ("", "Pod") => visitor.visit::<Pod>(),
        ("", "Service") => visitor.visit::<Service>(),
        ("", "Endpoints") => visitor.visit::<Endpoints>(),
        ("", "ConfigMap") => visitor.visit::<ConfigMap>(),
        ("", "Secret") => visitor.visit::<Secret>(),
        ("", "Event") => visitor.visit::<Event>(),
        ("", "ServiceAccount") => visitor.visit::<ServiceAccount>(),
        ("", "ResourceQuota") => visitor.visit::<ResourceQuota>(),
        ("", "LimitRange") => visitor.visit::<LimitRange>(),
        ("apps", "Deployment") => visitor.visit::<Deployment>(),
        ("apps", "ReplicaSet") => visitor.visit::<ReplicaSet>(),
        ("apps", "DaemonSet") => visitor.visit::<DaemonSet>(),
        ("apps", "StatefulSet") => visitor.visit::<StatefulSet>(),
        ("apps", "ControllerRevision") => visitor.visit::<ControllerRevision>(),
        ("batch", "Job") => visitor.visit::<Job>(),
        ("batch", "CronJob") => visitor.visit::<CronJob>(),
        ("coordination.k8s.io", "Lease") => visitor.visit::<Lease>(),
        ("certificates.k8s.io", "CertificateSigningRequest") => visitor.visit::<CertificateSigningRequest>(),
        ("discovery.k8s.io", "EndpointSlice") => visitor.visit::<EndpointSlice>(),
        ("networking.k8s.io", "Ingress") => visitor.visit::<Ingress>(),
        ("networking.k8s.io", "IngressClass") => visitor.visit::<IngressClass>(),
        ("networking.k8s.io", "NetworkPolicy") => visitor.visit::<NetworkPolicy>(),
        ("policy", "PodDisruptionBudget") => visitor.visit::<PodDisruptionBudget>(),
        ("scheduling.k8s.io", "PriorityClass") => visitor.visit::<PriorityClass>(),
        ("autoscaling", "HorizontalPodAutoscaler") => visitor.visit::<HorizontalPodAutoscaler>(),
        ("rbac.authorization.k8s.io", "Role") => visitor.visit::<rbac::Role>(),
        ("rbac.authorization.k8s.io", "ClusterRole") => visitor.visit::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => visitor.visit::<rbac::RoleBinding>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => visitor.visit::<rbac::ClusterRoleBinding>(),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => visitor.visit::<CustomResourceDefinition>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct KindName;
    impl KindVisitor for KindName {
        type Output = String;
        fn visit<K: BuiltinKind>(self) -> String {
            K::kind(&()).into_owned()
        }
    }

    #[test]
    fn every_built_in_kind_has_its_type() {
        for info in super::super::RESOURCES.iter().filter(|r| !r.is_alias()) {
            assert_eq!(visit(info.group, info.kind, KindName).as_deref(), Some(info.kind), "{}", info.kind);
        }
    }
}
