//! Strategies of the core (v1) kinds.

use k8s_openapi::api::core::v1;
use serde_json::{json, Value};

use super::{clear_status, keep_as_given};
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::{Deletion, Strategy};
use crate::resource::typed::round_trip;
use crate::resource::validate::{cluster, config, defaults, event, no_update_rules, pod, quota, service};

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
    validate: cluster::validate_namespace,
    validate_update: no_update_rules,
    decode: round_trip::<v1::Namespace>,
    prepare_for_create: prepare_namespace,
    has_generation: false,
    patch_schema: Ty::NamespaceRoot,
    printer: &printers::NAMESPACE,
    deletion: Deletion::Namespace,
};

pub static NODE: Strategy = Strategy {
    defaults: defaults::default_node,
    validate: cluster::validate_node,
    validate_update: cluster::validate_node_update,
    decode: round_trip::<v1::Node>,
    prepare_for_create: keep_as_given,
    has_generation: false,
    patch_schema: Ty::NodeRoot,
    printer: &printers::NODE,
    deletion: Deletion::Finalizers,
};

pub static POD: Strategy = Strategy {
    defaults: defaults::default_pod,
    validate: pod::validate_pod,
    validate_update: pod::validate_pod_update,
    decode: round_trip::<v1::Pod>,
    prepare_for_create: prepare_pod,
    has_generation: true,
    patch_schema: Ty::PodRoot,
    printer: &printers::POD,
    deletion: Deletion::GracefulPod,
};

pub static SERVICE: Strategy = Strategy {
    defaults: defaults::default_service,
    validate: service::validate_service,
    validate_update: service::validate_service_update,
    decode: round_trip::<v1::Service>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::ServiceRoot,
    printer: &printers::SERVICE,
    deletion: Deletion::Finalizers,
};

pub static ENDPOINTS: Strategy = Strategy {
    defaults: defaults::default_endpoints,
    validate: service::validate_endpoints,
    validate_update: no_update_rules,
    decode: round_trip::<v1::Endpoints>,
    prepare_for_create: keep_as_given,
    has_generation: true,
    patch_schema: Ty::GenericRoot,
    printer: &printers::ENDPOINTS,
    deletion: Deletion::Finalizers,
};

pub static CONFIG_MAP: Strategy = Strategy {
    defaults: defaults::default_nothing,
    validate: config::validate_configmap,
    validate_update: config::validate_configmap_update,
    decode: round_trip::<v1::ConfigMap>,
    prepare_for_create: keep_as_given,
    has_generation: true,
    patch_schema: Ty::GenericRoot,
    printer: &printers::CONFIG_MAP,
    deletion: Deletion::Finalizers,
};

pub static SECRET: Strategy = Strategy {
    defaults: defaults::default_secret,
    validate: config::validate_secret,
    validate_update: config::validate_secret_update,
    decode: round_trip::<v1::Secret>,
    prepare_for_create: keep_as_given,
    has_generation: true,
    patch_schema: Ty::GenericRoot,
    printer: &printers::SECRET,
    deletion: Deletion::Finalizers,
};

pub static EVENT: Strategy = Strategy {
    defaults: defaults::default_nothing,
    validate: event::validate_event,
    validate_update: event::validate_event_update,
    decode: round_trip::<v1::Event>,
    prepare_for_create: keep_as_given,
    has_generation: true,
    patch_schema: Ty::GenericRoot,
    printer: &printers::EVENT,
    deletion: Deletion::Finalizers,
};

pub static SERVICE_ACCOUNT: Strategy = Strategy {
    defaults: defaults::default_nothing,
    validate: config::validate_service_account,
    validate_update: no_update_rules,
    decode: round_trip::<v1::ServiceAccount>,
    prepare_for_create: keep_as_given,
    has_generation: true,
    patch_schema: Ty::ServiceAccountRoot,
    printer: &printers::SERVICE_ACCOUNT,
    deletion: Deletion::Finalizers,
};

pub static RESOURCE_QUOTA: Strategy = Strategy {
    defaults: defaults::default_nothing,
    validate: quota::validate_resource_quota,
    validate_update: no_update_rules,
    decode: round_trip::<v1::ResourceQuota>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::GenericRoot,
    printer: &printers::RESOURCE_QUOTA,
    deletion: Deletion::Finalizers,
};
