//! The bottom layer of the Kubernetes side of the server: what is served and how requests fail.
//!
//! * [`table`] — the resource table ([`ResourceInfo`], [`RESOURCES`]) that discovery,
//!   routing, storage keys, the watch cache and the leader tasks all read;
//! * [`error`] — [`ApiError`] and its `Status` objects, which the registry, the cache and the
//!   API return alike;
//! * [`patch_schema`] — each kind's strategic-merge type graph, which patches (api) and the
//!   managedFields bookkeeping (registry) both walk.
//!
//! Both `api` and `registry` (and `cache`) build on this module; it imports neither.

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
