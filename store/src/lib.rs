//! Berth's replicated key-value store.
//!
//! An etcd-compatible store built from openraft (replication), RocksDB (durability) and an
//! MVCC layer with etcd's semantics. See `DESIGN.md` ("Store") for the specification.

pub mod engine;
pub mod error;
pub mod mvcc;

pub use error::{Result, StoreError};
