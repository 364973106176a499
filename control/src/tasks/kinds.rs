//! The shared informers of every served kind, seen alike: for the tasks that handle
//! objects of any kind by their metadata or their JSON (the garbage collector, the
//! ResourceQuota controller). Each kind is still one typed shared informer, so a kind
//! another controller follows costs no second watch.
//!
//! [`Cached`] entries carry the informer store's own `Arc`: its address identifies an
//! unchanged object across passes (the reflector replaces the `Arc` when the object
//! changes), which is how those tasks avoid converting every object on every pass.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::workqueue::Informers;
use crate::resource::builtin_types::{self, BuiltinKind, KindVisitor};
use crate::resource::table::{ResourceInfo, RESOURCES};

/// One cached object of some kind.
#[derive(Clone)]
pub struct Cached {
    object: Arc<dyn Any + Send + Sync>,
    meta: fn(&(dyn Any + Send + Sync)) -> &ObjectMeta,
    json: fn(&(dyn Any + Send + Sync)) -> Value,
}

impl Cached {
    /// Identifies this version of the object for as long as the entry is held.
    pub fn address(&self) -> usize {
        Arc::as_ptr(&self.object) as *const () as usize
    }

    pub fn meta(&self) -> &ObjectMeta {
        (self.meta)(self.object.as_ref())
    }

    /// The object as the API serves it (a conversion: callers keep the result).
    pub fn to_json(&self) -> Value {
        (self.json)(self.object.as_ref())
    }
}

/// The shared informer of one served kind.
#[derive(Clone)]
pub struct KindStore {
    pub info: &'static ResourceInfo,
    objects: Arc<dyn Fn() -> Vec<Cached> + Send + Sync>,
}

impl KindStore {
    /// The objects cached now.
    pub fn objects(&self) -> Vec<Cached> {
        (self.objects)()
    }
}

impl fmt::Debug for KindStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindStore").field("kind", &self.info.kind).finish()
    }
}

fn store_of<K>(informers: &Informers, info: &'static ResourceInfo) -> KindStore
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + fmt::Debug + Send + Sync + 'static,
{
    let store: Store<K> = informers.store::<K>();
    let objects = move || {
        store
            .state()
            .into_iter()
            .map(|obj| Cached {
                object: obj,
                meta: |o| o.downcast_ref::<K>().expect("an entry holds its kind").meta(),
                json: |o| {
                    serde_json::to_value(o.downcast_ref::<K>().expect("an entry holds its kind")).unwrap_or_default()
                },
            })
            .collect()
    };
    KindStore { info, objects: Arc::new(objects) }
}

/// What a task derived from cached objects, kept from one pass to the next by the cached
/// object's address: the informers keep an unchanged object's `Arc`, so an unchanged object
/// is not converted again (with ten thousand pods, converting every object every second was
/// several percent of the leader's CPU). Each entry holds its [`Cached`], so the address
/// cannot be reused by another object while the entry exists.
pub struct Converted<T> {
    previous: HashMap<usize, (Cached, Arc<T>)>,
    current: HashMap<usize, (Cached, Arc<T>)>,
}

impl<T> Default for Converted<T> {
    fn default() -> Self {
        Converted { previous: HashMap::new(), current: HashMap::new() }
    }
}

impl<T> Converted<T> {
    /// `cached` converted: the last pass's result if the object is unchanged, else
    /// `convert`'s (`None`: the object is skipped, and converted again next pass).
    pub fn get(&mut self, cached: Cached, convert: impl FnOnce(&Cached) -> Option<T>) -> Option<Arc<T>> {
        let address = cached.address();
        if let Some((_, value)) = self.current.get(&address) {
            return Some(value.clone());
        }
        let value = match self.previous.remove(&address) {
            Some((_, value)) => value,
            None => Arc::new(convert(&cached)?),
        };
        self.current.insert(address, (cached, value.clone()));
        Some(value)
    }

    /// The pass is over: what it did not use is dropped.
    pub fn finish_pass(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

/// The informer of the served kind `info` (started on first use).
pub fn store(informers: &Informers, info: &'static ResourceInfo) -> KindStore {
    struct Informer<'a>(&'a Informers, &'static ResourceInfo);
    impl KindVisitor for Informer<'_> {
        type Output = KindStore;
        fn visit<K: BuiltinKind>(self) -> KindStore {
            store_of::<K>(self.0, self.1)
        }
    }
    builtin_types::visit(info.group, info.kind, Informer(informers, info))
        .unwrap_or_else(|| unreachable!("{}.{} is served but has no typed informer here", info.kind, info.group))
}

/// The informers of every served kind (legacy aliases share their canonical kind's)
/// that `keep` accepts.
pub fn kinds_where(informers: &Informers, keep: impl Fn(&ResourceInfo) -> bool) -> Vec<KindStore> {
    RESOURCES.iter().filter(|r| !r.is_alias() && keep(r)).map(|info| store(informers, info)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_served_kind_has_an_informer() {
        let client = kube::Client::new(
            tower::service_fn(|_| async { Err::<http::Response<kube::client::Body>, _>("no server") }),
            "default",
        );
        let informers = Informers::new(client, tokio_util::sync::CancellationToken::new());
        let kinds = kinds_where(&informers, |_| true);
        assert_eq!(kinds.len(), RESOURCES.iter().filter(|r| !r.is_alias()).count());
        assert!(kinds.iter().all(|k| k.objects().is_empty()));
    }
}
