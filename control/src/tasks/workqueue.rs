//! The controller machinery the workload controllers share: informers (kube-runtime's
//! watcher → reflector, feeding a local cache) and a client-go style work queue.
//!
//! The queue holds object keys, never objects: a worker reads the freshest cached state
//! when it gets to a key, so ten events about one object cost one reconcile. A key being
//! processed is never handed to a second worker; if it is added meanwhile it is marked
//! dirty and comes back once the worker is done (client-go's `processing`/`dirty` sets).
//! Failed keys come back with exponential back-off; `add_after` is the requeue safety net.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, ObjectMeta};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::owner_index::OwnerIndex;

/// An informer of a controller's own kind: every change enqueues the object's key, and a
/// re-list asks for a full resync.
pub fn primary_informer<K>(informers: &Informers, queue: Arc<WorkQueue>, resync: Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    informers.subscribe(move |change: Change<'_, K>| match change {
        Change::Object { obj, .. } => queue.add(Key::of(obj)),
        Change::Resynced => resync.notify_one(),
    })
}

/// An informer of a controller's children (`C`): a change enqueues the owners it concerns
/// (see [`owners_to_sync`]); a re-list asks for a full resync.
pub fn child_informer<C, O>(
    informers: &Informers,
    queue: Arc<WorkQueue>,
    resync: Arc<Notify>,
    owners: Store<O>,
    selector_of: fn(&O) -> Option<&meta::LabelSelector>,
) -> Store<C>
where
    C: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    O: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    informers.subscribe(move |change: Change<'_, C>| match change {
        Change::Object { obj, .. } => {
            owners_to_sync(&owners, obj.meta(), selector_of).into_iter().for_each(|k| queue.add(k))
        }
        Change::Resynced => resync.notify_one(),
    })
}

/// How a workload controller's workers run.
pub struct Workers {
    /// The controller's name in logs.
    pub kind: &'static str,
    /// Keys synced at once (never the same key twice at once).
    pub count: usize,
    /// Every object is synced again this often, the safety net for missed events.
    pub resync_every: Duration,
}

/// Runs a workload controller whose own objects are `primary`. It first waits until every
/// informer has listed (never decide on a partial picture); then `workers.count` tasks take
/// keys from `queue` and `sync` them (a failure comes back with back-off), while every
/// object of `primary` is enqueued at start, every `resync_every` and whenever an informer
/// re-lists (`resync`); until `cancel`.
#[allow(clippy::too_many_arguments)]
pub async fn run_controller<K, C, S, F, E>(
    informers: &Informers,
    workers: Workers,
    queue: Arc<WorkQueue>,
    resync: Arc<Notify>,
    primary: Store<K>,
    controller: Arc<C>,
    sync: S,
    cancel: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
    C: Send + Sync + 'static,
    S: Fn(Arc<C>, Key) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), E>> + Send,
    E: fmt::Display,
{
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = informers.wait_synced() => {}
    }
    tracing::info!(kind = workers.kind, "controller started");
    let sync_key = move |key: Key| sync(controller.clone(), key);
    let enqueue_all = || primary.state().iter().for_each(|obj| queue.add(Key::of(obj.as_ref())));
    run_workers(workers, queue.clone(), sync_key, enqueue_all, resync, cancel).await;
}

/// The loop of [`run_controller`] once the caches are full.
async fn run_workers<S, F, E>(
    workers: Workers,
    queue: Arc<WorkQueue>,
    sync: S,
    enqueue_all: impl Fn(),
    resync: Arc<Notify>,
    cancel: CancellationToken,
) where
    S: Fn(Key) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), E>> + Send,
    E: fmt::Display,
{
    enqueue_all();
    let Workers { kind, count, resync_every } = workers;
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let (queue, sync) = (queue.clone(), sync.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.next().await {
                    match sync(key.clone()).await {
                        Ok(()) => queue.forget(&key),
                        Err(e) => {
                            tracing::debug!(kind, key = %key, error = %e, "sync failed; retrying");
                            queue.retry(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect();
    let mut tick = tokio::time::interval(resync_every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => enqueue_all(),
            _ = resync.notified() => enqueue_all(),
        }
    }
    for h in handles {
        let _ = h.await;
    }
}

/// The owners of kind `K` a child's event concerns: its controller when that is a `K`, or,
/// for an orphan, every `K` of its namespace whose selector matches (it may be adopted).
fn owners_to_sync<K>(
    owners: &Store<K>,
    child: &ObjectMeta,
    selector_of: impl Fn(&K) -> Option<&meta::LabelSelector>,
) -> Vec<Key>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let ns = child.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = super::ownership::controller_of(child) {
        return if owner.kind == K::kind(&()) { vec![Key::new(ns, &owner.name)] } else { vec![] };
    }
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter(|o| {
            let sel = super::ownership::selector(selector_of(o)).ok().flatten();
            sel.is_some_and(|s| s.matches(super::ownership::labels(child)))
        })
        .map(|o| Key::of(o.as_ref()))
        .collect()
}

/// A namespaced object's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Key {
        Key { namespace: namespace.into(), name: name.into() }
    }

    pub fn of<K: Resource>(obj: &K) -> Key {
        let meta = obj.meta();
        Key::new(meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Default)]
struct QueueState {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
    processing: HashSet<Key>,
    dirty: HashSet<Key>,
    failures: HashMap<Key, u32>,
}

/// A de-duplicating work queue of keys.
pub struct WorkQueue {
    state: Mutex<QueueState>,
    notify: Notify,
    cancel: CancellationToken,
}

impl WorkQueue {
    pub fn new(cancel: CancellationToken) -> Arc<WorkQueue> {
        Arc::new(WorkQueue { state: Mutex::default(), notify: Notify::new(), cancel })
    }

    pub fn add(&self, key: Key) {
        let mut s = self.state.lock().unwrap();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.order.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (unless the queue's owner stopped meanwhile).
    pub fn add_after(self: &Arc<Self>, key: Key, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = queue.cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => queue.add(key),
            }
        });
    }

    /// Requeues a key whose reconcile failed, with per-key exponential back-off.
    pub fn retry(self: &Arc<Self>, key: Key) {
        let n = {
            let mut s = self.state.lock().unwrap();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BACKOFF_BASE.saturating_mul(1 << n.min(16)).min(BACKOFF_MAX);
        self.add_after(key, delay);
    }

    /// Forgets a key's failure history (after a successful reconcile).
    pub fn forget(&self, key: &Key) {
        self.state.lock().unwrap().failures.remove(key);
    }

    /// The next key to process; None once cancelled. Call [`WorkQueue::done`] after.
    pub async fn next(&self) -> Option<Key> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().unwrap();
                if let Some(key) = s.order.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    return Some(key);
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                _ = notified => {}
            }
        }
    }

    pub fn done(&self, key: &Key) {
        let requeue = {
            let mut s = self.state.lock().unwrap();
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if requeue {
            self.add(key.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an informer reports besides keeping its cache.
pub enum Change<'a, K> {
    /// An object was added, modified or deleted (deleted: `deleted` is true).
    Object { obj: &'a K, deleted: bool },
    /// A (re)list completed: the whole cache is fresh.
    Resynced,
}

// By hand: derived impls would ask `K: Clone`, but only a reference is copied.
impl<K> Clone for Change<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Change<'_, K> {}

/// What a subscriber of a shared informer is told after each change is in the cache.
type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send + Sync>;

/// One informer shared by every subscriber of its kind: one watch, one decode per event.
struct Shared<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    handlers: Arc<RwLock<Vec<Handler<K>>>>,
    /// Kept up to date before any handler hears of a change.
    owners: Arc<OwnerIndex<K>>,
}

/// The informers of one leadership term, shared by every leader task (client-go's
/// `SharedInformerFactory`): the ReplicaSet, Deployment and other workload controllers
/// all follow pods, and each private informer cost a watch stream, a JSON encode on the
/// server side and a typed decode per pod event — the leader's largest cost when ten
/// thousand pods are created at once. Each kind's informer starts on its first
/// subscription and stops with the term's cancellation token.
pub struct Informers {
    client: kube::Client,
    cancel: CancellationToken,
    started: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Whether each started informer has completed its first list. Not the reflector
    /// store's own `wait_until_ready`: that future keeps only the last poller's waker, so
    /// with two controllers waiting on one shared store, one of them was never woken.
    synced: Mutex<Vec<watch::Receiver<bool>>>,
}

impl Informers {
    pub fn new(client: kube::Client, cancel: CancellationToken) -> Arc<Informers> {
        Arc::new(Informers { client, cancel, started: Mutex::default(), synced: Mutex::default() })
    }

    /// Waits until every informer started so far (the caller's included) has listed.
    /// Returns early only when the term ends; callers check their cancellation token.
    pub async fn wait_synced(&self) {
        let receivers = self.synced.lock().unwrap().clone();
        for mut synced in receivers {
            let _ = synced.wait_for(|done| *done).await;
        }
    }

    /// The cache of every `K` in the cluster; `on_change` is called after each change
    /// (and after each re-list) from now on. A subscriber joining after the first list
    /// missed the events of the objects already cached: it reads them from the cache
    /// (every controller enqueues all its objects when it starts).
    pub fn subscribe<K>(&self, on_change: impl Fn(Change<'_, K>) + Send + Sync + 'static) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
        let shared = self.shared::<K>();
        shared.handlers.write().unwrap().push(Box::new(on_change));
        shared.store.clone()
    }

    /// The cache of every `K`, for a task that reads it without reacting to changes.
    pub fn store<K>(&self) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
        self.shared::<K>().store.clone()
    }

    /// Which `K`s each controller owns, and each namespace's orphans: what an owner may
    /// claim, without reading every `K` of its namespace. Up to date with the store
    /// before any subscriber hears of a change.
    pub fn owner_index<K>(&self) -> Arc<OwnerIndex<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
        self.shared::<K>().owners.clone()
    }

    /// `K`'s shared informer, started on first use.
    fn shared<K>(&self) -> Arc<Shared<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
        let mut started = self.started.lock().unwrap();
        let entry = started.entry(TypeId::of::<K>()).or_insert_with(|| {
            let handlers: Arc<RwLock<Vec<Handler<K>>>> = Arc::default();
            let (synced_tx, synced_rx) = watch::channel(false);
            self.synced.lock().unwrap().push(synced_rx);
            let api = Api::<K>::all(self.client.clone());
            let owners = Arc::new(OwnerIndex::default());
            let store = start_informer(api, self.cancel.clone(), handlers.clone(), owners.clone(), synced_tx);
            Arc::new(Shared { store, handlers, owners })
        });
        entry.clone().downcast::<Shared<K>>().expect("informers are keyed by their type")
    }
}

/// Starts an informer for `api` that runs until `cancel`: returns its cache, keeps
/// `owners` in step with it, tells every handler after each change is in both, and
/// `synced` once the first list is.
fn start_informer<K>(
    api: Api<K>,
    cancel: CancellationToken,
    handlers: Arc<RwLock<Vec<Handler<K>>>>,
    owners: Arc<OwnerIndex<K>>,
    synced: watch::Sender<bool>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let cache = reader.clone();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = stream.next() => e,
            };
            // The reflector has applied the event to the store before yielding it.
            let change = match &event {
                Some(Ok(watcher::Event::Apply(obj))) => {
                    // The store's own Arc: the index shares the cached object.
                    if let Some(cached) = cache.get(&ObjectRef::from_obj(obj)) {
                        owners.apply(cached);
                    }
                    Change::Object { obj, deleted: false }
                }
                Some(Ok(watcher::Event::Delete(obj))) => {
                    owners.remove(obj.meta());
                    Change::Object { obj, deleted: true }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    owners.rebuild(cache.state());
                    synced.send_replace(true);
                    Change::Resynced
                }
                Some(Ok(_)) => continue,
                // The back-off wrapper retries; the error is only worth a debug line.
                Some(Err(e)) => {
                    tracing::debug!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    continue;
                }
                None => return,
            };
            for handler in handlers.read().unwrap().iter() {
                handler(change);
            }
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_defers_keys_being_processed() {
        let q = WorkQueue::new(CancellationToken::new());
        let a = Key::new("ns", "a");
        q.add(a.clone());
        q.add(a.clone());
        assert_eq!(q.len(), 1);
        let got = q.next().await.unwrap();
        assert_eq!(got, a);
        q.add(a.clone());
        assert_eq!(q.len(), 0, "a key being processed is not handed out twice");
        q.done(&a);
        assert_eq!(q.len(), 1, "added while processing: back after done");
    }

    #[tokio::test]
    async fn next_ends_on_cancel() {
        let cancel = CancellationToken::new();
        let q = WorkQueue::new(cancel.clone());
        cancel.cancel();
        assert!(q.next().await.is_none());
    }
}
