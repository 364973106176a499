//! The process runtime: a container is its `command` + `args` run as a child process in
//! its own process group, with the container's environment (plus `PATH` and `HOSTNAME`),
//! its `workingDir` (default: the pod's directory under the data dir), its volume mounts in
//! a private mount namespace ([`super::mounts`], root only), and stdout/stderr written line
//! by line to `{data_dir}/pods/{uid}/{container}/{restart}.log` as
//! `{RFC 3339 time} {stream} {text}`. There is no image: a container without `command`
//! fails with `CreateContainerError`. Stopping sends SIGTERM to the process group, then
//! SIGKILL after the grace period; when the main process exits, the rest of its group is
//! killed (a container's processes end with it). As root, each container also runs in its
//! own cgroup with its resource limits ([`super::cgroups`]).
//!
//! Containers outlive the agent (as pods outlive a kubelet restart):
//! - output goes through named pipes (`{restart}.stdout`/`.stderr` FIFOs next to the log)
//!   that the container holds open read-write, so it never gets SIGPIPE while no agent
//!   reads (it blocks once the pipe buffer is full) and a new agent just reopens them;
//! - each container's state (pid, its start time in `/proc/{pid}/stat`, restart count,
//!   last termination, logs, env) is saved in `{container}/state.json` whenever it changes;
//! - [`ProcessRuntime::new`] re-adopts what a previous agent left ([`adoption`] decides:
//!   the pid is alive and has the recorded start time → keep supervising it by polling
//!   `/proc`, since a non-child cannot be reaped; its exit status is then unknown).
//!
//! Files: [`spawn`] (starting a run, recording its end), [`adopt`] (a restarted agent
//! taking over), [`saved`] (`state.json`), [`logs`] (FIFOs → rotating log file); this module
//! holds the runtime's state and implements [`Runtime`].
//!
//! Only when configured (`stop_on_exit`, used by in-process tests) does the runtime kill
//! its containers on shutdown and on drop.

mod adopt;
mod logs;
mod saved;
mod spawn;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

pub use adopt::{adoption, Adoption};
pub use logs::{RotatingLog, MAX_LOG_BYTES};
pub use saved::{write_private, Saved, SavedTerm};

use self::saved::save;
use super::cgroups::Cgroups;
use super::stats::{self, ContainerUsage, PodUsage};
use super::{
    now, pod_keys, ContainerRecord, ExecTarget, LogSource, Mount, PodTable, RunState, Runtime, RuntimePod,
    StreamRefused, Terminated, Wake,
};
use crate::error::{AgentError, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct ProcContainer {
    record: ContainerRecord,
    /// The process group (= the main process id) while it runs.
    pgid: Option<i32>,
    start_ticks: Option<u64>,
    log: PathBuf,
    previous_log: Option<PathBuf>,
    finished: Arc<AtomicBool>,
    /// Bumped on every start so a stale kill timer or reaper does nothing.
    generation: u64,
    env: Vec<(String, String)>,
    dir: PathBuf,
    mount_ns: bool,
}

impl ProcContainer {
    fn new(record: ContainerRecord) -> ProcContainer {
        ProcContainer {
            record,
            pgid: None,
            start_ticks: None,
            log: PathBuf::new(),
            previous_log: None,
            finished: Arc::new(AtomicBool::new(true)),
            generation: 0,
            env: Vec::new(),
            dir: PathBuf::new(),
            mount_ns: false,
        }
    }
}

type ProcPod = RuntimePod<ProcContainer>;

type State = PodTable<ProcContainer>;

/// See the module docs.
pub struct ProcessRuntime {
    data_dir: PathBuf,
    state: Arc<Mutex<State>>,
    wake: Wake,
    stop_on_exit: bool,
    /// Per-container cgroups, when the agent can manage them (root).
    cgroups: Option<Cgroups>,
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is shared.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

fn container_dir(data_dir: &Path, uid: &str, container: &str) -> PathBuf {
    data_dir.join("pods").join(uid).join(container)
}

impl ProcessRuntime {
    /// Keeps logs and state under `data_dir/pods`, re-adopting the containers a previous
    /// agent left there. `stop_on_exit`: kill every container on shutdown and on drop.
    pub fn new(data_dir: PathBuf, wake: Wake, stop_on_exit: bool) -> Result<ProcessRuntime> {
        let pods = data_dir.join("pods");
        std::fs::create_dir_all(&pods).map_err(|e| AgentError::io("creating", &pods, e))?;
        let cgroups = Cgroups::detect();
        match &cgroups {
            Some(cg) => tracing::info!(version = ?cg.version, "containers run in their own cgroups"),
            None => tracing::info!("cgroups unavailable (not root, or no writable cgroup hierarchy under /sys/fs/cgroup): resource limits are not enforced"),
        }
        let rt = ProcessRuntime { data_dir, state: Arc::default(), wake, stop_on_exit, cgroups };
        rt.adopt_all();
        Ok(rt)
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    /// SIGKILLs every running container (process group and cgroup).
    pub fn kill_all(&self) {
        let st = self.state.lock().unwrap();
        for (uid, p) in &st.pods {
            for c in p.containers.values() {
                if let Some(pgid) = c.pgid {
                    signal_group(pgid, libc::SIGKILL);
                    if let Some(cg) = &self.cgroups {
                        cg.container(uid, &c.record.name).kill();
                    }
                }
            }
        }
    }

    /// How many containers are still running.
    pub fn running(&self) -> usize {
        let st = self.state.lock().unwrap();
        st.pods.values().flat_map(|p| p.containers.values()).filter(|c| c.record.is_active()).count()
    }
}

impl ProcessRuntime {
    fn signal_for_stop(&self, pod_uid: &str, container: &str, grace: Duration, restart: bool) {
        let mut st = self.state.lock().unwrap();
        let Some(p) = st.pods.get_mut(pod_uid) else { return };
        let Some(c) = p.containers.get_mut(container) else { return };
        if restart {
            c.record.killing = true;
        } else {
            c.record.stopping = true;
        }
        save(&self.data_dir, pod_uid, p, container);
        let Some(c) = p.containers.get(container) else { return };
        let Some(pgid) = c.pgid else { return };
        signal_group(pgid, libc::SIGTERM);
        let (state, uid, name, generation) =
            (self.state.clone(), pod_uid.to_string(), container.to_string(), c.generation);
        let cgroup = self.cgroups.as_ref().map(|cg| cg.container(pod_uid, container));
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = state.lock().unwrap();
            if let Some(c) = st.pods.get(&uid).and_then(|p| p.containers.get(&name)) {
                if c.generation == generation && c.pgid == Some(pgid) {
                    signal_group(pgid, libc::SIGKILL);
                    if let Some(cg) = cgroup {
                        cg.kill();
                    }
                }
            }
        });
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, pod: &Pod, container: &Container, env: Vec<(String, String)>, mounts: Vec<Mount>) {
        let (uid, namespace, name, node) = pod_keys(pod);
        let (generation, restart, finished, log) = {
            let mut st = self.state.lock().unwrap();
            let dir = container_dir(&self.data_dir, &uid, &container.name);
            let p = st.entry(uid.clone(), namespace, name, node);
            let c = p.containers.entry(container.name.clone()).or_insert_with(|| {
                ProcContainer::new(ContainerRecord {
                    restart_count: -1,
                    ..ContainerRecord::new(
                        &container.name,
                        container.image.as_deref().unwrap_or_default(),
                        RunState::Starting,
                    )
                })
            });
            if let RunState::Exited(t) = &c.record.state {
                c.record.last_terminated = Some(t.clone());
                c.previous_log = Some(c.log.clone());
            }
            c.record.restart_count += 1;
            c.record.state = RunState::Starting;
            c.record.stopping = false;
            c.record.killing = false;
            c.generation += 1;
            c.finished = Arc::new(AtomicBool::new(false));
            c.log = dir.join(format!("{}.log", c.record.restart_count));
            (c.generation, c.record.restart_count, c.finished.clone(), c.log.clone())
        };
        let result = self.spawn(pod, container, &env, &mounts, &log, finished.clone(), generation);
        let mut st = self.state.lock().unwrap();
        let Some(c) = st.pods.get_mut(&uid).and_then(|p| p.containers.get_mut(&container.name)) else { return };
        if c.generation != generation {
            return;
        }
        if let Err((reason, message, retriable)) = result {
            finished.store(true, Ordering::SeqCst);
            tracing::info!(pod = %uid, container = %container.name, %reason, %message, "container did not start");
            c.record.state = if retriable {
                // Like the kubelet: a start error is an exit (128), restarted per policy.
                RunState::Exited(Terminated {
                    exit_code: 128,
                    signal: None,
                    reason,
                    message: Some(message),
                    started_at: None,
                    finished_at: now(),
                    container_id: String::new(),
                })
            } else {
                c.record.restart_count = restart.max(0);
                RunState::CreateFailed { reason, message }
            };
        }
    }

    fn stop(&self, pod_uid: &str, container: &str, grace: Duration) {
        self.signal_for_stop(pod_uid, container, grace, false);
    }

    fn kill(&self, pod_uid: &str, container: &str, grace: Duration) {
        self.signal_for_stop(pod_uid, container, grace, true);
    }

    fn supports_probes(&self) -> bool {
        true
    }

    fn exec_target(&self, pod_uid: &str, container: &str) -> Option<ExecTarget> {
        let st = self.state.lock().unwrap();
        let c = st.pods.get(pod_uid)?.containers.get(container)?;
        Some(ExecTarget::Host { env: c.env.clone(), dir: c.dir.clone(), mount_ns_of: c.pgid.filter(|_| c.mount_ns) })
    }

    fn pod_dir(&self, pod_uid: &str) -> Option<PathBuf> {
        Some(ProcessRuntime::pod_dir(self, pod_uid))
    }

    fn host_exec(&self, namespace: &str, pod: &str, container: &str) -> Result<Option<ExecTarget>, StreamRefused> {
        let st = self.state.lock().unwrap();
        let c = st.named_container(namespace, pod, container).filter(|c| c.pgid.is_some()).ok_or_else(|| {
            StreamRefused::NotFound(format!("container {container:?} of pod {namespace}/{pod} is not running here"))
        })?;
        Ok(Some(ExecTarget::Host {
            env: c.env.clone(),
            dir: c.dir.clone(),
            mount_ns_of: c.pgid.filter(|_| c.mount_ns),
        }))
    }

    fn stats(&self) -> Vec<PodUsage> {
        type Running = Vec<(String, String, i32)>;
        let pods: Vec<(String, String, String, String, Running)> = {
            let st = self.state.lock().unwrap();
            st.pods
                .iter()
                .map(|(uid, p)| {
                    let running: Running = p
                        .containers
                        .values()
                        .filter_map(|c| Some((c.record.name.clone(), c.record.id.clone(), c.pgid?)))
                        .collect();
                    (uid.clone(), p.namespace.clone(), p.name.clone(), p.node.clone(), running)
                })
                .filter(|p| !p.4.is_empty())
                .collect()
        };
        let pgids: Vec<i32> = pods.iter().flat_map(|p| p.4.iter().map(|r| r.2)).collect();
        let usage = stats::group_usage(&pgids);
        pods.into_iter()
            .map(|(uid, namespace, name, node, running)| {
                let containers = running
                    .into_iter()
                    .map(|(name, id, pgid)| {
                        let from_cgroup = self.cgroups.as_ref().and_then(|cg| cg.container(&uid, &name).usage());
                        let (cpu, mem) = from_cgroup.or_else(|| usage.get(&pgid).copied()).unwrap_or_default();
                        ContainerUsage { name, id, usage_core_nano_seconds: cpu, working_set_bytes: mem }
                    })
                    .collect();
                PodUsage { uid, namespace, name, node, containers }
            })
            .collect()
    }

    fn containers(&self, pod_uid: &str) -> Vec<ContainerRecord> {
        let st = self.state.lock().unwrap();
        st.pods.get(pod_uid).map(|p| p.containers.values().map(|c| c.record.clone()).collect()).unwrap_or_default()
    }

    fn pods(&self, node: &str) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.pods.iter().filter(|(_, p)| p.node == node).map(|(u, _)| u.clone()).collect()
    }

    fn forget(&self, pod_uid: &str) {
        self.state.lock().unwrap().remove(pod_uid);
        let _ = std::fs::remove_dir_all(self.pod_dir(pod_uid));
        if let Some(cg) = &self.cgroups {
            cg.remove_pod(pod_uid);
        }
    }

    fn logs(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<LogSource> {
        let st = self.state.lock().unwrap();
        let c = st.named_container(namespace, pod, container)?;
        if previous {
            let path = c.previous_log.clone()?;
            return Some(LogSource::File { path, finished: Arc::new(AtomicBool::new(true)) });
        }
        if c.log.as_os_str().is_empty() || matches!(c.record.state, RunState::CreateFailed { .. }) {
            return None;
        }
        Some(LogSource::File { path: c.log.clone(), finished: c.finished.clone() })
    }

    fn uses_env(&self) -> bool {
        true
    }

    fn record_failure(&self, pod: &Pod, container: &Container, reason: &str, message: &str) {
        let (uid, namespace, name, node) = pod_keys(pod);
        let mut st = self.state.lock().unwrap();
        let p = st.entry(uid, namespace, name, node);
        let previous = p.containers.remove(&container.name);
        let mut c = ProcContainer::new(ContainerRecord {
            ready: false,
            ..ContainerRecord::new(
                &container.name,
                container.image.as_deref().unwrap_or_default(),
                RunState::CreateFailed { reason: reason.into(), message: message.into() },
            )
        });
        if let Some(prev) = previous {
            // A restart that failed before it started: keep the history.
            c.record.restart_count = prev.record.restart_count;
            c.record.last_terminated = match prev.record.state {
                RunState::Exited(t) => Some(t),
                _ => prev.record.last_terminated,
            };
            c.previous_log = Some(prev.log).filter(|l| !l.as_os_str().is_empty()).or(prev.previous_log);
            c.generation = prev.generation + 1;
        }
        p.containers.insert(container.name.clone(), c);
    }

    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    fn shutdown(&self) {
        if self.stop_on_exit {
            self.kill_all();
        }
    }

    fn active(&self) -> usize {
        if self.stop_on_exit {
            self.running()
        } else {
            0
        }
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        if self.stop_on_exit {
            self.kill_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// The test pod's uid: one per test (process and thread — the test's name), since tests
    /// run side by side and a container's cgroup (`berth/{uid}/{container}`) is shared
    /// machine-wide.
    fn uid() -> String {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("main").rsplit("::").next().unwrap_or("main").to_string();
        format!("uid-p-{}-{test}", std::process::id())
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some(uid()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn sh(script: &str) -> Container {
        Container {
            name: "c".into(),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec![script.into()]),
            ..Default::default()
        }
    }

    async fn until(rt: &ProcessRuntime, what: &str, f: impl Fn(&ContainerRecord) -> bool) -> ContainerRecord {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = rt.containers(&uid()).into_iter().find(|c| f(c)) {
                return c;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn runs_logs_exits_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path().to_path_buf(), Arc::new(|_: &str, _: &str| {}), true).unwrap();
        rt.start(
            &pod(),
            &sh("echo out $GREETING; echo err >&2; exit 3"),
            vec![("GREETING".into(), "hi".into())],
            vec![],
        );
        let c = until(&rt, "exit", |c| matches!(c.state, RunState::Exited(_))).await;
        let RunState::Exited(t) = c.state else { unreachable!() };
        assert_eq!((t.exit_code, t.reason.as_str()), (3, "Error"));
        assert!(c.id.starts_with("process://"));
        let Some(LogSource::File { path, finished }) = rt.logs("ns", "p", "c", false) else { panic!("logs") };
        assert!(finished.load(Ordering::SeqCst));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(" stdout F out hi\n"), "{text}");
        assert!(text.contains(" stderr F err\n"), "{text}");
        rt.start(&pod(), &sh("sleep 30"), vec![], vec![]);
        let c = until(&rt, "running", |c| matches!(c.state, RunState::Running { .. })).await;
        assert_eq!(c.restart_count, 1);
        assert_eq!(c.last_terminated.as_ref().unwrap().exit_code, 3);
        assert!(rt.logs("ns", "p", "c", true).is_some());
        rt.stop(&uid(), "c", Duration::from_secs(5));
        let c = until(&rt, "stopped", |c| matches!(c.state, RunState::Exited(_))).await;
        let RunState::Exited(t) = c.state else { unreachable!() };
        assert_eq!((t.exit_code, t.signal), (128 + libc::SIGTERM, Some(libc::SIGTERM)));
        rt.forget(&uid());
        assert!(!dir.path().join(format!("pods/{}", uid())).exists());
    }

    #[tokio::test]
    async fn grace_ends_with_sigkill_and_no_command_is_a_create_error() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path().to_path_buf(), Arc::new(|_: &str, _: &str| {}), true).unwrap();
        rt.start(&pod(), &sh("trap '' TERM; echo ready; while true; do sleep 0.05; done"), vec![], vec![]);
        until(&rt, "running", |c| matches!(c.state, RunState::Running { .. })).await;
        // Wait for the trap to be installed (the line is printed after it).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !rt.logs("ns", "p", "c", false).is_some_and(|l| match l {
            LogSource::File { path, .. } => std::fs::read_to_string(path).unwrap_or_default().contains("ready"),
            _ => false,
        }) {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rt.stop(&uid(), "c", Duration::from_millis(200));
        let c = until(&rt, "killed", |c| matches!(c.state, RunState::Exited(_))).await;
        let RunState::Exited(t) = c.state else { unreachable!() };
        assert_eq!(t.signal, Some(libc::SIGKILL));

        let no_command = Container { name: "c".into(), ..Default::default() };
        rt.start(&pod(), &no_command, vec![], vec![]);
        let c = rt.containers(&uid()).pop().unwrap();
        assert!(matches!(&c.state, RunState::CreateFailed { reason, .. } if reason == "CreateContainerError"));
        assert_eq!(rt.running(), 0);
    }
}
