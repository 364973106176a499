//! Strategies of the apps/v1 kinds (extensions/v1beta1 Deployments share [`DEPLOYMENT`]).

use k8s_openapi::api::apps::v1;

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::{Deletion, Strategy};
use crate::resource::typed::round_trip;
use crate::resource::validate::{apps, defaults};

pub static DEPLOYMENT: Strategy = Strategy {
    defaults: defaults::default_deployment,
    validate: apps::validate_deployment,
    validate_update: apps::validate_selector_immutable,
    decode: round_trip::<v1::Deployment>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::DeploymentRoot,
    printer: &printers::DEPLOYMENT,
    deletion: Deletion::Finalizers,
};

pub static REPLICA_SET: Strategy = Strategy {
    defaults: defaults::default_replicaset,
    validate: apps::validate_replicaset,
    validate_update: apps::validate_selector_immutable,
    decode: round_trip::<v1::ReplicaSet>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::WorkloadRoot,
    printer: &printers::REPLICA_SET,
    deletion: Deletion::Finalizers,
};

pub static DAEMON_SET: Strategy = Strategy {
    defaults: defaults::default_daemonset,
    validate: apps::validate_daemonset,
    validate_update: apps::validate_selector_immutable,
    decode: round_trip::<v1::DaemonSet>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::WorkloadRoot,
    printer: &printers::DAEMON_SET,
    deletion: Deletion::Finalizers,
};

pub static STATEFUL_SET: Strategy = Strategy {
    defaults: defaults::default_statefulset,
    validate: apps::validate_statefulset,
    validate_update: apps::validate_statefulset_update,
    decode: round_trip::<v1::StatefulSet>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::WorkloadRoot,
    printer: &printers::STATEFUL_SET,
    deletion: Deletion::Finalizers,
};
