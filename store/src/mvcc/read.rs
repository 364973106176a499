//! Reading key ranges at a revision (etcd's `Range`).
//!
//! Revision semantics: a read at revision `r` sees, for every key, its newest version with
//! `mod_revision <= r`, unless that version is a tombstone. `r <= 0` means the current
//! revision; `r` above the current one is `FutureRevision`; `r` below the compact revision
//! is `Compacted` (reading *at* the compact revision is allowed: compaction keeps the
//! newest version at or below it).

use berth_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use berth_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use berth_proto::keys::KeyRange;
use berth_proto::mvccpb::KeyValue;

use super::encoding::{escape_key, kv_key_escaped, past_all_versions, split_kv_key, unescape_key, Record};
use crate::engine::{Cf, Cursor, ReadView};
use crate::error::{Result, StoreError};

/// Resolves a requested revision against the store's current and compact revisions.
pub fn resolve_revision(requested: i64, current: i64, compact: i64) -> Result<i64> {
    if requested > current {
        return Err(StoreError::FutureRevision);
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < compact {
        return Err(StoreError::Compacted { compact_revision: compact });
    }
    Ok(rev)
}

/// Decodes a `kv` entry into an etcd `KeyValue` (None for a tombstone).
pub fn to_key_value(escaped: &[u8], rev: i64, value: &[u8]) -> Result<Option<KeyValue>> {
    match Record::decode(value)? {
        Record::Tombstone => Ok(None),
        Record::Live { create_revision, version, lease, value } => Ok(Some(KeyValue {
            key: unescape_key(escaped)?,
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        })),
    }
}

/// The newest version of `key` at or below `rev`, if live.
pub fn get_at(view: &dyn ReadView, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
    let escaped = escape_key(key);
    let mut cursor = view.cursor(Cf::Kv);
    cursor.seek(&kv_key_escaped(&escaped, rev));
    if !cursor.valid() {
        return cursor.status().map(|_| None);
    }
    let (found, found_rev) = split_kv_key(cursor.key())?;
    if found != escaped.as_slice() {
        return Ok(None);
    }
    to_key_value(found, found_rev, cursor.value())
}

/// Moves `cursor` past every version of `escaped`. Usually the next entry already belongs to
/// another key (few versions survive compaction), so step a few times before paying a seek.
fn skip_key(cursor: &mut dyn Cursor, escaped: &[u8]) {
    for _ in 0..4 {
        cursor.next();
        if !cursor.valid() {
            return;
        }
        match split_kv_key(cursor.key()) {
            Ok((k, _)) if k == escaped => continue,
            _ => return,
        }
    }
    cursor.seek(&past_all_versions(escaped));
}

/// Visits, in key order, every key live in `range` at `rev` with its version there.
/// `visit` returns `false` to stop early.
pub fn visit_range(
    view: &dyn ReadView,
    range: &KeyRange,
    rev: i64,
    mut visit: impl FnMut(KeyValue) -> Result<bool>,
) -> Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let end = range.end.as_deref().map(escape_key);
    let mut cursor = view.cursor(Cf::Kv);
    cursor.seek(&escape_key(&range.start));
    while cursor.valid() {
        if end.as_deref().is_some_and(|end| cursor.key() >= end) {
            break;
        }
        let (escaped, found_rev) = split_kv_key(cursor.key())?;
        let escaped = escaped.to_vec();
        if found_rev > rev {
            // Versions written after the read revision: jump to the newest one at or below.
            cursor.seek(&kv_key_escaped(&escaped, rev));
            if !cursor.valid() {
                break;
            }
            let (k, _) = split_kv_key(cursor.key())?;
            if k != escaped.as_slice() {
                continue; // no version at or below rev; now at the next key
            }
        }
        let (_, version_rev) = split_kv_key(cursor.key())?;
        if !Record::is_tombstone(cursor.value()) {
            let kv = to_key_value(&escaped, version_rev, cursor.value())?.expect("not a tombstone");
            if !visit(kv)? {
                return Ok(());
            }
        }
        skip_key(&mut *cursor, &escaped);
    }
    cursor.status()
}

/// How many kvs a range should materialise.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    All,
    AtMost(usize),
}

/// Live kvs of `range` at `rev` (up to `keep`) and the total number of live keys there.
pub fn collect_range(view: &dyn ReadView, range: &KeyRange, rev: i64, keep: Keep) -> Result<(Vec<KeyValue>, i64)> {
    let mut kvs = Vec::new();
    let mut total = 0i64;
    visit_range(view, range, rev, |kv| {
        total += 1;
        if match keep {
            Keep::All => true,
            Keep::AtMost(n) => kvs.len() < n,
        } {
            kvs.push(kv);
        }
        Ok(true)
    })?;
    Ok((kvs, total))
}

/// True when etcd would fetch the whole range (sorting or revision filters need it).
pub fn needs_full_fetch(req: &RangeRequest) -> bool {
    req.sort_order != SortOrder::None as i32
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

/// How many kvs to materialise for `req` before filtering/sorting/limiting.
pub fn keep_for(req: &RangeRequest) -> Keep {
    if req.count_only {
        Keep::AtMost(0)
    } else if req.limit > 0 && !needs_full_fetch(req) {
        Keep::AtMost(req.limit as usize + 1) // one extra tells whether there is `more`
    } else {
        Keep::All
    }
}

/// Turns fetched kvs into etcd's response: revision filters, sort, limit, keys_only,
/// count_only. `total` is the number of live keys in the range, unaffected by filters and
/// limits (etcd's `count`).
pub fn finish_range(
    req: &RangeRequest,
    mut kvs: Vec<KeyValue>,
    total: i64,
    header_revision: i64,
) -> Result<RangeResponse> {
    let header = Some(ResponseHeader { revision: header_revision, ..Default::default() });
    if req.count_only {
        return Ok(RangeResponse { header, kvs: vec![], more: false, count: total });
    }
    kvs.retain(|kv| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    });
    let target =
        SortTarget::try_from(req.sort_target).map_err(|_| StoreError::InvalidArgument("invalid sort option".into()))?;
    let mut order =
        SortOrder::try_from(req.sort_order).map_err(|_| StoreError::InvalidArgument("invalid sort option".into()))?;
    // Results come in ascending key order already (etcd's defaults).
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    if order != SortOrder::None {
        kvs.sort_by(|a, b| {
            let ord = match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header, kvs, more, count: total })
}

/// A complete `Range` against one consistent view.
pub fn range(view: &dyn ReadView, req: &RangeRequest, current: i64, compact: i64) -> Result<RangeResponse> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    let rev = resolve_revision(req.revision, current, compact)?;
    let key_range = KeyRange::from_etcd(&req.key, &req.range_end);
    let (kvs, total) = collect_range(view, &key_range, rev, keep_for(req))?;
    finish_range(req, kvs, total, current)
}
