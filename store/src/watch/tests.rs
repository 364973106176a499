//! Watch guarantees on one member: ordered, unique, atomic, reliable, resumable, filtered,
//! bookmarkable — including a slow consumer and compaction.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::etcdserverpb::watch_create_request::FilterType;
use berth_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, WatchCreateRequest, WatchResponse};
use berth_proto::keys::prefix_end;
use berth_proto::mvccpb::event::EventType;
use tokio::sync::mpsc::Receiver;

use super::hub::{HubConfig, WatchHub};
use super::stream::WatchStream;
use crate::engine::memory::MemoryEngine;
use crate::engine::{Durability, KvEngine};
use crate::mvcc::{compact, meta, write::WriteTxn};

/// A one-member "apply path": writes through WriteTxn, then notifies the hub, exactly as
/// the state machine does.
struct Applier {
    engine: Arc<dyn KvEngine>,
    hub: Arc<WatchHub>,
}

impl Applier {
    fn new(buffer: usize) -> Applier {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        let hub = WatchHub::new(
            engine.clone(),
            HubConfig { stream_buffer: buffer, catch_up_batch: 7, ..HubConfig::default() },
        )
        .unwrap();
        Applier { engine, hub }
    }

    fn apply(&self, f: impl FnOnce(&mut WriteTxn)) -> i64 {
        let view = self.engine.view();
        let (cur, comp) = meta::revisions(&*view).unwrap();
        let mut txn = WriteTxn::new(&*view, cur, comp);
        f(&mut txn);
        let changes = txn.finish();
        drop(view);
        self.engine.write(changes.batch, Durability::Buffered).unwrap();
        if !changes.events.is_empty() {
            self.hub.notify(changes.revision, &changes.events, changes.prev_kv_complete);
        }
        changes.revision
    }

    fn put(&self, key: &str, value: &str) -> i64 {
        self.apply(|t| {
            t.put(&PutRequest { key: key.into(), value: value.into(), ..Default::default() }).unwrap();
        })
    }

    fn delete(&self, key: &str) -> i64 {
        self.apply(|t| {
            t.delete_range(&DeleteRangeRequest { key: key.into(), ..Default::default() }).unwrap();
        })
    }

    fn compact(&self, rev: i64) {
        let view = self.engine.view();
        let mut batch = crate::engine::WriteBatch::default();
        compact::compact(&*view, rev, &mut batch).unwrap();
        drop(view);
        self.engine.write(batch, Durability::Buffered).unwrap();
        self.hub.set_compacted(rev);
    }
}

fn prefix_watch(prefix: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix.as_bytes()),
        start_revision: start,
        ..Default::default()
    }
}

async fn next(rx: &mut Receiver<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a response within 10s").expect("stream open")
}

/// Reads responses until `want` events arrived; returns (revision, key) of each event and
/// checks atomicity: a revision never appears in two responses.
async fn collect_events(rx: &mut Receiver<WatchResponse>, want: usize) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    let mut revisions_seen_in_earlier_responses = std::collections::HashSet::new();
    while out.len() < want {
        let resp = next(rx).await;
        assert!(!resp.canceled, "unexpected cancel: {resp:?}");
        let revs: std::collections::HashSet<i64> =
            resp.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
        for r in &revs {
            assert!(!revisions_seen_in_earlier_responses.contains(r), "revision {r} split across responses");
        }
        if let Some(h) = &resp.header {
            assert!(revs.iter().all(|r| *r <= h.revision), "header revision below its events");
        }
        revisions_seen_in_earlier_responses.extend(revs);
        for e in resp.events {
            let kv = e.kv.unwrap();
            out.push((kv.mod_revision, String::from_utf8(kv.key).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn live_events_arrive_after_created_in_order() {
    let a = Applier::new(64);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    s.create(prefix_watch("/a/", 0)).await;
    let created = next(&mut rx).await;
    assert!(created.created);
    assert_eq!(created.watch_id, 0, "etcd assigns watch ids from 0");
    a.put("/a/1", "x");
    a.put("/b/1", "ignored");
    a.put("/a/2", "y");
    let got = collect_events(&mut rx, 2).await;
    assert_eq!(got, vec![(2, "/a/1".into()), (4, "/a/2".into())]);
}

#[tokio::test]
async fn a_watch_from_the_past_replays_history_then_continues_live() {
    let a = Applier::new(64);
    for i in 0..20 {
        a.put(&format!("/k/{i}"), "v");
    }
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    s.create(prefix_watch("/k/", 5)).await;
    assert!(next(&mut rx).await.created);
    // Writes keep coming while the watcher catches up.
    let writer = {
        let engine = a.engine.clone();
        let hub = a.hub.clone();
        tokio::spawn(async move {
            let a = Applier { engine, hub };
            for i in 20..40 {
                a.put(&format!("/k/{i}"), "v");
                tokio::task::yield_now().await;
            }
        })
    };
    let got = collect_events(&mut rx, 37).await;
    writer.await.unwrap();
    let revs: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(revs, (5..=41).collect::<Vec<_>>(), "reliable: exactly the revisions from 5 on, once each, in order");
}

#[tokio::test]
async fn a_slow_consumer_catches_up_without_loss_and_apply_never_waits() {
    let a = Applier::new(2); // tiny channel: the watcher falls behind at once
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    s.create(prefix_watch("/s/", 0)).await;
    assert!(next(&mut rx).await.created);
    let started = std::time::Instant::now();
    for i in 0..2000 {
        a.put(&format!("/s/{}", i % 50), "v"); // nobody reads meanwhile
    }
    assert!(started.elapsed() < Duration::from_secs(30), "apply must not block on the watcher");
    assert!(a.hub.slow_watcher_moves.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let got = collect_events(&mut rx, 2000).await;
    let revs: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(revs, (2..=2001).collect::<Vec<_>>());
    // And it is live again afterwards.
    a.put("/s/after", "v");
    assert_eq!(collect_events(&mut rx, 1).await, vec![(2002, "/s/after".into())]);
    let (_, unsynced) = a.hub.watcher_count();
    assert_eq!(unsynced, 0);
}

#[tokio::test]
async fn resuming_at_last_plus_one_yields_exactly_the_continuation() {
    let a = Applier::new(64);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    s.create(prefix_watch("/r/", 0)).await;
    next(&mut rx).await;
    for i in 0..10 {
        a.put(&format!("/r/{i}"), "v");
    }
    let first = collect_events(&mut rx, 4).await;
    drop(s);
    drop(rx);
    for i in 10..15 {
        a.put(&format!("/r/{i}"), "v");
    }
    let last = first.last().unwrap().0;
    let (mut s2, mut rx2) = WatchStream::open(a.hub.clone());
    s2.create(prefix_watch("/r/", last + 1)).await;
    next(&mut rx2).await;
    let rest = collect_events(&mut rx2, 11).await;
    assert_eq!(rest.first().unwrap().0, last + 1);
    assert_eq!(rest.last().unwrap().0, 16);
}

#[tokio::test]
async fn filters_and_prev_kv() {
    let a = Applier::new(64);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    let mut noput = prefix_watch("/f/", 0);
    noput.filters = vec![FilterType::Noput as i32];
    noput.prev_kv = true;
    s.create(noput).await;
    next(&mut rx).await;
    let (mut s2, mut rx2) = WatchStream::open(a.hub.clone());
    let mut nodelete = prefix_watch("/f/", 0);
    nodelete.filters = vec![FilterType::Nodelete as i32];
    s2.create(nodelete).await;
    next(&mut rx2).await;
    a.put("/f/x", "1");
    a.put("/f/x", "2");
    a.delete("/f/x");
    let del = next(&mut rx).await;
    assert_eq!(del.events.len(), 1);
    assert_eq!(del.events[0].r#type, EventType::Delete as i32);
    assert_eq!(del.events[0].prev_kv.as_ref().unwrap().value, b"2");
    let puts = collect_events(&mut rx2, 2).await;
    assert_eq!(puts.len(), 2);
    let (mut s3, mut rx3) = WatchStream::open(a.hub.clone());
    s3.create(prefix_watch("/f/", 2)).await;
    next(&mut rx3).await;
    let resp = next(&mut rx3).await;
    let first = &resp.events[0];
    assert_eq!(first.kv.as_ref().unwrap().version, 1, "create flag: version 1 on creation");
    assert!(first.prev_kv.is_none(), "prev_kv only when asked");
}

#[tokio::test]
async fn a_compacted_start_gets_the_compact_revision_and_is_canceled() {
    let a = Applier::new(64);
    for i in 0..10 {
        a.put(&format!("/c/{i}"), "v");
    }
    a.compact(8);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    s.create(prefix_watch("/c/", 3)).await;
    assert!(next(&mut rx).await.created);
    let resp = next(&mut rx).await;
    assert!(resp.canceled);
    assert_eq!(resp.compact_revision, 8);
    // Starting at the compact revision itself is allowed and sees its event.
    s.create(prefix_watch("/c/", 8)).await;
    assert!(next(&mut rx).await.created);
    let got = collect_events(&mut rx, 4).await;
    assert_eq!(got.first().unwrap().0, 8);
}

#[tokio::test]
async fn progress_never_runs_ahead_of_events_and_cancel_is_final() {
    let a = Applier::new(2);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    s.create(prefix_watch("/p/", 0)).await;
    next(&mut rx).await;
    for i in 0..200 {
        a.put(&format!("/p/{i}"), "v");
    }
    s.request_progress();
    let mut max_event = 0;
    let mut progress = None;
    while progress.is_none() {
        let resp = next(&mut rx).await;
        if resp.watch_id == -1 && resp.events.is_empty() {
            progress = Some(resp.header.unwrap().revision);
        } else {
            for e in resp.events {
                max_event = max_event.max(e.kv.unwrap().mod_revision);
            }
        }
    }
    assert_eq!(max_event, 201, "every event before the progress notification arrived first");
    assert!(progress.unwrap() >= max_event);
    s.cancel(0).await;
    let canceled = next(&mut rx).await;
    assert!(canceled.canceled);
    a.put("/p/late", "v");
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err(), "no event after cancel");
}

#[tokio::test]
async fn duplicate_watch_ids_are_refused() {
    let a = Applier::new(8);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    let mut w = prefix_watch("/d/", 0);
    w.watch_id = 7;
    s.create(w.clone()).await;
    assert_eq!(next(&mut rx).await.watch_id, 7);
    s.create(w).await;
    let dup = next(&mut rx).await;
    assert!(dup.created && dup.canceled);
}

#[tokio::test]
async fn events_without_prev_kv_send_prev_kv_watchers_to_history() {
    let a = Applier::new(64);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    let mut w = prefix_watch("/pk/", 0);
    w.prev_kv = true;
    s.create(w).await;
    next(&mut rx).await;
    a.put("/pk/a", "1");
    // An entry that did not fetch prev values (it checked before this watcher existed).
    let view = a.engine.view();
    let (cur, comp) = meta::revisions(&*view).unwrap();
    let mut txn = WriteTxn::new(&*view, cur, comp);
    txn.put(&PutRequest { key: b"/pk/a".to_vec(), value: b"2".to_vec(), ..Default::default() }).unwrap();
    let mut changes = txn.finish();
    drop(view);
    for e in &mut changes.events {
        e.prev_kv = None;
    }
    a.engine.write(changes.batch, Durability::Buffered).unwrap();
    a.hub.notify(changes.revision, &changes.events, false);
    let mut got = vec![];
    while got.len() < 2 {
        got.extend(next(&mut rx).await.events);
    }
    assert_eq!(got[1].prev_kv.as_ref().expect("prev_kv from history").value, b"1");
}

/// Found by the Jepsen watch workload: a member behind the cluster (here: partitioned)
/// accepted a watch from a revision it had not reached yet, then delivered the older events
/// it applied while catching up. A watch from a future revision must deliver nothing below
/// that revision — live, after falling behind, or after a snapshot reset.
#[tokio::test]
async fn a_watch_from_a_future_revision_never_delivers_older_events() {
    let a = Applier::new(2);
    let (mut s, mut rx) = WatchStream::open(a.hub.clone());
    let now = a.put("/f/0", "seed");
    let start = now + 5;
    s.create(prefix_watch("/f/", start)).await;
    assert!(next(&mut rx).await.created);
    // Applied while the watch waits for its start revision (more than the buffer holds, so
    // the watcher also goes through the slow path).
    for i in 1..=8 {
        a.put(&format!("/f/{i}"), "v");
    }
    let events = collect_events(&mut rx, 4).await;
    let revisions: Vec<i64> = events.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, vec![start, start + 1, start + 2, start + 3], "{events:?}");
}
