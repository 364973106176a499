//! The pod watch: ONE kube-rs watcher for all the nodes of a process, dispatching events to
//! the node workers by `spec.nodeName`. A real agent watches `spec.nodeName=<node>`;
//! hollow nodes watch `spec.nodeName!=` (every bound pod) and ignore pods of other nodes,
//! so 1,000 hollow nodes cost one watch, not 1,000. On every (re)list the watcher's
//! complete listing is handed to each worker as a [`WorkerMsg::Resync`], so pods deleted
//! while the watch was down are noticed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::worker::WorkerMsg;

/// The pod watch's pause between failed attempts: 100 ms doubling up to 10 s, back to
/// 100 ms after any success. kube-rs's default starts at 800 ms, which would be most of a
/// server failover: after the balancer has moved to another server, the first retry
/// should go there at once.
#[derive(Debug, Clone)]
pub struct RetrySoon {
    next: Duration,
}

impl RetrySoon {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);
}

impl Default for RetrySoon {
    fn default() -> Self {
        RetrySoon { next: Self::FIRST }
    }
}

impl Iterator for RetrySoon {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for RetrySoon {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Worker channels by node name.
pub type Dispatch = Arc<HashMap<String, UnboundedSender<WorkerMsg>>>;

/// The field selector that covers `nodes`.
pub fn selector_for(nodes: &[String]) -> String {
    match nodes {
        [one] => format!("spec.nodeName={one}"),
        _ => "spec.nodeName!=".into(),
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Watches pods matching `field_selector` and feeds the workers in `dispatch` until
/// `cancel`. Errors (API unreachable, 410 Gone) are logged; the watcher backs off and
/// re-lists.
pub async fn run(client: kube::Client, field_selector: String, dispatch: Dispatch, cancel: CancellationToken) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&field_selector);
    let mut stream = watcher::watcher(pods, config).backoff(RetrySoon::default()).boxed();
    let mut listing: Option<HashMap<String, Vec<Arc<Pod>>>> = None;
    let send = |node: &str, msg: WorkerMsg| {
        if let Some(tx) = dispatch.get(node) {
            let _ = tx.send(msg);
        }
    };
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; re-listing after back-off"),
            Some(Ok(Event::Init)) => listing = Some(HashMap::new()),
            Some(Ok(Event::InitApply(pod))) => {
                if let (Some(node), Some(l)) = (node_of(&pod), listing.as_mut()) {
                    if dispatch.contains_key(node) {
                        l.entry(node.to_string()).or_default().push(Arc::new(pod));
                    }
                }
            }
            Some(Ok(Event::InitDone)) => {
                let mut l = listing.take().unwrap_or_default();
                for (node, tx) in dispatch.iter() {
                    let _ = tx.send(WorkerMsg::Resync(l.remove(node).unwrap_or_default()));
                }
            }
            Some(Ok(Event::Apply(pod))) => {
                if let Some(node) = node_of(&pod).map(String::from) {
                    send(&node, WorkerMsg::Apply(Arc::new(pod)));
                }
            }
            Some(Ok(Event::Delete(pod))) => {
                if let Some(node) = node_of(&pod).map(String::from) {
                    send(&node, WorkerMsg::Delete(Arc::new(pod)));
                }
            }
        }
    }
}
