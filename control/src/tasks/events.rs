//! Event recording for leader tasks: core/v1 `Event`s about an object, aggregated as
//! client-go's recorder does — the same (object, type, reason, message) seen again within
//! the dedup window bumps `count` and `lastTimestamp` on the existing Event instead of
//! creating a new one.
//!
//! Events are best effort: a failed write is logged and dropped, never retried forever,
//! and never blocks the controller that reported it for longer than one API call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::json;

/// Same-event window: repeats within it are counted on one Event.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Bound on remembered events (oldest forgotten first).
const MAX_REMEMBERED: usize = 4096;

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
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    seen: Arc<Mutex<HashMap<EventKey, Seen>>>,
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

/// A reference to a stored object (JSON as the registry holds it) for `involvedObject`.
pub fn reference_of(info: &crate::api::resources::ResourceInfo, obj: &serde_json::Value) -> ObjectReference {
    use crate::registry::object;
    ObjectReference {
        api_version: Some(info.api_version()),
        kind: Some(info.kind.to_string()),
        name: object::name(obj).map(String::from),
        namespace: object::namespace(obj).map(String::from),
        uid: object::meta_str(obj, "uid").map(String::from),
        resource_version: object::resource_version(obj).map(String::from),
        ..Default::default()
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder { client, component: component.into(), seen: Arc::default() }
    }

    /// Records an event about `obj`.
    pub async fn publish(&self, obj: &ObjectReference, event_type: EventType, reason: &str, message: &str) {
        let namespace = obj.namespace.clone().unwrap_or_else(|| "default".into());
        let key = EventKey {
            namespace: namespace.clone(),
            kind: obj.kind.clone().unwrap_or_default(),
            name: obj.name.clone().unwrap_or_default(),
            uid: obj.uid.clone().unwrap_or_default(),
            event_type: event_type.as_str(),
            reason: reason.into(),
            message: message.into(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = self.remembered(&key);
        if let Some(seen) = repeat {
            let count = seen.count + 1;
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
            involved_object: obj.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(event_type.as_str().into()),
            count: Some(1),
            first_timestamp: Some(timestamp.clone()),
            last_timestamp: Some(timestamp),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            reporting_component: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.remember(key, Seen { event_name: name, count: 1, at: Instant::now() });
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
            seen.retain(|_, s| s.at.elapsed() < DEDUP_WINDOW);
            if seen.len() >= MAX_REMEMBERED {
                if let Some(oldest) = seen.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| k.clone()) {
                    seen.remove(&oldest);
                }
            }
        }
        seen.insert(key, value);
    }
}
