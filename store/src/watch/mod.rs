//! Watches, served by every member from its own applied state.
//!
//! Modelled on etcd's watchable store:
//! * A watcher is *synced* when every event up to the hub's notified revision has been
//!   queued for it; the apply path then feeds it directly with `try_send` on its stream's
//!   bounded channel. Apply never waits.
//! * When the channel is full, or a watcher starts in the past, it is *unsynced*: a
//!   catch-up task reads the missing events from MVCC history and sends them (waiting as
//!   long as the consumer needs), then re-joins the synced set under the hub lock at the
//!   exact revision it reached. Nothing is dropped and nothing is sent twice.
//! * Progress notifications (requested or periodic) go through the same channel, after the
//!   events they vouch for, and only for synced watchers, so they never run ahead.
//!
//! [`hub::WatchHub`] owns the watcher registry; [`stream::WatchStream`] is one client's
//! stream of watches (a gRPC Watch call, or an in-process user).

pub mod hub;
pub mod stream;

#[cfg(test)]
mod tests;

pub use hub::{HubConfig, WatchHub};
pub use stream::WatchStream;
