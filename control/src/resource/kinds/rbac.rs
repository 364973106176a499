//! Strategies of `rbac.authorization.k8s.io/v1`: Roles, ClusterRoles, RoleBindings and
//! ClusterRoleBindings. Objects without a spec: no generation.

use k8s_openapi::api::rbac::v1 as rbac;

use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::rbac as validate;

pub static ROLE: Strategy = Strategy {
    has_generation: false,
    ..Strategy::of(validate::validate_role_ns, round_trip::<rbac::Role>, &printers::ROLE)
};

pub static CLUSTER_ROLE: Strategy = Strategy {
    has_generation: false,
    ..Strategy::of(validate::validate_cluster_role, round_trip::<rbac::ClusterRole>, &printers::ROLE)
};

pub static ROLE_BINDING: Strategy = Strategy {
    has_generation: false,
    validate_update: validate::validate_binding_update,
    ..Strategy::of(validate::validate_role_binding, round_trip::<rbac::RoleBinding>, &printers::ROLE_BINDING)
};

pub static CLUSTER_ROLE_BINDING: Strategy = Strategy {
    has_generation: false,
    validate_update: validate::validate_binding_update,
    ..Strategy::of(
        validate::validate_cluster_role_binding,
        round_trip::<rbac::ClusterRoleBinding>,
        &printers::ROLE_BINDING,
    )
};
