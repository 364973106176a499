//! The api-watch workload: Kubernetes list+watch of ConfigMaps under faults. Writers
//! create, replace and delete a few ConfigMaps through the API of their server; watchers
//! list, then watch with bookmarks from the list's resourceVersion, ending each session
//! after a few seconds (or when it breaks) and resuming from the last resourceVersion they
//! saw on the next server — re-listing after `410 Gone`. After healing the harness reads
//! the store's history of the ConfigMaps' keys through the etcd API, the reference of
//! [`crate::checker::api_watch`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{api_client_loop, Completion, WorkloadCtx};
use crate::history::{Call, OpType};
use crate::kube_api::{deadline, resource_version, NAMESPACE};

const NAMES: usize = 8;
/// Longer than the servers' bookmark interval (5 s): a silent stream is a broken one.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The writers (workers `0..concurrency - watchers`).
pub fn spawn_writers(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    let writers = ctx.concurrency - super::watch::watcher_count(ctx.concurrency);
    (0..writers)
        .map(|w| {
            let generate = |rng: &mut StdRng| {
                let name = format!("cm-{}", rng.random_range(0..NAMES));
                let action = *["create", "update", "update", "delete"].choose(rng).unwrap_or(&"update");
                Call::ConfigMapWrite { name, action: action.into(), resource_version: None }
            };
            tokio::spawn(api_client_loop(ctx.clone(), w, generate, execute))
        })
        .collect()
}

fn config_map(name: &str, value: u64) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some([("v".to_string(), value.to_string())].into());
    cm
}

async fn execute(client: kube::Client, call: Call) -> Completion {
    let Call::ConfigMapWrite { name, action, .. } = call else {
        return Completion { kind: OpType::Fail, error: Some("not a configmap write".into()), call };
    };
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let timeout = Duration::from_secs(2);
    let value = rand::random::<u64>();
    let done =
        |rv: Option<u64>| Call::ConfigMapWrite { name: name.clone(), action: action.clone(), resource_version: rv };
    let result = match action.as_str() {
        "create" => deadline(timeout, api.create(&PostParams::default(), &config_map(&name, value)))
            .await
            .map(|cm| Some(resource_version(cm.resource_version()))),
        // No resourceVersion in the object: an unconditional update.
        "update" => deadline(timeout, api.replace(&name, &PostParams::default(), &config_map(&name, value)))
            .await
            .map(|cm| Some(resource_version(cm.resource_version()))),
        _ => deadline(timeout, api.delete(&name, &DeleteParams::default())).await.map(|_| None),
    };
    match result {
        Ok(rv) => Completion::ok(done(rv)),
        Err(e) => Completion::from_error(done(None), e, false),
    }
}

/// The running watchers and how far each has got (for the final catch-up).
pub struct Watchers {
    pub handles: Vec<tokio::task::JoinHandle<()>>,
    progress: Arc<Vec<AtomicU64>>,
}

impl Watchers {
    /// Whether every watcher has seen resourceVersion `rv` (an event or a bookmark).
    pub fn caught_up(&self, rv: u64) -> bool {
        self.progress.iter().all(|p| p.load(Ordering::Relaxed) >= rv)
    }
}

/// The watchers (the last `watcher_count` workers).
pub fn spawn_watchers(ctx: &Arc<WorkloadCtx>, stop: CancellationToken) -> Watchers {
    let count = super::watch::watcher_count(ctx.concurrency);
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let first = ctx.concurrency - count;
    let handles = (0..count)
        .map(|i| {
            let (ctx, stop, progress) = (ctx.clone(), stop.clone(), progress.clone());
            tokio::spawn(async move { watcher_loop(ctx, first + i, stop, &progress[i]).await })
        })
        .collect();
    Watchers { handles, progress }
}

/// How a session ended.
enum Ended {
    /// At this resourceVersion (deliberately or by a break): resume from it.
    At(u64),
    /// `410 Gone`: re-list.
    Gone,
}

async fn watcher_loop(ctx: Arc<WorkloadCtx>, worker: usize, stop: CancellationToken, progress: &AtomicU64) {
    let mut rng = ctx.rng_for(worker);
    let process = worker as i64;
    let mut resume: Option<u64> = None;
    let mut attempt = worker;
    while !stop.is_cancelled() {
        attempt += 1;
        let (node, url) = ctx.api[attempt % ctx.api.len()].clone();
        let Ok(client) = crate::kube_api::client(&url, WATCH_READ_TIMEOUT) else { return };
        let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
        let from = match resume {
            Some(rv) => rv,
            None => match deadline(ctx.op_timeout, api.list(&ListParams::default())).await {
                Ok(list) => {
                    let rv = resource_version(list.metadata.resource_version.clone());
                    let items = list.items.iter().map(|cm| (cm.name_any(), resource_version(cm.resource_version())));
                    let call = Call::ConfigMapList { items: items.collect(), resource_version: rv };
                    ctx.recorder.record(process, OpType::Ok, &node, call, None);
                    progress.fetch_max(rv, Ordering::Relaxed);
                    rv
                }
                Err(e) => {
                    let call = Call::ConfigMapList { items: vec![], resource_version: 0 };
                    ctx.recorder.record(process, OpType::Fail, &node, call, Some(e.message));
                    pause(&stop).await;
                    continue;
                }
            },
        };
        let lifetime = Duration::from_millis(rng.random_range(2000..6000));
        resume = match session(&ctx, &api, &node, process, from, lifetime, &stop, progress).await {
            Ended::At(rv) => Some(rv),
            Ended::Gone => None,
        };
        pause(&stop).await;
    }
}

/// A short pause so a dead server is not hammered; bounded by the stop token.
async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        _ = stop.cancelled() => {}
    }
}

/// One watch from `from` until `lifetime`, `stop`, a break or an ERROR event.
#[allow(clippy::too_many_arguments)]
async fn session(
    ctx: &WorkloadCtx,
    api: &Api<ConfigMap>,
    node: &str,
    process: i64,
    from: u64,
    lifetime: Duration,
    stop: &CancellationToken,
    progress: &AtomicU64,
) -> Ended {
    let record = |kind, call, error| ctx.recorder.record(process, kind, node, call, error);
    record(OpType::Ok, Call::ApiWatch { resource_version: from }, None);
    let mut last = from;
    let params = WatchParams::default().timeout(30);
    let end = |kind, error: Option<String>, last: u64| {
        record(kind, Call::ApiWatchEnd { resource_version: last }, error);
    };
    let stream = match deadline(ctx.op_timeout, api.watch(&params, &from.to_string())).await {
        Ok(s) => s,
        Err(e) => {
            let gone = e.message.starts_with("410");
            end(OpType::Info, Some(e.message), last);
            return if gone { Ended::Gone } else { Ended::At(last) };
        }
    };
    let mut stream = std::pin::pin!(stream);
    let until = tokio::time::sleep(lifetime);
    let mut until = std::pin::pin!(until);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = &mut until => { end(OpType::Ok, None, last); return Ended::At(last); }
            _ = stop.cancelled() => { end(OpType::Ok, None, last); return Ended::At(last); }
        };
        let (event, name, rv) = match next {
            Some(Ok(WatchEvent::Added(cm))) => ("ADDED", cm.name_any(), resource_version(cm.resource_version())),
            Some(Ok(WatchEvent::Modified(cm))) => ("MODIFIED", cm.name_any(), resource_version(cm.resource_version())),
            Some(Ok(WatchEvent::Deleted(cm))) => ("DELETED", cm.name_any(), resource_version(cm.resource_version())),
            Some(Ok(WatchEvent::Bookmark(b))) => {
                ("BOOKMARK", String::new(), resource_version(Some(b.metadata.resource_version)))
            }
            Some(Ok(WatchEvent::Error(status))) => {
                end(OpType::Info, Some(format!("{} {}", status.code, status.message)), last);
                return if status.code == 410 { Ended::Gone } else { Ended::At(last) };
            }
            Some(Err(e)) => {
                end(OpType::Info, Some(e.to_string()), last);
                return Ended::At(last);
            }
            None => {
                end(OpType::Info, Some("stream ended".into()), last);
                return Ended::At(last);
            }
        };
        record(OpType::Ok, Call::ApiWatchEvent { event: event.into(), name, resource_version: rv }, None);
        last = last.max(rv);
        progress.fetch_max(last, Ordering::Relaxed);
    }
}

/// After healing: the store's history of the workload's ConfigMap keys, read through the
/// etcd API (see [`super::watch::record_final_history_of`]); returns the revision of the
/// last change.
pub async fn record_final_history(ctx: &WorkloadCtx, patience: Duration) -> Option<u64> {
    let prefix = crate::checker::api_watch::KEY_PREFIX;
    super::watch::record_final_history_of(ctx, prefix, patience).await.ok().map(|rev| rev.max(0) as u64)
}
