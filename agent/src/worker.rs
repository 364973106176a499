//! The node worker: one task per node that owns the node's pods, asks [`sync::plan`] what
//! to do whenever a pod changes (watch event), a runtime reports a change (wake) or a
//! back-off ends (timer), executes the plan against the [`Runtime`], and writes pod status
//! and deletion confirmations. API writes run in their own tasks and report back, so a
//! slow or unreachable API never stalls container handling; a failed write is retried.
//!
//! The worker also owns what sits between the API and the runtime: probes (one
//! [`prober`] task per probed container run, whose results are overlaid on the runtime's
//! records before planning), volumes (prepared before a container starts and refreshed
//! every [`VOLUME_REFRESH`] so ConfigMap/Secret updates reach the files), and the last
//! environment each container started with (reused when the API is unreachable, so
//! restart policies still apply while the control plane is down; each pod is also
//! checkpointed in its directory so an agent restarted during an outage carries on). Pods
//! the runtime has
//! but the API does not list are stopped — but only after a first successful listing, so
//! an agent restarted while the API is down never kills what it re-adopted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hooks;
use crate::node::ApiAccess;
use crate::prober;
use crate::runtime::{self, mounts, ContainerRecord, Mount, PodAddress, RunState, Runtime};
use crate::sync::{self, Action, Context};
use crate::volumes;

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
    /// When the pod's ConfigMap/Secret volumes were last refreshed.
    volumes_at: Option<Instant>,
}

/// How often ConfigMap and Secret volumes of running pods are refreshed.
pub const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// The pod checkpoint's file name in the pod's directory.
const CHECKPOINT: &str = "pod.json";

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
    /// Probing of running containers, by (pod uid, container).
    probers: HashMap<(String, String), prober::Handle>,
    /// The environment each container last started with, by (pod uid, container).
    envs: HashMap<(String, String), Vec<(String, String)>>,
    /// A complete listing of the node's pods has been seen.
    listed: bool,
    /// Containers whose `preStop` hook has been started, by (pod uid, container): the
    /// hook's task stops the container when it ends, so a later sync must not stop it early.
    pre_stops: std::collections::HashSet<(String, String)>,
    /// The `postStart` hook of each container run that has one, by (pod uid, container).
    post_starts: HashMap<(String, String), PostStart>,
    events: crate::events::PodEvents,
}

/// A container run's `postStart` hook: running (no outcome yet), or done.
struct PostStart {
    run_id: String,
    outcome: Arc<std::sync::Mutex<Option<Result<(), String>>>>,
    /// A failure has been acted on (event written, container killed).
    handled: bool,
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
        events: crate::events::PodEvents,
    ) -> Worker {
        Worker {
            node,
            node_ip,
            api,
            runtime,
            pods: HashMap::new(),
            tx,
            rx,
            probers: HashMap::new(),
            envs: HashMap::new(),
            listed: false,
            pre_stops: Default::default(),
            post_starts: HashMap::new(),
            events,
        }
    }

    /// Runs until `cancel`. Containers are left as they are (running pods keep running
    /// while the agent is away).
    pub async fn run(mut self, cancel: CancellationToken) {
        self.restore().await;
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
                self.listed = true;
                let listed: std::collections::HashSet<String> =
                    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                let mut gone: Vec<String> = self.pods.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                // Containers of pods deleted while this agent (or a previous one) was away.
                for uid in self.runtime.pods(&self.node) {
                    if !listed.contains(&uid) && !gone.contains(&uid) {
                        tracing::info!(node = %self.node, pod = %uid, "stopping the containers of a pod the API no longer has");
                        gone.push(uid);
                    }
                }
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
                    PodEntry {
                        pod,
                        written: None,
                        writing: false,
                        dirty: false,
                        confirming: false,
                        wake_at: None,
                        volumes_at: None,
                    },
                );
            }
        }
    }

    /// Saves the pod as it was when its containers were last started (`pod.json` in the
    /// pod's directory), so an agent restarted while the API is down still knows it.
    fn checkpoint(&self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let Some(dir) = self.runtime.pod_dir(uid) else { return };
        let (path, tmp) = (dir.join(CHECKPOINT), dir.join(format!("{CHECKPOINT}.tmp")));
        let result = std::fs::create_dir_all(&dir)
            .and_then(|_| runtime::process::write_private(&tmp, &serde_json::to_vec(pod).unwrap_or_default()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "checkpointing the pod failed");
        }
    }

    /// Takes up the checkpointed pods of the containers the runtime re-adopted: until the
    /// API is listed, they are synced from their checkpoints (restart policies apply even
    /// when the agent restarts while the API is down); the first listing then corrects them.
    async fn restore(&mut self) {
        for uid in self.runtime.pods(&self.node) {
            let Some(dir) = self.runtime.pod_dir(&uid) else { continue };
            let Ok(data) = std::fs::read(dir.join(CHECKPOINT)) else { continue };
            match serde_json::from_slice::<Pod>(&data) {
                Ok(pod) => {
                    self.upsert(Arc::new(pod));
                    self.sync(&uid).await;
                }
                Err(e) => tracing::warn!(pod = %uid, error = %e, "unreadable pod checkpoint"),
            }
        }
    }

    /// The address the pod's httpGet probes and hooks go to.
    fn probe_address(&self, uid: &str) -> String {
        match self.runtime.pod_address(uid) {
            PodAddress::Own(ip) => ip,
            PodAddress::Node | PodAddress::Pending => self.node_ip.clone(),
        }
    }

    /// Stops a container gracefully, running its `preStop` hook (exec, httpGet or sleep)
    /// first, as the kubelet does: the hook gets the grace period, SIGTERM follows when it
    /// ends (with what is left of the grace, at least 2 s), SIGKILL after that. A failed
    /// hook is a `FailedPreStopHook` event; the container is stopped all the same.
    fn stop_container(&mut self, pod: &Pod, container: &str, grace: Duration) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == container));
        let handler = spec.and_then(|c| Some((c, hooks::pre_stop(c)?)));
        let Some((spec, handler)) = handler.filter(|_| !grace.is_zero() && self.runtime.supports_probes()) else {
            self.runtime.stop(&uid, container, grace);
            return;
        };
        if !self.pre_stops.insert((uid.clone(), container.to_string())) {
            return; // the hook is running; its task stops the container
        }
        let hook = hooks::Hook::of(handler, spec, &self.probe_address(&uid));
        let runtime = self.runtime.clone();
        let target = runtime.exec_target(&uid, container);
        let container = container.to_string();
        let (events, pod) = (self.events.clone(), pod.clone());
        tracing::info!(node = %self.node, pod = ?pod.metadata.name, container = %container, "running the preStop hook");
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let ran = match &hook {
                Ok(hook) => hooks::run(hook, target.as_ref(), grace).await,
                Err(e) => Err(e.clone()),
            };
            if let Err(e) = ran {
                let message = hooks::failure_message(hook.as_ref().ok(), &container, &pod_ref(&pod), &e);
                tracing::info!(container = %container, error = %e, "preStop hook failed");
                events.warning(&pod, Some(&container), "FailedPreStopHook", message);
            }
            let left = grace.saturating_sub(started.elapsed()).max(Duration::from_secs(2));
            runtime.stop(&uid, &container, left);
        });
    }

    /// Runs `c`'s `postStart` hook once for each new run of it, as the kubelet does: the
    /// container shows as still being created (Waiting, not ready, not probed) until the
    /// hook ends; when it fails, a `FailedPostStartHook` event is written and the container
    /// is killed, to restart per `restartPolicy`.
    fn post_start(&mut self, pod: &Pod, c: &k8s_openapi::api::core::v1::Container, r: &mut ContainerRecord) {
        let Some(handler) = hooks::post_start(c) else { return };
        if !matches!(r.state, RunState::Running { .. }) || r.stopping {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid.clone(), r.name.clone());
        if self.post_starts.get(&key).is_none_or(|p| p.run_id != r.id) {
            let hook = hooks::Hook::of(handler, c, &self.probe_address(&uid));
            let target = self.runtime.exec_target(&uid, &r.name);
            let outcome = Arc::new(std::sync::Mutex::new(None));
            let (done, tx, u) = (outcome.clone(), self.tx.clone(), uid.clone());
            tracing::info!(node = %self.node, pod = ?pod.metadata.name, container = %r.name, "running the postStart hook");
            tokio::spawn(async move {
                let result = match &hook {
                    Ok(hook) => hooks::run(hook, target.as_ref(), hooks::POST_START_TIMEOUT).await,
                    Err(e) => Err(e.clone()),
                };
                *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                let _ = tx.send(WorkerMsg::Wake(u));
            });
            self.post_starts.insert(key.clone(), PostStart { run_id: r.id.clone(), outcome, handled: false });
        }
        let entry = self.post_starts.get_mut(&key).expect("inserted above");
        let outcome = entry.outcome.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match outcome {
            None => {
                r.state = RunState::Starting;
                r.ready = false;
            }
            Some(Ok(())) => {}
            Some(Err(error)) => {
                r.ready = false;
                if !std::mem::replace(&mut entry.handled, true) {
                    // Only the hook's description is needed here, not its address.
                    let hook = hooks::Hook::of(handler, c, "").ok();
                    let message = hooks::failure_message(hook.as_ref(), &r.name, &pod_ref(pod), &error);
                    tracing::info!(pod = ?pod.metadata.name, container = %r.name, %error, "postStart hook failed");
                    self.events.warning(pod, Some(&r.name), "FailedPostStartHook", message);
                    let grace = sync::pod_grace(pod);
                    self.runtime.kill(&uid, &r.name, grace);
                }
            }
        }
    }

    /// Converges one pod (or, when the API no longer has it, stops and forgets its
    /// containers).
    async fn sync(&mut self, uid: &str) {
        let Some(entry) = self.pods.get(uid) else {
            self.probers.retain(|(u, _), _| u != uid);
            self.envs.retain(|(u, _), _| u != uid);
            self.pre_stops.retain(|(u, _)| u != uid);
            self.post_starts.retain(|(u, _), _| u != uid);
            if !self.listed {
                return; // not known to be gone yet: the API has not been listed
            }
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
        let pod_ip = match self.runtime.pod_address(uid) {
            PodAddress::Node => Some(self.node_ip.clone()),
            PodAddress::Pending => None,
            PodAddress::Own(ip) => Some(ip),
        };
        let ctx = Context { now: runtime::now(), node_ip: self.node_ip.clone(), pod_ip };
        let refresh_at = self.refresh_volumes(&pod).await;
        let mut plan = sync::plan(&pod, &self.observe(&pod), &ctx);
        let acted = plan.actions.iter().any(|a| !matches!(a, Action::ConfirmDeletion));
        if acted {
            for a in &plan.actions {
                match a {
                    Action::Start(name) => self.start(&pod, name).await,
                    Action::Stop { container, grace } => self.stop_container(&pod, container, *grace),
                    Action::Kill { container, grace } => {
                        tracing::info!(node = %self.node, pod = ?pod.metadata.name, container = %container,
                            "killing a container that failed its liveness or startup probe");
                        let why = self
                            .runtime
                            .containers(uid)
                            .into_iter()
                            .find(|r| r.name == *container)
                            .and_then(|r| r.unhealthy)
                            .unwrap_or_default();
                        let probe = why.split(' ').next().unwrap_or("Liveness").to_lowercase();
                        self.events.warning(&pod, Some(container), "Unhealthy", why.clone());
                        self.events.normal(
                            &pod,
                            Some(container),
                            "Killing",
                            format!("Container {container} failed {probe} probe, will be restarted"),
                        );
                        self.runtime.kill(uid, container, *grace)
                    }
                    Action::ConfirmDeletion => {}
                }
            }
            // Observe the result of what was just done, so the status written is current.
            plan = sync::plan(&pod, &self.observe(&pod), &ctx);
            plan.actions.retain(|a| matches!(a, Action::ConfirmDeletion));
        }
        if let Some(status) = &plan.status {
            for container in entered_back_off(pod.status.as_ref(), status) {
                let note = format!("Back-off restarting failed container {container} in pod {}", pod.name_any());
                self.events.warning(&pod, Some(&container), "BackOff", note);
            }
        }
        let entry = self.pods.get_mut(uid).expect("checked above");
        entry.wake_at = plan.wake_at.map(|t| instant_at(t, ctx.now));
        if let Some(at) = refresh_at {
            entry.wake_at = Some(entry.wake_at.map_or(at, |w| w.min(at)));
        }
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

    /// The runtime's records of `pod`'s containers with probe results overlaid (starting
    /// probing for new runs, ending it for finished ones).
    fn observe(&mut self, pod: &Pod) -> Vec<ContainerRecord> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let mut records = self.runtime.containers(uid);
        if !self.runtime.supports_probes() {
            return records;
        }
        let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        for r in &mut records {
            let Some(c) = containers.iter().find(|c| c.name == r.name) else { continue };
            self.post_start(pod, c, r);
            if !prober::has_probes(c) {
                continue;
            }
            let key = (uid.to_string(), r.name.clone());
            let RunState::Running { started_at } = r.state else {
                self.probers.remove(&key);
                continue;
            };
            if r.stopping {
                self.probers.remove(&key);
                r.ready = false;
                continue;
            }
            if self.probers.get(&key).is_none_or(|h| h.run_id != r.id) {
                let pod_ip = self.probe_address(uid);
                let target =
                    prober::Target { pod_ip, container: c.clone(), exec: self.runtime.exec_target(uid, &r.name) };
                let since = Duration::try_from(Timestamp::now().duration_since(started_at)).unwrap_or_default();
                let (tx, u) = (self.tx.clone(), uid.to_string());
                let changed = Arc::new(move || {
                    let _ = tx.send(WorkerMsg::Wake(u.clone()));
                });
                self.probers.insert(key.clone(), prober::spawn(r.id.clone(), target, since, changed));
            }
            let h = self.probers[&key].health();
            r.started = h.started;
            r.ready = r.ready && h.ready;
            r.unhealthy = h.kill;
        }
        records
    }

    /// Refreshes the ConfigMap/Secret volumes of a pod with running containers when due;
    /// returns when to look again.
    async fn refresh_volumes(&mut self, pod: &Pod) -> Option<Instant> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() || !volumes::has_projected(pod) {
            return None;
        }
        let dir = self.runtime.pod_dir(uid)?;
        if !self.runtime.containers(uid).iter().any(|r| r.is_active()) {
            return None;
        }
        let last = self.pods.get(uid)?.volumes_at;
        if last.is_none_or(|t| t.elapsed() >= VOLUME_REFRESH) {
            if let Err(e) = volumes::prepare(&self.api, pod, &dir.join("volumes")).await {
                tracing::debug!(pod = ?pod.metadata.name, error = %e, "refreshing volumes failed");
            }
            if let Some(e) = self.pods.get_mut(uid) {
                e.volumes_at = Some(Instant::now());
            }
        }
        self.pods.get(uid)?.volumes_at.map(|t| t + VOLUME_REFRESH)
    }

    async fn start(&mut self, pod: &Pod, name: &str) {
        let spec = pod.spec.as_ref();
        let all = spec.map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()));
        let Some(container) = all.and_then(|mut cs| cs.find(|c| c.name == name)) else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid.clone(), name.to_string());
        let env = if self.runtime.uses_env() {
            match crate::runtime::env::resolve(&self.api, pod, container, &self.node_ip).await {
                Ok(env) => {
                    self.envs.insert(key, env.clone());
                    env
                }
                // The API is unreachable: restart with what the container last ran with.
                Err(message) if message.starts_with("reading ") && self.envs.contains_key(&key) => {
                    tracing::info!(pod = ?pod.metadata.name, container = name, %message, "reusing the last environment");
                    self.envs[&key].clone()
                }
                Err(message) => {
                    self.runtime.record_failure(pod, container, "CreateContainerConfigError", &message);
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let mounts = match self.mounts(pod, container).await {
            Ok(m) => m,
            Err(message) => {
                self.runtime.record_failure(pod, container, "CreateContainerConfigError", &message);
                return;
            }
        };
        tracing::debug!(node = %self.node, pod = ?pod.metadata.name, container = name, "starting container");
        self.checkpoint(pod);
        self.runtime.start(pod, container, env, mounts);
    }

    /// Prepares the pod's volumes and plans `container`'s mounts (runtimes with a pod
    /// directory only).
    async fn mounts(
        &mut self,
        pod: &Pod,
        container: &k8s_openapi::api::core::v1::Container,
    ) -> Result<Vec<Mount>, String> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let Some(dir) = self.runtime.pod_dir(uid) else { return Ok(Vec::new()) };
        let has_volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|v| !v.is_empty());
        if !has_volumes {
            return mounts::plan(pod, container, &dir.join("volumes"));
        }
        let vdir = dir.join("volumes");
        match volumes::prepare(&self.api, pod, &vdir).await {
            Ok(()) => {
                if let Some(e) = self.pods.get_mut(uid) {
                    e.volumes_at = Some(Instant::now());
                }
            }
            // The API is unreachable but the volumes were prepared before: use them.
            Err(m) if m.starts_with("reading ") && vdir.is_dir() => {
                tracing::info!(pod = ?pod.metadata.name, error = %m, "using the volumes as last prepared");
            }
            Err(m) => return Err(m),
        }
        mounts::plan(pod, container, &vdir)
    }

    fn write_status(&self, pod: &Pod, status: PodStatus) {
        let (api, tx) = (self.api.clone(), self.tx.clone());
        let (uid, ns, name, _) = runtime::pod_keys(pod);
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
        let (uid, ns, name, _) = runtime::pod_keys(pod);
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

/// The containers that are in `CrashLoopBackOff` in `new` but were not in `old` (pure): each
/// gets one BackOff event per entry into back-off.
fn entered_back_off(old: Option<&PodStatus>, new: &PodStatus) -> Vec<String> {
    let backing_off = |s: Option<&PodStatus>| -> Vec<String> {
        s.and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| {
                c.state.as_ref().and_then(|st| st.waiting.as_ref()).and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
            .map(|c| c.name.clone())
            .collect()
    };
    let before = backing_off(old);
    backing_off(Some(new)).into_iter().filter(|c| !before.contains(c)).collect()
}

/// A pod as the kubelet names it in its events: `name_namespace(uid)`.
fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(waiting: &[(&str, &str)]) -> PodStatus {
        serde_json::from_value(serde_json::json!({"containerStatuses": waiting.iter().map(|(name, reason)| {
            serde_json::json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 1,
                "state": {"waiting": {"reason": reason}}})
        }).collect::<Vec<_>>()}))
        .unwrap()
    }

    #[test]
    fn a_back_off_event_marks_each_entry_into_crash_loop_back_off() {
        let new = status(&[("a", "CrashLoopBackOff"), ("b", "CrashLoopBackOff"), ("c", "ContainerCreating")]);
        let old = status(&[("a", "CrashLoopBackOff")]);
        assert_eq!(entered_back_off(Some(&old), &new), vec!["b".to_string()]);
        assert_eq!(entered_back_off(None, &new), vec!["a".to_string(), "b".to_string()]);
    }
}
