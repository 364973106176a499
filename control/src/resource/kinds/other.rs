//! Strategies of the kinds of the small groups: coordination.k8s.io Leases and autoscaling/v2
//! HorizontalPodAutoscalers.

use k8s_openapi::api::{autoscaling, coordination};

use super::{clear_status, keep_as_given};
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::{Deletion, Strategy};
use crate::resource::typed::round_trip;
use crate::resource::validate::{defaults, no_update_rules, other};

pub static LEASE: Strategy = Strategy {
    defaults: defaults::default_nothing,
    validate: other::validate_lease,
    validate_update: no_update_rules,
    decode: round_trip::<coordination::v1::Lease>,
    prepare_for_create: keep_as_given,
    has_generation: true,
    patch_schema: Ty::GenericRoot,
    printer: &printers::LEASE,
    deletion: Deletion::Finalizers,
};

pub static HORIZONTAL_POD_AUTOSCALER: Strategy = Strategy {
    defaults: defaults::default_hpa,
    validate: other::validate_hpa,
    validate_update: no_update_rules,
    decode: round_trip::<autoscaling::v2::HorizontalPodAutoscaler>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::HpaRoot,
    printer: &printers::HPA,
    deletion: Deletion::Finalizers,
};
