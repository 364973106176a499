//! [`CriRuntime`]: the agent's [`Runtime`] over CRI — a pod is a CRI sandbox (its own
//! network namespace and IP, unless `hostNetwork`), each container is created from its
//! image in that sandbox, as the kubelet does it.
//!
//! Every [`Runtime`] method returns at once; the CRI calls run on tokio tasks and announce
//! their outcome through [`Wake`]:
//! * `start` creates the pod's sandbox on first use (once per pod, serialized by a per-pod
//!   lock), makes sure the image is present per `imagePullPolicy`, then creates and starts
//!   the container (Kubernetes' entrypoint rules are the runtime's: `command` replaces
//!   the image's ENTRYPOINT, `args` its CMD; the image's env, workdir and user apply);
//! * a monitor polls the status of running containers every [`MONITOR_EVERY`] and records
//!   exits (code, reason, times);
//! * `stop`/`kill` ask the runtime to stop with the grace period as timeout;
//! * `forget` removes the containers and the sandbox.
//!
//! A failed pull shows `ErrImagePull`, then `ImagePullBackOff` while it waits for the next
//! try (10 s doubling to 5 min), as the kubelet's.
//!
//! Logs are containerd's CRI log files (`logs/{container}/{attempt}.log` in the pod
//! directory), rotated by size as the kubelet does.
//!
//! Exec, attach and port-forward get their URL on containerd's streaming server from CRI
//! (the agent's [`crate::streaming`] joins the client to it).
//!
//! Probes: exec through CRI `ExecSync`, httpGet/tcpSocket against the pod's own address.
//!
//! Not yet here (issue 18 continues):
//! probes (ExecSync, pod-IP http/tcp), pull secrets, resource limits, security context, and
//! re-adopting sandboxes after an agent restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::cri::{
    AttachRequest, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStatus as CriContainerStatus, ContainerStatusRequest, CreateContainerRequest, DnsConfig, ExecRequest,
    ExecSyncRequest, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, KeyValue, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, Mount as CriMount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatusRequest, PortForwardRequest, PullImageRequest, RemoveContainerRequest, RemoveImageRequest,
    RemovePodSandboxRequest, ReopenContainerLogRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::client::CriClient;
use crate::dns::resolv::{pod_resolv_conf, PodDnsSettings};
use crate::prober::RuntimeExec;
use crate::runtime::process::{RotatingLog, MAX_LOG_BYTES};
use crate::runtime::{
    ContainerRecord, ExecTarget, LogSource, Mount, PodAddress, RunState, Runtime, StreamRefused, StreamRequest,
    Terminated, Wake,
};
use futures::future::BoxFuture;

use super::image_gc::{same_reference, to_remove, Candidate, ImageGcPolicy};
use crate::events::PodEvents;

/// How often running containers' status is read.
pub const MONITOR_EVERY: Duration = Duration::from_secs(1);
/// How long one CRI call other than a pull may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an image pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `ErrImagePull` is shown before `ImagePullBackOff`.
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(1);
/// Image pull back-off: the kubelet's 10 s, doubling up to 5 min.
const PULL_BACK_OFF_FIRST: Duration = Duration::from_secs(10);
const PULL_BACK_OFF_MAX: Duration = Duration::from_secs(300);
/// Retries of a sandbox that could not be created: first after this, doubling up to the max.
const SANDBOX_RETRY_FIRST: Duration = Duration::from_millis(500);
const SANDBOX_RETRY_MAX: Duration = Duration::from_secs(10);
/// The sandbox label naming its pod (the kubelet's), by which leftovers are found.
const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// The sandbox label naming the node whose agent made it (an agent re-adopts its own).
const NODE_LABEL: &str = "io.berth.node.name";
/// The container-ID scheme in pod statuses (`containerd://…`).
const ID_SCHEME: &str = "containerd://";

/// A pod's sandbox, once created.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    /// The configuration it was made with; `None` for a sandbox adopted after a restart
    /// (rebuilt from the pod when a container is created in it).
    config: Option<PodSandboxConfig>,
}

/// One container of a pod: the runtime's record of its latest run and its CRI id.
#[derive(Debug, Clone)]
struct Slot {
    record: ContainerRecord,
    cri_id: Option<String>,
    /// Set when the current run has ended: a followed log stops there.
    log_finished: Arc<AtomicBool>,
}

impl Slot {
    fn new(record: ContainerRecord) -> Slot {
        Slot { record, cri_id: None, log_finished: Arc::new(AtomicBool::new(false)) }
    }
}

struct PodEntry {
    /// The pod as last started (events are about it).
    pod: Arc<Pod>,
    node: String,
    namespace: String,
    name: String,
    host_network: bool,
    ip: Option<String>,
    /// Created once: the first `start` of the pod holds the lock while creating it.
    sandbox: Arc<tokio::sync::Mutex<Option<Sandbox>>>,
    containers: HashMap<String, Slot>,
}

impl PodEntry {
    /// A pod the runtime has not seen before: no sandbox, no containers yet.
    fn of(pod: &Pod) -> PodEntry {
        PodEntry {
            pod: Arc::new(pod.clone()),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            host_network: is_host_network(pod),
            ip: None,
            sandbox: Arc::new(tokio::sync::Mutex::new(None)),
            containers: HashMap::new(),
        }
    }
}

struct Inner {
    client: CriClient,
    handle: tokio::runtime::Handle,
    wake: Wake,
    pods: Mutex<HashMap<String, PodEntry>>,
    /// `{data_dir}/pods`: each pod's volumes and CRI log directory.
    pods_dir: PathBuf,
    version: String,
    /// The node's memory (bytes), which scales Burstable containers' OOM score.
    node_memory: u64,
    events: PodEvents,
    /// Remove every pod's containers and sandbox when the agent stops.
    stop_on_exit: bool,
    /// Reads image pull secrets.
    api: kube::Client,
    image_gc: ImageGcPolicy,
    sandbox_image: String,
    /// What pods' resolv.conf is made from.
    pod_dns: PodDnsSettings,
    /// Per image id: when first seen and when a container last started from it.
    images_seen: Mutex<HashMap<String, (Timestamp, Timestamp)>>,
    /// Forgotten pods whose containers and sandbox are still being removed.
    removing: std::sync::atomic::AtomicUsize,
}

/// The CRI runtime; cheap to clone.
#[derive(Clone)]
pub struct CriRuntime {
    inner: Arc<Inner>,
}

/// The CRI failure of a call, as a status message (`reason: message`).
fn failed(call: &str, status: tonic::Status) -> String {
    format!("{call}: {}", status.message())
}

async fn bounded<T>(
    call: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(failed(call, status)),
        Err(_) => Err(format!("{call}: no answer within {} s", limit.as_secs())),
    }
}

/// Kubernetes' default pull policy: `Always` for `:latest` or untagged images, else
/// `IfNotPresent` (pure).
pub fn pull_policy(container: &Container) -> &str {
    if let Some(p) = container.image_pull_policy.as_deref() {
        return p;
    }
    let image = container.image.as_deref().unwrap_or_default();
    let name = image.rsplit('/').next().unwrap_or(image);
    let tagged = name.contains(':') && !name.ends_with(":latest");
    if tagged || image.contains('@') {
        "IfNotPresent"
    } else {
        "Always"
    }
}

/// The sandbox configuration of `pod` (pure): its identity, hostname (none with
/// `hostNetwork`, where runc refuses to set one), log directory, labels and annotations.
pub fn sandbox_config(pod: &Pod, log_directory: &str) -> PodSandboxConfig {
    let spec = pod.spec.as_ref();
    let host_network = is_host_network(pod);
    let mut labels: HashMap<String, String> = pod.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert("io.kubernetes.pod.name".into(), pod.name_any());
    labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace().unwrap_or_default());
    labels.insert(POD_UID_LABEL.into(), pod.uid().unwrap_or_default());
    labels.insert(NODE_LABEL.into(), spec.and_then(|s| s.node_name.clone()).unwrap_or_default());
    let hostname = match (host_network, spec.and_then(|s| s.hostname.clone())) {
        (true, _) => String::new(),
        (false, Some(h)) => h,
        (false, None) => pod.name_any(),
    };
    let network = if host_network { NamespaceMode::Node } else { NamespaceMode::Pod };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            namespace: pod.namespace().unwrap_or_default(),
            attempt: 0,
        }),
        hostname,
        log_directory: log_directory.to_string(),
        labels,
        annotations: pod.annotations().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { network: network as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The CRI container configuration (pure): command and args as given (the runtime applies
/// the image's ENTRYPOINT/CMD rules), env, working directory, mounts, log path
/// `{name}/{attempt}.log` under the sandbox's log directory.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    image: &str,
    attempt: u32,
    env: &[(String, String)],
    mounts: &[Mount],
    node_memory: u64,
) -> ContainerConfig {
    ContainerConfig {
        linux: Some(super::linux::container_linux(pod, container, node_memory)),
        metadata: Some(ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(ImageSpec { image: image.to_string(), ..Default::default() }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.iter().map(|(key, value)| KeyValue { key: key.clone(), value: value.clone() }).collect(),
        mounts: mounts
            .iter()
            .map(|m| CriMount {
                container_path: m.target.display().to_string(),
                host_path: m.source.display().to_string(),
                readonly: m.read_only,
                ..Default::default()
            })
            .collect(),
        labels: HashMap::from([("io.kubernetes.container.name".to_string(), container.name.clone())]),
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        ..Default::default()
    }
}

/// `env` with the variables the container takes from `status.podIP`/`status.podIPs` set to
/// the sandbox's `ip` (pure): the agent resolves the environment before the sandbox exists,
/// when only the node's address is known.
pub fn with_pod_ip(container: &Container, mut env: Vec<(String, String)>, ip: &str) -> Vec<(String, String)> {
    for var in container.env.iter().flatten() {
        let path = var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).map(|f| f.field_path.as_str());
        if matches!(path, Some("status.podIP" | "status.podIPs")) {
            if let Some(entry) = env.iter_mut().find(|(name, _)| *name == var.name) {
                entry.1 = ip.to_string();
            }
        }
    }
    env
}

/// Per container name, its latest run and, when exited, the run before it (pure).
fn latest_runs(statuses: &[CriContainerStatus]) -> Vec<(String, &CriContainerStatus, Option<&CriContainerStatus>)> {
    let attempt = |s: &CriContainerStatus| s.metadata.as_ref().map_or(0, |m| m.attempt);
    let name = |s: &CriContainerStatus| s.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let mut names: Vec<String> = statuses.iter().map(name).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let mut runs: Vec<&CriContainerStatus> = statuses.iter().filter(|s| name(s) == n).collect();
            runs.sort_by_key(|s| attempt(s));
            let latest = runs.pop()?;
            let previous = runs.pop().filter(|s| s.state == ContainerState::ContainerExited as i32);
            Some((n, latest, previous))
        })
        .collect()
}

fn is_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// How an exited container ended, from its CRI status (pure): the runtime's reason
/// (`OOMKilled`…), else `Completed` for exit code 0 and `Error` otherwise.
fn terminated_of(status: &CriContainerStatus) -> Terminated {
    let reason = match (status.reason.as_str(), status.exit_code) {
        ("", 0) => "Completed".to_string(),
        ("", _) => "Error".to_string(),
        (r, _) => r.to_string(),
    };
    Terminated {
        exit_code: status.exit_code,
        signal: None,
        reason,
        message: (!status.message.is_empty()).then(|| status.message.clone()),
        started_at: timestamp_ns(status.started_at),
        finished_at: timestamp_ns(status.finished_at).unwrap_or_else(Timestamp::now),
        container_id: format!("{ID_SCHEME}{}", status.id),
    }
}

fn timestamp_ns(ns: i64) -> Option<Timestamp> {
    (ns > 0).then(|| Timestamp::from_nanosecond(ns as i128).ok()).flatten()
}

impl CriRuntime {
    /// A runtime over `client`, keeping pod directories under `data_dir/pods`. Must be
    /// called inside a tokio runtime (its tasks run there).
    pub async fn new(client: CriClient, s: CriRuntimeSettings) -> Result<CriRuntime, crate::AgentError> {
        let version = client.version(CALL_TIMEOUT).await?;
        let inner = Arc::new(Inner {
            client,
            handle: tokio::runtime::Handle::current(),
            wake: s.wake,
            pods: Mutex::new(HashMap::new()),
            pods_dir: s.data_dir.join("pods"),
            node_memory: crate::runtime::cgroups::memory_bytes(&crate::host::capacity(None).memory).unwrap_or(0),
            events: s.events,
            stop_on_exit: s.stop_on_exit,
            api: s.api,
            image_gc: s.image_gc,
            sandbox_image: s.sandbox_image,
            pod_dns: s.pod_dns,
            images_seen: Mutex::default(),
            removing: Default::default(),
            version: format!("{}://{}", version.runtime_name, version.runtime_version),
        });
        inner.adopt().await;
        let weak = Arc::downgrade(&inner);
        inner.handle.spawn(async move {
            let mut next_gc = tokio::time::Instant::now() + s.image_gc.period;
            loop {
                tokio::time::sleep(MONITOR_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                inner.monitor_once().await;
                if tokio::time::Instant::now() >= next_gc {
                    inner.collect_images().await;
                    next_gc = tokio::time::Instant::now() + inner.image_gc.period;
                }
            }
        });
        Ok(CriRuntime { inner })
    }
}

/// What a [`CriRuntime`] is built with besides its client.
pub struct CriRuntimeSettings {
    pub data_dir: PathBuf,
    pub wake: Wake,
    pub events: PodEvents,
    /// Remove every pod's containers and sandbox when the agent stops.
    pub stop_on_exit: bool,
    /// Reads image pull secrets.
    pub api: kube::Client,
    pub image_gc: ImageGcPolicy,
    /// Never collected.
    pub sandbox_image: String,
    /// What pods' resolv.conf is made from.
    pub pod_dns: PodDnsSettings,
}

impl Inner {
    /// One round of image garbage collection (see [`super::image_gc`]).
    async fn collect_images(&self) {
        let mut images = self.client.image.clone();
        let mut runtime = self.client.runtime.clone();
        let Ok(fs) = bounded("ImageFsInfo", CALL_TIMEOUT, images.image_fs_info(ImageFsInfoRequest {})).await else {
            return;
        };
        let Some(mountpoint) =
            fs.image_filesystems.first().and_then(|f| f.fs_id.as_ref()).map(|f| f.mountpoint.clone())
        else {
            return;
        };
        let Some((capacity, available)) = crate::host::disk_space(std::path::Path::new(&mountpoint)) else { return };
        let Ok(listed) =
            bounded("ListImages", CALL_TIMEOUT, images.list_images(ListImagesRequest { filter: None })).await
        else {
            return;
        };
        let request = ListContainersRequest { filter: None };
        let Ok(containers) = bounded("ListContainers", CALL_TIMEOUT, runtime.list_containers(request)).await else {
            return;
        };
        let used: Vec<String> =
            containers.containers.iter().flat_map(|c| [c.image_ref.clone(), c.image_id.clone()]).collect();
        let now = Timestamp::now();
        let candidates: Vec<Candidate> = {
            let mut seen = self.images_seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|id, _| listed.images.iter().any(|i| &i.id == id));
            listed
                .images
                .iter()
                .map(|i| {
                    let (first_seen, last_used) = *seen.entry(i.id.clone()).or_insert((now, now));
                    let sandbox = i.repo_tags.iter().any(|t| same_reference(t, &self.sandbox_image));
                    let in_use = used.iter().any(|u| *u == i.id || i.repo_digests.contains(u));
                    Candidate {
                        id: i.id.clone(),
                        size: i.size,
                        first_seen,
                        last_used,
                        keep: sandbox || in_use || i.pinned,
                    }
                })
                .collect()
        };
        for id in to_remove(capacity, available, &self.image_gc, &candidates, now) {
            let request = RemoveImageRequest { image: Some(ImageSpec { image: id.clone(), ..Default::default() }) };
            match bounded("RemoveImage", CALL_TIMEOUT, images.remove_image(request)).await {
                Ok(_) => {
                    tracing::info!(image = %id, "removed an unused image (image filesystem over its high threshold)")
                }
                Err(e) => tracing::warn!(image = %id, error = %e, "removing an unused image failed"),
            }
        }
    }

    /// Takes back the pods an earlier agent left running: every ready sandbox this agent
    /// made (it carries the pod-uid and node labels) and, per container name, its latest
    /// run — running, or exited with its exit status; the run before it, if exited, is the
    /// container's last state. A latest run that never started is removed (its name would
    /// block the next attempt). Healthy pods are not restarted.
    async fn adopt(&self) {
        let mut runtime = self.client.runtime.clone();
        let Ok(list) =
            bounded("ListPodSandbox", CALL_TIMEOUT, runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }))
                .await
        else {
            return;
        };
        for sandbox in list.items {
            let ready = sandbox.state == PodSandboxState::SandboxReady as i32;
            let (Some(uid), Some(node), Some(meta)) =
                (sandbox.labels.get(POD_UID_LABEL), sandbox.labels.get(NODE_LABEL), sandbox.metadata.as_ref())
            else {
                continue;
            };
            if !ready {
                continue;
            }
            let request = PodSandboxStatusRequest { pod_sandbox_id: sandbox.id.clone(), verbose: false };
            let Ok(status) = bounded("PodSandboxStatus", CALL_TIMEOUT, runtime.pod_sandbox_status(request)).await
            else {
                continue;
            };
            let status = status.status.unwrap_or_default();
            let network = status.linux.and_then(|l| l.namespaces).and_then(|n| n.options).map(|o| o.network);
            let filter = ContainerFilter { pod_sandbox_id: sandbox.id.clone(), ..Default::default() };
            let request = ListContainersRequest { filter: Some(filter) };
            let Ok(listed) = bounded("ListContainers", CALL_TIMEOUT, runtime.list_containers(request)).await else {
                continue;
            };
            let mut statuses = Vec::new();
            for c in listed.containers {
                let request = ContainerStatusRequest { container_id: c.id.clone(), verbose: false };
                if let Ok(Some(st)) =
                    bounded("ContainerStatus", CALL_TIMEOUT, runtime.container_status(request)).await.map(|a| a.status)
                {
                    statuses.push(st);
                }
            }
            let mut containers = HashMap::new();
            for (name, latest, previous) in latest_runs(&statuses) {
                let running = latest.state == ContainerState::ContainerRunning as i32;
                let exited = latest.state == ContainerState::ContainerExited as i32;
                if !running && !exited {
                    let remove = RemoveContainerRequest { container_id: latest.id.clone() };
                    let _ = bounded("RemoveContainer", CALL_TIMEOUT, runtime.remove_container(remove)).await;
                    continue;
                }
                let image = latest.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
                let state = if running {
                    RunState::Running { started_at: timestamp_ns(latest.started_at).unwrap_or_else(Timestamp::now) }
                } else {
                    RunState::Exited(terminated_of(latest))
                };
                let mut record = ContainerRecord::new(&name, &image, state);
                record.id = format!("{ID_SCHEME}{}", latest.id);
                record.image_id = latest.image_ref.clone();
                record.restart_count = latest.metadata.as_ref().map_or(0, |m| m.attempt as i32);
                record.last_terminated = previous.map(terminated_of);
                let slot =
                    Slot { record, cri_id: Some(latest.id.clone()), log_finished: Arc::new(AtomicBool::new(exited)) };
                containers.insert(name, slot);
            }
            tracing::info!(pod = %meta.name, sandbox = %sandbox.id, containers = containers.len(), "adopted a running pod");
            let pod = Pod {
                metadata: kube::api::ObjectMeta {
                    name: Some(meta.name.clone()),
                    namespace: Some(meta.namespace.clone()),
                    uid: Some(uid.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let entry = PodEntry {
                pod: Arc::new(pod),
                node: node.clone(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                host_network: network == Some(NamespaceMode::Node as i32),
                ip: status.network.map(|n| n.ip).filter(|ip| !ip.is_empty()),
                sandbox: Arc::new(tokio::sync::Mutex::new(Some(Sandbox { id: sandbox.id.clone(), config: None }))),
                containers,
            };
            self.pods.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone(), entry);
        }
    }

    /// Where containerd writes the log of run `attempt` of a container: the sandbox's log
    /// directory joined with the container config's `log_path`.
    fn log_path(&self, uid: &str, container: &str, attempt: u32) -> PathBuf {
        self.pods_dir.join(uid).join("logs").join(container).join(format!("{attempt}.log"))
    }

    /// Rotates a running container's log past [`MAX_LOG_BYTES`], as the kubelet's container
    /// log manager does: rename it to `{log}.1` (the name the log endpoint follows across),
    /// then ask the runtime to reopen it.
    async fn rotate_log_if_big(&self, uid: &str, name: &str, id: &str) {
        let Some(attempt) = self.with_slot(uid, name, |s| s.record.restart_count.max(0) as u32) else { return };
        let path = self.log_path(uid, name, attempt);
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
            return;
        }
        if let Err(e) = std::fs::rename(&path, RotatingLog::rotated(&path)) {
            tracing::warn!(log = %path.display(), error = %e, "rotating a container log failed");
            return;
        }
        let mut runtime = self.client.runtime.clone();
        let request = ReopenContainerLogRequest { container_id: id.to_string() };
        if let Err(e) = bounded("ReopenContainerLog", CALL_TIMEOUT, runtime.reopen_container_log(request)).await {
            tracing::warn!(container = %id, error = %e, "reopening a rotated container log failed");
        }
    }

    fn with_slot<T>(&self, uid: &str, container: &str, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get_mut(uid)?.containers.get_mut(container).map(f)
    }

    fn wake_pod(&self, uid: &str) {
        let node = self.pods.lock().unwrap_or_else(|e| e.into_inner()).get(uid).map(|p| p.node.clone());
        if let Some(node) = node {
            (self.wake)(&node, uid);
        }
    }

    /// The pod `uid` as last started, for events.
    fn pod_of(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).get(uid).map(|p| p.pod.clone())
    }

    fn event(&self, uid: &str, container: &str, warning: bool, reason: &str, note: String) {
        let Some(pod) = self.pod_of(uid) else { return };
        if warning {
            self.events.warning(&pod, Some(container), reason, note);
        } else {
            self.events.normal(&pod, Some(container), reason, note);
        }
    }

    fn fail(&self, uid: &str, container: &str, reason: &str, message: String) {
        tracing::warn!(pod = uid, container, reason, %message, "container not started");
        if !matches!(reason, "ErrImagePull" | "ImagePullBackOff") {
            self.event(uid, container, true, "Failed", format!("Error: {message}"));
        }
        self.with_slot(uid, container, |s| {
            s.record.state = RunState::CreateFailed { reason: reason.into(), message };
        });
        self.wake_pod(uid);
    }

    async fn ensure_sandbox(&self, pod: &Pod) -> Result<Sandbox, String> {
        let uid = pod.uid().unwrap_or_default();
        let lock = {
            let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            pods.get(&uid).map(|p| p.sandbox.clone()).ok_or("the pod was forgotten")?
        };
        let mut sandbox = lock.lock().await;
        if let Some(s) = sandbox.as_ref() {
            return Ok(s.clone());
        }
        let log_directory = self.pods_dir.join(&uid).join("logs");
        std::fs::create_dir_all(&log_directory).map_err(|e| format!("creating {}: {e}", log_directory.display()))?;
        let mut config = sandbox_config(pod, &log_directory.display().to_string());
        let resolv = pod_resolv_conf(pod, &self.pod_dns);
        config.dns_config =
            Some(DnsConfig { servers: resolv.nameservers, searches: resolv.searches, options: resolv.options });
        let mut runtime = self.client.runtime.clone();
        // A failed RunPodSandbox leaves a NotReady sandbox holding the name of its attempt:
        // remove what earlier attempts left and try under the next attempt number, as the
        // kubelet does.
        let attempt = self.remove_sandboxes_of(&uid).await;
        if let Some(m) = config.metadata.as_mut() {
            m.attempt = attempt;
        }
        let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
        let id = bounded("RunPodSandbox", CALL_TIMEOUT, runtime.run_pod_sandbox(request)).await?.pod_sandbox_id;
        let status = bounded(
            "PodSandboxStatus",
            CALL_TIMEOUT,
            runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false }),
        )
        .await?;
        let ip = status.status.and_then(|s| s.network).map(|n| n.ip).filter(|ip| !ip.is_empty());
        tracing::info!(pod = %pod.name_any(), sandbox = %id, ip = ?ip, "pod sandbox running");
        if let Some(entry) = self.pods.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&uid) {
            entry.ip = ip;
        }
        let made = Sandbox { id, config: Some(config) };
        *sandbox = Some(made.clone());
        Ok(made)
    }

    /// Stops and removes every sandbox the runtime has for pod `uid` (left by failed
    /// attempts); returns the attempt number to use next.
    async fn remove_sandboxes_of(&self, uid: &str) -> u32 {
        let mut runtime = self.client.runtime.clone();
        let filter = PodSandboxFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            ..Default::default()
        };
        let request = ListPodSandboxRequest { filter: Some(filter) };
        let Ok(list) = bounded("ListPodSandbox", CALL_TIMEOUT, runtime.list_pod_sandbox(request)).await else {
            return 0;
        };
        let next = list.items.iter().filter_map(|s| s.metadata.as_ref()).map(|m| m.attempt + 1).max().unwrap_or(0);
        for stale in list.items {
            let stop = StopPodSandboxRequest { pod_sandbox_id: stale.id.clone() };
            let _ = bounded("StopPodSandbox", CALL_TIMEOUT, runtime.stop_pod_sandbox(stop)).await;
            let remove = RemovePodSandboxRequest { pod_sandbox_id: stale.id.clone() };
            let _ = bounded("RemovePodSandbox", CALL_TIMEOUT, runtime.remove_pod_sandbox(remove)).await;
        }
        next
    }

    /// What the runtime knows of a present image (its id, digests, user).
    async fn image_info(&self, image: &str) -> Option<berth_proto::cri::Image> {
        let mut images = self.client.image.clone();
        let spec = ImageSpec { image: image.to_string(), ..Default::default() };
        let request = ImageStatusRequest { image: Some(spec), verbose: false };
        bounded("ImageStatus", CALL_TIMEOUT, images.image_status(request)).await.ok()?.image
    }

    /// The credentials for `image` from the pod's `imagePullSecrets` (a missing or
    /// malformed Secret is skipped with a warning, as the kubelet does).
    async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<berth_proto::cri::AuthConfig> {
        let names: Vec<String> = pod
            .spec
            .as_ref()?
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.api.clone(), &pod.namespace().unwrap_or_default());
        let mut entries = Vec::new();
        for name in names {
            let got = tokio::time::timeout(CALL_TIMEOUT, secrets.get_opt(&name)).await;
            let parsed = match got {
                Ok(Ok(Some(secret))) => {
                    let data = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    super::auth::config_entries(secret.type_.as_deref().unwrap_or_default(), &data)
                }
                Ok(Ok(None)) => Err("not found".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in time".to_string()),
            };
            match parsed {
                Ok(e) => entries.push(e),
                Err(e) => {
                    tracing::warn!(pod = %pod.name_any(), secret = %name, error = %e, "unable to use an image pull secret")
                }
            }
        }
        super::auth::credentials_for(image, &entries)
    }

    /// Makes sure `image` is present as `policy` demands (pulling with `auth`); Err is
    /// (reason, message).
    async fn ensure_image(
        &self,
        uid: &str,
        name: &str,
        image: &str,
        policy: &str,
        auth: Option<berth_proto::cri::AuthConfig>,
    ) -> Result<(), (&'static str, String)> {
        let mut images = self.client.image.clone();
        let spec = ImageSpec { image: image.to_string(), ..Default::default() };
        if policy != "Always" {
            let status = bounded(
                "ImageStatus",
                CALL_TIMEOUT,
                images.image_status(ImageStatusRequest { image: Some(spec.clone()), verbose: false }),
            )
            .await
            .map_err(|e| ("ErrImagePull", e))?;
            if status.image.is_some() {
                self.event(
                    uid,
                    name,
                    false,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(());
            }
            if policy == "Never" {
                let message = format!("Container image \"{image}\" is not present with pull policy of Never");
                return Err(("ErrImageNeverPull", message));
            }
        }
        let request = PullImageRequest { image: Some(spec), auth, sandbox_config: None };
        self.event(uid, name, false, "Pulling", format!("Pulling image \"{image}\""));
        let began = std::time::Instant::now();
        match bounded("PullImage", PULL_TIMEOUT, images.pull_image(request)).await {
            Ok(_) => {
                let took = began.elapsed().as_secs_f64();
                self.event(uid, name, false, "Pulled", format!("Successfully pulled image \"{image}\" in {took:.3}s"));
                Ok(())
            }
            Err(e) => {
                let message = format!("failed to pull image \"{image}\": {e}");
                self.event(uid, name, true, "Failed", format!("Failed to pull image \"{image}\": {e}"));
                self.event(uid, name, true, "Failed", "Error: ErrImagePull".into());
                Err(("ErrImagePull", message))
            }
        }
    }

    /// Makes sure the image is there, as the kubelet does: a failed pull shows
    /// `ErrImagePull`, then `ImagePullBackOff` until the next try, 10 s later, doubling up
    /// to 5 min, for as long as the container is wanted. False: give up (it is no longer
    /// wanted, or the failure is final, like `ErrImageNeverPull`).
    async fn pull_with_back_off(&self, pod: &Pod, name: &str, image: &str, policy: &str) -> bool {
        let uid = &pod.uid().unwrap_or_default();
        let mut delay = PULL_BACK_OFF_FIRST;
        loop {
            let auth = self.pull_auth(pod, image).await;
            let (reason, message) = match self.ensure_image(uid, name, image, policy, auth).await {
                Ok(()) => {
                    // Back to ContainerCreating for the create and start that follow.
                    self.with_slot(uid, name, |s| {
                        if matches!(s.record.state, RunState::CreateFailed { .. }) && !s.record.stopping {
                            s.record.state = RunState::Starting;
                        }
                    });
                    return self.with_slot(uid, name, |s| matches!(s.record.state, RunState::Starting)) == Some(true);
                }
                Err(failure) => failure,
            };
            self.fail(uid, name, reason, message);
            if reason != "ErrImagePull" {
                return false;
            }
            tokio::time::sleep(PULL_ERROR_SHOWN).await;
            let backing_off = self.with_slot(uid, name, |s| {
                let pulling =
                    matches!(&s.record.state, RunState::CreateFailed { reason, .. } if reason == "ErrImagePull");
                if pulling && !s.record.stopping {
                    s.record.state = RunState::CreateFailed {
                        reason: "ImagePullBackOff".into(),
                        message: format!("Back-off pulling image \"{image}\""),
                    };
                }
                pulling && !s.record.stopping
            });
            if backing_off != Some(true) {
                return false;
            }
            self.event(uid, name, false, "BackOff", format!("Back-off pulling image \"{image}\""));
            self.wake_pod(uid);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(PULL_BACK_OFF_MAX);
            if self.with_slot(uid, name, |s| !s.record.stopping) != Some(true) {
                return false;
            }
        }
    }

    async fn run_container(&self, pod: Pod, container: Container, env: Vec<(String, String)>, mounts: Vec<Mount>) {
        let uid = pod.uid().unwrap_or_default();
        let name = container.name.clone();
        // A sandbox that cannot be created yet (the node's pod network is not configured,
        // the sandbox image is being pulled elsewhere…) is retried, as the kubelet does, while
        // the container is still wanted; it stays ContainerCreating meanwhile.
        let mut delay = SANDBOX_RETRY_FIRST;
        let sandbox = loop {
            match self.ensure_sandbox(&pod).await {
                Ok(s) => break s,
                Err(e) => {
                    let wanted = self
                        .with_slot(&uid, &name, |s| !s.record.stopping && matches!(s.record.state, RunState::Starting));
                    if wanted != Some(true) {
                        return;
                    }
                    tracing::warn!(pod = %pod.name_any(), error = %e, retry_in = ?delay, "creating the pod sandbox failed");
                    self.events.warning(
                        &pod,
                        None,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(SANDBOX_RETRY_MAX);
                }
            }
        };
        let image = container.image.clone().unwrap_or_default();
        if !self.pull_with_back_off(&pod, &name, &image, pull_policy(&container)).await {
            return;
        }
        let info = self.image_info(&image).await;
        let image_uid = info.as_ref().and_then(|i| if i.username.is_empty() { i.uid.map(|u| u.value) } else { None });
        if let Some(message) = super::linux::verify_run_as_non_root(&pod, &container, image_uid) {
            return self.fail(&uid, &name, "CreateContainerConfigError", message);
        }
        if let Some(i) = &info {
            let now = Timestamp::now();
            let mut seen = self.images_seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.entry(i.id.clone()).or_insert((now, now)).1 = now;
        }
        let image_id = info.map(|i| i.repo_digests.first().cloned().unwrap_or(i.id)).unwrap_or_default();
        let Some(attempt) = self.with_slot(&uid, &name, |s| {
            s.record.image_id = image_id;
            s.record.restart_count.max(0) as u32
        }) else {
            return;
        };
        // The environment was resolved before the sandbox had its address.
        let pod_ip = self.pods.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).and_then(|p| p.ip.clone());
        let env = match pod_ip {
            Some(ip) => with_pod_ip(&container, env, &ip),
            None => env,
        };
        let config = container_config(&pod, &container, &image, attempt, &env, &mounts, self.node_memory);
        let mut runtime = self.client.runtime.clone();
        let request =
            CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.config.clone().unwrap_or_else(|| {
                    sandbox_config(&pod, &self.pods_dir.join(&uid).join("logs").display().to_string())
                })),
            };
        let id = match bounded("CreateContainer", CALL_TIMEOUT, runtime.create_container(request)).await {
            Ok(r) => r.container_id,
            Err(e) => return self.fail(&uid, &name, "CreateContainerError", e),
        };
        self.event(&uid, &name, false, "Created", format!("Created container {name}"));
        let stopping = self.with_slot(&uid, &name, |s| {
            s.cri_id = Some(id.clone());
            s.record.id = format!("{ID_SCHEME}{id}");
            s.record.stopping
        });
        if stopping != Some(false) {
            // Stopped (or forgotten) while it was being created: never start it.
            let _ = bounded(
                "RemoveContainer",
                CALL_TIMEOUT,
                runtime.remove_container(RemoveContainerRequest { container_id: id }),
            )
            .await;
            return;
        }
        let started = StartContainerRequest { container_id: id.clone() };
        if let Err(e) = bounded("StartContainer", CALL_TIMEOUT, runtime.start_container(started)).await {
            return self.fail(&uid, &name, "RunContainerError", e);
        }
        self.with_slot(&uid, &name, |s| {
            if matches!(s.record.state, RunState::Starting) {
                s.record.state = RunState::Running { started_at: Timestamp::now() };
            }
        });
        tracing::info!(pod = %pod.name_any(), container = %name, id = %id, "container started");
        self.event(&uid, &name, false, "Started", format!("Started container {name}"));
        self.wake_pod(&uid);
    }

    /// Reads the status of every container that runs or is stopping; records exits.
    async fn monitor_once(&self) {
        let watched: Vec<(String, String, String)> = {
            let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            pods.iter()
                .flat_map(|(uid, p)| {
                    p.containers
                        .values()
                        .filter(|s| matches!(s.record.state, RunState::Running { .. }))
                        .filter_map(move |s| Some((uid.clone(), s.record.name.clone(), s.cri_id.clone()?)))
                })
                .collect()
        };
        for (uid, name, id) in watched {
            self.observe(&uid, &name, &id).await;
            self.rotate_log_if_big(&uid, &name, &id).await;
        }
    }

    /// Records the container's exit, if it has exited.
    async fn observe(&self, uid: &str, name: &str, id: &str) {
        let mut runtime = self.client.runtime.clone();
        let request = ContainerStatusRequest { container_id: id.to_string(), verbose: false };
        let Ok(answer) = bounded("ContainerStatus", CALL_TIMEOUT, runtime.container_status(request)).await else {
            return;
        };
        let Some(status) = answer.status else { return };
        if status.state != ContainerState::ContainerExited as i32 {
            return;
        }
        let terminated = terminated_of(&status);
        let changed = self.with_slot(uid, name, |s| {
            let exited = matches!(s.record.state, RunState::Exited(_));
            if s.cri_id.as_deref() == Some(id) && !exited {
                s.record.state = RunState::Exited(terminated);
                s.log_finished.store(true, Ordering::SeqCst);
                return true;
            }
            false
        });
        if changed == Some(true) {
            self.wake_pod(uid);
        }
    }

    async fn stop_container(&self, uid: String, name: String, grace: Duration) {
        let id = self.with_slot(&uid, &name, |s| {
            if s.cri_id.is_none() && matches!(s.record.state, RunState::Starting) {
                // Never created (its sandbox or image is still pending): it simply will not
                // start; `run_container` sees `stopping` and gives up.
                s.record.state = RunState::CreateFailed {
                    reason: "ContainerCreating".into(),
                    message: "stopped before it was created".into(),
                };
            }
            s.cri_id.clone()
        });
        let Some(Some(id)) = id else {
            self.wake_pod(&uid);
            return;
        };
        let running = self.with_slot(&uid, &name, |s| matches!(s.record.state, RunState::Running { .. }));
        let killing = self.with_slot(&uid, &name, |s| s.record.killing) == Some(true);
        // A liveness kill has its own Killing event (the worker's, with the reason).
        if running == Some(true) && !killing {
            self.event(&uid, &name, false, "Killing", format!("Stopping container {name}"));
        }
        let mut runtime = self.client.runtime.clone();
        let request = StopContainerRequest { container_id: id.clone(), timeout: grace.as_secs().max(1) as i64 };
        if let Err(e) = bounded("StopContainer", grace + CALL_TIMEOUT, runtime.stop_container(request)).await {
            tracing::warn!(pod = %uid, container = %name, error = %e, "stopping a container failed");
        }
        self.observe(&uid, &name, &id).await;
    }

    async fn remove_pod(&self, sandbox: Option<Sandbox>, container_ids: Vec<String>) {
        let mut runtime = self.client.runtime.clone();
        for id in container_ids {
            let request = RemoveContainerRequest { container_id: id.clone() };
            if let Err(e) = bounded("RemoveContainer", CALL_TIMEOUT, runtime.remove_container(request)).await {
                tracing::warn!(container = %id, error = %e, "removing a container failed");
            }
        }
        if let Some(sandbox) = sandbox {
            let id = sandbox.id;
            let stop = StopPodSandboxRequest { pod_sandbox_id: id.clone() };
            let remove = RemovePodSandboxRequest { pod_sandbox_id: id.clone() };
            let result = match bounded("StopPodSandbox", CALL_TIMEOUT, runtime.stop_pod_sandbox(stop)).await {
                Ok(_) => {
                    bounded("RemovePodSandbox", CALL_TIMEOUT, runtime.remove_pod_sandbox(remove)).await.map(|_| ())
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::info!(sandbox = %id, "pod sandbox removed"),
                Err(e) => tracing::warn!(sandbox = %id, error = %e, "removing a pod sandbox failed"),
            }
        }
    }
}

impl Inner {
    /// The running container `container` of pod `namespace/pod`: its CRI id.
    fn running_container(&self, namespace: &str, pod: &str, container: &str) -> Result<String, StreamRefused> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let slot = pods
            .values()
            .filter(|p| p.namespace == namespace && p.name == pod)
            .find_map(|p| p.containers.get(container))
            .ok_or_else(|| StreamRefused::NotFound(format!("container not found ({container:?})")))?;
        match (&slot.record.state, &slot.cri_id) {
            (RunState::Running { .. }, Some(id)) => Ok(id.clone()),
            _ => Err(StreamRefused::NotFound(format!("container {container:?} is not running"))),
        }
    }

    /// The sandbox of pod `namespace/pod`, once created.
    async fn sandbox_of(&self, namespace: &str, pod: &str) -> Result<String, StreamRefused> {
        let sandbox = {
            let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            pods.values().find(|p| p.namespace == namespace && p.name == pod).map(|p| p.sandbox.clone())
        };
        let missing = || StreamRefused::NotFound(format!("pod {namespace}/{pod} has no sandbox on this node"));
        let sandbox = sandbox.ok_or_else(missing)?;
        let id = sandbox.lock().await.as_ref().map(|s| s.id.clone());
        id.ok_or_else(missing)
    }

    async fn stream_url(&self, request: StreamRequest) -> Result<String, StreamRefused> {
        let mut runtime = self.client.runtime.clone();
        let refused = StreamRefused::Failed;
        match request {
            StreamRequest::Exec { namespace, pod, container, command, options } => {
                let container_id = self.running_container(&namespace, &pod, &container)?;
                let request = ExecRequest {
                    container_id,
                    cmd: command,
                    tty: options.tty,
                    stdin: options.stdin,
                    stdout: options.stdout,
                    stderr: options.stderr && !options.tty,
                };
                Ok(bounded("Exec", CALL_TIMEOUT, runtime.exec(request)).await.map_err(refused)?.url)
            }
            StreamRequest::Attach { namespace, pod, container, options } => {
                let container_id = self.running_container(&namespace, &pod, &container)?;
                let request = AttachRequest {
                    container_id,
                    stdin: options.stdin,
                    tty: options.tty,
                    stdout: options.stdout,
                    stderr: options.stderr && !options.tty,
                };
                Ok(bounded("Attach", CALL_TIMEOUT, runtime.attach(request)).await.map_err(refused)?.url)
            }
            StreamRequest::PortForward { namespace, pod, ports } => {
                let pod_sandbox_id = self.sandbox_of(&namespace, &pod).await?;
                let request = PortForwardRequest { pod_sandbox_id, port: ports };
                Ok(bounded("PortForward", CALL_TIMEOUT, runtime.port_forward(request)).await.map_err(refused)?.url)
            }
        }
    }
}

impl CriRuntime {
    fn stop_in_background(&self, pod_uid: &str, container: &str, grace: Duration) {
        let inner = self.inner.clone();
        let (uid, name) = (pod_uid.to_string(), container.to_string());
        self.inner.handle.spawn(async move { inner.stop_container(uid, name, grace).await });
    }
}

impl Runtime for CriRuntime {
    fn start(&self, pod: &Pod, container: &Container, env: Vec<(String, String)>, mounts: Vec<Mount>) {
        let uid = pod.uid().unwrap_or_default();
        let image = container.image.clone().unwrap_or_default();
        {
            let mut pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
            let entry = pods.entry(uid.clone()).or_insert_with(|| PodEntry::of(pod));
            entry.pod = Arc::new(pod.clone());
            match entry.containers.get_mut(&container.name) {
                Some(slot) => {
                    let previous = std::mem::replace(&mut slot.record.state, RunState::Starting);
                    if let RunState::Exited(t) = previous {
                        slot.record.last_terminated = Some(t);
                        slot.record.restart_count += 1;
                    }
                    slot.record.image = image.clone();
                    slot.record.stopping = false;
                    slot.record.killing = false;
                    slot.record.unhealthy = None;
                    slot.cri_id = None;
                    slot.log_finished = Arc::new(AtomicBool::new(false));
                }
                None => {
                    let record = ContainerRecord::new(&container.name, &image, RunState::Starting);
                    entry.containers.insert(container.name.clone(), Slot::new(record));
                }
            }
        }
        let inner = self.inner.clone();
        let (pod, container) = (pod.clone(), container.clone());
        self.inner.handle.spawn(async move { inner.run_container(pod, container, env, mounts).await });
    }

    fn stop(&self, pod_uid: &str, container: &str, grace: Duration) {
        self.inner.with_slot(pod_uid, container, |s| s.record.stopping = true);
        self.stop_in_background(pod_uid, container, grace);
    }

    fn kill(&self, pod_uid: &str, container: &str, grace: Duration) {
        self.inner.with_slot(pod_uid, container, |s| s.record.killing = true);
        self.stop_in_background(pod_uid, container, grace);
    }

    fn pod_dir(&self, pod_uid: &str) -> Option<PathBuf> {
        Some(self.inner.pods_dir.join(pod_uid))
    }

    fn pod_address(&self, pod_uid: &str) -> PodAddress {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        match pods.get(pod_uid) {
            Some(p) if p.host_network => PodAddress::Node,
            Some(PodEntry { ip: Some(ip), .. }) => PodAddress::Own(ip.clone()),
            _ => PodAddress::Pending,
        }
    }

    fn containers(&self, pod_uid: &str) -> Vec<ContainerRecord> {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get(pod_uid).map(|p| p.containers.values().map(|s| s.record.clone()).collect()).unwrap_or_default()
    }

    fn pods(&self, node: &str) -> Vec<String> {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.iter().filter(|(_, p)| p.node == node).map(|(uid, _)| uid.clone()).collect()
    }

    fn forget(&self, pod_uid: &str) {
        let Some(entry) = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid) else { return };
        let ids: Vec<String> = entry.containers.values().filter_map(|s| s.cri_id.clone()).collect();
        let inner = self.inner.clone();
        let sandbox = entry.sandbox;
        // Counted in `active` until done: a stopping agent waits for it before it stops
        // containerd, or the sandbox would outlive it.
        self.inner.removing.fetch_add(1, Ordering::SeqCst);
        self.inner.handle.spawn(async move {
            let sandbox = sandbox.lock().await.clone();
            inner.remove_pod(sandbox, ids).await;
            inner.removing.fetch_sub(1, Ordering::SeqCst);
        });
    }

    fn logs(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<LogSource> {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        let (uid, slot) = pods
            .iter()
            .filter(|(_, p)| p.namespace == namespace && p.name == pod)
            .find_map(|(uid, p)| Some((uid, p.containers.get(container)?)))?;
        let attempt = slot.record.restart_count.max(0) as u32;
        let (attempt, finished) = if previous {
            slot.record.last_terminated.as_ref()?;
            (attempt.checked_sub(1)?, Arc::new(AtomicBool::new(true)))
        } else {
            (attempt, slot.log_finished.clone())
        };
        Some(LogSource::File { path: self.inner.log_path(uid, container, attempt), finished })
    }

    fn uses_env(&self) -> bool {
        true
    }

    fn supports_probes(&self) -> bool {
        true
    }

    fn exec_target(&self, pod_uid: &str, container: &str) -> Option<ExecTarget> {
        let container_id = self.inner.with_slot(pod_uid, container, |s| s.cri_id.clone())??;
        let client = self.inner.client.runtime.clone();
        let exec: RuntimeExec = Arc::new(move |cmd: Vec<String>, timeout: Duration| {
            let (mut client, container_id) = (client.clone(), container_id.clone());
            Box::pin(async move {
                let request =
                    ExecSyncRequest { container_id, cmd: cmd.clone(), timeout: timeout.as_secs().max(1) as i64 };
                // The runtime enforces the timeout; the call gets a little longer to say so.
                let answer = bounded("ExecSync", timeout + Duration::from_secs(5), client.exec_sync(request)).await?;
                if answer.exit_code == 0 {
                    return Ok(());
                }
                let mut output = String::from_utf8_lossy(&answer.stdout).into_owned();
                output.push_str(&String::from_utf8_lossy(&answer.stderr));
                Err(format!("command {cmd:?} exited with {}: {}", answer.exit_code, output.trim()))
            })
        });
        Some(ExecTarget::Runtime(exec))
    }

    fn stream_url(&self, request: StreamRequest) -> BoxFuture<'static, Result<String, StreamRefused>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.stream_url(request).await })
    }

    fn record_failure(&self, pod: &Pod, container: &Container, reason: &str, message: &str) {
        let uid = pod.uid().unwrap_or_default();
        let state = RunState::CreateFailed { reason: reason.into(), message: message.into() };
        let mut pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pods.entry(uid).or_insert_with(|| PodEntry::of(pod));
        let image = container.image.clone().unwrap_or_default();
        let slot = entry
            .containers
            .entry(container.name.clone())
            .or_insert_with(|| Slot::new(ContainerRecord::new(&container.name, &image, state.clone())));
        slot.record.state = state;
        slot.log_finished.store(true, Ordering::SeqCst);
    }

    fn version(&self) -> String {
        self.inner.version.clone()
    }

    fn shutdown(&self) {
        if !self.inner.stop_on_exit {
            return;
        }
        // Every pod is forgotten: its removal counts in `active` until done, which the
        // agent waits for (bounded by `stop_grace`) before it stops containerd.
        let uids: Vec<String> = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for uid in uids {
            self.forget(&uid);
        }
    }

    fn active(&self) -> usize {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        // Without stop-on-exit the containers outlive the agent: only removals are waited for.
        let running = if self.inner.stop_on_exit {
            pods.values().flat_map(|p| p.containers.values()).filter(|s| s.record.is_active()).count()
        } else {
            0
        };
        running + self.inner.removing.load(Ordering::SeqCst)
    }

    fn stop_grace(&self) -> Duration {
        // Removing a hundred sandboxes takes longer than stopping host processes.
        Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy(&container("nginx", None)), "Always");
        assert_eq!(pull_policy(&container("nginx:latest", None)), "Always");
        assert_eq!(pull_policy(&container("nginx:1.27", None)), "IfNotPresent");
        assert_eq!(pull_policy(&container("127.0.0.1:5000/berth/http", None)), "Always");
        assert_eq!(pull_policy(&container("127.0.0.1:5000/berth/http:v1", None)), "IfNotPresent");
        assert_eq!(pull_policy(&container("busybox@sha256:abcd", None)), "IfNotPresent");
        assert_eq!(pull_policy(&container("nginx:1.27", Some("Always"))), "Always");
    }

    #[test]
    fn a_host_network_sandbox_has_no_hostname_and_shares_the_node_network() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"hostNetwork": true, "containers": []}
        }))
        .unwrap();
        let config = sandbox_config(&pod, "/logs");
        assert_eq!(config.hostname, "");
        let options = config.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(options.network, NamespaceMode::Node as i32);
        assert_eq!(config.labels["app"], "web");
        assert_eq!(config.labels["io.kubernetes.pod.uid"], "u1");
        let mut pod = pod;
        pod.spec.as_mut().unwrap().host_network = None;
        assert_eq!(sandbox_config(&pod, "/logs").hostname, "p");
    }

    #[test]
    fn the_container_config_keeps_command_and_args_apart() {
        let mut c = container("busybox:1.35", None);
        c.command = Some(vec!["sh".into(), "-c".into()]);
        c.args = Some(vec!["echo hi".into()]);
        let mount = Mount { source: "/data/v".into(), target: "/v".into(), read_only: true };
        let pod =
            Pod { spec: Some(PodSpec { containers: vec![c.clone()], ..Default::default() }), ..Default::default() };
        let config = container_config(&pod, &c, "busybox:1.35", 2, &[("A".into(), "1".into())], &[mount], 1 << 30);
        assert_eq!((config.command.len(), config.args.len()), (2, 1));
        assert_eq!(config.log_path, "c/2.log");
        assert_eq!(config.envs[0].key, "A");
        assert!(config.mounts[0].readonly && config.mounts[0].container_path == "/v");
        assert_eq!(config.linux.unwrap().resources.unwrap().oom_score_adj, 1000, "BestEffort");
    }

    #[test]
    fn the_latest_run_of_each_container_is_adopted_with_the_exited_one_before_it() {
        let run = |name: &str, attempt: u32, state: ContainerState| CriContainerStatus {
            id: format!("{name}{attempt}"),
            metadata: Some(ContainerMetadata { name: name.into(), attempt }),
            state: state as i32,
            ..Default::default()
        };
        let statuses = vec![
            run("a", 0, ContainerState::ContainerExited),
            run("a", 2, ContainerState::ContainerRunning),
            run("a", 1, ContainerState::ContainerExited),
            run("b", 0, ContainerState::ContainerRunning),
        ];
        let runs: Vec<(String, String, Option<String>)> = latest_runs(&statuses)
            .into_iter()
            .map(|(n, latest, previous)| (n, latest.id.clone(), previous.map(|p| p.id.clone())))
            .collect();
        assert_eq!(runs, vec![("a".into(), "a2".into(), Some("a1".into())), ("b".into(), "b0".into(), None)]);
    }

    #[test]
    fn pod_ip_variables_get_the_sandboxs_address() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c", "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}))
        .unwrap();
        let env =
            vec![("POD_IP".to_string(), "127.0.0.1".to_string()), ("HOST_IP".to_string(), "127.0.0.1".to_string())];
        let env = with_pod_ip(&c, env, "10.244.0.7");
        assert_eq!(env, vec![("POD_IP".into(), "10.244.0.7".into()), ("HOST_IP".into(), "127.0.0.1".into())]);
    }
}
