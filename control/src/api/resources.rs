//! Moved to [`crate::resource::table`].

// moved: re-export for callers outside api/registry, removed at merge
pub use crate::resource::table::*;
