//! Moved to [`crate::resource::error`].

// moved: re-export for callers outside api/registry, removed at merge
pub use crate::resource::error::*;
