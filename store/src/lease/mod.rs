//! The lessor: lease expiry timers, held in memory on every member and acted upon only by
//! the leader ("primary").
//!
//! Lease records (id, TTL) and attached keys are replicated state (see `mvcc::meta`); the
//! deadlines are not. Only the primary keeps deadlines: it renews them on keep-alive and
//! proposes a revoke (through Raft) when one passes. When a member becomes primary it gives
//! every lease a full TTL from that moment (etcd's rule), so a leader change can delay an
//! expiry but never expire a live lease early.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::engine::{scan, Cf, ReadView};
use crate::error::{Result, StoreError};
use crate::mvcc::meta;

/// etcd's `MaxLeaseTTL`.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Timer {
    ttl: i64,
    /// Set only while primary.
    expiry: Option<Instant>,
    /// A revoke for this lease is in flight.
    revoking: bool,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Timer>,
    primary: bool,
}

pub struct Lessor {
    state: Mutex<State>,
    /// Granted TTLs are raised to this (etcd: 1.5 × election timeout, rounded up).
    pub min_ttl: i64,
}

/// A TTL as a duration. Clamped, because a grant that reached the log past admission (an
/// older version's) must not overflow a deadline on the apply path.
fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(ttl.clamp(0, MAX_LEASE_TTL) as u64)
}

impl Lessor {
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor { state: Mutex::new(State::default()), min_ttl }
    }

    /// etcd's minimum lease TTL for an election timeout.
    pub fn min_ttl_for(election_timeout: Duration) -> i64 {
        (election_timeout.as_secs_f64() * 1.5).ceil() as i64
    }

    /// The TTL a grant request gets: at least `min_ttl`, at most [`MAX_LEASE_TTL`].
    pub fn granted_ttl(&self, requested: i64) -> Result<i64> {
        if requested > MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        Ok(requested.max(self.min_ttl))
    }

    /// Reloads the lease set from replicated state (startup, snapshot install).
    pub fn load(&self, view: &dyn ReadView) -> Result<()> {
        let mut leases = HashMap::new();
        let end = berth_proto::keys::prefix_end(meta::LEASE_PREFIX);
        scan(view, Cf::Meta, meta::LEASE_PREFIX, Some(&end), |k, v| {
            let id = meta::id_after(meta::LEASE_PREFIX, k)? as i64;
            leases.insert(id, Timer { ttl: meta::decode_ttl(v)?, expiry: None, revoking: false });
            Ok(true)
        })?;
        let mut s = self.state.lock();
        let now = Instant::now();
        if s.primary {
            for t in leases.values_mut() {
                t.expiry = Some(now + ttl_duration(t.ttl));
            }
        }
        s.leases = leases;
        Ok(())
    }

    pub fn on_granted(&self, id: i64, ttl: i64) {
        let mut s = self.state.lock();
        let expiry = s.primary.then(|| Instant::now() + ttl_duration(ttl));
        s.leases.insert(id, Timer { ttl, expiry, revoking: false });
    }

    pub fn on_revoked(&self, id: i64) {
        self.state.lock().leases.remove(&id);
    }

    /// This member became leader (and has applied its term's first entry): every lease gets
    /// a full TTL from now.
    pub fn promote(&self) {
        let mut s = self.state.lock();
        s.primary = true;
        let now = Instant::now();
        for t in s.leases.values_mut() {
            t.expiry = Some(now + ttl_duration(t.ttl));
            t.revoking = false;
        }
    }

    pub fn demote(&self) {
        let mut s = self.state.lock();
        s.primary = false;
        for t in s.leases.values_mut() {
            t.expiry = None;
            t.revoking = false;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.state.lock().primary
    }

    /// Keep-alive on the primary: a full TTL from now. `None` if the lease is unknown or
    /// already past its deadline (its revoke is coming).
    pub fn renew(&self, id: i64) -> Option<i64> {
        let mut s = self.state.lock();
        let now = Instant::now();
        let t = s.leases.get_mut(&id)?;
        if t.revoking || t.expiry.is_some_and(|e| e <= now) {
            return None;
        }
        t.expiry = Some(now + ttl_duration(t.ttl));
        Some(t.ttl)
    }

    /// (remaining seconds, granted TTL) on the primary; remaining is -1 past the deadline.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let s = self.state.lock();
        let t = s.leases.get(&id)?;
        let remaining = match t.expiry {
            Some(e) => match e.checked_duration_since(Instant::now()) {
                Some(d) => d.as_secs() as i64,
                None => -1,
            },
            None => t.ttl,
        };
        Some((remaining, t.ttl))
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.state.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn contains(&self, id: i64) -> bool {
        self.state.lock().leases.contains_key(&id)
    }

    /// Expired leases to revoke now (at most `max`), marked as being revoked.
    pub fn take_expired(&self, max: usize) -> Vec<i64> {
        let mut s = self.state.lock();
        if !s.primary {
            return vec![];
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, t) in s.leases.iter_mut() {
            if out.len() >= max {
                break;
            }
            if !t.revoking && t.expiry.is_some_and(|e| e <= now) {
                t.revoking = true;
                out.push(*id);
            }
        }
        out
    }

    /// A revoke proposal failed; try again at the next sweep.
    pub fn revoke_failed(&self, id: i64) {
        if let Some(t) = self.state.lock().leases.get_mut(&id) {
            t.revoking = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_primary_expires_and_promotion_extends() {
        let l = Lessor::new(2);
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(1000)), 2);
        assert_eq!(l.granted_ttl(1).unwrap(), 2);
        assert_eq!(l.granted_ttl(MAX_LEASE_TTL + 1), Err(StoreError::LeaseTtlTooLarge));
        l.on_granted(1, 0);
        assert!(l.take_expired(10).is_empty(), "followers never expire leases");
        assert_eq!(l.renew(1), Some(0));
        l.promote();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l.take_expired(10), vec![1]);
        assert!(l.take_expired(10).is_empty(), "a revoke in flight is not proposed twice");
        l.revoke_failed(1);
        assert_eq!(l.take_expired(10), vec![1]);
        l.on_granted(2, 60);
        assert!(l.remaining(2).unwrap().0 >= 59);
        l.demote();
        l.promote();
        assert_eq!(l.remaining(2).unwrap().1, 60);
        l.on_revoked(2);
        assert_eq!(l.renew(2), None);
    }
}
