//! Fault-injection points for the Jepsen harness (the `fail` crate), at the places where a
//! crash or a stall tests the store's durability and ordering promises. Compiled only with
//! the `failpoints` feature (test builds: `--features berth-store/failpoints`); without it
//! [`hit`] is an empty inline function and nothing can be configured ([`ENABLED`] says
//! which build this is).
//!
//! The harness configures them at run time through the API server's `/debug/failpoints`
//! (see `control::api`) with the `fail` crate's action syntax, e.g. `sleep(800)` (a slow
//! fsync), `50%return` (crash half the time) or `off`. The action `return` means **crash
//! here**: the process aborts at that exact point — no destructor runs, nothing buffered is
//! flushed — which is what a `kill -9` or power loss at that instruction would leave.

/// Before the group-commit thread fsyncs the Raft log (appended, not yet durable).
pub const RAFT_LOG_BEFORE_FSYNC: &str = "raft-log-before-fsync";
/// After the fsync, before openraft hears the entries are durable.
pub const RAFT_LOG_AFTER_FSYNC: &str = "raft-log-after-fsync";
/// After an entry is applied to MVCC, before its events reach the watchers.
pub const APPLY_BEFORE_WATCH_NOTIFY: &str = "apply-before-watch-notify";
/// In the middle of installing a snapshot received from the leader (file saved, data not
/// yet swapped in).
pub const SNAPSHOT_INSTALL: &str = "snapshot-install";
/// Before the Raft log is purged up to a snapshot.
pub const LOG_PURGE: &str = "log-purge";
/// When the leader is about to propose the revocation of expired leases.
pub const LEASE_EXPIRY: &str = "lease-expiry";

/// Every failpoint, for the harness to pick from and for `/debug/failpoints` to list.
pub const ALL: &[&str] = &[
    RAFT_LOG_BEFORE_FSYNC,
    RAFT_LOG_AFTER_FSYNC,
    APPLY_BEFORE_WATCH_NOTIFY,
    SNAPSHOT_INSTALL,
    LOG_PURGE,
    LEASE_EXPIRY,
];

/// Whether this build carries failpoints.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Evaluates failpoint `name`: sleeps or pauses as configured; a `return` action aborts
/// the process on the spot.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("berth: failpoint {name}: crashing here");
        std::process::abort();
    }
}

/// Without the feature: nothing, compiled away.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Sets `name`'s actions (the `fail` crate's syntax); an unknown name or bad syntax is an
/// error that says which.
#[cfg(feature = "failpoints")]
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    if !ALL.contains(&name) {
        return Err(format!("unknown failpoint {name:?} (known: {})", ALL.join(", ")));
    }
    fail::cfg(name, actions).map_err(|e| format!("failpoint {name}: {e}"))?;
    tracing::warn!(failpoint = name, actions, "failpoint configured");
    Ok(())
}

/// Without the feature nothing can be configured.
#[cfg(not(feature = "failpoints"))]
pub fn configure(_name: &str, _actions: &str) -> Result<(), String> {
    Err("this build has no failpoints (build with --features berth-store/failpoints)".into())
}

/// Turns `name` off.
pub fn remove(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        fail::remove(name);
        tracing::warn!(failpoint = name, "failpoint removed");
    }
    let _ = name;
}

/// The configured failpoints and their actions (none without the feature).
pub fn list() -> Vec<(String, String)> {
    #[cfg(feature = "failpoints")]
    return fail::list();
    #[cfg(not(feature = "failpoints"))]
    Vec::new()
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[test]
    fn only_known_failpoints_can_be_configured() {
        assert!(configure("no-such-point", "off").unwrap_err().contains("unknown failpoint"));
        assert!(configure(LEASE_EXPIRY, "bogus(").is_err());
        configure(LEASE_EXPIRY, "sleep(1)").unwrap();
        assert!(list().iter().any(|(n, a)| n == LEASE_EXPIRY && a == "sleep(1)"));
        hit(LEASE_EXPIRY);
        remove(LEASE_EXPIRY);
        assert!(!list().iter().any(|(n, _)| n == LEASE_EXPIRY));
    }
}
