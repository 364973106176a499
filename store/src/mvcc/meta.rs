//! Keys and value codecs of the `meta` column family (state-machine metadata).
//!
//! Everything here is replicated state: it changes only through applied log entries (or a
//! snapshot install), so every replica holds the same bytes at the same applied index.

use crate::engine::{Cf, ReadView};
use crate::error::{Result, StoreError};

/// Last applied Raft log id (bincode).
pub const APPLIED: &[u8] = b"applied";
/// Last applied membership (bincode `StoredMembership`).
pub const MEMBERSHIP: &[u8] = b"membership";
/// Current MVCC revision (i64 BE). Absent = 1, etcd's revision of an empty store.
pub const REVISION: &[u8] = b"revision";
/// Compacted revision (i64 BE). Absent = 0.
pub const COMPACT: &[u8] = b"compact";
/// Set while a snapshot install rewrites the state machine; if found at startup the
/// install is redone from the saved snapshot file.
pub const INSTALLING: &[u8] = b"installing";
/// `lease/{id BE}` → granted TTL seconds (i64 BE).
pub const LEASE_PREFIX: &[u8] = b"lease/";
/// `leasekey/{id BE}{user key}` → empty: keys attached to a lease.
pub const LEASE_KEY_PREFIX: &[u8] = b"leasekey/";
/// `member/{id BE}` → prost `MemberAttributes`.
pub const MEMBER_PREFIX: &[u8] = b"member/";

pub const INITIAL_REVISION: i64 = 1;

pub fn i64_value(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn decode_i64(what: &str, bytes: &[u8]) -> Result<i64> {
    let arr: [u8; 8] =
        bytes.try_into().map_err(|_| StoreError::corrupt(what, format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(i64::from_be_bytes(arr))
}

pub fn read_i64(view: &dyn ReadView, key: &[u8], default: i64) -> Result<i64> {
    match view.get(Cf::Meta, key)? {
        Some(bytes) => decode_i64(&String::from_utf8_lossy(key), &bytes),
        None => Ok(default),
    }
}

/// (current revision, compact revision) as of `view`.
pub fn revisions(view: &dyn ReadView) -> Result<(i64, i64)> {
    Ok((read_i64(view, REVISION, INITIAL_REVISION)?, read_i64(view, COMPACT, 0)?))
}

fn with_id(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn lease_key(id: i64) -> Vec<u8> {
    with_id(LEASE_PREFIX, id as u64)
}

pub fn lease_attached_prefix(id: i64) -> Vec<u8> {
    with_id(LEASE_KEY_PREFIX, id as u64)
}

pub fn lease_attached_key(id: i64, user_key: &[u8]) -> Vec<u8> {
    let mut k = lease_attached_prefix(id);
    k.extend_from_slice(user_key);
    k
}

pub fn member_key(id: u64) -> Vec<u8> {
    with_id(MEMBER_PREFIX, id)
}

/// Parses the id out of `lease/{id}` or `member/{id}` keys.
pub fn id_after(prefix: &[u8], key: &[u8]) -> Result<u64> {
    let rest = &key[prefix.len()..];
    let arr: [u8; 8] = rest
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StoreError::corrupt("meta key", format!("{key:?}")))?;
    Ok(u64::from_be_bytes(arr))
}

pub fn decode_ttl(bytes: &[u8]) -> Result<i64> {
    decode_i64("lease ttl", bytes)
}
