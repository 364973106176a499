//! What the control-plane workloads (bind, deploy, statefulset) share: preparing the cluster (the
//! workload's namespace, every agent's node Ready), the pod recorder, and the final read of
//! pods and nodes.
//!
//! The pod recorder is the harness's eye on bindings: one watch of every pod in the cluster,
//! from one server at a time. Every event is recorded as it arrives (`pod-seen`); when the
//! watch breaks it resumes from the last resourceVersion on the next server, and after
//! `410 Gone` it re-lists (`pod-list`). Its records are `ok` records of its own process with
//! no invocation, like watch responses.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use tokio_util::sync::CancellationToken;

use super::{retry_until, WorkloadCtx};
use crate::history::{Call, OpType};
use crate::kube_api::{self, deadline, NAMESPACE};
use crate::HarnessError;

/// Process numbers of the harness's own control-plane readers (beyond any client's).
pub fn recorder_process(ctx: &WorkloadCtx) -> i64 {
    (ctx.concurrency * 1000 + 500) as i64
}

fn final_process(ctx: &WorkloadCtx) -> i64 {
    (ctx.concurrency * 1000 + 501) as i64
}

/// Creates the workload namespace and waits until `agents` nodes are Ready, trying every
/// server in turn, for at most `patience`.
pub async fn prepare(ctx: &WorkloadCtx, agents: usize, patience: Duration) -> Result<(), HarnessError> {
    let until = tokio::time::Instant::now() + patience;
    let mut last = String::from("no attempt");
    let mut namespace_made = false;
    for attempt in 0usize.. {
        if tokio::time::Instant::now() >= until {
            break;
        }
        let (server, client) = ctx.api_client_for(attempt);
        if !namespace_made {
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).expect("a namespace");
            let api: Api<Namespace> = Api::all(client.clone());
            match deadline(ctx.op_timeout, api.create(&PostParams::default(), &ns)).await {
                Ok(_) => namespace_made = true,
                Err(e) if e.message.starts_with("409") => namespace_made = true,
                Err(e) => last = format!("{server}: creating namespace {NAMESPACE}: {e}"),
            }
        }
        if namespace_made {
            let nodes: Api<Node> = Api::all(client);
            match deadline(ctx.op_timeout, nodes.list(&ListParams::default())).await {
                Ok(list) => {
                    let ready = list.items.iter().filter(|n| kube_api::node_ready(n)).count();
                    if ready >= agents {
                        return Ok(());
                    }
                    last = format!("{server}: {ready} of {agents} nodes Ready");
                }
                Err(e) => last = format!("{server}: listing nodes: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(HarnessError::NotReady { seconds: patience.as_secs(), detail: last })
}

/// The running pod recorder.
pub struct PodRecorder {
    pub handle: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl PodRecorder {
    /// Stops the recorder (within a bounded time).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.handle).await;
    }
}

/// Starts the pod recorder; it runs until [`PodRecorder::stop`].
pub fn spawn_recorder(ctx: Arc<WorkloadCtx>) -> PodRecorder {
    let stop = CancellationToken::new();
    let handle = tokio::spawn(record_pods(ctx, stop.clone()));
    PodRecorder { handle, stop }
}

/// A watch that delivers nothing for this long is abandoned for the next server (a paused
/// or cut-off server never ends its stream by itself).
const WATCH_IDLE: Duration = Duration::from_secs(10);

async fn record_pods(ctx: Arc<WorkloadCtx>, stop: CancellationToken) {
    let process = recorder_process(&ctx);
    let mut resume: Option<String> = None;
    let mut server = 0usize;
    while !stop.is_cancelled() {
        let (node, client) = ctx.api_client_for(server);
        let api: Api<Pod> = Api::all(client);
        let rv = match resume.clone() {
            Some(rv) => rv,
            None => match deadline(ctx.op_timeout, api.list(&ListParams::default())).await {
                Ok(list) => {
                    let rv = list.metadata.resource_version.clone().unwrap_or_default();
                    let pods = list.items.iter().map(kube_api::pod_view).collect();
                    let resource_version = kube_api::resource_version(Some(rv.clone()));
                    ctx.recorder.record(process, OpType::Ok, &node, Call::PodList { pods, resource_version }, None);
                    rv
                }
                Err(_) => {
                    server += 1;
                    pause(&stop, Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        resume = Some(rv.clone());
        let params = WatchParams::default().timeout(30);
        let stream = match deadline(ctx.op_timeout, api.watch(&params, &rv)).await {
            Ok(s) => s,
            Err(_) => {
                server += 1;
                pause(&stop, Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = tokio::time::timeout(WATCH_IDLE, stream.next()) => next,
            };
            let event = match next {
                Ok(Some(Ok(event))) => event,
                // Idle, ended or broken: resume on the next server.
                _ => break,
            };
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    let view = kube_api::pod_view(&pod);
                    resume = pod.metadata.resource_version.clone().or(resume);
                    ctx.recorder.record(process, OpType::Ok, &node, Call::PodSeen { pod: view, deleted: false }, None);
                }
                WatchEvent::Deleted(pod) => {
                    let view = kube_api::pod_view(&pod);
                    resume = pod.metadata.resource_version.clone().or(resume);
                    ctx.recorder.record(process, OpType::Ok, &node, Call::PodSeen { pod: view, deleted: true }, None);
                }
                WatchEvent::Bookmark(b) => resume = Some(b.metadata.resource_version),
                WatchEvent::Error(e) => {
                    if e.code == 410 {
                        // Too old to resume: re-list (recorded) and watch from there.
                        resume = None;
                    }
                    break;
                }
            }
        }
        server += 1;
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// The final read of every pod and every node's allocatable, through any server, retried
/// for at most `patience`.
pub async fn final_state(ctx: &WorkloadCtx, patience: Duration) {
    let process = final_process(ctx);
    let (first, _) = &ctx.api[0];
    ctx.recorder.invoke(process, first, Call::FinalState { pods: None, nodes: None });
    let until = tokio::time::Instant::now() + patience;
    let mut attempt = 0usize;
    let read = retry_until(until, || {
        attempt += 1;
        let (node, client) = ctx.api_client_for(attempt);
        async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let nodes: Api<Node> = Api::all(client);
            let pods = deadline(ctx.op_timeout, pods.list(&ListParams::default())).await?;
            let nodes = deadline(ctx.op_timeout, nodes.list(&ListParams::default())).await?;
            Ok((node, pods.items, nodes.items))
        }
    })
    .await;
    match read {
        Ok((node, pods, nodes)) => {
            let pods = Some(pods.iter().map(kube_api::pod_view).collect());
            let nodes = Some(nodes.iter().map(kube_api::node_view).collect());
            ctx.recorder.record(process, OpType::Ok, &node, Call::FinalState { pods, nodes }, None);
        }
        Err(e) => ctx.recorder.record(
            process,
            OpType::Fail,
            first,
            Call::FinalState { pods: None, nodes: None },
            Some(e.message),
        ),
    }
}
