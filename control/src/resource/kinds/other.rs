//! Strategies of the kinds of the small groups: coordination.k8s.io Leases and autoscaling/v2
//! HorizontalPodAutoscalers.

use k8s_openapi::api::{autoscaling, coordination};

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::{defaults, other};

pub static LEASE: Strategy =
    Strategy::of(other::validate_lease, round_trip::<coordination::v1::Lease>, &printers::LEASE);

pub static HORIZONTAL_POD_AUTOSCALER: Strategy = Strategy {
    defaults: defaults::default_hpa,
    prepare_for_create: clear_status,
    patch_schema: Ty::HpaRoot,
    ..Strategy::of(other::validate_hpa, round_trip::<autoscaling::v2::HorizontalPodAutoscaler>, &printers::HPA)
};
