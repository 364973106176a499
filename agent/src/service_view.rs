//! The agent's one watch of Services and EndpointSlices (and Ingresses with their classes),
//! shared by everything on the node that follows them (the service proxy, cluster DNS, the
//! ingress proxy, Service environment variables) — as kubelet and kube-proxy share
//! informers. [`ServiceView::start`] lists and watches both
//! kinds into reflector stores; each consumer waits for changes with its own
//! [`ServiceView::changes`] receiver.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

/// Services and EndpointSlices of the whole cluster, kept current by watches.
#[derive(Clone)]
pub struct ServiceView {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub ingresses: Store<Ingress>,
    pub ingress_classes: Store<IngressClass>,
    /// Bumped on every watch event of any kind.
    generation: watch::Receiver<u64>,
}

/// Watches `K` into a store (a task in `tasks`), bumping `generation` on every event.
fn follow<K>(tasks: &mut tokio::task::JoinSet<()>, api: kube::Api<K>, generation: watch::Sender<u64>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()).default_backoff());
    tasks.spawn(async move {
        let mut stream = stream.boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => generation.send_modify(|g| *g += 1),
                Err(e) => {
                    tracing::warn!(error = %e, kind = K::kind(&()).as_ref(), "watch failed; re-listing after back-off")
                }
            }
        }
    });
    store
}

impl ServiceView {
    /// Starts the watches as tasks of `tasks` (they end when it is dropped).
    pub fn start(client: &kube::Client, tasks: &mut tokio::task::JoinSet<()>) -> ServiceView {
        let (tx, generation) = watch::channel(0);
        let services = follow(tasks, kube::Api::<Service>::all(client.clone()), tx.clone());
        let slices = follow(tasks, kube::Api::<EndpointSlice>::all(client.clone()), tx.clone());
        let ingresses = follow(tasks, kube::Api::<Ingress>::all(client.clone()), tx.clone());
        let ingress_classes = follow(tasks, kube::Api::<IngressClass>::all(client.clone()), tx);
        ServiceView { services, slices, ingresses, ingress_classes, generation }
    }

    /// Waits until both kinds have been listed once.
    pub async fn wait_until_ready(&self) {
        let _ = tokio::join!(self.services.wait_until_ready(), self.slices.wait_until_ready());
    }

    /// A receiver whose `changed()` fires after any later event.
    pub fn changes(&self) -> watch::Receiver<u64> {
        let mut rx = self.generation.clone();
        rx.mark_unchanged();
        rx
    }

    /// The current Services and EndpointSlices.
    pub fn snapshot(&self) -> (Vec<std::sync::Arc<Service>>, Vec<std::sync::Arc<EndpointSlice>>) {
        (self.services.state(), self.slices.state())
    }
}
