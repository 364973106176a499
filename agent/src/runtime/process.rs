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
//! Only when configured (`stop_on_exit`, used by in-process tests) does the runtime kill
//! its containers on shutdown and on drop.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use super::cgroups::{Cgroups, ContainerCgroup, Limits};
use super::env::expand;
use super::stats::{self, ContainerUsage, PodUsage, ProcStat};
use super::{
    mounts, now, pod_keys, ContainerRecord, ExecTarget, LogSource, Mount, RunState, Runtime, Terminated, Wake,
};
use crate::error::{AgentError, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the output of an exited container's group may take to drain.
const DRAIN: Duration = Duration::from_secs(2);
/// How often an adopted (non-child) container's pid is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);
const STATE_FILE: &str = "state.json";

/// A termination as saved on disk (times in Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTerm {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: i64,
    pub container_id: String,
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl From<&Terminated> for SavedTerm {
    fn from(t: &Terminated) -> SavedTerm {
        SavedTerm {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: t.started_at.map(|s| s.as_second()),
            finished_at: t.finished_at.as_second(),
            container_id: t.container_id.clone(),
        }
    }
}

impl From<&SavedTerm> for Terminated {
    fn from(t: &SavedTerm) -> Terminated {
        Terminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: t.started_at.map(ts),
            finished_at: ts(t.finished_at),
            container_id: t.container_id.clone(),
        }
    }
}

/// One container's state as saved in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub container: String,
    pub image: String,
    pub id: String,
    pub restart_count: i32,
    /// The running process (None once it exited).
    pub pid: Option<i32>,
    pub start_ticks: Option<u64>,
    pub started_at: Option<i64>,
    pub exited: Option<SavedTerm>,
    pub last_terminated: Option<SavedTerm>,
    pub log: PathBuf,
    pub previous_log: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
    pub mount_ns: bool,
    pub stopping: bool,
}

/// What a restarted agent does with a saved container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The recorded process still runs: supervise it.
    Adopt { pid: i32 },
    /// It had exited before: keep the record as it is.
    Keep,
    /// It was running but is gone (or its pid now names another process): it exited while
    /// no agent watched, status unknown.
    Lost(Terminated),
}

/// The adoption decision for `saved`, given what `/proc/{pid}/stat` says now (None: no
/// such live process).
pub fn adoption(saved: &Saved, live: Option<ProcStat>, now: Timestamp) -> Adoption {
    let Some(pid) = saved.pid else { return Adoption::Keep };
    match (live, saved.start_ticks) {
        (Some(s), Some(t)) if s.start_ticks == t && s.state != 'Z' && s.state != 'X' => Adoption::Adopt { pid },
        _ => Adoption::Lost(unknown_exit(saved.started_at.map(ts), now, &saved.id, "while the agent was down")),
    }
}

fn unknown_exit(started_at: Option<Timestamp>, now: Timestamp, id: &str, when: &str) -> Terminated {
    Terminated {
        exit_code: 255,
        signal: None,
        reason: "Unknown".into(),
        message: Some(format!("the container exited {when}; its exit status is unknown")),
        started_at,
        finished_at: now,
        container_id: id.into(),
    }
}

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

struct ProcPod {
    namespace: String,
    name: String,
    node: String,
    containers: HashMap<String, ProcContainer>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, ProcPod>,
    by_name: HashMap<(String, String), String>,
}

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

fn fifo_paths(log: &Path) -> (PathBuf, PathBuf) {
    (log.with_extension("stdout"), log.with_extension("stderr"))
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: mkfifo on a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts copying the container's FIFOs into its log file.
fn start_readers(log: &Path) -> Vec<JoinHandle<()>> {
    let mut readers = Vec::new();
    let Ok(file) = RotatingLog::open(log, MAX_LOG_BYTES) else { return readers };
    let file = Arc::new(Mutex::new(file));
    let (out, err) = fifo_paths(log);
    for (stream, path) in [("stdout", out), ("stderr", err)] {
        let rx = match tokio::net::unix::pipe::OpenOptions::new().open_receiver(&path) {
            Ok(rx) => rx,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no output pipe");
                continue;
            }
        };
        readers.push(tokio::spawn(copy_lines(Box::new(rx), file.clone(), stream)));
    }
    readers
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
            None => tracing::info!("cgroups unavailable (not root): resource limits are not enforced"),
        }
        let rt = ProcessRuntime { data_dir, state: Arc::default(), wake, stop_on_exit, cgroups };
        rt.adopt_all();
        Ok(rt)
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    /// Loads every saved container and supervises those still running.
    fn adopt_all(&self) {
        let Ok(pods) = std::fs::read_dir(self.data_dir.join("pods")) else { return };
        for pod_dir in pods.filter_map(|e| e.ok()) {
            let uid = pod_dir.file_name().to_string_lossy().into_owned();
            let Ok(containers) = std::fs::read_dir(pod_dir.path()) else { continue };
            for c in containers.filter_map(|e| e.ok()) {
                let path = c.path().join(STATE_FILE);
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                let saved: Saved = match serde_json::from_str(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable container state");
                        continue;
                    }
                };
                self.adopt(&uid, saved);
            }
        }
    }

    fn adopt(&self, uid: &str, saved: Saved) {
        let live = saved.pid.and_then(stats::read_stat);
        let decision = adoption(&saved, live, now());
        tracing::info!(pod = %format!("{}/{}", saved.namespace, saved.pod), container = %saved.container,
            ?decision, "found a container of a previous agent");
        let mut record = ContainerRecord::new(&saved.container, &saved.image, RunState::Starting);
        record.id = saved.id.clone();
        record.restart_count = saved.restart_count;
        record.last_terminated = saved.last_terminated.as_ref().map(Terminated::from);
        record.stopping = saved.stopping;
        let mut c = ProcContainer::new(record);
        c.log = saved.log.clone();
        c.previous_log = saved.previous_log.clone();
        c.env = saved.env.clone();
        c.dir = saved.dir.clone();
        c.mount_ns = saved.mount_ns;
        c.generation = 1;
        match &decision {
            Adoption::Adopt { pid } => {
                c.pgid = Some(*pid);
                c.start_ticks = saved.start_ticks;
                c.finished = Arc::new(AtomicBool::new(false));
                c.record.state = RunState::Running { started_at: ts(saved.started_at.unwrap_or_default()) };
            }
            Adoption::Keep => {
                c.record.state = match &saved.exited {
                    Some(t) => RunState::Exited(t.into()),
                    None => RunState::Exited(unknown_exit(None, now(), &saved.id, "before the agent restarted")),
                }
            }
            Adoption::Lost(t) => c.record.state = RunState::Exited(t.clone()),
        }
        {
            let mut st = self.state.lock().unwrap();
            st.by_name.insert((saved.namespace.clone(), saved.pod.clone()), uid.to_string());
            let p = st.pods.entry(uid.to_string()).or_insert_with(|| ProcPod {
                namespace: saved.namespace.clone(),
                name: saved.pod.clone(),
                node: saved.node.clone(),
                containers: HashMap::new(),
            });
            p.containers.insert(saved.container.clone(), c);
            if let Some(p) = st.pods.get(uid) {
                save(&self.data_dir, uid, p, &saved.container);
            }
        }
        if let Adoption::Adopt { pid } = decision {
            let readers = start_readers(&saved.log);
            let (state, wake, data_dir) = (self.state.clone(), self.wake.clone(), self.data_dir.clone());
            let (uid, name, node, ticks) =
                (uid.to_string(), saved.container.clone(), saved.node.clone(), saved.start_ticks);
            let cgroup = self.cgroups.as_ref().map(|cg| cg.container(&uid, &name));
            tokio::spawn(async move {
                // Not our child: poll until the process is gone (or a zombie of someone else).
                while stats::read_stat(pid).is_some_and(|s| Some(s.start_ticks) == ticks) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                let started_at = saved.started_at.map(ts);
                let exit = unknown_exit(started_at, now(), &saved.id, "after the agent re-adopted it");
                let run = RunEnd { state, data_dir, wake, uid, name, node, generation: 1, pid, cgroup };
                run.finish(readers, exit).await;
            });
        }
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

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[(String, String)],
        mounts: &[Mount],
        log: &Path,
        finished: Arc<AtomicBool>,
        generation: u64,
    ) -> std::result::Result<(), (String, String, bool)> {
        let (uid, _, name, node) = pod_keys(pod);
        let expand_all = |v: &Option<Vec<String>>| v.iter().flatten().map(|s| expand(s, env)).collect::<Vec<_>>();
        let command = expand_all(&container.command);
        let args = expand_all(&container.args);
        let Some((program, first_args)) = command.split_first() else {
            return Err((
                "CreateContainerError".into(),
                "the process runtime needs a command (it does not run images' entrypoints)".into(),
                false,
            ));
        };
        if !mounts.is_empty() && !mounts::supported() {
            return Err((
                "CreateContainerError".into(),
                "volume mounts are unsupported: the agent is not running as root (mount namespaces need it)".into(),
                false,
            ));
        }
        let dir = match &container.working_dir {
            Some(d) => PathBuf::from(d),
            None => self.pod_dir(&uid),
        };
        let start_error = |m: String| ("StartError".to_string(), m, true);
        std::fs::create_dir_all(log.parent().expect("log paths have a parent"))
            .map_err(|e| start_error(format!("creating the log directory: {e}")))?;
        if container.working_dir.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| start_error(format!("creating {}: {e}", dir.display())))?;
        }
        // The container holds its pipes read-write: never SIGPIPE, even with no agent.
        let (out_path, err_path) = fifo_paths(log);
        let open_rw = |p: &Path| {
            mkfifo(p)?;
            std::fs::OpenOptions::new().read(true).write(true).open(p)
        };
        let out = open_rw(&out_path).map_err(|e| start_error(format!("output pipe {}: {e}", out_path.display())))?;
        let err = open_rw(&err_path).map_err(|e| start_error(format!("output pipe {}: {e}", err_path.display())))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(first_args)
            .args(&args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOSTNAME", &name)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false);
        if !mounts.is_empty() {
            mounts::apply(&mut cmd, mounts).map_err(|e| start_error(format!("preparing volume mounts: {e}")))?;
        }
        let cgroup = self.cgroups.as_ref().map(|cg| cg.container(&uid, &container.name));
        if let Some(cg) = &cgroup {
            let procs = cg
                .create(Limits::of(container))
                .map_err(|e| start_error(format!("creating the container's cgroup: {e}")))?;
            ContainerCgroup::join_before_exec(&mut cmd, procs);
        }
        // Readers open before the spawn so no early output is lost.
        let readers = start_readers(log);
        let spawned = cmd.spawn();
        drop(cmd); // closes the agent's copies of the pipes
        let mut child = spawned.map_err(|e| start_error(format!("exec {program:?}: {e}")))?;
        let pid = child.id().expect("a just-spawned child has a pid") as i32;
        {
            // Recorded before the reaper exists, so a quick exit always follows Running.
            let mut st = self.state.lock().unwrap();
            if let Some(p) = st.pods.get_mut(&uid) {
                if let Some(c) = p.containers.get_mut(&container.name) {
                    if c.generation == generation {
                        c.pgid = Some(pid);
                        c.start_ticks = stats::read_stat(pid).map(|s| s.start_ticks);
                        c.record.id = format!("process://{pid}");
                        c.record.state = RunState::Running { started_at: now() };
                        c.env = env.to_vec();
                        c.dir = dir.clone();
                        c.mount_ns = !mounts.is_empty();
                    }
                }
                save(&self.data_dir, &uid, p, &container.name);
            }
        }
        let run = RunEnd {
            state: self.state.clone(),
            data_dir: self.data_dir.clone(),
            wake: self.wake.clone(),
            uid,
            name: container.name.clone(),
            node,
            generation,
            pid,
            cgroup,
        };
        tokio::spawn(async move {
            let status = child.wait().await;
            let (exit_code, signal) = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (s.code(), s.signal()) {
                        (Some(c), _) => (c, None),
                        (None, Some(sig)) => (128 + sig, Some(sig)),
                        _ => (255, None),
                    }
                }
                Err(_) => (255, None),
            };
            let t = Terminated {
                exit_code,
                signal,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                started_at: None,
                finished_at: now(),
                container_id: format!("process://{pid}"),
            };
            run.finish(readers, t).await;
            finished.store(true, Ordering::SeqCst);
        });
        Ok(())
    }
}

/// What is needed to record the end of a run.
struct RunEnd {
    state: Arc<Mutex<State>>,
    data_dir: PathBuf,
    wake: Wake,
    uid: String,
    name: String,
    node: String,
    /// The run (a newer run makes this one's end a no-op).
    generation: u64,
    pid: i32,
    cgroup: Option<ContainerCgroup>,
}

impl RunEnd {
    /// The end of a run: kill what is left of its group and cgroup, drain its output,
    /// record the exit (`OOMKilled` when the kernel killed it for memory) unless a newer
    /// run replaced it, save, wake the worker.
    async fn finish(self, readers: Vec<JoinHandle<()>>, mut t: Terminated) {
        // The container ends with its main process: kill what is left of it.
        signal_group(self.pid, libc::SIGKILL);
        if let Some(cg) = &self.cgroup {
            if cg.oom_killed() {
                t.reason = "OOMKilled".into();
            }
            cg.remove().await;
        }
        for r in readers {
            let _ = tokio::time::timeout(DRAIN, r).await;
        }
        let changed = {
            let mut st = self.state.lock().unwrap();
            let Some(p) = st.pods.get_mut(&self.uid) else { return };
            match p.containers.get_mut(&self.name) {
                Some(c) if c.generation == self.generation => {
                    c.finished.store(true, Ordering::SeqCst);
                    if let RunState::Running { started_at } = c.record.state {
                        t.started_at = t.started_at.or(Some(started_at));
                    }
                    c.pgid = None;
                    c.start_ticks = None;
                    c.record.state = RunState::Exited(t);
                    save(&self.data_dir, &self.uid, p, &self.name);
                    true
                }
                _ => false,
            }
        };
        if changed {
            (self.wake)(&self.node, &self.uid);
        }
    }
}

/// Writes a file only root can read (container state holds resolved Secret values).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)
}

/// Writes `state.json` of container `name` of pod `uid` (write + rename).
fn save(data_dir: &Path, uid: &str, p: &ProcPod, name: &str) {
    let Some(c) = p.containers.get(name) else { return };
    let (started_at, exited) = match &c.record.state {
        RunState::Running { started_at } => (Some(started_at.as_second()), None),
        RunState::Exited(t) => (t.started_at.map(|s| s.as_second()), Some(SavedTerm::from(t))),
        _ => return,
    };
    let saved = Saved {
        namespace: p.namespace.clone(),
        pod: p.name.clone(),
        node: p.node.clone(),
        container: name.to_string(),
        image: c.record.image.clone(),
        id: c.record.id.clone(),
        restart_count: c.record.restart_count,
        pid: c.pgid,
        start_ticks: c.start_ticks,
        started_at,
        exited,
        last_terminated: c.record.last_terminated.as_ref().map(SavedTerm::from),
        log: c.log.clone(),
        previous_log: c.previous_log.clone(),
        env: c.env.clone(),
        dir: c.dir.clone(),
        mount_ns: c.mount_ns,
        stopping: c.record.stopping,
    };
    let dir = container_dir(data_dir, uid, name);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let result = std::fs::create_dir_all(&dir)
        .and_then(|_| write_private(&tmp, &serde_json::to_vec(&saved).unwrap_or_default()))
        .and_then(|_| std::fs::rename(&tmp, dir.join(STATE_FILE)));
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "saving container state failed");
    }
}

/// Size at which a container's log file is rotated (the kubelet's `containerLogMaxSize`).
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// A container's log file, rotated by size: past [`MAX_LOG_BYTES`] it is renamed to
/// `{log}.1` (replacing the previous one) and a new file starts, so a chatty container uses
/// at most about twice the limit on disk. Shared by the stdout and stderr copiers.
pub struct RotatingLog {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max: u64,
}

impl RotatingLog {
    pub fn open(path: &Path, max: u64) -> std::io::Result<RotatingLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_path_buf(), file, size, max })
    }

    /// The rotated file next to `log`.
    pub fn rotated(log: &Path) -> PathBuf {
        let mut name = log.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    pub fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max {
            std::fs::rename(&self.path, Self::rotated(&self.path))?;
            self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Copies `out` line by line into `log` as `{time} {stream} {text}` (one append per line).
async fn copy_lines(out: Box<dyn AsyncRead + Send + Unpin>, log: Arc<Mutex<RotatingLog>>, stream: &'static str) {
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line = format!("{} {stream} {}\n", Timestamp::now(), text.trim_end_matches(['\n', '\r']));
                if log.lock().unwrap().append(line.as_bytes()).is_err() {
                    return;
                }
            }
        }
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
            st.by_name.insert((namespace.clone(), name.clone()), uid.clone());
            let dir = container_dir(&self.data_dir, &uid, &container.name);
            let p = st.pods.entry(uid.clone()).or_insert_with(|| ProcPod {
                namespace,
                name,
                node,
                containers: HashMap::new(),
            });
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
        Some(ExecTarget { env: c.env.clone(), dir: c.dir.clone(), mount_ns_of: c.pgid.filter(|_| c.mount_ns) })
    }

    fn pod_dir(&self, pod_uid: &str) -> Option<PathBuf> {
        Some(ProcessRuntime::pod_dir(self, pod_uid))
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
        {
            let mut st = self.state.lock().unwrap();
            if let Some(p) = st.pods.remove(pod_uid) {
                let key = (p.namespace, p.name);
                if st.by_name.get(&key).is_some_and(|u| u == pod_uid) {
                    st.by_name.remove(&key);
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.pod_dir(pod_uid));
        if let Some(cg) = &self.cgroups {
            cg.remove_pod(pod_uid);
        }
    }

    fn logs(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<LogSource> {
        let st = self.state.lock().unwrap();
        let uid = st.by_name.get(&(namespace.to_string(), pod.to_string()))?;
        let c = st.pods.get(uid)?.containers.get(container)?;
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
        st.by_name.insert((namespace.clone(), name.clone()), uid.clone());
        let p = st.pods.entry(uid).or_insert_with(|| ProcPod { namespace, name, node, containers: HashMap::new() });
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

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-p".into()),
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
            if let Some(c) = rt.containers("uid-p").into_iter().find(|c| f(c)) {
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
        assert!(text.contains(" stdout out hi\n"), "{text}");
        assert!(text.contains(" stderr err\n"), "{text}");
        rt.start(&pod(), &sh("sleep 30"), vec![], vec![]);
        let c = until(&rt, "running", |c| matches!(c.state, RunState::Running { .. })).await;
        assert_eq!(c.restart_count, 1);
        assert_eq!(c.last_terminated.as_ref().unwrap().exit_code, 3);
        assert!(rt.logs("ns", "p", "c", true).is_some());
        rt.stop("uid-p", "c", Duration::from_secs(5));
        let c = until(&rt, "stopped", |c| matches!(c.state, RunState::Exited(_))).await;
        let RunState::Exited(t) = c.state else { unreachable!() };
        assert_eq!((t.exit_code, t.signal), (128 + libc::SIGTERM, Some(libc::SIGTERM)));
        rt.forget("uid-p");
        assert!(!dir.path().join("pods/uid-p").exists());
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
        rt.stop("uid-p", "c", Duration::from_millis(200));
        let c = until(&rt, "killed", |c| matches!(c.state, RunState::Exited(_))).await;
        let RunState::Exited(t) = c.state else { unreachable!() };
        assert_eq!(t.signal, Some(libc::SIGKILL));

        let no_command = Container { name: "c".into(), ..Default::default() };
        rt.start(&pod(), &no_command, vec![], vec![]);
        let c = rt.containers("uid-p").pop().unwrap();
        assert!(matches!(&c.state, RunState::CreateFailed { reason, .. } if reason == "CreateContainerError"));
        assert_eq!(rt.running(), 0);
    }
}

#[cfg(test)]
mod adoption_tests {
    use super::*;

    fn saved(pid: Option<i32>, ticks: Option<u64>) -> Saved {
        Saved {
            namespace: "ns".into(),
            pod: "p".into(),
            node: "n1".into(),
            container: "c".into(),
            image: "img".into(),
            id: "process://42".into(),
            restart_count: 2,
            pid,
            start_ticks: ticks,
            started_at: Some(1_700_000_000),
            exited: None,
            last_terminated: None,
            log: "/d/2.log".into(),
            previous_log: None,
            env: vec![],
            dir: "/d".into(),
            mount_ns: false,
            stopping: false,
        }
    }

    fn stat(state: char, start_ticks: u64) -> ProcStat {
        ProcStat { state, pgrp: 42, cpu_ticks: 0, start_ticks, rss_pages: 0 }
    }

    #[test]
    fn logs_rotate_by_size_keeping_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = RotatingLog::open(&path, 100).unwrap();
        for i in 0..12 {
            log.append(format!("line {i:02} padding padding\n").as_bytes()).unwrap();
            // 24 bytes: four to a file
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(RotatingLog::rotated(&path)).unwrap();
        assert!(current.len() <= 100 && rotated.len() <= 100, "{current:?} {rotated:?}");
        assert!(current.ends_with("line 11 padding padding\n"));
        assert!(rotated.ends_with("line 07 padding padding\n"), "{rotated:?}");
        // Reopening (an adopted container's new readers) continues the size count.
        let mut again = RotatingLog::open(&path, 100).unwrap();
        again.append(b"next line of twenty-six b\n").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().len() <= 100);
    }

    #[test]
    fn adoption_decision() {
        let now = ts(1_700_000_100);
        assert_eq!(adoption(&saved(Some(42), Some(7)), Some(stat('S', 7)), now), Adoption::Adopt { pid: 42 });
        // The pid now names another process (reused): lost, not adopted.
        let lost = adoption(&saved(Some(42), Some(7)), Some(stat('S', 8)), now);
        assert!(matches!(&lost, Adoption::Lost(t) if t.reason == "Unknown" && t.finished_at == now));
        assert!(matches!(adoption(&saved(Some(42), Some(7)), None, now), Adoption::Lost(_)));
        assert!(matches!(adoption(&saved(Some(42), Some(7)), Some(stat('Z', 7)), now), Adoption::Lost(_)));
        assert_eq!(adoption(&saved(None, None), None, now), Adoption::Keep);
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some("uid-a".into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec { node_name: Some("n1".into()), ..Default::default() });
        p
    }

    #[tokio::test]
    async fn a_new_runtime_adopts_running_containers() {
        let dir = tempfile::tempdir().unwrap();
        let wake: Wake = Arc::new(|_: &str, _: &str| {});
        let first = ProcessRuntime::new(dir.path().to_path_buf(), wake.clone(), false).unwrap();
        let c = Container {
            name: "c".into(),
            command: Some(vec!["sh".into(), "-c".into(), "echo one; sleep 30".into()]),
            ..Default::default()
        };
        first.start(&pod(), &c, vec![], vec![]);
        let id = first.containers("uid-a")[0].id.clone();
        let has_output = |rt: &ProcessRuntime| match rt.logs("ns", "p", "c", false) {
            Some(LogSource::File { path, .. }) => {
                std::fs::read_to_string(path).unwrap_or_default().contains("stdout one")
            }
            _ => false,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !has_output(&first) {
            assert!(std::time::Instant::now() < deadline, "no output");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid: i32 = id.strip_prefix("process://").unwrap().parse().unwrap();
        drop(first); // an agent going away does not stop its containers
        let _kill = scopeguard(pid);
        assert!(stats::read_stat(pid).is_some());

        let second = ProcessRuntime::new(dir.path().to_path_buf(), wake, true).unwrap();
        let r = second.containers("uid-a").pop().unwrap();
        assert_eq!((r.id.as_str(), r.restart_count), (id.as_str(), 0));
        assert!(matches!(r.state, RunState::Running { .. }));
        assert_eq!(second.pods("n1"), vec!["uid-a".to_string()]);
        second.stop("uid-a", "c", Duration::from_secs(5));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(second.containers("uid-a")[0].state, RunState::Exited(_)) {
            assert!(std::time::Instant::now() < deadline, "adopted container did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(has_output(&second), "the adopted container's log is found");
    }

    /// Kills process group `pid` when dropped (test cleanup, also on failure).
    fn scopeguard(pid: i32) -> impl Drop {
        struct Kill(i32);
        impl Drop for Kill {
            fn drop(&mut self) {
                signal_group(self.0, libc::SIGKILL);
            }
        }
        Kill(pid)
    }
}
