//! Event recording for leader tasks: core/v1 `Event`s about an object, aggregated as
//! client-go's recorder does — the same (object, type, reason, message) seen again within
//! the dedup window bumps `count` and `lastTimestamp` on the existing Event instead of
//! creating a new one.
//!
//! Events are best effort and never slow the controller that reports them: `publish` only
//! queues the event (dropping it when the queue is full, as client-go's broadcaster does)
//! and a background writer sends them, many at once. A controller creating 500 pods used
//! to wait for 500 sequential Event writes, which capped pod creation far below what the
//! API sustains. The writer takes what is queued as a batch, folds repeats of the same
//! event within it into one count, and writes distinct events concurrently; a failed
//! write is logged and dropped, never retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::mpsc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::json;

/// Same-event window: repeats within it are counted on one Event.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Bound on remembered events (oldest forgotten first).
const MAX_REMEMBERED: usize = 4096;
/// Events waiting for the writer; more are dropped (client-go keeps 1000).
const QUEUE: usize = 4096;
/// Events the writer takes (and writes concurrently) at once.
const BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct EventKey {
    namespace: String,
    kind: String,
    name: String,
    uid: String,
    event_type: &'static str,
    reason: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Seen {
    event_name: String,
    count: i32,
    at: Instant,
}

/// Records Events on behalf of one component (`default-scheduler`, `replicaset-controller`…).
/// Clones share one queue and writer; the writer stops once every clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
    spam: Arc<Mutex<SpamFilter>>,
}

/// client-go's `EventSourceObjectSpamFilter`: each (source, involved object) may record a
/// burst of 25 events, then one per 5 minutes; the rest are dropped. A ReplicaSet creating
/// 1,000 pods records 25 `SuccessfulCreate` events in Kubernetes, not 1,000 — and neither
/// does Berth, so events do not compete with the pods themselves for the store.
#[derive(Debug, Default)]
pub struct SpamFilter {
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Burst of events per (source, object).
pub const SPAM_BURST: f64 = 25.0;
/// One more event allowed per this long.
pub const SPAM_REFILL: Duration = Duration::from_secs(300);

impl SpamFilter {
    /// Whether an event for `key` may be recorded at `now` (takes a token if so).
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_REMEMBERED && !self.buckets.contains_key(key) {
            forget_least_recent(&mut self.buckets, |b| b.at);
        }
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket { tokens: SPAM_BURST, at: now });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        bucket.tokens = (bucket.tokens + refilled).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Forgets the least recently used quarter of `map` (client-go keeps LRUs of 4096). In
/// bulk: the scheduler records an Event for each of thousands of new pods, and finding the
/// single oldest entry for every one of them was a scan per Event.
fn forget_least_recent<K, V>(map: &mut HashMap<K, V>, used_at: impl Fn(&V) -> Instant) {
    let mut ages: Vec<Instant> = map.values().map(&used_at).collect();
    if ages.is_empty() {
        return;
    }
    let cut = ages.len() / 4;
    let threshold = *ages.select_nth_unstable(cut).1;
    map.retain(|_, v| used_at(v) > threshold);
}

/// An event waiting to be written.
struct Pending {
    obj: ObjectReference,
    key: EventKey,
}

/// The background half: writes queued events, remembering them for aggregation.
struct Writer {
    client: kube::Client,
    component: String,
    seen: Mutex<HashMap<EventKey, Seen>>,
}

/// A reference to `obj` for `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Recorder {
    /// A recorder and its writer task (call from within a tokio runtime).
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        let (queue, pending) = mpsc::channel(QUEUE);
        let writer = Writer { client, component: component.into(), seen: Mutex::default() };
        tokio::spawn(writer.run(pending));
        Recorder { queue, spam: Arc::default() }
    }

    /// Queues an event about `obj`; returns at once.
    pub async fn publish(&self, obj: &ObjectReference, event_type: EventType, reason: &str, message: &str) {
        let key = EventKey {
            namespace: obj.namespace.clone().unwrap_or_else(|| "default".into()),
            kind: obj.kind.clone().unwrap_or_default(),
            name: obj.name.clone().unwrap_or_default(),
            uid: obj.uid.clone().unwrap_or_default(),
            event_type: event_type.as_str(),
            reason: reason.into(),
            message: message.into(),
        };
        let spam_key = format!(
            "{}/{}/{}/{}/{}",
            obj.api_version.as_deref().unwrap_or(""),
            key.kind,
            key.namespace,
            key.name,
            key.uid
        );
        if !self.spam.lock().unwrap().allow(&spam_key, Instant::now()) {
            tracing::trace!(reason, object = %key.name, "event rate-limited (per-object burst spent)");
            return;
        }
        if self.queue.try_send(Pending { obj: obj.clone(), key }).is_err() {
            tracing::debug!(reason, "event queue full; dropping the event");
        }
    }
}

/// Folds a batch into distinct events, each with how many times it was reported (first
/// report's order kept).
fn fold(batch: Vec<Pending>) -> Vec<(Pending, i32)> {
    let mut out: Vec<(Pending, i32)> = Vec::new();
    let mut index: HashMap<EventKey, usize> = HashMap::new();
    for p in batch {
        match index.get(&p.key) {
            Some(&i) => out[i].1 += 1,
            None => {
                index.insert(p.key.clone(), out.len());
                out.push((p, 1));
            }
        }
    }
    out
}

impl Writer {
    async fn run(self, mut pending: mpsc::Receiver<Pending>) {
        let mut batch = Vec::with_capacity(BATCH);
        while pending.recv_many(&mut batch, BATCH).await > 0 {
            let events = fold(std::mem::take(&mut batch));
            join_all(events.into_iter().map(|(p, times)| self.write(p.obj, p.key, times))).await;
        }
    }

    /// Writes one event reported `times` times: bumps the count of the Event already
    /// written for it within the dedup window, else creates one.
    async fn write(&self, obj: ObjectReference, key: EventKey, times: i32) {
        let namespace = key.namespace.clone();
        let reason = key.reason.clone();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some(seen) = self.remembered(&key) {
            let count = seen.count + times;
            let patch = json!({"count": count, "lastTimestamp": now()});
            match api.patch(&seen.event_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.remember(key, Seen { count, at: Instant::now(), ..seen });
                    return;
                }
                // Deleted meanwhile (or its namespace is going): start a new Event.
                Err(e) => tracing::debug!(error = %e, reason, "updating an aggregated event; creating a new one"),
            }
        }
        let timestamp = now();
        let event = Event {
            metadata: ObjectMeta {
                // client-go's naming: the object's name and a hex timestamp.
                name: Some(format!("{}.{:x}", key.name, timestamp.0.as_nanosecond())),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: obj,
            reason: Some(key.reason.clone()),
            message: Some(key.message.clone()),
            type_: Some(key.event_type.into()),
            count: Some(times),
            first_timestamp: Some(timestamp.clone()),
            last_timestamp: Some(timestamp),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            reporting_component: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.remember(key, Seen { event_name: name, count: times, at: Instant::now() });
            }
            Err(e) => tracing::debug!(error = %e, reason, "recording an event"),
        }
    }

    fn remembered(&self, key: &EventKey) -> Option<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.get(key).filter(|s| s.at.elapsed() < DEDUP_WINDOW).cloned()
    }

    fn remember(&self, key: EventKey, value: Seen) {
        let mut seen = self.seen.lock().unwrap();
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&key) {
            forget_least_recent(&mut seen, |s| s.at);
        }
        seen.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str, reason: &str) -> Pending {
        let obj = ObjectReference { name: Some(name.into()), namespace: Some("ns".into()), ..Default::default() };
        let key = EventKey {
            namespace: "ns".into(),
            kind: "Pod".into(),
            name: name.into(),
            uid: String::new(),
            event_type: "Normal",
            reason: reason.into(),
            message: "m".into(),
        };
        Pending { obj, key }
    }

    #[test]
    fn each_object_gets_a_burst_of_25_then_one_per_five_minutes() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        assert_eq!((0..30).filter(|_| filter.allow("rs/a", t0)).count(), 25);
        assert!(filter.allow("rs/b", t0), "another object has its own bucket");
        assert!(!filter.allow("rs/a", t0 + Duration::from_secs(60)));
        assert!(filter.allow("rs/a", t0 + SPAM_REFILL));
        assert!(!filter.allow("rs/a", t0 + SPAM_REFILL));
    }

    #[test]
    fn a_full_filter_forgets_the_least_recently_used_objects() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..MAX_REMEMBERED {
            // Object 0 is the most recently used one.
            filter.allow(&format!("pod/{i}"), t0 + Duration::from_millis((MAX_REMEMBERED - i) as u64));
        }
        let later = t0 + Duration::from_secs(60);
        (0..24).for_each(|_| assert!(filter.allow("pod/0", later)));
        assert!(filter.allow("pod/new", later));
        assert!(filter.buckets.len() <= MAX_REMEMBERED * 3 / 4 + 1, "a quarter is forgotten at once");
        assert!(!filter.allow("pod/0", later), "the recently used object kept its spent bucket");
        assert!(!filter.buckets.contains_key(&format!("pod/{}", MAX_REMEMBERED - 1)), "the oldest went");
    }

    #[test]
    fn a_batch_folds_repeats_into_counts_in_first_seen_order() {
        let batch =
            vec![pending("a", "Created"), pending("b", "Created"), pending("a", "Created"), pending("a", "Started")];
        let folded: Vec<(String, String, i32)> =
            fold(batch).into_iter().map(|(p, n)| (p.key.name, p.key.reason, n)).collect();
        assert_eq!(
            folded,
            [("a".into(), "Created".into(), 2), ("b".into(), "Created".into(), 1), ("a".into(), "Started".into(), 1)]
        );
    }
}
