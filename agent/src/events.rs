//! Events the agent writes about pods, as the kubelet does: reported by `kubelet` (the
//! node's name as its instance), about the pod with the container in `fieldPath`
//! (`spec.containers{main}`) — Pulling, Pulled, Failed, BackOff, Created, Started, Killing,
//! Unhealthy. Written as core/v1 Events (what `kubectl describe` and `kubectl get events`
//! read), a repeat within ten minutes bumping `count` and `lastTimestamp` of the Event
//! already written, as client-go's recorder does. (kube-runtime's recorder writes
//! events.k8s.io/v1, which Berth does not serve yet; the leader's recorder lives in the
//! control crate, which the agent does not depend on.) Best effort: an event is queued and
//! written in the background, dropped when the queue is full, and never holds up a pod's
//! sync.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use tokio::sync::mpsc;

/// Events waiting to be written; more are dropped.
const QUEUE: usize = 1024;
/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Repeats within this window are counted on one Event.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Bound on remembered events.
const MAX_REMEMBERED: usize = 1024;

/// One event to write.
#[derive(Debug, Clone)]
struct Pending {
    reference: ObjectReference,
    warning: bool,
    reason: String,
    message: String,
}

/// What identifies repeats of an event: object (with container), type, reason, message.
type Key = (String, String, Option<String>, bool, String, String);

fn key_of(p: &Pending) -> Key {
    let r = &p.reference;
    (
        r.namespace.clone().unwrap_or_default(),
        r.uid.clone().unwrap_or_default(),
        r.field_path.clone(),
        p.warning,
        p.reason.clone(),
        p.message.clone(),
    )
}

/// The core/v1 Event first written for `p` (pure); `suffix` makes its name unique.
fn new_event(p: &Pending, node: &str, suffix: &str) -> Event {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{suffix}", p.reference.name.clone().unwrap_or_default())),
            namespace: p.reference.namespace.clone(),
            ..Default::default()
        },
        involved_object: p.reference.clone(),
        reason: Some(p.reason.clone()),
        message: Some(p.message.clone()),
        type_: Some(if p.warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.into()) }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        ..Default::default()
    }
}

/// Writes queued events, folding repeats into counts.
struct Writer {
    client: kube::Client,
    node: String,
    /// Written events: name, count, when.
    seen: HashMap<Key, (String, i32, Instant)>,
}

impl Writer {
    async fn write(&mut self, p: Pending) {
        let ns = p.reference.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let key = key_of(&p);
        if let Some((name, count, at)) = self.seen.get(&key).cloned().filter(|(_, _, at)| at.elapsed() < DEDUP_WINDOW) {
            let patch =
                serde_json::json!({"count": count + 1, "lastTimestamp": Time(k8s_openapi::jiff::Timestamp::now())});
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                self.seen.insert(key, (name, count + 1, at));
                return;
            }
        }
        let suffix = format!("{:x}", k8s_openapi::jiff::Timestamp::now().as_nanosecond());
        let event = new_event(&p, &self.node, &suffix);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if self.seen.len() >= MAX_REMEMBERED {
                    let oldest = self.seen.iter().min_by_key(|(_, (_, _, at))| *at).map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        self.seen.remove(&k);
                    }
                }
                self.seen.insert(key, (event.metadata.name.unwrap_or_default(), 1, Instant::now()));
            }
            Err(e) => tracing::debug!(reason = %p.reason, error = %e, "writing an event failed"),
        }
    }
}

/// A handle to queue pod events; cheap to clone. [`PodEvents::disabled`] drops everything.
#[derive(Clone, Default)]
pub struct PodEvents {
    queue: Option<mpsc::Sender<Pending>>,
}

/// The reference an event about `container` of `pod` is attached to (pure).
pub fn container_reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    let is_init = |name: &str| {
        pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.name == name))
    };
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name_any()),
        namespace: pod.namespace(),
        uid: pod.uid(),
        resource_version: pod.resource_version(),
        field_path: container.map(|c| {
            if is_init(c) {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        }),
    }
}

impl PodEvents {
    /// Queues events for `client`, reported as the kubelet of `node` (spawns the writer;
    /// call inside a tokio runtime).
    pub fn new(client: kube::Client, node: &str) -> PodEvents {
        let (queue, mut pending) = mpsc::channel::<Pending>(QUEUE);
        let mut writer = Writer { client, node: node.to_string(), seen: HashMap::new() };
        tokio::spawn(async move {
            while let Some(p) = pending.recv().await {
                let reason = p.reason.clone();
                if tokio::time::timeout(WRITE_TIMEOUT, writer.write(p)).await.is_err() {
                    tracing::debug!(%reason, "writing an event timed out");
                }
            }
        });
        PodEvents { queue: Some(queue) }
    }

    /// A handle that records nothing (hollow nodes, unit tests).
    pub fn disabled() -> PodEvents {
        PodEvents { queue: None }
    }

    fn queue(&self, pod: &Pod, container: Option<&str>, warning: bool, reason: &str, message: String) {
        let Some(queue) = &self.queue else { return };
        let p = Pending { reference: container_reference(pod, container), warning, reason: reason.into(), message };
        if queue.try_send(p).is_err() {
            tracing::debug!(reason, "event queue full; dropping the event");
        }
    }

    pub fn normal(&self, pod: &Pod, container: Option<&str>, reason: &str, message: String) {
        self.queue(pod, container, false, reason, message)
    }

    pub fn warning(&self, pod: &Pod, container: Option<&str>, reason: &str, message: String) {
        self.queue(pod, container, true, reason, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_references_name_the_container_field() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}]}}))
        .unwrap();
        let r = container_reference(&pod, Some("main"));
        assert_eq!((r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()), (Some("Pod"), Some("p"), Some("u1")));
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{main}"));
        assert_eq!(container_reference(&pod, Some("init")).field_path.as_deref(), Some("spec.initContainers{init}"));
        assert_eq!(container_reference(&pod, None).field_path, None);
        let p = Pending { reference: r, warning: true, reason: "Unhealthy".into(), message: "m".into() };
        let e = new_event(&p, "n1", "abc");
        assert_eq!(e.metadata.name.as_deref(), Some("p.abc"));
        assert_eq!((e.type_.as_deref(), e.count), (Some("Warning"), Some(1)));
        assert_eq!(e.source.unwrap().component.as_deref(), Some("kubelet"));
    }
}
