//! Table-driven MVCC tests, run against both engines.

use berth_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use berth_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use berth_proto::etcdserverpb::request_op::Request;
use berth_proto::etcdserverpb::response_op::Response;
use berth_proto::etcdserverpb::*;
use berth_proto::keys::{prefix_end, KeyRange};
use berth_proto::mvccpb::event::EventType;

use super::write::WriteTxn;
use super::*;
use crate::engine::memory::MemoryEngine;
use crate::engine::rocks::RocksEngine;
use crate::engine::{scan, Cf, Durability, KvEngine};

struct Harness {
    engine: Box<dyn KvEngine>,
    _dir: Option<tempfile::TempDir>,
    /// The apply path's key index, when this harness uses one.
    index: Option<std::cell::RefCell<index::KeyIndex>>,
}

/// Every combination the store runs: both engines, with and without the key index the
/// apply path uses.
fn harnesses() -> Vec<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let indexed = || Some(std::cell::RefCell::new(index::KeyIndex::default()));
    vec![
        Harness { engine: Box::new(MemoryEngine::new()), _dir: None, index: None },
        Harness { engine: Box::new(RocksEngine::open(dir.path()).unwrap()), _dir: Some(dir), index: None },
        Harness { engine: Box::new(MemoryEngine::new()), _dir: None, index: indexed() },
        Harness { engine: Box::new(RocksEngine::open(dir2.path()).unwrap()), _dir: Some(dir2), index: indexed() },
    ]
}

impl Harness {
    fn apply<R>(&self, f: impl FnOnce(&mut WriteTxn) -> Result<R>) -> Result<R> {
        let view = self.engine.view();
        let (current, compacted) = meta::revisions(&*view).unwrap();
        let index = self.index.as_ref().map(|i| i.borrow());
        let mut txn = WriteTxn::new(&*view, current, compacted);
        if let Some(index) = &index {
            txn = txn.with_index(index, true);
        }
        let out = f(&mut txn)?;
        let changes = txn.finish();
        drop(index);
        drop(view);
        self.engine.write(changes.batch, Durability::Buffered).unwrap();
        if let Some(index) = &self.index {
            index.borrow_mut().apply_events(&changes.events);
            let rebuilt = index::KeyIndex::build(&*self.engine.view()).unwrap();
            assert_eq!(
                rebuilt.range(&KeyRange::from_etcd(&[0], &[0])).collect::<Vec<_>>(),
                index.borrow().range(&KeyRange::from_etcd(&[0], &[0])).collect::<Vec<_>>(),
                "the index kept up to date equals one rebuilt from the engine"
            );
        }
        Ok(out)
    }

    fn put(&self, key: &str, value: &str) -> PutResponse {
        self.apply(|t| t.put(&PutRequest { key: key.into(), value: value.into(), prev_kv: true, ..Default::default() }))
            .unwrap()
    }

    fn delete(&self, key: &str, end: &[u8]) -> DeleteRangeResponse {
        self.apply(|t| t.delete_range(&DeleteRangeRequest { key: key.into(), range_end: end.to_vec(), prev_kv: true }))
            .unwrap()
    }

    fn revision(&self) -> i64 {
        meta::revisions(&*self.engine.view()).unwrap().0
    }

    fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let view = self.engine.view();
        let (current, compacted) = meta::revisions(&*view).unwrap();
        read::range(&*view, &req, current, compacted)
    }

    fn get(&self, key: &str, rev: i64) -> Result<Vec<(String, String)>> {
        let resp = self.range(RangeRequest { key: key.into(), revision: rev, ..Default::default() })?;
        Ok(pairs(&resp))
    }

    fn compact(&self, rev: i64) -> Result<()> {
        let view = self.engine.view();
        let (current, compacted) = meta::revisions(&*view).unwrap();
        compact::check_compact(rev, current, compacted)?;
        let mut batch = crate::engine::WriteBatch::default();
        compact::compact(&*view, rev, &mut batch)?;
        drop(view);
        self.engine.write(batch, Durability::Buffered)
    }

    fn versions_stored(&self) -> usize {
        let mut n = 0;
        scan(&*self.engine.view(), Cf::Kv, b"", None, |_, _| {
            n += 1;
            Ok(true)
        })
        .unwrap();
        n
    }

    fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        txn::validate_txn(&req)?;
        self.apply(|t| txn::execute_txn(t, &req))
    }
}

fn pairs(resp: &RangeResponse) -> Vec<(String, String)> {
    resp.kvs
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into(), String::from_utf8_lossy(&kv.value).into()))
        .collect()
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest { key: key.into(), value: value.into(), ..Default::default() })),
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestRange(RangeRequest { key: key.into(), ..Default::default() })) }
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, value: TargetUnion) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(value),
        range_end: vec![],
    }
}

#[test]
fn revisions_versions_and_tombstones_follow_etcd() {
    for h in harnesses() {
        assert_eq!(h.revision(), 1, "a new store is at revision 1");
        let first = h.put("a", "1");
        assert!(first.prev_kv.is_none());
        let second = h.put("a", "2");
        let prev = second.prev_kv.unwrap();
        assert_eq!((prev.create_revision, prev.mod_revision, prev.version), (2, 2, 1));
        let kv = &h.range(RangeRequest { key: b"a".to_vec(), ..Default::default() }).unwrap().kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        assert_eq!(h.delete("a", b"").deleted, 1);
        assert_eq!(h.revision(), 4);
        assert_eq!(h.delete("a", b"").deleted, 0);
        assert_eq!(h.revision(), 4, "deleting nothing does not bump the revision");
        h.put("a", "3");
        let kv = &h.range(RangeRequest { key: b"a".to_vec(), ..Default::default() }).unwrap().kvs[0];
        assert_eq!((kv.create_revision, kv.version), (5, 1), "a recreated key starts over");
    }
}

#[test]
fn reads_at_past_revisions() {
    for h in harnesses() {
        h.put("k", "v1"); // 2
        h.put("k", "v2"); // 3
        h.delete("k", b""); // 4
        h.put("k", "v3"); // 5
        let table = [(1, vec![]), (2, vec!["v1"]), (3, vec!["v2"]), (4, vec![]), (5, vec!["v3"]), (0, vec!["v3"])];
        for (rev, want) in table {
            let got: Vec<String> = h.get("k", rev).unwrap().into_iter().map(|p| p.1).collect();
            assert_eq!(got, want, "at revision {rev}");
        }
        assert_eq!(h.get("k", 6), Err(StoreError::FutureRevision));
    }
}

#[test]
fn range_forms_limits_counts_and_sorting() {
    for h in harnesses() {
        for (k, v) in [("a", "5"), ("b/1", "3"), ("b/2", "1"), ("b/3", "2"), ("c", "4")] {
            h.put(k, v);
        }
        let r = |req: RangeRequest| h.range(req).unwrap();
        let keys = |resp: &RangeResponse| pairs(resp).into_iter().map(|p| p.0).collect::<Vec<_>>();
        let prefix = r(RangeRequest { key: b"b/".to_vec(), range_end: prefix_end(b"b/"), ..Default::default() });
        assert_eq!(keys(&prefix), ["b/1", "b/2", "b/3"]);
        let from = r(RangeRequest { key: b"b/3".to_vec(), range_end: vec![0], ..Default::default() });
        assert_eq!(keys(&from), ["b/3", "c"]);
        let all = r(RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() });
        assert_eq!(all.count, 5);
        let limited = r(RangeRequest { key: vec![0], range_end: vec![0], limit: 2, ..Default::default() });
        assert_eq!((keys(&limited).len(), limited.more, limited.count), (2, true, 5));
        let exact = r(RangeRequest { key: vec![0], range_end: vec![0], limit: 5, ..Default::default() });
        assert!(!exact.more);
        let counted = r(RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() });
        assert_eq!((counted.kvs.len(), counted.count), (0, 5));
        let keys_only = r(RangeRequest { key: b"a".to_vec(), keys_only: true, ..Default::default() });
        assert!(keys_only.kvs[0].value.is_empty());
        let by_value = r(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            limit: 2,
            ..Default::default()
        });
        assert_eq!(keys(&by_value), ["a", "c"]);
        assert!(by_value.more);
        let by_mod = r(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            sort_target: SortTarget::Mod as i32,
            ..Default::default()
        });
        assert_eq!(keys(&by_mod), ["a", "b/1", "b/2", "b/3", "c"], "NONE order with a non-key target ascends");
        let filtered = r(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            min_mod_revision: 3,
            max_mod_revision: 4,
            ..Default::default()
        });
        assert_eq!(keys(&filtered), ["b/1", "b/2"]);
        assert_eq!(filtered.count, 5, "count ignores filters");
        assert_eq!(h.range(RangeRequest::default()), Err(StoreError::EmptyKey));
        let empty = r(RangeRequest { key: b"z".to_vec(), range_end: b"a".to_vec(), ..Default::default() });
        assert_eq!(empty.count, 0);
    }
}

#[test]
fn keys_with_zero_bytes_and_prefix_neighbours_stay_apart() {
    for h in harnesses() {
        for k in ["a", "a\0", "a\0b", "a\x01", "ab"] {
            h.put(k, k);
        }
        let got = h.get("a", 0).unwrap();
        assert_eq!(got, vec![("a".to_string(), "a".to_string())]);
        let all =
            h.range(RangeRequest { key: b"a".to_vec(), range_end: prefix_end(b"a"), ..Default::default() }).unwrap();
        let keys: Vec<_> = pairs(&all).into_iter().map(|p| p.0).collect();
        assert_eq!(keys, ["a", "a\0", "a\0b", "a\x01", "ab"]);
    }
}

#[test]
fn put_options_ignore_value_and_lease() {
    for h in harnesses() {
        let missing = h.apply(|t| t.put(&PutRequest { key: b"x".to_vec(), ignore_value: true, ..Default::default() }));
        assert_eq!(missing.unwrap_err(), StoreError::KeyNotFound);
        assert_eq!(
            h.apply(|t| t.put(&PutRequest { key: b"x".to_vec(), lease: 42, ..Default::default() })).unwrap_err(),
            StoreError::LeaseNotFound
        );
        h.apply(|t| t.grant_lease(42, 10)).unwrap();
        h.apply(|t| t.put(&PutRequest { key: b"x".to_vec(), value: b"v".to_vec(), lease: 42, ..Default::default() }))
            .unwrap();
        h.apply(|t| {
            t.put(&PutRequest { key: b"x".to_vec(), ignore_value: true, ignore_lease: true, ..Default::default() })
        })
        .unwrap();
        let kv = h.range(RangeRequest { key: b"x".to_vec(), ..Default::default() }).unwrap().kvs[0].clone();
        assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v"[..], 42, 2));
        assert!(validate_put(&PutRequest {
            key: b"x".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .is_err());
    }
}

#[test]
fn leases_attach_detach_and_revoke_in_one_revision() {
    for h in harnesses() {
        h.apply(|t| t.grant_lease(7, 5)).unwrap();
        assert_eq!(h.apply(|t| t.grant_lease(7, 5)).unwrap_err(), StoreError::LeaseExists);
        for k in ["l1", "l2", "moved"] {
            h.apply(|t| t.put(&PutRequest { key: k.into(), value: b"v".to_vec(), lease: 7, ..Default::default() }))
                .unwrap();
        }
        h.put("moved", "no lease now");
        let view = h.engine.view();
        assert_eq!(write::attached_keys(&*view, 7).unwrap(), vec![b"l1".to_vec(), b"l2".to_vec()]);
        drop(view);
        let before = h.revision();
        h.apply(|t| t.revoke_lease(7)).unwrap();
        assert_eq!(h.revision(), before + 1, "all attached keys go at one revision");
        assert!(h.get("l1", 0).unwrap().is_empty());
        assert_eq!(h.get("moved", 0).unwrap().len(), 1);
        assert_eq!(h.apply(|t| t.revoke_lease(7)).unwrap_err(), StoreError::LeaseNotFound);
    }
}

#[test]
fn txn_compares_branches_and_one_revision() {
    for h in harnesses() {
        h.put("k", "v"); // rev 2, version 1
        let cases = [
            (cmp("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b"v".to_vec())), true),
            (cmp("k", CompareTarget::Value, CompareResult::Greater, TargetUnion::Value(b"a".to_vec())), true),
            (cmp("k", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(1)), true),
            (cmp("k", CompareTarget::Create, CompareResult::Less, TargetUnion::CreateRevision(3)), true),
            (cmp("k", CompareTarget::Mod, CompareResult::NotEqual, TargetUnion::ModRevision(2)), false),
            (cmp("k", CompareTarget::Lease, CompareResult::Equal, TargetUnion::Lease(0)), true),
            (cmp("missing", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0)), true),
            (cmp("missing", CompareTarget::Create, CompareResult::Equal, TargetUnion::CreateRevision(0)), true),
            (cmp("missing", CompareTarget::Value, CompareResult::NotEqual, TargetUnion::Value(b"x".to_vec())), false),
        ];
        for (c, want) in cases {
            let resp = h.txn(TxnRequest { compare: vec![c.clone()], success: vec![], failure: vec![] }).unwrap();
            assert_eq!(resp.succeeded, want, "{c:?}");
        }
        let before = h.revision();
        let resp = h
            .txn(TxnRequest {
                compare: vec![cmp("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b"v".to_vec()))],
                success: vec![put_op("x", "1"), put_op("y", "2"), range_op("x")],
                failure: vec![put_op("z", "3")],
            })
            .unwrap();
        assert!(resp.succeeded);
        assert_eq!(h.revision(), before + 1, "a txn's writes share one revision");
        assert_eq!(resp.header.unwrap().revision, before + 1);
        match &resp.responses[2].response {
            Some(Response::ResponseRange(r)) => {
                assert_eq!(pairs(r), vec![("x".into(), "1".into())], "reads see own writes")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(h.get("z", 0).unwrap().is_empty());
        // Range compare: every key in the range must satisfy it.
        let mut range_cmp = cmp("x", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(1));
        range_cmp.range_end = b"z".to_vec();
        assert!(h.txn(TxnRequest { compare: vec![range_cmp], ..Default::default() }).unwrap().succeeded);
        // Nested txn: compares evaluate against the state before the outer txn.
        let nested = TxnRequest {
            compare: vec![cmp("n", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0))],
            success: vec![put_op("n2", "inner")],
            failure: vec![],
        };
        let outer = TxnRequest {
            compare: vec![],
            success: vec![put_op("n", "outer"), RequestOp { request: Some(Request::RequestTxn(nested)) }],
            failure: vec![],
        };
        h.txn(outer).unwrap();
        assert_eq!(h.get("n2", 0).unwrap().len(), 1);
    }
}

#[test]
fn txn_validation_rejects_duplicates_and_oversize() {
    let dup = TxnRequest { success: vec![put_op("a", "1"), put_op("a", "2")], ..Default::default() };
    assert_eq!(txn::validate_txn(&dup), Err(StoreError::DuplicateKey));
    let put_in_delete = TxnRequest {
        success: vec![
            put_op("b/1", "1"),
            RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: b"b/".to_vec(),
                    range_end: prefix_end(b"b/"),
                    prev_kv: false,
                })),
            },
        ],
        ..Default::default()
    };
    assert_eq!(txn::validate_txn(&put_in_delete), Err(StoreError::DuplicateKey));
    let across_branches =
        TxnRequest { success: vec![put_op("a", "1")], failure: vec![put_op("a", "2")], ..Default::default() };
    assert!(txn::validate_txn(&across_branches).is_ok());
    let big = TxnRequest { success: (0..129).map(|i| put_op(&format!("k{i}"), "v")).collect(), ..Default::default() };
    assert_eq!(txn::validate_txn(&big), Err(StoreError::TooManyOps));
    assert!(txn::is_read_only(&TxnRequest { success: vec![range_op("a")], ..Default::default() }));
}

#[test]
fn failed_txn_applies_nothing() {
    for h in harnesses() {
        let before = h.revision();
        let req = TxnRequest {
            success: vec![
                put_op("ok", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: b"bad".to_vec(),
                        lease: 99,
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        };
        assert_eq!(h.txn(req).unwrap_err(), StoreError::LeaseNotFound);
        assert_eq!(h.revision(), before);
        assert!(h.get("ok", 0).unwrap().is_empty());
    }
}

#[test]
fn compaction_removes_superseded_versions_physically() {
    for h in harnesses() {
        h.put("a", "1"); // 2
        h.put("a", "2"); // 3
        h.put("b", "1"); // 4
        h.delete("b", b""); // 5
        h.put("c", "1"); // 6
        h.delete("c", b""); // 7
        h.put("a", "3"); // 8
        assert_eq!(h.versions_stored(), 7);
        h.compact(7).unwrap();
        // a@3 kept (newest ≤ 7), a@2 gone; b's tombstone (5 < 7) and b@4 gone;
        // c's tombstone at exactly 7 kept, c@6 gone; a@8 untouched.
        assert_eq!(h.versions_stored(), 3);
        assert_eq!(h.get("a", 7).unwrap(), vec![("a".into(), "2".into())]);
        assert_eq!(h.get("a", 6), Err(StoreError::Compacted { compact_revision: 7 }));
        assert_eq!(h.compact(7), Err(StoreError::Compacted { compact_revision: 7 }));
        assert_eq!(h.compact(9), Err(StoreError::FutureRevision));
        // A watch starting at the compact revision still sees its events.
        let view = h.engine.view();
        let chunk = history::events_between(&*view, 7, 8, 100, false, |_| true).unwrap();
        let kinds: Vec<_> = chunk.events.iter().map(|e| (e.r#type, e.kv.as_ref().unwrap().mod_revision)).collect();
        assert_eq!(kinds, vec![(EventType::Delete as i32, 7), (EventType::Put as i32, 8)]);
        drop(view);
        h.compact(8).unwrap();
        assert_eq!(h.versions_stored(), 1, "the tombstone at the old compact revision goes next time");
    }
}

#[test]
fn history_reads_events_in_order_without_splitting_revisions() {
    for h in harnesses() {
        h.put("a", "1"); // 2
        h.txn(TxnRequest { success: vec![put_op("b", "1"), put_op("c", "1")], ..Default::default() }).unwrap(); // 3
        h.delete("a", b""); // 4
        let view = h.engine.view();
        let chunk = history::events_between(&*view, 2, 4, 2, true, |_| true).unwrap();
        // After one event of revision 2 the limit is reached only at the boundary after rev 3.
        assert_eq!(chunk.events.len(), 3);
        assert_eq!(chunk.covered_through, 3);
        let rest = history::events_between(&*view, 4, 4, 2, true, |_| true).unwrap();
        let del = &rest.events[0];
        assert_eq!(del.r#type, EventType::Delete as i32);
        assert_eq!(del.prev_kv.as_ref().unwrap().value, b"1");
        let filtered = history::events_between(&*view, 2, 4, 100, false, |k| k == b"c").unwrap();
        assert_eq!(filtered.events.len(), 1);
        assert_eq!(filtered.covered_through, 4);
    }
}

#[test]
fn identical_histories_hash_identically_across_engines() {
    let hs = harnesses();
    for h in &hs {
        h.put("a", "1");
        h.put("b", "2");
        h.put("a", "3");
        h.compact(3).unwrap();
    }
    let hashes: Vec<u32> = hs.iter().map(|h| history::hash_kv(&*h.engine.view(), 4).unwrap()).collect();
    assert_eq!(hashes[0], hashes[1]);
    hs[0].put("c", "1");
    assert_eq!(history::hash_kv(&*hs[0].engine.view(), 4).unwrap(), hashes[0], "later versions are not hashed");
    let _ = KeyRange::from_etcd(b"a", b"");
}

#[test]
fn an_entry_of_several_steps_gives_each_its_revision_and_rolls_back_failures() {
    for h in harnesses() {
        h.put("k", "0"); // rev 2
        let (revs, seen, failed) = h
            .apply(|t| {
                let a = t.step(|t| {
                    t.put(&PutRequest { key: b"k".to_vec(), value: b"1".to_vec(), ..Default::default() })
                        .map(|_| t.current())
                })?;
                // A failing step leaves nothing behind and consumes no revision.
                let failed = t.step(|t| {
                    t.put(&PutRequest { key: b"x".to_vec(), value: b"lost".to_vec(), ..Default::default() })?;
                    t.put(&PutRequest { key: b"y".to_vec(), lease: 404, ..Default::default() })
                });
                let b = t.step(|t| {
                    t.put(&PutRequest { key: b"k".to_vec(), value: b"2".to_vec(), ..Default::default() })
                        .map(|_| t.current())
                })?;
                // A read-only step consumes no revision and sees every earlier step, at
                // their revisions.
                let seen = t.step(|t| {
                    let now = t.range(&RangeRequest { key: b"k".to_vec(), ..Default::default() })?;
                    let at_a = t.range(&RangeRequest { key: b"k".to_vec(), revision: a, ..Default::default() })?;
                    let before = t.range(&RangeRequest { key: b"k".to_vec(), revision: 2, ..Default::default() })?;
                    let x = t.range(&RangeRequest { key: b"x".to_vec(), ..Default::default() })?;
                    Ok((pairs(&now), pairs(&at_a), pairs(&before), x.count))
                })?;
                Ok(((a, b), seen, failed))
            })
            .unwrap();
        assert_eq!(revs, (3, 4));
        assert_eq!(failed.unwrap_err(), StoreError::LeaseNotFound);
        assert_eq!(seen.0, vec![("k".into(), "2".into())]);
        assert_eq!(seen.1, vec![("k".into(), "1".into())]);
        assert_eq!(seen.2, vec![("k".into(), "0".into())]);
        assert_eq!(seen.3, 0, "the failed step's write is gone");
        assert_eq!(h.revision(), 4);
        let kv = h.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).unwrap().kvs[0].clone();
        assert_eq!((kv.version, kv.mod_revision, kv.create_revision), (3, 4, 2));
        assert_eq!(h.get("k", 3).unwrap(), vec![("k".into(), "1".into())]);
        assert!(h.get("x", 0).unwrap().is_empty());
        // Deletes and compares in later steps see earlier steps.
        let deleted = h
            .apply(|t| {
                t.step(|t| t.put(&PutRequest { key: b"p/1".to_vec(), value: b"v".to_vec(), ..Default::default() }))?;
                t.step(|t| {
                    t.delete_range(&DeleteRangeRequest {
                        key: b"p/".to_vec(),
                        range_end: prefix_end(b"p/"),
                        prev_kv: false,
                    })
                })
            })
            .unwrap();
        assert_eq!(deleted.deleted, 1);
    }
}

#[test]
fn without_prev_kv_watchers_events_skip_prev_values_but_responses_keep_them() {
    let engine = MemoryEngine::new();
    let index = index::KeyIndex::default();
    let run = |index: &index::KeyIndex, req: PutRequest| {
        let view = engine.view();
        let (cur, comp) = meta::revisions(&*view).unwrap();
        let mut t = WriteTxn::new(&*view, cur, comp).with_index(index, false);
        let resp = t.put(&req).unwrap();
        let changes = t.finish();
        drop(view);
        engine.write(changes.batch, Durability::Buffered).unwrap();
        (resp, changes.events, changes.prev_kv_complete)
    };
    let mut index = index;
    let (_, events, _) = run(&index, PutRequest { key: b"k".to_vec(), value: b"1".to_vec(), ..Default::default() });
    index.apply_events(&events);
    let (resp, events, complete) =
        run(&index, PutRequest { key: b"k".to_vec(), value: b"2".to_vec(), prev_kv: true, ..Default::default() });
    assert!(!complete);
    assert!(events[0].prev_kv.is_none());
    assert_eq!(resp.prev_kv.unwrap().value, b"1", "the response still carries prev_kv when asked");
    assert_eq!(events[0].kv.as_ref().unwrap().version, 2, "the index supplied the version");
}
