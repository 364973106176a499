//! The watch workload. Writers put and delete a handful of keys under one prefix; watchers
//! watch the prefix from revision 1, each with its own options (prev_kv, NOPUT/NODELETE
//! filters), ask for progress notifications, and every few seconds — or whenever a fault
//! breaks their stream — drop the session and resume from the last revision they saw + 1 on
//! the next node. Every response is recorded as received.
//!
//! After healing, the harness rebuilds the store's true event history under the prefix from
//! *reads* (a range at every revision, diffed), independent of the watch machinery under
//! test, and records it as `final-history`; the checker compares writers and watchers to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::etcdserverpb::watch_client::WatchClient;
use berth_proto::etcdserverpb::watch_create_request::FilterType;
use berth_proto::etcdserverpb::watch_request::RequestUnion;
use berth_proto::etcdserverpb::{WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse};
use berth_proto::keys::prefix_end;
use berth_proto::mvccpb::{event::EventType, Event, KeyValue};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{retry_until, spawn_clients, WorkloadCtx};
use crate::client::{CallError, Client};
use crate::history::{Call, EventKind, OpType, WatchEvent, WatchFilter};

pub const PREFIX: &str = "jepsen/w/";
const KEYS: usize = 8;

/// How many of `concurrency` workers watch (the rest write; the runner requires at least
/// two workers, so one always writes).
pub fn watcher_count(concurrency: usize) -> usize {
    (concurrency / 3).clamp(1, 3)
}

/// Per-watcher options: rotate through the combinations worth checking.
fn watcher_options(watcher: usize) -> (bool, WatchFilter) {
    match watcher % 3 {
        0 => (true, WatchFilter::None),
        1 => (false, WatchFilter::NoDelete),
        _ => (true, WatchFilter::NoPut),
    }
}

/// The writers. Values are unique (`process-sequence`), so the checker can tell every put apart.
pub fn spawn_writers(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    let writers = ctx.concurrency - watcher_count(ctx.concurrency);
    spawn_clients(ctx, 0, writers, |worker| {
        let mut seq = 0u64;
        move |rng: &mut StdRng| {
            seq += 1;
            let key = format!("{PREFIX}k{}", rng.random_range(0..KEYS));
            if rng.random_range(0..4) == 0 {
                Call::Delete { key, revision: None, deleted: None }
            } else {
                Call::Put { key, value: format!("w{worker}-{seq}"), revision: None }
            }
        }
    })
}

/// Running watchers, and the highest revision each knows it has caught up to (its last
/// event or progress notification).
pub struct Watchers {
    pub handles: Vec<tokio::task::JoinHandle<()>>,
    pub progress: Arc<Vec<AtomicI64>>,
}

impl Watchers {
    /// True once every watcher has caught up to `revision`.
    pub fn caught_up(&self, revision: i64) -> bool {
        self.progress.iter().all(|p| p.load(Ordering::Relaxed) >= revision)
    }
}

/// Starts the watchers; they run until `stop`.
pub fn spawn_watchers(ctx: &Arc<WorkloadCtx>, stop: CancellationToken) -> Watchers {
    let count = watcher_count(ctx.concurrency);
    let progress: Arc<Vec<AtomicI64>> = Arc::new((0..count).map(|_| AtomicI64::new(0)).collect());
    let first = ctx.concurrency - count;
    let handles = (0..count)
        .map(|i| {
            let ctx = ctx.clone();
            let stop = stop.clone();
            let progress = progress.clone();
            tokio::spawn(async move { watcher_loop(ctx, first + i, i, stop, progress).await })
        })
        .collect();
    Watchers { handles, progress }
}

async fn watcher_loop(
    ctx: Arc<WorkloadCtx>,
    worker: usize,
    watcher: usize,
    stop: CancellationToken,
    progress: Arc<Vec<AtomicI64>>,
) {
    let mut rng = ctx.rng_for(worker);
    let mut next_start = 1i64;
    let mut session_no = 0usize;
    while !stop.is_cancelled() {
        let client = ctx.client_for(worker + session_no);
        session_no += 1;
        let lifetime = Duration::from_millis(rng.random_range(2000..6000));
        let session = Session { ctx: &ctx, client: &client, process: worker as i64, watcher, lifetime };
        let last = session.run(next_start, &stop, &progress[watcher]).await;
        next_start = last + 1;
        if !stop.is_cancelled() {
            // A short pause so a dead node is not hammered; bounded by the stop token.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

struct Session<'a> {
    ctx: &'a WorkloadCtx,
    client: &'a Client,
    process: i64,
    watcher: usize,
    lifetime: Duration,
}

impl Session<'_> {
    fn record(&self, kind: OpType, call: Call, error: Option<String>) {
        self.ctx.recorder.record(self.process, kind, &self.client.node, call, error);
    }

    /// One watch session from `start`; returns the last event revision delivered (or
    /// `start - 1` if none), which is where the next session resumes.
    async fn run(&self, start: i64, stop: &CancellationToken, progress: &AtomicI64) -> i64 {
        let (prev_kv, filter) = watcher_options(self.watcher);
        let call = |watch_id| Call::Watch { prefix: PREFIX.into(), start_revision: start, prev_kv, filter, watch_id };
        self.record(OpType::Invoke, call(None), None);
        let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(8);
        let create = WatchCreateRequest {
            key: PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(PREFIX.as_bytes()),
            start_revision: start,
            progress_notify: true,
            prev_kv,
            filters: match filter {
                WatchFilter::None => vec![],
                WatchFilter::NoPut => vec![FilterType::Noput as i32],
                WatchFilter::NoDelete => vec![FilterType::Nodelete as i32],
            },
            ..Default::default()
        };
        let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
        let mut watch = WatchClient::new(self.client.channel());
        let opened =
            tokio::time::timeout(self.ctx.op_timeout, watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)))
                .await;
        let mut stream = match opened {
            Ok(Ok(resp)) => resp.into_inner(),
            Ok(Err(status)) => {
                self.record(OpType::Fail, call(None), Some(format!("{:?}: {}", status.code(), status.message())));
                return start - 1;
            }
            Err(_) => {
                self.record(OpType::Fail, call(None), Some("timed out opening the watch".into()));
                return start - 1;
            }
        };
        let mut last = start - 1;
        let mut created = false;
        let ends_at = tokio::time::Instant::now() + self.lifetime;
        let mut progress_tick = tokio::time::interval(Duration::from_millis(700));
        let outcome: Result<(), String> = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(ends_at) => break Ok(()),
                _ = stop.cancelled() => break Ok(()),
                _ = progress_tick.tick(), if created => {
                    let req = WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                    let _ = tx.try_send(req);
                }
                msg = stream.next() => match msg {
                    None => break Err("stream ended".into()),
                    Some(Err(status)) => break Err(format!("{:?}: {}", status.code(), status.message())),
                    Some(Ok(resp)) => {
                        if resp.created && !created {
                            created = true;
                            self.record(OpType::Ok, call(Some(resp.watch_id)), None);
                            if resp.events.is_empty() && !resp.canceled {
                                continue;
                            }
                        }
                        if !created {
                            // A response before `created` (e.g. canceled at creation).
                            self.record(OpType::Fail, call(None), Some(format!("watch not created: {}", resp.cancel_reason)));
                            return start - 1;
                        }
                        let canceled = resp.canceled;
                        last = self.record_response(resp, last, progress);
                        if canceled {
                            break Err("canceled by the server".into());
                        }
                    }
                },
            }
        };
        match outcome {
            Ok(()) if created => self.record(OpType::Ok, Call::WatchEnd { last_revision: last }, None),
            Ok(()) => {
                self.record(OpType::Info, call(None), Some("no created response before the session ended".into()))
            }
            Err(e) if created => self.record(OpType::Info, Call::WatchEnd { last_revision: last }, Some(e)),
            Err(e) => self.record(OpType::Fail, call(None), Some(e)),
        }
        last
    }

    /// Records one response; returns the new last delivered event revision.
    fn record_response(&self, resp: WatchResponse, last: i64, progress: &AtomicI64) -> i64 {
        let header_revision = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let is_progress = resp.events.is_empty() && !resp.canceled && resp.compact_revision == 0;
        let events: Vec<WatchEvent> = resp.events.iter().map(to_watch_event).collect();
        let new_last = events.iter().map(|e| e.mod_revision).max().unwrap_or(last).max(last);
        let caught_up = if is_progress { header_revision } else { new_last };
        progress.fetch_max(caught_up, Ordering::Relaxed);
        let call = Call::WatchResponse {
            header_revision,
            events,
            progress: is_progress,
            compact_revision: resp.compact_revision,
            canceled: resp.canceled,
        };
        self.record(OpType::Ok, call, None);
        new_last
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn to_watch_event(e: &Event) -> WatchEvent {
    let kv = e.kv.clone().unwrap_or_default();
    WatchEvent {
        kind: if e.r#type == EventType::Delete as i32 { EventKind::Delete } else { EventKind::Put },
        key: text(&kv.key),
        value: text(&kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        prev_value: e.prev_kv.as_ref().map(|p| text(&p.value)),
    }
}

/// The events that turn state `before` (at revision - 1) into `after` (at `revision`).
pub fn diff_states(
    revision: i64,
    before: &BTreeMap<String, KeyValue>,
    after: &BTreeMap<String, KeyValue>,
) -> Vec<WatchEvent> {
    let mut events = vec![];
    for (key, kv) in after {
        if kv.mod_revision == revision {
            events.push(WatchEvent {
                kind: EventKind::Put,
                key: key.clone(),
                value: text(&kv.value),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                prev_value: before.get(key).map(|p| text(&p.value)),
            });
        }
    }
    for (key, prev) in before {
        if !after.contains_key(key) {
            events.push(WatchEvent {
                kind: EventKind::Delete,
                key: key.clone(),
                value: String::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
                prev_value: Some(text(&prev.value)),
            });
        }
    }
    // etcd orders a revision's events by their position in the txn; ours are single-key
    // writes, so order by key for determinism.
    events.sort_by(|a, b| a.key.cmp(&b.key));
    events
}

/// Rebuilds the full event history under the prefix from ranges at every revision and
/// records it as `final-history`. Returns the last revision that carries an event.
pub async fn record_final_history(ctx: &WorkloadCtx, patience: Duration) -> Result<i64, CallError> {
    record_final_history_of(ctx, PREFIX, patience).await
}

/// [`record_final_history`] of any key prefix (the api-watch workload's is the store's
/// ConfigMap keys).
pub async fn record_final_history_of(ctx: &WorkloadCtx, prefix: &str, patience: Duration) -> Result<i64, CallError> {
    let client = ctx.client_for(0);
    let deadline = tokio::time::Instant::now() + patience;
    let (_, revision) = retry_until(deadline, || client.get_prefix(prefix, 0, false)).await?;
    let states: Vec<Result<BTreeMap<String, KeyValue>, CallError>> = futures::stream::iter(1..=revision)
        .map(|rev| {
            let client = client.clone();
            async move {
                let (kvs, _) = retry_until(deadline, || client.get_prefix(prefix, rev, true)).await?;
                Ok(kvs.into_iter().map(|kv| (text(&kv.key), kv)).collect())
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut events = vec![];
    let mut before = BTreeMap::new();
    for (i, state) in states.into_iter().enumerate() {
        let after = state?;
        events.extend(diff_states(i as i64 + 1, &before, &after));
        before = after;
    }
    let last = events.last().map(|e| e.mod_revision).unwrap_or(0);
    let process = (ctx.concurrency * 1000) as i64;
    ctx.recorder.record(process, OpType::Ok, &client.node, Call::FinalHistory { events, revision }, None);
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> (String, KeyValue) {
        (
            key.to_string(),
            KeyValue {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                create_revision: create,
                mod_revision: modr,
                version,
                lease: 0,
            },
        )
    }

    #[test]
    fn diffs_turn_successive_states_into_events() {
        let s1: BTreeMap<_, _> = [kv("a", "1", 2, 2, 1)].into();
        let s2: BTreeMap<_, _> = [kv("a", "2", 2, 3, 2)].into();
        let s3: BTreeMap<_, _> = BTreeMap::new();
        let put = diff_states(3, &s1, &s2);
        assert_eq!(put.len(), 1);
        assert_eq!((put[0].kind, put[0].version, put[0].prev_value.as_deref()), (EventKind::Put, 2, Some("1")));
        let del = diff_states(4, &s2, &s3);
        assert_eq!((del[0].kind, del[0].mod_revision, del[0].prev_value.as_deref()), (EventKind::Delete, 4, Some("2")));
        assert!(diff_states(5, &s3, &s3).is_empty());
    }
}
