//! Support shared by Berth's test suites, written once: bounded waits ([`eventually`] and
//! [`blocking::eventually`]), loopback ports ([`free_port`]), test logging
//! ([`init_tracing`]) and a guard that kills a spawned process when a test ends
//! ([`KillOnDrop`]).
//!
//! It depends on no Berth crate, so any crate may use it as a dev-dependency. The
//! in-process clusters live next to the code they start: `berth_store::testing` and
//! `berth_control::testing` (each behind its crate's `testing` feature).

pub mod blocking;
mod ports;
mod process;
mod tracing_init;
mod wait;

pub use ports::free_port;
pub use process::{KillOnDrop, SharedLines};
pub use tracing_init::init_tracing;
pub use wait::eventually;
