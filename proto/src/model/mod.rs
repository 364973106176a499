//! The Kubernetes resource model helpers every Berth crate shares, each written once:
//! [`quantity`] (`resource.Quantity`), [`qos`] (a pod's QoS class), [`names`] (name, label
//! and key syntax with apimachinery's messages), [`duration`] (`HumanDuration`, Go durations),
//! [`well_known`] (label, taint and annotation keys), [`cidr`] (IPv4 CIDRs and their subnets).
//!
//! Each module follows apimachinery's behaviour, not any one caller's, so the API server,
//! the scheduler, the agent and `berthctl` cannot disagree about what a value means.

pub mod cidr;
pub mod duration;
pub mod ingress;
pub mod names;
pub mod qos;
pub mod quantity;
pub mod well_known;
