//! The watch cache: one store watch per resource type feeds an in-memory copy of every
//! object of that type and a window of recent events; API watches and
//! `resourceVersion=0` lists are served from it.
//!
//! However many clients watch pods, the store sees one watcher per resource. Each API
//! watcher has a [`Filter`] (namespace, name, label and field selectors) evaluated on the
//! object before *and* after each change, so a pod that starts matching (say it is bound to
//! the watcher's node) arrives as `ADDED` and one that stops matching as `DELETED`, as
//! kube-apiserver's cacher does. Events reach each watcher in revision order through a
//! bounded channel; a watcher that cannot keep up is dropped (the client re-watches from
//! its last resourceVersion, as with a real API server).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use berth_proto::etcdserverpb::WatchCreateRequest;
use berth_proto::keys::prefix_end;
use berth_proto::mvccpb::event::EventType as StoreEventType;
use berth_proto::selectors::{FieldSelector, LabelSelector};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::registry::object;
use crate::registry::storage::{self, Storage};
use crate::resource::ApiError;
use crate::resource::{ResourceInfo, RESOURCES};

/// Recent events kept per resource for watches that resume from a resourceVersion: at most
/// this many…
const HISTORY: usize = 10_000;
/// …and none older than this, beyond the newest [`HISTORY_MIN`]. Each event holds a whole
/// object version, so a count alone made memory follow the history of busy kinds (pods,
/// events, leases: thousands of old versions) rather than the live data. kube-apiserver's
/// watch cache keeps 75 s of events; twice that here. An older resourceVersion gets 410
/// Gone and clients re-list, as with kube-apiserver.
const HISTORY_MAX_AGE: Duration = Duration::from_secs(150);
/// Events always kept, however old (a quiet kind can still resume recent watches).
const HISTORY_MIN: usize = 100;
/// Events buffered per API watcher before it is considered too slow and dropped.
const WATCHER_BUFFER: usize = 2_048;
/// How often an idle cache asks the store for progress (so bookmarks and
/// "not older than" reads advance although nothing of this type changes).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often a watcher that allows bookmarks gets one.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// How long a reader waits for the cache to reach a revision it asked for.
pub const CATCH_UP: Duration = Duration::from_secs(3);
/// Pause before re-listing after the store watch failed.
const RELIST_BACKOFF: Duration = Duration::from_millis(500);

/// Drops the events the history no longer keeps (see [`HISTORY`], [`HISTORY_MAX_AGE`]);
/// returns the revision of the last one dropped (every later event is still there).
fn trim_history(history: &mut VecDeque<CacheEvent>, now: Instant) -> Option<i64> {
    let mut dropped = None;
    while history.len() > HISTORY
        || (history.len() > HISTORY_MIN && history.front().is_some_and(|e| now.duration_since(e.at) > HISTORY_MAX_AGE))
    {
        dropped = history.pop_front().map(|e| e.revision);
    }
    dropped
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, as the cache saw it.
#[derive(Debug, Clone)]
struct CacheEvent {
    kind: EventType,
    /// For deletes: the last state, stamped with the deletion's revision.
    object: Arc<Value>,
    prev: Option<Arc<Value>>,
    revision: i64,
    /// When the cache received it (for [`HISTORY_MAX_AGE`]).
    at: Instant,
}

/// What an API watcher receives.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Event(EventType, Arc<Value>),
    Bookmark(i64),
}

/// Which objects a list or watch wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if object::namespace(obj) != Some(ns.as_str()) {
                return false;
            }
        }
        if !self.labels.is_empty() && !self.labels.matches(&object::labels(obj)) {
            return false;
        }
        self.fields.matches(|f| object::field_value(self.resource, obj, f).ok().flatten())
    }

    /// The event this watcher sees for a change from `prev` to `object`, if any.
    fn view(&self, e: &CacheEvent) -> Option<(EventType, Arc<Value>)> {
        let now = self.matches(&e.object);
        let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
        match (e.kind, before, now) {
            (EventType::Deleted, _, true) => Some((EventType::Deleted, e.object.clone())),
            (EventType::Deleted, _, false) => None,
            (_, true, true) => Some((EventType::Modified, e.object.clone())),
            (_, false, true) => Some((EventType::Added, e.object.clone())),
            (_, true, false) => {
                // It left this watcher's view: DELETED with its previous state at this revision.
                let mut gone = e.prev.as_deref().cloned().unwrap_or_default();
                object::set_resource_version(&mut gone, e.revision);
                Some((EventType::Deleted, Arc::new(gone)))
            }
            (_, false, false) => None,
        }
    }
}

struct Watcher {
    filter: Filter,
    sink: mpsc::Sender<WatchItem>,
    bookmarks: bool,
    last_bookmark: Instant,
}

#[derive(Default)]
struct State {
    ready: bool,
    revision: i64,
    /// Bumped whenever `objects` changes (the revision also moves on progress
    /// notifications): what memos of the objects are keyed on.
    generation: u64,
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<CacheEvent>,
    /// Every event after this revision is in `history`.
    oldest: i64,
    watchers: HashMap<u64, Watcher>,
    next_watcher: u64,
}

/// The cache of one resource type.
pub struct Cacher {
    info: &'static ResourceInfo,
    state: Mutex<State>,
    revision: watch::Sender<i64>,
}

/// A registered API watch: the events to send first, then the live channel.
pub struct Subscription {
    pub initial: Vec<WatchItem>,
    pub events: mpsc::Receiver<WatchItem>,
    pub id: u64,
    pub cacher: Arc<Cacher>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cacher.state.lock().expect("cache lock").watchers.remove(&self.id);
    }
}

impl Cacher {
    fn new(info: &'static ResourceInfo) -> Arc<Cacher> {
        Arc::new(Cacher { info, state: Mutex::new(State::default()), revision: watch::channel(0).0 })
    }

    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    pub fn watcher_count(&self) -> usize {
        self.state.lock().expect("cache lock").watchers.len()
    }

    /// Changes whenever the cached objects change (see `State::generation`). Read it
    /// before the objects: a memo built from a later view keyed on an earlier generation is
    /// only rebuilt once more.
    pub fn generation(&self) -> u64 {
        self.state.lock().expect("cache lock").generation
    }

    /// Waits (bounded) until the cache has seen `revision`.
    async fn catch_up(&self, revision: i64) -> Result<(), ApiError> {
        let mut rx = self.revision.subscribe();
        let ready = |s: &State| s.ready;
        let result = tokio::time::timeout(CATCH_UP, async {
            loop {
                if *rx.borrow_and_update() >= revision && ready(&self.state.lock().expect("cache lock")) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match result {
            Ok(()) if self.revision() >= revision => Ok(()),
            _ => {
                Err(ApiError::Timeout(format!("Too large resource version: {revision}, current: {}", self.revision())))
            }
        }
    }

    /// Objects matching `filter` as the cache holds them now, without waiting for it to
    /// catch up (a possibly stale view, as an informer's: what the authorizer reads, which
    /// must not stall requests while the cache re-lists after a leader change).
    pub fn current(&self, filter: &Filter) -> Vec<Arc<Value>> {
        let state = self.state.lock().expect("cache lock");
        state.objects.values().filter(|o| filter.matches(o)).cloned().collect()
    }

    /// The object at store key `key` as the cache holds it now (see [`Cacher::current`]).
    pub fn current_object(&self, key: &str) -> Option<Arc<Value>> {
        self.state.lock().expect("cache lock").objects.get(key).cloned()
    }

    /// Objects matching `filter` as of a revision at least `min_revision`, in key order.
    pub async fn list(&self, filter: &Filter, min_revision: i64) -> Result<(Vec<Arc<Value>>, i64), ApiError> {
        self.catch_up(min_revision.max(1)).await?;
        let state = self.state.lock().expect("cache lock");
        let items = state.objects.values().filter(|o| filter.matches(o)).cloned().collect();
        Ok((items, state.revision))
    }

    /// Registers a watch. `from`: `None` starts with the current objects as ADDED events
    /// (resourceVersion unset or 0); `Some(n)` replays every change after `n`.
    pub async fn watch(
        self: &Arc<Self>,
        filter: Filter,
        from: Option<i64>,
        bookmarks: bool,
    ) -> Result<Subscription, ApiError> {
        self.catch_up(from.unwrap_or(1).max(1)).await?;
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let mut state = self.state.lock().expect("cache lock");
        let initial: Vec<WatchItem> = match from {
            None => state
                .objects
                .values()
                .filter(|o| filter.matches(o))
                .map(|o| WatchItem::Event(EventType::Added, o.clone()))
                .collect(),
            Some(n) if n < state.oldest => {
                return Err(ApiError::Expired(format!("too old resource version: {n} ({})", state.oldest)));
            }
            Some(n) => state
                .history
                .iter()
                .filter(|e| e.revision > n)
                .filter_map(|e| filter.view(e))
                .map(|(k, o)| WatchItem::Event(k, o))
                .collect(),
        };
        let id = state.next_watcher;
        state.next_watcher += 1;
        state.watchers.insert(id, Watcher { filter, sink: tx, bookmarks, last_bookmark: Instant::now() });
        drop(state);
        Ok(Subscription { initial, events: rx, id, cacher: self.clone() })
    }

    /// Applies one store event and fans it out.
    fn apply(
        &self,
        state: &mut State,
        storage: &Storage,
        key: String,
        kind: StoreEventType,
        value: &[u8],
        revision: i64,
    ) {
        let event = match kind {
            StoreEventType::Put => {
                let obj = match storage.decode(key.as_bytes(), value, revision) {
                    Ok(s) => Arc::new(s.object),
                    Err(e) => {
                        tracing::warn!(key, error = %e, "skipping an undecodable object");
                        return;
                    }
                };
                let prev = state.objects.insert(key, obj.clone());
                state.generation += 1;
                let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                CacheEvent { kind, object: obj, prev, revision, at: Instant::now() }
            }
            StoreEventType::Delete => {
                let Some(prev) = state.objects.remove(&key) else { return };
                state.generation += 1;
                let mut gone = (*prev).clone();
                object::set_resource_version(&mut gone, revision);
                CacheEvent {
                    kind: EventType::Deleted,
                    object: Arc::new(gone),
                    prev: Some(prev),
                    revision,
                    at: Instant::now(),
                }
            }
        };
        let mut slow = Vec::new();
        for (id, w) in state.watchers.iter() {
            if let Some((k, o)) = w.filter.view(&event) {
                if w.sink.try_send(WatchItem::Event(k, o)).is_err() {
                    slow.push(*id);
                }
            }
        }
        for id in slow {
            tracing::info!(resource = self.info.plural, watcher = id, "dropping a watcher that fell behind");
            state.watchers.remove(&id);
        }
        state.history.push_back(event);
        if let Some(oldest) = trim_history(&mut state.history, Instant::now()) {
            state.oldest = oldest;
        }
    }

    fn advance(&self, state: &mut State, revision: i64) {
        if revision > state.revision {
            state.revision = revision;
            self.revision.send_replace(revision);
        }
    }

    /// Sends due bookmarks.
    fn bookmark(&self, state: &mut State) {
        let revision = state.revision;
        for w in state.watchers.values_mut() {
            if w.bookmarks && w.last_bookmark.elapsed() >= BOOKMARK_EVERY {
                // A full channel just skips this bookmark; events still flow.
                let _ = w.sink.try_send(WatchItem::Bookmark(revision));
                w.last_bookmark = Instant::now();
            }
        }
    }

    /// Lists and watches the store until `shutdown`; re-lists after any watch failure.
    async fn run(self: Arc<Self>, storage: Storage, shutdown: CancellationToken) {
        let prefix = storage::prefix(self.info, None);
        while !shutdown.is_cancelled() {
            if let Err(e) = self.sync_once(&storage, &prefix, &shutdown).await {
                tracing::debug!(resource = self.info.plural, error = %e, "watch cache re-lists");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(RELIST_BACKOFF) => {}
                }
            }
        }
        // Stopped (the server, or a custom resource no longer served): open watches end.
        self.state.lock().expect("cache lock").watchers.clear();
    }

    async fn sync_once(&self, storage: &Storage, prefix: &str, shutdown: &CancellationToken) -> Result<(), String> {
        let page = storage.scan(prefix, prefix, 0, 0).await.map_err(|e| e.to_string())?;
        {
            let mut state = self.state.lock().expect("cache lock");
            state.objects = page.items.into_iter().map(|s| (s.key, Arc::new(s.object))).collect();
            state.generation += 1;
            state.history.clear();
            state.oldest = page.revision;
            // Watchers of the previous generation may have missed events: end them, the
            // clients re-watch (their resourceVersion is then too old or replayable).
            state.watchers.clear();
            state.revision = page.revision;
            state.ready = true;
            self.revision.send_replace(page.revision);
        }
        let (mut stream, mut rx) = storage.store().watch();
        stream
            .create(WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision: page.revision + 1,
                ..Default::default()
            })
            .await;
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    stream.request_progress();
                    let mut state = self.state.lock().expect("cache lock");
                    self.bookmark(&mut state);
                }
                resp = rx.recv() => {
                    let Some(resp) = resp else { return Err("store watch closed".into()) };
                    if resp.canceled {
                        return Err(format!("store watch canceled: {}", resp.cancel_reason));
                    }
                    let mut state = self.state.lock().expect("cache lock");
                    let mut top = 0;
                    for e in resp.events {
                        let Some(kv) = e.kv else { continue };
                        let kind = StoreEventType::try_from(e.r#type).unwrap_or(StoreEventType::Put);
                        top = top.max(kv.mod_revision);
                        self.apply(&mut state, storage, String::from_utf8_lossy(&kv.key).into_owned(), kind, &kv.value, kv.mod_revision);
                    }
                    let revision = if top > 0 { top } else { resp.header.map_or(0, |h| h.revision) };
                    self.advance(&mut state, revision);
                }
            }
        }
    }
}

/// The caches of every served resource, and the custom resources this server serves.
pub struct WatchCache {
    cachers: HashMap<&'static str, Arc<Cacher>>,
    custom: RwLock<CustomCatalog>,
    storage: Storage,
    shutdown: CancellationToken,
}

/// The custom resources served now (from the CRDs in the CRD cache) and their cachers,
/// by store key root. A custom resource's cacher starts with its first use and stops
/// when no served definition stores objects there any more.
#[derive(Default)]
struct CustomCatalog {
    resources: Vec<&'static ResourceInfo>,
    cachers: HashMap<String, (Arc<Cacher>, CancellationToken)>,
    /// Bumped on every change of `resources` (discovery's ETag).
    generation: u64,
}

impl WatchCache {
    /// Starts one cacher per stored resource, and the task that follows the CRDs.
    pub fn start(storage: &Storage, shutdown: &CancellationToken) -> Arc<WatchCache> {
        let mut cachers = HashMap::new();
        for info in RESOURCES.iter().filter(|r| !r.is_alias()) {
            let c = Cacher::new(info);
            tokio::spawn(c.clone().run(storage.clone(), shutdown.clone()));
            cachers.insert(info.plural, c);
        }
        let cache = Arc::new(WatchCache {
            cachers,
            custom: RwLock::default(),
            storage: storage.clone(),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(cache.clone().follow_definitions());
        cache
    }

    pub fn get(&self, info: &ResourceInfo) -> Arc<Cacher> {
        let info = info.storage();
        if info.custom.is_some() {
            return self.custom_cacher(info);
        }
        self.cachers.get(info.plural).expect("every stored resource has a cacher").clone()
    }

    fn custom_cacher(&self, info: &'static ResourceInfo) -> Arc<Cacher> {
        let root = info.key_root().into_owned();
        if let Some((c, _)) = self.custom.read().expect("catalog lock").cachers.get(&root) {
            if std::ptr::eq(c.info, info) {
                return c.clone();
            }
        }
        let mut catalog = self.custom.write().expect("catalog lock");
        match catalog.cachers.get(&root) {
            Some((c, _)) if std::ptr::eq(c.info, info) => c.clone(),
            _ => {
                // New, or its definition changed (schema, columns): a fresh cache.
                let stop = self.shutdown.child_token();
                let c = Cacher::new(info);
                tokio::spawn(c.clone().run(self.storage.clone(), stop.clone()));
                if let Some((_, old)) = catalog.cachers.insert(root, (c.clone(), stop)) {
                    old.cancel();
                }
                c
            }
        }
    }

    /// A served resource: built-in, or a version of an established CRD.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
        crate::resource::find(group, version, plural).or_else(|| {
            let catalog = self.custom.read().expect("catalog lock");
            catalog.resources.iter().copied().find(|r| r.group == group && r.version == version && r.plural == plural)
        })
    }

    /// The custom resources served now, each CRD's storage version first.
    pub fn custom_resources(&self) -> Vec<&'static ResourceInfo> {
        self.custom.read().expect("catalog lock").resources.clone()
    }

    /// Changes whenever the served custom resources change.
    pub fn custom_generation(&self) -> u64 {
        self.custom.read().expect("catalog lock").generation
    }

    /// Keeps the catalog equal to what the CRDs in the CRD cache define, from every
    /// change of them until shutdown.
    async fn follow_definitions(self: Arc<Self>) {
        let crds = self.get(
            crate::resource::find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are served"),
        );
        let all = Filter { resource: "customresourcedefinitions", ..Filter::default() };
        while !self.shutdown.is_cancelled() {
            let mut sub = match crds.watch(all.clone(), None, false).await {
                Ok(sub) => sub,
                Err(_) => {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RELIST_BACKOFF) => continue,
                    }
                }
            };
            self.reconcile_catalog(&crds.current(&all));
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    item = sub.events.recv() => match item {
                        Some(WatchItem::Event(..)) => {
                            // Several events in a burst: one rebuild after the last.
                            while let Ok(_more) = sub.events.try_recv() {}
                            self.reconcile_catalog(&crds.current(&all));
                        }
                        Some(WatchItem::Bookmark(_)) => {}
                        None => break,
                    }
                }
            }
        }
    }

    fn reconcile_catalog(&self, crds: &[Arc<Value>]) {
        let mut resources: Vec<&'static ResourceInfo> = Vec::new();
        for crd in crds {
            resources.extend(crate::resource::custom::resources_of(crd));
        }
        let mut catalog = self.custom.write().expect("catalog lock");
        let same = resources.len() == catalog.resources.len()
            && resources.iter().zip(&catalog.resources).all(|(a, b)| std::ptr::eq(*a, *b));
        if same {
            return;
        }
        // Caches of resources no definition stores any more stop (their watches end).
        let roots: std::collections::HashSet<String> = resources.iter().map(|r| r.key_root().into_owned()).collect();
        catalog.cachers.retain(|root, (_, stop)| {
            let keep = roots.contains(root);
            if !keep {
                stop.cancel();
            }
            keep
        });
        tracing::info!(resources = resources.len(), "custom resources changed");
        catalog.resources = resources;
        catalog.generation += 1;
    }

    /// API watchers across all resources.
    pub fn watcher_count(&self) -> usize {
        let custom: usize =
            self.custom.read().expect("catalog lock").cachers.values().map(|(c, _)| c.watcher_count()).sum();
        self.cachers.values().map(|c| c.watcher_count()).sum::<usize>() + custom
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: EventType, prev: Option<Value>, obj: Value) -> CacheEvent {
        CacheEvent { kind, object: Arc::new(obj), prev: prev.map(Arc::new), revision: 7, at: Instant::now() }
    }

    #[test]
    fn history_keeps_recent_events_and_a_minimum_of_old_ones() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut history: VecDeque<CacheEvent> = (0..300)
            .map(|i| CacheEvent { revision: i + 1, at: at(i as u64), ..event(EventType::Added, None, json!({})) })
            .collect();
        // At t=299 events from t<149 are too old: revisions 1..=149 go.
        assert_eq!(trim_history(&mut history, at(299)), Some(149));
        assert_eq!(history.front().map(|e| e.revision), Some(150));
        // Much later only the minimum stays.
        assert_eq!(trim_history(&mut history, at(10_000)), Some(200));
        assert_eq!(history.len(), HISTORY_MIN);
        // Nothing to drop: nothing reported.
        assert_eq!(trim_history(&mut history, at(10_000)), None);
    }

    #[test]
    fn filters_see_objects_enter_and_leave() {
        let f = Filter {
            resource: "pods",
            namespace: None,
            labels: LabelSelector::default(),
            fields: FieldSelector::parse("spec.nodeName=n1").unwrap(),
        };
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let moved = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n2"}});
        assert!(f.view(&event(EventType::Added, None, unbound.clone())).is_none());
        let (k, _) = f.view(&event(EventType::Modified, Some(unbound), bound.clone())).unwrap();
        assert_eq!(k, EventType::Added);
        let (k, _) = f.view(&event(EventType::Modified, Some(bound.clone()), bound.clone())).unwrap();
        assert_eq!(k, EventType::Modified);
        let (k, o) = f.view(&event(EventType::Modified, Some(bound.clone()), moved)).unwrap();
        assert_eq!(k, EventType::Deleted);
        assert_eq!(o["spec"]["nodeName"], "n1");
        assert_eq!(o["metadata"]["resourceVersion"], "7");
        let (k, _) = f.view(&event(EventType::Deleted, Some(bound.clone()), bound)).unwrap();
        assert_eq!(k, EventType::Deleted);
    }
}
