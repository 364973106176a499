//! Strategies of the policy kinds: policy/v1 PodDisruptionBudgets, scheduling.k8s.io/v1
//! PriorityClasses, core/v1 LimitRanges, networking.k8s.io/v1 NetworkPolicies and apps/v1
//! ControllerRevisions.

use k8s_openapi::api::{apps, core, networking, policy, scheduling};

use super::clear_status;
use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::policy as rules;

/// A budget's status is the disruption controller's (`tasks::disruption`).
pub static POD_DISRUPTION_BUDGET: Strategy = Strategy {
    prepare_for_create: clear_status,
    ..Strategy::of(rules::validate_pdb, round_trip::<policy::v1::PodDisruptionBudget>, &printers::POD_DISRUPTION_BUDGET)
};

pub static PRIORITY_CLASS: Strategy = Strategy {
    defaults: rules::default_priority_class,
    validate_update: rules::validate_priority_class_update,
    has_generation: false,
    ..Strategy::of(
        rules::validate_priority_class,
        round_trip::<scheduling::v1::PriorityClass>,
        &printers::PRIORITY_CLASS,
    )
};

pub static LIMIT_RANGE: Strategy = Strategy {
    has_generation: false,
    ..Strategy::of(rules::validate_limit_range, round_trip::<core::v1::LimitRange>, &printers::LIMIT_RANGE)
};

pub static NETWORK_POLICY: Strategy = Strategy {
    defaults: rules::default_network_policy,
    ..Strategy::of(
        rules::validate_network_policy,
        round_trip::<networking::v1::NetworkPolicy>,
        &printers::NETWORK_POLICY,
    )
};

pub static CONTROLLER_REVISION: Strategy = Strategy {
    validate_update: rules::validate_controller_revision_update,
    has_generation: false,
    ..Strategy::of(
        rules::validate_controller_revision,
        round_trip::<apps::v1::ControllerRevision>,
        &printers::CONTROLLER_REVISION,
    )
};
