//! Byte layouts of the MVCC column families.
//!
//! * `kv`: `escape(user_key) ‖ !revision (u64 BE)` → [`Record`]. The escaping (0x00 →
//!   0x00 0xFF, terminator 0x00 0x01) keeps user-key order and makes encoded keys
//!   prefix-free, so entries sort by user key, then by revision *descending*: a seek to
//!   `escape(k) ‖ !rev` lands on the newest version of `k` at or below `rev`. A key is
//!   written at most once per main revision (etcd forbids touching a key twice in a txn),
//!   so the sub-revision is not needed here.
//! * `revs`: `revision (u64 BE) ‖ sub_revision (u32 BE)` → user key: the global event
//!   order, read by watch catch-up and compaction.

use crate::error::{Result, StoreError};

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xff;
const TERMINATOR: u8 = 0x01;
/// Bytes of the revision suffix in a `kv` key.
pub const REV_SUFFIX: usize = 8;

/// Appends the order-preserving, prefix-free escaping of `user_key` to `out`.
pub fn escape_key_into(user_key: &[u8], out: &mut Vec<u8>) {
    out.reserve(user_key.len() + 2 + REV_SUFFIX);
    for &b in user_key {
        out.push(b);
        if b == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
    out.push(ESCAPE);
    out.push(TERMINATOR);
}

pub fn escape_key(user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    escape_key_into(user_key, &mut out);
    out
}

/// Inverse of [`escape_key`]; `escaped` must be exactly one escaped key.
pub fn unescape_key(escaped: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(escaped.len().saturating_sub(2));
    let mut i = 0;
    while i < escaped.len() {
        let b = escaped[i];
        if b != ESCAPE {
            out.push(b);
            i += 1;
            continue;
        }
        match escaped.get(i + 1) {
            Some(&ESCAPED_ZERO) => {
                out.push(0);
                i += 2;
            }
            Some(&TERMINATOR) if i + 2 == escaped.len() => return Ok(out),
            _ => break,
        }
    }
    Err(StoreError::corrupt("mvcc key", format!("bad key escaping: {escaped:?}")))
}

fn inverted(rev: i64) -> [u8; 8] {
    (u64::MAX - rev as u64).to_be_bytes()
}

/// `kv` key of `escaped` (from [`escape_key`]) at `rev`.
pub fn kv_key_escaped(escaped: &[u8], rev: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(escaped.len() + REV_SUFFIX);
    k.extend_from_slice(escaped);
    k.extend_from_slice(&inverted(rev));
    k
}

pub fn kv_key(user_key: &[u8], rev: i64) -> Vec<u8> {
    let mut k = Vec::new();
    escape_key_into(user_key, &mut k);
    k.extend_from_slice(&inverted(rev));
    k
}

/// A `kv` key sorting after every version of `escaped` and before the next user key.
pub fn past_all_versions(escaped: &[u8]) -> Vec<u8> {
    let mut k = escaped.to_vec();
    k.extend_from_slice(&[0xff; REV_SUFFIX]);
    k
}

/// Splits a `kv` key into (escaped user key, revision).
pub fn split_kv_key(key: &[u8]) -> Result<(&[u8], i64)> {
    if key.len() < REV_SUFFIX + 2 {
        return Err(StoreError::corrupt("mvcc key", format!("too short: {key:?}")));
    }
    let (escaped, suffix) = key.split_at(key.len() - REV_SUFFIX);
    let inv = u64::from_be_bytes(suffix.try_into().expect("8 bytes"));
    Ok((escaped, (u64::MAX - inv) as i64))
}

pub fn revs_key(rev: i64, sub: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&(rev as u64).to_be_bytes());
    k[8..].copy_from_slice(&sub.to_be_bytes());
    k
}

pub fn split_revs_key(key: &[u8]) -> Result<(i64, u32)> {
    if key.len() != 12 {
        return Err(StoreError::corrupt("revision index key", format!("bad length {}", key.len())));
    }
    let rev = u64::from_be_bytes(key[..8].try_into().expect("8 bytes")) as i64;
    let sub = u32::from_be_bytes(key[8..].try_into().expect("4 bytes"));
    Ok((rev, sub))
}

/// One version of a key as stored in `kv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Live { create_revision: i64, version: i64, lease: i64, value: Vec<u8> },
    Tombstone,
}

const KIND_LIVE: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Live { create_revision, version, lease, value } => {
                let mut out = Vec::with_capacity(25 + value.len());
                out.push(KIND_LIVE);
                out.extend_from_slice(&create_revision.to_be_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&lease.to_be_bytes());
                out.extend_from_slice(value);
                out
            }
            Record::Tombstone => vec![KIND_TOMBSTONE],
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Record> {
        match bytes.first() {
            Some(&KIND_TOMBSTONE) if bytes.len() == 1 => Ok(Record::Tombstone),
            Some(&KIND_LIVE) if bytes.len() >= 25 => {
                let int = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
                Ok(Record::Live {
                    create_revision: int(1),
                    version: int(9),
                    lease: int(17),
                    value: bytes[25..].to_vec(),
                })
            }
            _ => Err(StoreError::corrupt("mvcc record", format!("{} bytes", bytes.len()))),
        }
    }

    /// True for a tombstone, without decoding the value.
    pub fn is_tombstone(bytes: &[u8]) -> bool {
        bytes.first() == Some(&KIND_TOMBSTONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escaping_round_trips_special_bytes() {
        for key in [&b""[..], b"a", b"\0", b"a\0b", b"\0\x01\xff", b"\xff\xff"] {
            assert_eq!(unescape_key(&escape_key(key)).unwrap(), key);
        }
        assert!(unescape_key(b"a\0").is_err());
        assert!(unescape_key(b"a\0\x01x").is_err());
    }

    #[test]
    fn versions_sort_newest_first_within_a_key() {
        let newer = kv_key(b"k", 10);
        let older = kv_key(b"k", 9);
        assert!(newer < older);
        assert_eq!(split_kv_key(&newer).unwrap(), (&escape_key(b"k")[..], 10));
        assert!(past_all_versions(&escape_key(b"k")) > kv_key(b"k", 1));
        assert!(past_all_versions(&escape_key(b"k")) < kv_key(b"k\0", i64::MAX / 2));
    }

    #[test]
    fn records_round_trip() {
        let live = Record::Live { create_revision: 3, version: 2, lease: 7, value: b"v".to_vec() };
        assert_eq!(Record::decode(&live.encode()).unwrap(), live);
        assert_eq!(Record::decode(&Record::Tombstone.encode()).unwrap(), Record::Tombstone);
        assert!(Record::decode(&[9]).is_err());
        assert!(Record::is_tombstone(&Record::Tombstone.encode()));
    }

    proptest! {
        #[test]
        fn escaped_order_matches_key_order(a in proptest::collection::vec(any::<u8>(), 0..6),
                                           b in proptest::collection::vec(any::<u8>(), 0..6),
                                           ra in 1i64..1000, rb in 1i64..1000) {
            let ka = kv_key(&a, ra);
            let kb = kv_key(&b, rb);
            if a != b {
                prop_assert_eq!(a < b, ka < kb);
                // Range bounds: every version of a key below `b` sorts below escape(b).
                if a < b { prop_assert!(ka < escape_key(&b)); }
            } else {
                prop_assert_eq!(ra > rb, ka < kb);
            }
        }
    }
}
