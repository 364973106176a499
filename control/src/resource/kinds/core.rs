//! Strategies of the core (v1) kinds.

use k8s_openapi::api::core::v1;
use serde_json::{json, Value};

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::{Deletion, Strategy};
use crate::resource::typed::round_trip;
use crate::resource::validate::{cluster, config, defaults, event, pod, quota, service};

/// Pods start `Pending`, with their QoS class computed once.
fn prepare_pod(obj: &mut Value) {
    obj["status"] = json!({"phase": "Pending", "qosClass": berth_proto::pod_qos_class(obj).as_str()});
}

/// Namespaces start `Active`.
fn prepare_namespace(obj: &mut Value) {
    obj["status"] = json!({"phase": "Active"});
}

pub static NAMESPACE: Strategy = Strategy {
    defaults: defaults::default_namespace,
    prepare_for_create: prepare_namespace,
    has_generation: false,
    patch_schema: Ty::NamespaceRoot,
    deletion: Deletion::Namespace,
    ..Strategy::of(cluster::validate_namespace, round_trip::<v1::Namespace>, &printers::NAMESPACE)
};

pub static NODE: Strategy = Strategy {
    defaults: defaults::default_node,
    validate_update: cluster::validate_node_update,
    has_generation: false,
    patch_schema: Ty::NodeRoot,
    ..Strategy::of(cluster::validate_node, round_trip::<v1::Node>, &printers::NODE)
};

pub static POD: Strategy = Strategy {
    defaults: defaults::default_pod,
    validate_update: pod::validate_pod_update,
    prepare_for_create: prepare_pod,
    patch_schema: Ty::PodRoot,
    deletion: Deletion::GracefulPod,
    ..Strategy::of(pod::validate_pod, round_trip::<v1::Pod>, &printers::POD)
};

pub static SERVICE: Strategy = Strategy {
    defaults: defaults::default_service,
    validate_update: service::validate_service_update,
    prepare_for_create: clear_status,
    patch_schema: Ty::ServiceRoot,
    ..Strategy::of(service::validate_service, round_trip::<v1::Service>, &printers::SERVICE)
};

pub static ENDPOINTS: Strategy = Strategy {
    defaults: defaults::default_endpoints,
    ..Strategy::of(service::validate_endpoints, round_trip::<v1::Endpoints>, &printers::ENDPOINTS)
};

pub static CONFIG_MAP: Strategy = Strategy {
    validate_update: config::validate_configmap_update,
    ..Strategy::of(config::validate_configmap, round_trip::<v1::ConfigMap>, &printers::CONFIG_MAP)
};

pub static SECRET: Strategy = Strategy {
    defaults: defaults::default_secret,
    validate_update: config::validate_secret_update,
    ..Strategy::of(config::validate_secret, round_trip::<v1::Secret>, &printers::SECRET)
};

pub static EVENT: Strategy = Strategy {
    validate_update: event::validate_event_update,
    ..Strategy::of(event::validate_event, round_trip::<v1::Event>, &printers::EVENT)
};

pub static SERVICE_ACCOUNT: Strategy = Strategy {
    patch_schema: Ty::ServiceAccountRoot,
    ..Strategy::of(config::validate_service_account, round_trip::<v1::ServiceAccount>, &printers::SERVICE_ACCOUNT)
};

pub static RESOURCE_QUOTA: Strategy = Strategy {
    prepare_for_create: clear_status,
    ..Strategy::of(quota::validate_resource_quota, round_trip::<v1::ResourceQuota>, &printers::RESOURCE_QUOTA)
};
