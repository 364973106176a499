//! Strategies of the apps/v1 kinds (extensions/v1beta1 Deployments share [`DEPLOYMENT`]).

use k8s_openapi::api::apps::v1;

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::{apps, defaults};

pub static DEPLOYMENT: Strategy = Strategy {
    defaults: defaults::default_deployment,
    validate_update: apps::validate_selector_immutable,
    prepare_for_create: clear_status,
    patch_schema: Ty::DeploymentRoot,
    ..Strategy::of(apps::validate_deployment, round_trip::<v1::Deployment>, &printers::DEPLOYMENT)
};

pub static REPLICA_SET: Strategy = Strategy {
    defaults: defaults::default_replicaset,
    validate_update: apps::validate_selector_immutable,
    prepare_for_create: clear_status,
    patch_schema: Ty::WorkloadRoot,
    ..Strategy::of(apps::validate_replicaset, round_trip::<v1::ReplicaSet>, &printers::REPLICA_SET)
};

pub static DAEMON_SET: Strategy = Strategy {
    defaults: defaults::default_daemonset,
    validate_update: apps::validate_selector_immutable,
    prepare_for_create: clear_status,
    patch_schema: Ty::WorkloadRoot,
    ..Strategy::of(apps::validate_daemonset, round_trip::<v1::DaemonSet>, &printers::DAEMON_SET)
};

pub static STATEFUL_SET: Strategy = Strategy {
    defaults: defaults::default_statefulset,
    validate_update: apps::validate_statefulset_update,
    prepare_for_create: clear_status,
    patch_schema: Ty::WorkloadRoot,
    ..Strategy::of(apps::validate_statefulset, round_trip::<v1::StatefulSet>, &printers::STATEFUL_SET)
};
