//! The controller runtime the workload controllers are built on, in the spirit of
//! kube-runtime's `Controller`: one builder call says what a controller follows and how
//! its workers run, and the controller itself is only its [`Reconcile`] implementation.
//!
//! ```text
//! Controller::<ReplicaSet>::new("replicaset", &ctx.informers)
//!     .owns::<Pod>(|rs| rs.spec.as_ref().map(|s| &s.selector))
//!     .workers(8)
//!     .resync_every(Duration::from_secs(30))
//!     .run(reconciler, cancel)
//!     .await;
//! ```
//!
//! * the primary kind `K`: each change enqueues the object's key;
//! * [`Controller::owns`]: a child kind whose changes enqueue their controlling owner (or,
//!   for an orphan, every owner whose selector matches: it may be adopted);
//! * [`Controller::watches`]: any other kind, with a mapper from its changes to keys;
//! * a re-list of the primary or an owned kind, and every `resync_every`, enqueues every
//!   object of `K` (the safety net for missed events).
//!
//! The machinery underneath is [`super::workqueue`]'s: shared informers, a de-duplicating
//! work queue (one key is never reconciled by two workers at once) and the worker loop.
//! The runtime reads the key's object from the primary cache and hands it to
//! [`Reconcile::reconcile`]; an object gone from the cache is [`Reconcile::forget`]-ed.
//! A reconcile returns an [`Action`] (look again after a while, or wait for the next
//! event) or an error, after which the key comes back with per-key exponential back-off.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::workqueue::{child_informer, primary_informer, run_controller, Change, Informers, Key, WorkQueue, Workers};

/// What the runtime does with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the key again after `after` even without an event (something will change
    /// by the clock alone, e.g. a pod becoming available after minReadySeconds).
    pub fn requeue(after: Duration) -> Action {
        Action { requeue_after: Some(after) }
    }

    /// Nothing to do until an event (or the periodic resync) brings the key back.
    pub fn done() -> Action {
        Action { requeue_after: None }
    }
}

/// A plan's optional "look again after": [`Action::requeue`] when set, else [`Action::done`].
impl From<Option<Duration>> for Action {
    fn from(requeue_after: Option<Duration>) -> Action {
        Action { requeue_after }
    }
}

/// A controller's decision-and-act step for objects of kind `K`.
pub trait Reconcile<K>: Send + Sync + 'static {
    /// Why a reconcile failed (logged; the key is retried with back-off).
    type Error: fmt::Display + Send;

    /// Brings the world in line with `obj`, fresh from the cache under `key`.
    fn reconcile(&self, key: &Key, obj: Arc<K>) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// `key`'s object is gone from the cache: drop whatever is remembered about it.
    fn forget(&self, _key: &Key) {}
}

/// Subscribes one followed kind's informer, once the queue and the primary cache exist.
type Subscription<K> = Box<dyn FnOnce(&Informers, &Arc<WorkQueue>, &Arc<Notify>, &Store<K>) + Send>;

/// A controller of kind `K` being described; [`Controller::run`] starts it.
pub struct Controller<K: Resource<DynamicType = ()> + 'static> {
    kind: &'static str,
    informers: Arc<Informers>,
    workers: usize,
    resync_every: Duration,
    subscriptions: Vec<Subscription<K>>,
}

impl<K> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    /// A controller of `K`, named `kind` in logs, over this term's shared `informers`;
    /// one worker and a 30 s resync until told otherwise.
    pub fn new(kind: &'static str, informers: &Arc<Informers>) -> Controller<K> {
        Controller {
            kind,
            informers: informers.clone(),
            workers: 1,
            resync_every: Duration::from_secs(30),
            subscriptions: Vec::new(),
        }
    }

    /// Follows children of kind `C`: a child's change enqueues its controlling `K`, or for
    /// an orphan every `K` of its namespace whose selector (`selector_of`) matches it.
    pub fn owns<C>(mut self, selector_of: fn(&K) -> Option<&LabelSelector>) -> Self
    where
        C: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
        self.subscriptions.push(Box::new(move |informers, queue, resync, primary| {
            child_informer::<C, K>(informers, queue.clone(), resync.clone(), primary.clone(), selector_of);
        }));
        self
    }

    /// Follows kind `W`: each change (a re-list included) enqueues the keys `mapper`
    /// returns for it.
    pub fn watches<W, I>(mut self, mapper: impl Fn(Change<'_, W>) -> I + Send + Sync + 'static) -> Self
    where
        W: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
        I: IntoIterator<Item = Key>,
    {
        self.subscriptions.push(Box::new(move |informers, queue, _, _| {
            let queue = queue.clone();
            informers.subscribe(move |change: Change<'_, W>| mapper(change).into_iter().for_each(|key| queue.add(key)));
        }));
        self
    }

    /// Keys reconciled at once (never the same key twice at once).
    pub fn workers(mut self, count: usize) -> Self {
        self.workers = count;
        self
    }

    /// Every object of `K` is reconciled again this often.
    pub fn resync_every(mut self, period: Duration) -> Self {
        self.resync_every = period;
        self
    }

    /// Subscribes the informers, waits until every one has listed (never decide on a
    /// partial picture), then reconciles with `reconciler` until `cancel`.
    pub async fn run<R: Reconcile<K>>(self, reconciler: Arc<R>, cancel: CancellationToken) {
        let cancel = cancel.child_token();
        let queue = WorkQueue::new(cancel.clone());
        let resync = Arc::new(Notify::new());
        let primary = primary_informer::<K>(&self.informers, queue.clone(), resync.clone());
        for subscribe in self.subscriptions {
            subscribe(&self.informers, &queue, &resync, &primary);
        }
        let workers = Workers { kind: self.kind, count: self.workers, resync_every: self.resync_every };
        let sync = {
            let (primary, queue) = (primary.clone(), queue.clone());
            move |reconciler: Arc<R>, key: Key| {
                let (primary, queue) = (primary.clone(), queue.clone());
                async move { reconcile_key(reconciler.as_ref(), &primary, &queue, key).await }
            }
        };
        run_controller(&self.informers, workers, queue, resync, primary, reconciler, sync, cancel).await;
    }
}

/// One key's turn with a worker: the object's freshest cached state to `reconciler` (or
/// [`Reconcile::forget`] when it is gone), and the [`Action`] carried out on `queue`. An
/// error is returned to the worker loop, which retries the key with back-off.
async fn reconcile_key<K, R>(
    reconciler: &R,
    primary: &Store<K>,
    queue: &Arc<WorkQueue>,
    key: Key,
) -> Result<(), R::Error>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    R: Reconcile<K>,
{
    let Some(obj) = primary.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
        reconciler.forget(&key);
        return Ok(());
    };
    let action = reconciler.reconcile(&key, obj).await?;
    if let Some(after) = action.requeue_after {
        queue.add_after(key, after);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::{reflector, watcher};

    use super::*;

    /// Records what the runtime asked of it and answers with `answer`.
    struct Recording {
        answer: Result<Action, String>,
        reconciled: Mutex<Vec<String>>,
        forgotten: Mutex<Vec<Key>>,
    }

    impl Recording {
        fn answering(answer: Result<Action, String>) -> Recording {
            Recording { answer, reconciled: Mutex::default(), forgotten: Mutex::default() }
        }
    }

    impl Reconcile<ConfigMap> for Recording {
        type Error = String;

        async fn reconcile(&self, _key: &Key, obj: Arc<ConfigMap>) -> Result<Action, String> {
            self.reconciled.lock().unwrap().push(obj.metadata.name.clone().unwrap_or_default());
            self.answer.clone()
        }

        fn forget(&self, key: &Key) {
            self.forgotten.lock().unwrap().push(key.clone());
        }
    }

    /// A primary cache holding one ConfigMap, `default/web`.
    fn cache_with_web() -> Store<ConfigMap> {
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let metadata = ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), ..Default::default() };
        writer.apply_watcher_event(&watcher::Event::Apply(ConfigMap { metadata, ..Default::default() }));
        reader
    }

    #[test]
    fn a_plans_optional_requeue_is_an_action() {
        let after = Duration::from_millis(1500);
        assert_eq!(Action::from(Some(after)), Action::requeue(after));
        assert_eq!(Action::from(None), Action::done());
    }

    #[tokio::test]
    async fn a_requeue_brings_the_key_back_after_its_delay() {
        let queue = WorkQueue::new(CancellationToken::new());
        let reconciler = Recording::answering(Ok(Action::requeue(Duration::from_millis(20))));
        let key = Key::new("default", "web");
        reconcile_key(&reconciler, &cache_with_web(), &queue, key.clone()).await.unwrap();
        assert_eq!(*reconciler.reconciled.lock().unwrap(), ["web"]);
        assert!(queue.is_empty(), "not before its delay");
        let back = tokio::time::timeout(Duration::from_secs(5), queue.next()).await;
        assert_eq!(back.expect("requeued").as_ref(), Some(&key));
    }

    #[tokio::test]
    async fn done_waits_for_the_next_event() {
        let queue = WorkQueue::new(CancellationToken::new());
        let reconciler = Recording::answering(Ok(Action::done()));
        reconcile_key(&reconciler, &cache_with_web(), &queue, Key::new("default", "web")).await.unwrap();
        assert_eq!(reconciler.reconciled.lock().unwrap().len(), 1);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_failure_goes_back_to_the_worker_loop() {
        let queue = WorkQueue::new(CancellationToken::new());
        let reconciler = Recording::answering(Err("conflict".into()));
        let result = reconcile_key(&reconciler, &cache_with_web(), &queue, Key::new("default", "web")).await;
        assert_eq!(result, Err("conflict".to_string()));
    }

    #[tokio::test]
    async fn an_object_gone_from_the_cache_is_forgotten_not_reconciled() {
        let queue = WorkQueue::new(CancellationToken::new());
        let reconciler = Recording::answering(Ok(Action::requeue(Duration::ZERO)));
        let gone = Key::new("default", "gone");
        reconcile_key(&reconciler, &cache_with_web(), &queue, gone.clone()).await.unwrap();
        assert!(reconciler.reconciled.lock().unwrap().is_empty());
        assert_eq!(*reconciler.forgotten.lock().unwrap(), [gone]);
        assert!(queue.is_empty());
    }
}
