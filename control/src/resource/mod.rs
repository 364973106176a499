//! The bottom layer of the Kubernetes side of the server: what is served, each kind's rules,
//! and how requests fail. Everything here is pure (no store, no HTTP state).
//!
//! * [`table`] — the resource table ([`ResourceInfo`], [`RESOURCES`]) that discovery,
//!   routing, storage keys, the watch cache and the leader tasks all read;
//! * [`strategy`] — what a kind's rules are ([`strategy::Strategy`]); [`kinds`] — one
//!   strategy per built-in kind, grouped by API group, each table entry pointing at its own;
//! * what the strategies are made of: [`validate`] (defaulting and validation, one file per
//!   kind or group of small kinds), [`typed`] (the k8s-openapi round trip), [`printers`]
//!   (server-side table columns, one file per kind or group), [`patch_schema`] (the
//!   strategic-merge type graph patches and managedFields walk);
//! * [`alias`] — resources served in one form and stored in another, converted both ways;
//! * [`builtin_types`] — each built-in kind's k8s-openapi type, for code generic over it;
//! * [`custom`] — custom resources: what a CustomResourceDefinition serves (schemas,
//!   printer columns), and the CRD kind's own rules;
//! * [`error`] — [`ApiError`] and its `Status` objects, which the registry, the cache and the
//!   API return alike.
//!
//! Both `api` and `registry` (and `cache`) build on this module; it imports neither.

pub mod alias;
pub mod builtin_types;
pub mod custom;
pub mod error;
pub mod kinds;
pub mod patch_schema;
pub mod printers;
pub mod strategy;
pub mod table;
pub mod typed;
pub mod validate;

pub use error::{ApiError, Cause, Subject};
pub use table::{find, find_kind, groups, in_group_version, ResourceInfo, RESOURCES};
