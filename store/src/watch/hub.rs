//! The watcher registry and the synced/unsynced machinery (see the module docs of
//! [`crate::watch`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use berth_proto::keys::KeyRange;
use berth_proto::mvccpb::{event::EventType, Event};
use parking_lot::Mutex;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::engine::KvEngine;
use crate::error::Result;
use crate::mvcc::{history, meta};

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Interval of progress notifications for watchers that asked for them (etcd: 10 min).
    pub progress_notify_interval: Duration,
    /// Events read from history per catch-up step (never splitting a revision).
    pub catch_up_batch: usize,
    /// Capacity of each stream's channel; when full, its watchers fall back to catch-up.
    pub stream_buffer: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig { progress_notify_interval: Duration::from_secs(600), catch_up_batch: 1000, stream_buffer: 256 }
    }
}

/// What a watcher wants.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub watch_id: i64,
    pub range: KeyRange,
    /// First revision to deliver; `<= 0` means "after the current revision".
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
}

impl WatchSpec {
    fn wants(&self, ev: &Event) -> bool {
        let put = ev.r#type == EventType::Put as i32;
        if (put && self.no_put) || (!put && self.no_delete) {
            return false;
        }
        ev.kv.as_ref().is_some_and(|kv| self.range.contains(&kv.key))
    }

    /// This watcher's view of `events`: filtered, `prev_kv` stripped unless asked for.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|ev| self.wants(ev))
            .map(|ev| {
                let mut ev = ev.clone();
                if !self.prev_kv {
                    ev.prev_kv = None;
                }
                ev
            })
            .collect()
    }
}

pub type Sink = mpsc::Sender<WatchResponse>;

struct Watcher {
    stream: u64,
    spec: WatchSpec,
    synced: bool,
    /// When unsynced: the next revision to deliver.
    next_revision: i64,
    /// The created response has not been queued yet (the channel was full).
    created_pending: bool,
    /// The revision the created response reports (the hub's revision at creation).
    created_revision: i64,
    /// Whether events were queued since the last periodic progress tick.
    active_since_tick: bool,
    canceled: Arc<AtomicBool>,
    /// Serialises the catch-up task's sends with the cancel response.
    send_guard: Arc<tokio::sync::Mutex<()>>,
}

struct Stream {
    sink: Sink,
    watchers: BTreeSet<u64>,
    /// A progress request is owed, to be answered once every watcher is synced.
    progress_pending: bool,
}

struct HubState {
    /// Every event up to this revision has been offered to synced watchers.
    notified: i64,
    compacted: i64,
    next_key: u64,
    watchers: HashMap<u64, Watcher>,
    streams: HashMap<u64, Stream>,
}

pub struct WatchHub {
    state: Mutex<HubState>,
    engine: Arc<dyn KvEngine>,
    config: HubConfig,
    cluster_id: AtomicU64,
    member_id: AtomicU64,
    raft_term: AtomicU64,
    /// Times a watcher fell behind and moved to catch-up (metrics).
    pub slow_watcher_moves: AtomicU64,
    /// Registered watchers that asked for `prev_kv`.
    prev_kv_watchers: std::sync::atomic::AtomicUsize,
}

/// Handles a cancel needs after the watcher left the registry.
pub struct Canceled {
    pub sink: Sink,
    pub send_guard: Arc<tokio::sync::Mutex<()>>,
}

impl WatchHub {
    pub fn new(engine: Arc<dyn KvEngine>, config: HubConfig) -> Result<Arc<WatchHub>> {
        let (current, compacted) = meta::revisions(&*engine.view())?;
        Ok(Arc::new(WatchHub {
            state: Mutex::new(HubState {
                notified: current,
                compacted,
                next_key: 1,
                watchers: HashMap::new(),
                streams: HashMap::new(),
            }),
            engine,
            config,
            cluster_id: AtomicU64::new(0),
            member_id: AtomicU64::new(0),
            raft_term: AtomicU64::new(0),
            slow_watcher_moves: AtomicU64::new(0),
            prev_kv_watchers: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// Marks a watcher gone (it was removed from the registry by the caller).
    fn retire(&self, w: &Watcher) {
        w.canceled.store(true, Ordering::SeqCst);
        if w.spec.prev_kv {
            self.prev_kv_watchers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn drop_stream(&self, s: &mut HubState, stream: u64) {
        if let Some(st) = s.streams.remove(&stream) {
            for key in st.watchers {
                if let Some(w) = s.watchers.remove(&key) {
                    self.retire(&w);
                }
            }
        }
    }

    /// Whether the apply path should fill events' `prev_kv`. A watcher that registers after
    /// an entry checked this and before its events are offered is moved to catch-up (which
    /// reads `prev_kv` from history) instead of getting events without it.
    pub fn wants_prev_kv(&self) -> bool {
        self.prev_kv_watchers.load(Ordering::SeqCst) > 0
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn set_identity(&self, cluster_id: u64, member_id: u64) {
        self.cluster_id.store(cluster_id, Ordering::Relaxed);
        self.member_id.store(member_id, Ordering::Relaxed);
    }

    pub fn set_term(&self, term: u64) {
        self.raft_term.store(term, Ordering::Relaxed);
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id.load(Ordering::Relaxed),
            member_id: self.member_id.load(Ordering::Relaxed),
            revision,
            raft_term: self.raft_term.load(Ordering::Relaxed),
        })
    }

    /// The revision up to which watchers have been fed.
    pub fn notified_revision(&self) -> i64 {
        self.state.lock().notified
    }

    pub fn watcher_count(&self) -> (usize, usize) {
        let s = self.state.lock();
        let unsynced = s.watchers.values().filter(|w| !w.synced).count();
        (s.watchers.len(), unsynced)
    }

    pub fn stream_count(&self) -> usize {
        self.state.lock().streams.len()
    }

    pub fn open_stream(&self, sink: Sink) -> u64 {
        let mut s = self.state.lock();
        let id = s.next_key;
        s.next_key += 1;
        s.streams.insert(id, Stream { sink, watchers: BTreeSet::new(), progress_pending: false });
        id
    }

    pub fn close_stream(&self, stream: u64) {
        let mut s = self.state.lock();
        if let Some(st) = s.streams.remove(&stream) {
            for key in st.watchers {
                if let Some(w) = s.watchers.remove(&key) {
                    self.retire(&w);
                }
            }
        }
    }

    /// Registers a watcher on `stream` and queues its created response. Never blocks.
    pub fn add_watcher(self: &Arc<Self>, stream: u64, spec: WatchSpec) -> Option<u64> {
        let mut s = self.state.lock();
        let sink = s.streams.get(&stream)?.sink.clone();
        let key = s.next_key;
        s.next_key += 1;
        let current = s.notified;
        let start = if spec.start_revision <= 0 { current + 1 } else { spec.start_revision };
        let created = WatchResponse {
            header: self.header(current),
            watch_id: spec.watch_id,
            created: true,
            ..Default::default()
        };
        let created_pending = sink.try_send(created).is_err();
        if spec.prev_kv {
            self.prev_kv_watchers.fetch_add(1, Ordering::SeqCst);
        }
        let synced = start > current && !created_pending;
        s.watchers.insert(
            key,
            Watcher {
                stream,
                spec,
                synced,
                next_revision: start,
                created_pending,
                created_revision: current,
                active_since_tick: false,
                canceled: Arc::new(AtomicBool::new(false)),
                send_guard: Arc::new(tokio::sync::Mutex::new(())),
            },
        );
        s.streams.get_mut(&stream).expect("checked above").watchers.insert(key);
        drop(s);
        if !synced {
            self.spawn_catch_up(key);
        }
        Some(key)
    }

    /// Removes a watcher; the caller then queues the cancel response under the guard, so no
    /// catch-up send can follow it.
    pub fn remove_watcher(&self, key: u64) -> Option<Canceled> {
        let mut s = self.state.lock();
        let w = s.watchers.remove(&key)?;
        self.retire(&w);
        let st = s.streams.get_mut(&w.stream)?;
        st.watchers.remove(&key);
        Some(Canceled { sink: st.sink.clone(), send_guard: w.send_guard })
    }

    /// Answers a stream-wide progress request (etcd's `WatchProgressRequest`): one response
    /// with `watch_id = -1` at the notified revision, queued behind every event it covers.
    /// If some watcher of the stream is catching up, the answer waits until it is synced.
    pub fn request_progress(self: &Arc<Self>, stream: u64) {
        let mut s = self.state.lock();
        let Some(st) = s.streams.get_mut(&stream) else { return };
        st.progress_pending = true;
        self.flush_pending_progress(&mut s, stream);
    }

    /// Called by the apply path once the writes up to `revision` reached the engine, with
    /// their events (possibly of several revisions, in order). Never blocks: a watcher whose
    /// channel is full moves to catch-up from the first of these revisions.
    pub fn notify(self: &Arc<Self>, revision: i64, events: &[Event], prev_kv_complete: bool) {
        let first = events.first().and_then(|e| e.kv.as_ref()).map_or(revision, |kv| kv.mod_revision);
        let mut lagging = Vec::new();
        {
            let mut s = self.state.lock();
            let mut closed = Vec::new();
            let HubState { watchers, streams, .. } = &mut *s;
            for (&key, w) in watchers.iter_mut().filter(|(_, w)| w.synced) {
                let mut selected = w.spec.select(events);
                // A watch may start at a revision this member has not applied yet (it lags
                // the cluster): nothing below its start revision is ever delivered.
                selected.retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= w.next_revision));
                if selected.is_empty() {
                    continue;
                }
                // Where catch-up resumes if this watcher falls behind now.
                let resume_at = first.max(w.next_revision);
                if w.spec.prev_kv && !prev_kv_complete {
                    // Registered after the entry decided not to fetch prev_kv: history has it.
                    w.synced = false;
                    w.next_revision = resume_at;
                    lagging.push(key);
                    continue;
                }
                let resp = WatchResponse {
                    header: self.header(revision),
                    watch_id: w.spec.watch_id,
                    events: selected,
                    ..Default::default()
                };
                let sink = &streams[&w.stream].sink;
                match sink.try_send(resp) {
                    Ok(()) => w.active_since_tick = true,
                    Err(TrySendError::Full(_)) => {
                        w.synced = false;
                        w.next_revision = resume_at;
                        lagging.push(key);
                    }
                    Err(TrySendError::Closed(_)) => closed.push(w.stream),
                }
            }
            s.notified = s.notified.max(revision);
            for stream in closed {
                self.drop_stream(&mut s, stream);
            }
            let owed: Vec<u64> = s.streams.iter().filter(|(_, st)| st.progress_pending).map(|(id, _)| *id).collect();
            for stream in owed {
                self.flush_pending_progress(&mut s, stream);
            }
        }
        for key in lagging {
            self.slow_watcher_moves.fetch_add(1, Ordering::Relaxed);
            self.spawn_catch_up(key);
        }
    }

    /// Records a compaction; unsynced watchers below it get the compacted response.
    pub fn set_compacted(&self, revision: i64) {
        let mut s = self.state.lock();
        s.compacted = s.compacted.max(revision);
    }

    /// The state machine was replaced by a snapshot at `revision`: every watcher catches up
    /// from where it was (the snapshot carries the history since its compaction).
    pub fn reset_to(self: &Arc<Self>, revision: i64, compacted: i64) {
        let keys: Vec<u64> = {
            let mut s = self.state.lock();
            let before = s.notified;
            s.notified = revision;
            s.compacted = compacted;
            s.watchers
                .iter_mut()
                .filter(|(_, w)| w.synced)
                .map(|(k, w)| {
                    w.synced = false;
                    // A watcher waiting for a future start revision keeps it.
                    w.next_revision = w.next_revision.max(before + 1);
                    *k
                })
                .collect()
        };
        for key in keys {
            self.spawn_catch_up(key);
        }
    }

    /// Periodic progress notifications for idle synced watchers that asked for them.
    pub fn tick_progress(&self) {
        let mut s = self.state.lock();
        let notified = s.notified;
        let HubState { watchers, streams, .. } = &mut *s;
        for w in watchers.values_mut() {
            if !w.synced || !w.spec.progress_notify {
                continue;
            }
            if !std::mem::take(&mut w.active_since_tick) {
                let resp =
                    WatchResponse { header: self.header(notified), watch_id: w.spec.watch_id, ..Default::default() };
                let _ = streams[&w.stream].sink.try_send(resp);
            }
        }
    }

    fn spawn_catch_up(self: &Arc<Self>, key: u64) {
        let hub = self.clone();
        tokio::spawn(async move {
            if let Err(e) = hub.catch_up(key).await {
                tracing::warn!(error = %e, "watch catch-up failed; closing the watcher");
                if let Some(c) = hub.remove_watcher(key) {
                    let _guard = c.send_guard.lock().await;
                    let _ = c
                        .sink
                        .send(WatchResponse {
                            header: hub.header(hub.notified_revision()),
                            canceled: true,
                            cancel_reason: e.to_string(),
                            ..Default::default()
                        })
                        .await;
                }
            }
        });
    }

    /// Feeds an unsynced watcher from history until it can re-join the synced set.
    async fn catch_up(self: &Arc<Self>, key: u64) -> Result<()> {
        loop {
            let (spec, sink, guard, canceled, next, target, compacted, created_pending, created_rev) = {
                let mut guard = self.state.lock();
                let s = &mut *guard;
                let notified = s.notified;
                let compacted = s.compacted;
                let Some(w) = s.watchers.get_mut(&key) else {
                    return Ok(());
                };
                if w.synced {
                    return Ok(());
                }
                if !w.created_pending && w.next_revision > notified {
                    // Caught up, decided under the lock that `notify` takes: the next
                    // revision it offers is exactly the one this watcher needs.
                    w.synced = true;
                    let stream = w.stream;
                    self.flush_pending_progress(s, stream);
                    return Ok(());
                }
                let sink = s.streams[&w.stream].sink.clone();
                (
                    w.spec.clone(),
                    sink,
                    w.send_guard.clone(),
                    w.canceled.clone(),
                    w.next_revision,
                    notified,
                    compacted,
                    w.created_pending,
                    w.created_revision,
                )
            };
            let _g = guard.lock().await;
            if canceled.load(Ordering::SeqCst) {
                return Ok(());
            }
            if created_pending {
                let created = WatchResponse {
                    header: self.header(created_rev),
                    watch_id: spec.watch_id,
                    created: true,
                    ..Default::default()
                };
                if sink.send(created).await.is_err() {
                    return Ok(());
                }
                if let Some(w) = self.state.lock().watchers.get_mut(&key) {
                    w.created_pending = false;
                }
                continue;
            }
            if next < compacted {
                // etcd: the watcher is told the compact revision and canceled.
                let resp = WatchResponse {
                    header: self.header(target),
                    watch_id: spec.watch_id,
                    canceled: true,
                    compact_revision: compacted,
                    cancel_reason: "mvcc: required revision has been compacted".into(),
                    ..Default::default()
                };
                drop(_g);
                self.remove_watcher(key);
                let _ = sink.send(resp).await;
                return Ok(());
            }
            let engine = self.engine.clone();
            let batch = self.config.catch_up_batch;
            let read_spec = spec.clone();
            let chunk = tokio::task::spawn_blocking(move || -> Result<Option<history::HistoryChunk>> {
                let view = engine.view();
                let (_, view_compacted) = meta::revisions(&*view)?;
                if next < view_compacted {
                    return Ok(None);
                }
                history::events_between(&*view, next, target, batch, read_spec.prev_kv, |k| read_spec.range.contains(k))
                    .map(Some)
            })
            .await
            .map_err(|e| crate::error::StoreError::io("watch catch-up task", e))??;
            let Some(chunk) = chunk else {
                // Compacted between our check and the read: loop to send the compacted
                // response with the up-to-date compact revision.
                drop(_g);
                let (_, c) = meta::revisions(&*self.engine.view())?;
                self.set_compacted(c);
                continue;
            };
            let events: Vec<Event> = chunk.events.into_iter().filter(|e| spec.wants(e)).collect();
            if !events.is_empty() {
                let resp = WatchResponse {
                    header: self.header(chunk.covered_through),
                    watch_id: spec.watch_id,
                    events,
                    ..Default::default()
                };
                if sink.send(resp).await.is_err() {
                    return Ok(());
                }
            }
            match self.state.lock().watchers.get_mut(&key) {
                Some(w) => {
                    w.next_revision = chunk.covered_through + 1;
                    w.active_since_tick = true;
                }
                None => return Ok(()),
            }
        }
    }

    /// Answers an owed progress request if every watcher of the stream is synced (then every
    /// event up to the notified revision is already queued ahead of it). If the channel is
    /// full, a task waits for room and answers then, deciding the revision at that moment.
    fn flush_pending_progress(self: &Arc<Self>, s: &mut HubState, stream: u64) {
        let Some(st) = s.streams.get(&stream) else { return };
        if !st.progress_pending || !st.watchers.iter().all(|k| s.watchers.get(k).is_some_and(|w| w.synced)) {
            return;
        }
        let resp = WatchResponse { header: self.header(s.notified), watch_id: -1, ..Default::default() };
        let st = s.streams.get_mut(&stream).expect("checked");
        match st.sink.try_send(resp) {
            Ok(()) | Err(TrySendError::Closed(_)) => st.progress_pending = false,
            Err(TrySendError::Full(_)) => {
                let hub = self.clone();
                let sink = st.sink.clone();
                tokio::spawn(async move {
                    let Ok(permit) = sink.reserve().await else { return };
                    let mut guard = hub.state.lock();
                    let s = &mut *guard;
                    let Some(st) = s.streams.get(&stream) else { return };
                    let all_synced = st.watchers.iter().all(|k| s.watchers.get(k).is_some_and(|w| w.synced));
                    if st.progress_pending && all_synced {
                        permit.send(WatchResponse {
                            header: hub.header(s.notified),
                            watch_id: -1,
                            ..Default::default()
                        });
                        s.streams.get_mut(&stream).expect("checked").progress_pending = false;
                    }
                    // Otherwise a watcher fell behind again: its re-sync answers the request.
                });
            }
        }
    }
}
