//! The container runtime seam. A [`Runtime`] starts and stops containers and reports what
//! it observes; it never decides anything (that is [`crate::sync`]). Every method returns
//! at once: work that takes time (a fake start delay, a grace period, a process exit)
//! happens in the background and is announced through the [`Wake`] callback so the pod's
//! node worker re-syncs it.

pub mod cgroups;
pub mod cri;
pub mod env;
pub mod fake;
pub mod logline;
pub mod mounts;
pub mod process;
pub mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;

pub use crate::prober::ExecTarget;
pub use mounts::Mount;

/// Called by a runtime when something about a pod's containers changed in the background:
/// `(node name, pod uid)`. Changes made inside a call (`start`, `stop`) are not announced;
/// the caller observes them itself.
pub type Wake = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A finished container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`…
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: String,
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Asked to start, not running yet.
    Starting,
    Running {
        started_at: Timestamp,
    },
    Exited(Terminated),
    /// The runtime could not create it (`CreateContainerError`); it is not retried.
    CreateFailed {
        reason: String,
        message: String,
    },
}

/// The runtime's view of one container of a pod (its latest run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub name: String,
    /// `fake://…` or `process://…`; empty before the first start.
    pub id: String,
    pub image: String,
    /// The image the runtime ran (`imageID`: a repo digest or image id); empty when it
    /// does not say.
    pub image_id: String,
    /// Starts so far minus one.
    pub restart_count: i32,
    pub state: RunState,
    /// Whether a running container counts as ready (the runtime's view: running means
    /// ready, except where the fake runtime is told otherwise; the node worker overlays
    /// readiness probe results).
    pub ready: bool,
    /// Whether the startup gate is open (true from the runtime; the worker overlays the
    /// startup probe).
    pub started: bool,
    /// A liveness or startup probe failed for this run (set by the worker): kill it.
    pub unhealthy: Option<String>,
    /// The run before this one, when it has finished.
    pub last_terminated: Option<Terminated>,
    /// A stop was asked for this run (a deleting pod's containers are not restarted).
    pub stopping: bool,
    /// The run is being killed to be restarted (a failed liveness probe).
    pub killing: bool,
}

impl ContainerRecord {
    /// A record before its first start.
    pub fn new(name: &str, image: &str, state: RunState) -> ContainerRecord {
        ContainerRecord {
            name: name.into(),
            id: String::new(),
            image: image.into(),
            image_id: String::new(),
            restart_count: 0,
            state,
            ready: true,
            started: true,
            unhealthy: None,
            last_terminated: None,
            stopping: false,
            killing: false,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, RunState::Starting | RunState::Running { .. })
    }
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: Timestamp,
    pub text: String,
}

/// Where a container's logs are.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// Held in memory (fake runtime).
    Memory(Vec<LogLine>),
    /// A file of [`logline`] lines that grows until `finished`.
    File { path: PathBuf, finished: Arc<AtomicBool> },
}

/// A pod's IP as its runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAddress {
    /// The pod shares the node's network.
    Node,
    /// The pod gets its own address, not known yet (its sandbox is being created).
    Pending,
    Own(String),
}

/// Which standard streams an exec or attach session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// An interactive session to open in a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    Exec { namespace: String, pod: String, container: String, command: Vec<String>, options: StreamOptions },
    Attach { namespace: String, pod: String, container: String, options: StreamOptions },
    PortForward { namespace: String, pod: String, ports: Vec<i32> },
}

/// Why a session cannot be opened: `NotFound` (no such running container or pod here) or
/// anything else (the runtime refused or cannot stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRefused {
    NotFound(String),
    Failed(String),
}

/// Starts, stops and observes containers. Implementations are cheap to call from the
/// node workers' loops: no method blocks.
pub trait Runtime: Send + Sync + 'static {
    /// Starts (or restarts) `container` of `pod` with `env` already resolved and `mounts`
    /// in place. A failure to create is recorded as [`RunState::CreateFailed`], not
    /// returned.
    fn start(&self, pod: &Pod, container: &Container, env: Vec<(String, String)>, mounts: Vec<Mount>);

    /// Stops a container for good: SIGTERM (or the fake equivalent), then kill after `grace`.
    fn stop(&self, pod_uid: &str, container: &str, grace: Duration);

    /// Kills a container's current run so that it is restarted per `restartPolicy`
    /// (liveness failure): like `stop`, but the record is marked `killing`, not `stopping`.
    fn kill(&self, pod_uid: &str, container: &str, grace: Duration) {
        self.stop(pod_uid, container, grace)
    }

    /// Whether the node worker should run probes for this runtime's containers.
    fn supports_probes(&self) -> bool {
        false
    }

    /// Where a container's exec probes run.
    fn exec_target(&self, _pod_uid: &str, _container: &str) -> Option<ExecTarget> {
        None
    }

    /// For runtimes whose containers are host processes: where `kubectl exec` into a
    /// running container runs (the agent serves it itself; [`Runtime::stream_url`] is for
    /// runtimes with a streaming server). Ok(None): this runtime streams through a URL.
    fn host_exec(&self, _namespace: &str, _pod: &str, _container: &str) -> Result<Option<ExecTarget>, StreamRefused> {
        Ok(None)
    }

    /// The pod's directory on the node (volumes live under `volumes/`), for runtimes that
    /// run real processes.
    fn pod_dir(&self, _pod_uid: &str) -> Option<PathBuf> {
        None
    }

    /// Which address the pod has: the node's (host processes, hollow pods, `hostNetwork`),
    /// or its own sandbox's.
    fn pod_address(&self, _pod_uid: &str) -> PodAddress {
        PodAddress::Node
    }

    /// The URL of the runtime's streaming server for `request` (CRI `Exec`, `Attach`,
    /// `PortForward`); by default the runtime cannot stream.
    fn stream_url(
        &self,
        _request: StreamRequest,
    ) -> futures::future::BoxFuture<'static, Result<String, StreamRefused>> {
        let refused = StreamRefused::Failed(format!(
            "the {} runtime does not serve exec, attach or port-forward",
            self.version().split("://").next().unwrap_or("node's")
        ));
        Box::pin(async move { Err(refused) })
    }

    /// Resource usage of the running containers, by pod (empty: this runtime does not
    /// measure).
    fn stats(&self) -> Vec<stats::PodUsage> {
        Vec::new()
    }

    /// What is known about the containers of a pod, in no particular order.
    fn containers(&self, pod_uid: &str) -> Vec<ContainerRecord>;

    /// The pods this runtime has containers for on `node`.
    fn pods(&self, node: &str) -> Vec<String>;

    /// Drops everything about a pod whose containers have all finished.
    fn forget(&self, pod_uid: &str);

    /// The logs of `container` in pod `namespace/name` (its previous run with `previous`).
    fn logs(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<LogSource>;

    /// Whether `start` uses the environment (the worker resolves `env`/`envFrom` through
    /// the API only for runtimes that do).
    fn uses_env(&self) -> bool {
        false
    }

    /// Records that a container could not be started for a reason found before the runtime
    /// was asked (`CreateContainerConfigError`: a missing ConfigMap key…).
    fn record_failure(&self, pod: &Pod, container: &Container, reason: &str, message: &str);

    /// `fake://0.1.0`-style version for `nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> String;

    /// The agent is stopping: end whatever must not outlive it (the process runtime leaves
    /// its containers running unless configured to stop them; nothing to do for the fake
    /// one).
    fn shutdown(&self) {}

    /// Containers still running (and, for runtimes that remove them in the background,
    /// pods still being removed).
    fn active(&self) -> usize {
        0
    }

    /// How long a stopping agent waits for `active` to reach 0 after `shutdown`.
    fn stop_grace(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// Truncates to whole seconds, as the API stores times; statuses compare equal after a
/// round trip.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Now, in whole seconds.
pub fn now() -> Timestamp {
    whole_seconds(Timestamp::now())
}

/// A runtime's bookkeeping of its pods: each by uid, and which uid a (namespace, name) is now
/// (logs are asked for by name). `C` is the runtime's own container record.
pub(crate) struct PodTable<C> {
    pub pods: HashMap<String, RuntimePod<C>>,
    pub by_name: HashMap<(String, String), String>,
}

impl<C> Default for PodTable<C> {
    fn default() -> Self {
        PodTable { pods: HashMap::new(), by_name: HashMap::new() }
    }
}

/// One pod in a [`PodTable`].
pub(crate) struct RuntimePod<C> {
    pub node: String,
    pub namespace: String,
    pub name: String,
    pub containers: HashMap<String, C>,
}

impl<C> PodTable<C> {
    /// The pod `uid`, made without containers when new; `namespace/name` now names it.
    pub fn entry(&mut self, uid: String, namespace: String, name: String, node: String) -> &mut RuntimePod<C> {
        self.by_name.insert((namespace.clone(), name.clone()), uid.clone());
        self.pods.entry(uid).or_insert_with(|| RuntimePod { node, namespace, name, containers: HashMap::new() })
    }

    /// Drops the pod `uid`, and its name unless a newer pod has taken it.
    pub fn remove(&mut self, uid: &str) {
        if let Some(p) = self.pods.remove(uid) {
            let key = (p.namespace, p.name);
            if self.by_name.get(&key).is_some_and(|u| u == uid) {
                self.by_name.remove(&key);
            }
        }
    }

    /// The container `container` of the pod now named `namespace/pod`.
    pub fn named_container(&self, namespace: &str, pod: &str, container: &str) -> Option<&C> {
        let uid = self.by_name.get(&(namespace.to_string(), pod.to_string()))?;
        self.pods.get(uid)?.containers.get(container)
    }
}

/// Identity of a pod in runtime bookkeeping.
pub(crate) fn pod_keys(pod: &Pod) -> (String, String, String, String) {
    let m = &pod.metadata;
    (
        m.uid.clone().unwrap_or_default(),
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.name.clone().unwrap_or_default(),
        pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
    )
}
