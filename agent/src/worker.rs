//! The node worker: one task per node that owns the node's pods, asks [`sync::plan`] what
//! to do whenever a pod changes (watch event), a runtime reports a change (wake) or a
//! back-off ends (timer), executes the plan against the [`Runtime`], and writes pod status
//! and deletion confirmations. API writes run in their own tasks and report back, so a
//! slow or unreachable API never stalls container handling; a failed write is retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::ApiAccess;
use crate::runtime::{self, Runtime};
use crate::sync::{self, Action, Context};

/// What a worker is told.
#[derive(Debug)]
pub enum WorkerMsg {
    /// The pod was added or changed.
    Apply(Arc<Pod>),
    /// The pod is gone from the API.
    Delete(Arc<Pod>),
    /// The watch re-listed: these are all the node's pods.
    Resync(Vec<Arc<Pod>>),
    /// The runtime changed something about this pod (uid).
    Wake(String),
    /// A status write finished (`Some(status)` when it succeeded).
    StatusWritten { uid: String, written: Option<Box<PodStatus>> },
    /// A deletion confirmation finished.
    Confirmed { uid: String, ok: bool },
}

struct PodEntry {
    pod: Arc<Pod>,
    /// The last status written successfully (the watch may not have brought it back yet).
    written: Option<PodStatus>,
    writing: bool,
    /// The pod was synced while a write was in flight: sync again when it returns.
    dirty: bool,
    confirming: bool,
    wake_at: Option<Instant>,
}

/// How long a failed write waits before the pod is synced again.
const RETRY: Duration = Duration::from_secs(1);

/// See the module docs.
pub struct Worker {
    node: String,
    node_ip: String,
    api: ApiAccess,
    runtime: Arc<dyn Runtime>,
    pods: HashMap<String, PodEntry>,
    tx: mpsc::UnboundedSender<WorkerMsg>,
    rx: mpsc::UnboundedReceiver<WorkerMsg>,
}

impl Worker {
    /// A worker for `node` fed through `rx`; `tx` must be the sender of the same channel
    /// (write completions come back through it).
    pub fn new(
        node: String,
        node_ip: String,
        api: ApiAccess,
        runtime: Arc<dyn Runtime>,
        tx: mpsc::UnboundedSender<WorkerMsg>,
        rx: mpsc::UnboundedReceiver<WorkerMsg>,
    ) -> Worker {
        Worker { node, node_ip, api, runtime, pods: HashMap::new(), tx, rx }
    }

    /// Runs until `cancel`. Containers are left as they are (running pods keep running
    /// while the agent is away).
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let next_wake = self.pods.values().filter_map(|e| e.wake_at).min();
            let timer = async {
                match next_wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                msg = self.rx.recv() => match msg {
                    Some(m) => self.handle(m).await,
                    None => return,
                },
                _ = timer => {
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .pods
                        .iter()
                        .filter(|(_, e)| e.wake_at.is_some_and(|w| w <= now))
                        .map(|(u, _)| u.clone())
                        .collect();
                    for uid in due {
                        if let Some(e) = self.pods.get_mut(&uid) {
                            e.wake_at = None;
                        }
                        self.sync(&uid).await;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Apply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.upsert(pod);
                self.sync(&uid).await;
            }
            WorkerMsg::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.pods.remove(&uid);
                self.sync(&uid).await;
            }
            WorkerMsg::Resync(pods) => {
                let listed: std::collections::HashSet<String> =
                    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                let gone: Vec<String> = self.pods.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                for uid in gone {
                    self.pods.remove(&uid);
                    self.sync(&uid).await;
                }
                for pod in pods {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    self.upsert(pod);
                    self.sync(&uid).await;
                }
            }
            WorkerMsg::Wake(uid) => self.sync(&uid).await,
            WorkerMsg::StatusWritten { uid, written } => {
                let Some(e) = self.pods.get_mut(&uid) else { return };
                e.writing = false;
                let failed = written.is_none();
                if let Some(s) = written {
                    e.written = Some(*s);
                }
                if failed {
                    e.wake_at = Some(Instant::now() + RETRY);
                } else if std::mem::take(&mut e.dirty) {
                    self.sync(&uid).await;
                }
            }
            WorkerMsg::Confirmed { uid, ok } => {
                if let Some(e) = self.pods.get_mut(&uid) {
                    e.confirming = false;
                    if !ok {
                        e.wake_at = Some(Instant::now() + RETRY);
                    }
                }
            }
        }
    }

    fn upsert(&mut self, pod: Arc<Pod>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match self.pods.get_mut(&uid) {
            Some(e) => {
                // Our write is back: the API's status is the base again.
                if e.written.is_some() && pod.status == e.written {
                    e.written = None;
                }
                e.pod = pod;
            }
            None => {
                self.pods.insert(
                    uid,
                    PodEntry { pod, written: None, writing: false, dirty: false, confirming: false, wake_at: None },
                );
            }
        }
    }

    /// Converges one pod (or, when the API no longer has it, stops and forgets its
    /// containers).
    async fn sync(&mut self, uid: &str) {
        let Some(entry) = self.pods.get(uid) else {
            let observed = self.runtime.containers(uid);
            if observed.is_empty() {
                return;
            }
            let (actions, done) = sync::plan_orphan(&observed);
            for a in actions {
                if let Action::Stop { container, grace } = a {
                    self.runtime.stop(uid, &container, grace);
                }
            }
            if done || sync::plan_orphan(&self.runtime.containers(uid)).1 {
                self.runtime.forget(uid);
            }
            return;
        };
        // Plan against the newest status: the one last written may not be back from the
        // watch yet (other writers do not touch the fields the agent owns).
        let pod = match &entry.written {
            Some(w) if entry.pod.status.as_ref() != Some(w) => {
                let mut p = (*entry.pod).clone();
                p.status = Some(w.clone());
                Arc::new(p)
            }
            _ => entry.pod.clone(),
        };
        let ctx = Context { now: runtime::now(), node_ip: self.node_ip.clone() };
        let mut plan = sync::plan(&pod, &self.runtime.containers(uid), &ctx);
        let acted = plan.actions.iter().any(|a| !matches!(a, Action::ConfirmDeletion));
        if acted {
            for a in &plan.actions {
                match a {
                    Action::Start(name) => self.start(&pod, name).await,
                    Action::Stop { container, grace } => self.runtime.stop(uid, container, *grace),
                    Action::ConfirmDeletion => {}
                }
            }
            // Observe the result of what was just done, so the status written is current.
            plan = sync::plan(&pod, &self.runtime.containers(uid), &ctx);
            plan.actions.retain(|a| matches!(a, Action::ConfirmDeletion));
        }
        let entry = self.pods.get_mut(uid).expect("checked above");
        entry.wake_at = plan.wake_at.map(|t| instant_at(t, ctx.now));
        let confirm = plan.actions.contains(&Action::ConfirmDeletion) && !entry.confirming;
        entry.confirming |= confirm;
        let mut write = None;
        if let Some(status) = plan.status {
            let unchanged = pod.status.as_ref() == Some(&status) || entry.written.as_ref() == Some(&status);
            if !unchanged && entry.writing {
                entry.dirty = true;
            } else if !unchanged {
                entry.writing = true;
                write = Some(status);
            }
        }
        if confirm {
            self.confirm_deletion(&pod);
        }
        if let Some(status) = write {
            self.write_status(&pod, status);
        }
    }

    async fn start(&self, pod: &Pod, name: &str) {
        let Some(container) = pod.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == name)) else {
            return;
        };
        let env = if self.runtime.uses_env() {
            match crate::runtime::env::resolve(&self.api, pod, container, &self.node_ip).await {
                Ok(env) => env,
                Err(message) => {
                    self.runtime.record_failure(pod, container, "CreateContainerConfigError", &message);
                    return;
                }
            }
        } else {
            Vec::new()
        };
        tracing::debug!(node = %self.node, pod = ?pod.metadata.name, container = name, "starting container");
        self.runtime.start(pod, container, env);
    }

    fn write_status(&self, pod: &Pod, status: PodStatus) {
        let (api, tx) = (self.api.clone(), self.tx.clone());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(api.client.clone(), &ns);
            let patch = json!({"status": status});
            let result = api
                .write(
                    format!("writing status of pod {ns}/{name}"),
                    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await;
            let written = match result {
                Ok(_) => Some(Box::new(status)),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    tracing::warn!(error = %e, "pod status write failed; retrying");
                    None
                }
            };
            let _ = tx.send(WorkerMsg::StatusWritten { uid, written });
        });
    }

    fn confirm_deletion(&self, pod: &Pod) {
        let (api, tx) = (self.api.clone(), self.tx.clone());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(api.client.clone(), &ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            let result =
                api.write(format!("confirming deletion of pod {ns}/{name}"), pods.delete(&name, &params)).await;
            let ok = match result {
                Ok(_) => true,
                // Gone already, or a new pod took the name (uid precondition): nothing to do.
                Err(e) if e.is_not_found() => true,
                Err(crate::AgentError::Api { source: kube::Error::Api(s), .. }) if s.code == 409 => true,
                Err(e) => {
                    tracing::warn!(error = %e, "confirming pod deletion failed; retrying");
                    false
                }
            };
            let _ = tx.send(WorkerMsg::Confirmed { uid, ok });
        });
    }
}

/// The monotonic instant matching wall-clock `at`, given that `now` is the wall clock now.
fn instant_at(at: Timestamp, now: Timestamp) -> Instant {
    let wait = at.duration_since(now);
    Instant::now() + Duration::try_from(wait).unwrap_or(Duration::ZERO)
}
