//! Strategies of the kinds of the small groups: coordination.k8s.io Leases,
//! discovery.k8s.io EndpointSlices, networking.k8s.io Ingresses and IngressClasses, and
//! autoscaling/v2 HorizontalPodAutoscalers.

use k8s_openapi::api::{autoscaling, coordination, discovery, networking};

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::{defaults, ingress, other, service};

/// CertificateSigningRequests: a new request has no status; approval and the certificate
/// come through `/approval` and `/status`.
pub static CERTIFICATE_SIGNING_REQUEST: Strategy = Strategy {
    prepare_for_create: clear_status,
    ..Strategy::of(
        other::validate_csr,
        round_trip::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>,
        &printers::CERTIFICATE_SIGNING_REQUEST,
    )
};

pub static LEASE: Strategy =
    Strategy::of(other::validate_lease, round_trip::<coordination::v1::Lease>, &printers::LEASE);

pub static ENDPOINT_SLICE: Strategy = Strategy {
    defaults: defaults::default_endpoint_slice,
    ..Strategy::of(
        service::validate_endpoint_slice,
        round_trip::<discovery::v1::EndpointSlice>,
        &printers::ENDPOINT_SLICE,
    )
};

pub static INGRESS: Strategy = Strategy {
    prepare_for_create: clear_status,
    ..Strategy::of(ingress::validate_ingress, round_trip::<networking::v1::Ingress>, &printers::INGRESS)
};

pub static INGRESS_CLASS: Strategy =
    Strategy::of(ingress::validate_ingress_class, round_trip::<networking::v1::IngressClass>, &printers::INGRESS_CLASS);

pub static HORIZONTAL_POD_AUTOSCALER: Strategy = Strategy {
    defaults: defaults::default_hpa,
    prepare_for_create: clear_status,
    patch_schema: Ty::HpaRoot,
    ..Strategy::of(other::validate_hpa, round_trip::<autoscaling::v2::HorizontalPodAutoscaler>, &printers::HPA)
};
