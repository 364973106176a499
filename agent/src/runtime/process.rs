//! The process runtime: a container is its `command` + `args` run as a child process in
//! its own process group, with the container's environment (plus `PATH` and `HOSTNAME`),
//! its `workingDir` (default: the pod's directory under the data dir), stdout and stderr
//! written line by line to `{data_dir}/pods/{uid}/{container}/{restart}.log` as
//! `{RFC 3339 time} {stream} {text}`. There is no image: a container without `command`
//! fails with `CreateContainerError`. Stopping sends SIGTERM to the process group, then
//! SIGKILL after the grace period; when the main process exits, the rest of its group is
//! killed (a container's processes end with it, as with a cgroup).
//!
//! Containers do not survive the agent: [`ProcessRuntime::kill_all`] runs on shutdown and
//! on drop (there is no re-adoption of running processes after an agent restart yet).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::env::expand;
use super::{now, pod_keys, ContainerRecord, LogSource, RunState, Runtime, Terminated, Wake};
use crate::error::{AgentError, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the output of an exited container's group may take to drain.
const DRAIN: Duration = Duration::from_secs(2);

struct ProcContainer {
    record: ContainerRecord,
    /// The process group (= the main process id) while it runs.
    pgid: Option<i32>,
    log: PathBuf,
    previous_log: Option<PathBuf>,
    finished: Arc<AtomicBool>,
    /// Bumped on every start so a stale kill timer or reaper does nothing.
    generation: u64,
}

struct ProcPod {
    namespace: String,
    name: String,
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
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is shared.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

impl ProcessRuntime {
    /// Keeps logs under `data_dir/pods`.
    pub fn new(data_dir: PathBuf, wake: Wake) -> Result<ProcessRuntime> {
        let pods = data_dir.join("pods");
        std::fs::create_dir_all(&pods).map_err(|e| AgentError::io("creating", &pods, e))?;
        Ok(ProcessRuntime { data_dir, state: Arc::default(), wake })
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    /// SIGKILLs every running container's process group (agent shutdown).
    pub fn kill_all(&self) {
        let st = self.state.lock().unwrap();
        for p in st.pods.values() {
            for c in p.containers.values() {
                if let Some(pgid) = c.pgid {
                    signal_group(pgid, libc::SIGKILL);
                }
            }
        }
    }

    /// How many containers are still running.
    pub fn running(&self) -> usize {
        let st = self.state.lock().unwrap();
        st.pods.values().flat_map(|p| p.containers.values()).filter(|c| c.record.is_active()).count()
    }

    fn spawn(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[(String, String)],
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
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| start_error(format!("opening {}: {e}", log.display())))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(first_args)
            .args(&args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOSTNAME", &name)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| start_error(format!("exec {program:?}: {e}")))?;
        let pid = child.id().expect("a just-spawned child has a pid") as i32;
        {
            // Recorded before the reaper exists, so a quick exit always follows Running.
            let mut st = self.state.lock().unwrap();
            if let Some(c) = st.pods.get_mut(&uid).and_then(|p| p.containers.get_mut(&container.name)) {
                if c.generation == generation {
                    c.pgid = Some(pid);
                    c.record.id = format!("process://{pid}");
                    c.record.state = RunState::Running { started_at: now() };
                }
            }
        }
        let mut readers = Vec::new();
        for (stream, out) in [
            ("stdout", child.stdout.take().map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>)),
            ("stderr", child.stderr.take().map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>)),
        ] {
            let (Some(out), Ok(file)) = (out, file.try_clone()) else { continue };
            readers.push(tokio::spawn(copy_lines(out, file, stream)));
        }
        let (state, wake, cname) = (self.state.clone(), self.wake.clone(), container.name.clone());
        tokio::spawn(async move {
            let status = child.wait().await;
            // The container ends with its main process: kill what is left of its group.
            signal_group(pid, libc::SIGKILL);
            for r in readers {
                let _ = tokio::time::timeout(DRAIN, r).await;
            }
            finished.store(true, Ordering::SeqCst);
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
            let changed = {
                let mut st = state.lock().unwrap();
                match st.pods.get_mut(&uid).and_then(|p| p.containers.get_mut(&cname)) {
                    Some(c) if c.generation == generation => {
                        let started_at = match c.record.state {
                            RunState::Running { started_at } => Some(started_at),
                            _ => None,
                        };
                        c.pgid = None;
                        c.record.state = RunState::Exited(Terminated {
                            exit_code,
                            signal,
                            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
                            message: None,
                            started_at,
                            finished_at: now(),
                            container_id: c.record.id.clone(),
                        });
                        true
                    }
                    _ => false,
                }
            };
            if changed {
                wake(&node, &uid);
            }
        });
        Ok(())
    }
}

/// Copies `out` line by line into `file` as `{time} {stream} {text}` (one append per line).
async fn copy_lines(out: Box<dyn AsyncRead + Send + Unpin>, mut file: std::fs::File, stream: &'static str) {
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line = format!("{} {stream} {}\n", Timestamp::now(), text.trim_end_matches(['\n', '\r']));
                if file.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, pod: &Pod, container: &Container, env: Vec<(String, String)>) {
        let (uid, namespace, name, _) = pod_keys(pod);
        let (generation, restart, finished, log) = {
            let mut st = self.state.lock().unwrap();
            st.by_name.insert((namespace.clone(), name.clone()), uid.clone());
            let dir = self.pod_dir(&uid).join(&container.name);
            let p =
                st.pods.entry(uid.clone()).or_insert_with(|| ProcPod { namespace, name, containers: HashMap::new() });
            let c = p.containers.entry(container.name.clone()).or_insert_with(|| ProcContainer {
                record: ContainerRecord {
                    name: container.name.clone(),
                    id: String::new(),
                    image: container.image.clone().unwrap_or_default(),
                    restart_count: -1,
                    state: RunState::Starting,
                    ready: true,
                    last_terminated: None,
                    stopping: false,
                },
                pgid: None,
                log: PathBuf::new(),
                previous_log: None,
                finished: Arc::new(AtomicBool::new(true)),
                generation: 0,
            });
            if let RunState::Exited(t) = &c.record.state {
                c.record.last_terminated = Some(t.clone());
                c.previous_log = Some(c.log.clone());
            }
            c.record.restart_count += 1;
            c.record.state = RunState::Starting;
            c.record.stopping = false;
            c.generation += 1;
            c.finished = Arc::new(AtomicBool::new(false));
            c.log = dir.join(format!("{}.log", c.record.restart_count));
            (c.generation, c.record.restart_count, c.finished.clone(), c.log.clone())
        };
        let result = self.spawn(pod, container, &env, &log, finished.clone(), generation);
        let mut st = self.state.lock().unwrap();
        let Some(c) = st.pods.get_mut(&uid).and_then(|p| p.containers.get_mut(&container.name)) else { return };
        if c.generation != generation {
            return;
        }
        match result {
            Ok(_) => {}
            Err((reason, message, retriable)) => {
                finished.store(true, Ordering::SeqCst);
                tracing::info!(pod = %uid, container = %container.name, %reason, %message, "container did not start");
                c.record.state = if retriable {
                    // Like the kubelet: a start error is an exit (128), restarted per policy.
                    let t = now();
                    RunState::Exited(Terminated {
                        exit_code: 128,
                        signal: None,
                        reason,
                        message: Some(message),
                        started_at: None,
                        finished_at: t,
                        container_id: String::new(),
                    })
                } else {
                    c.record.restart_count = restart.max(0);
                    RunState::CreateFailed { reason, message }
                };
            }
        }
    }

    fn stop(&self, pod_uid: &str, container: &str, grace: Duration) {
        let mut st = self.state.lock().unwrap();
        let Some(c) = st.pods.get_mut(pod_uid).and_then(|p| p.containers.get_mut(container)) else { return };
        c.record.stopping = true;
        let Some(pgid) = c.pgid else { return };
        signal_group(pgid, libc::SIGTERM);
        let (state, uid, name, generation) =
            (self.state.clone(), pod_uid.to_string(), container.to_string(), c.generation);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = state.lock().unwrap();
            if let Some(c) = st.pods.get(&uid).and_then(|p| p.containers.get(&name)) {
                if c.generation == generation && c.pgid == Some(pgid) {
                    signal_group(pgid, libc::SIGKILL);
                }
            }
        });
    }

    fn containers(&self, pod_uid: &str) -> Vec<ContainerRecord> {
        let st = self.state.lock().unwrap();
        st.pods.get(pod_uid).map(|p| p.containers.values().map(|c| c.record.clone()).collect()).unwrap_or_default()
    }

    fn pods(&self) -> Vec<String> {
        self.state.lock().unwrap().pods.keys().cloned().collect()
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
        let (uid, namespace, name, _) = pod_keys(pod);
        let mut st = self.state.lock().unwrap();
        st.by_name.insert((namespace.clone(), name.clone()), uid.clone());
        let p = st.pods.entry(uid).or_insert_with(|| ProcPod { namespace, name, containers: HashMap::new() });
        p.containers.insert(
            container.name.clone(),
            ProcContainer {
                record: ContainerRecord {
                    name: container.name.clone(),
                    id: String::new(),
                    image: container.image.clone().unwrap_or_default(),
                    restart_count: 0,
                    state: RunState::CreateFailed { reason: reason.into(), message: message.into() },
                    ready: false,
                    last_terminated: None,
                    stopping: false,
                },
                pgid: None,
                log: PathBuf::new(),
                previous_log: None,
                finished: Arc::new(AtomicBool::new(true)),
                generation: 0,
            },
        );
    }

    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    fn shutdown(&self) {
        self.kill_all();
    }

    fn active(&self) -> usize {
        self.running()
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        self.kill_all();
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
        let rt = ProcessRuntime::new(dir.path().to_path_buf(), Arc::new(|_: &str, _: &str| {})).unwrap();
        rt.start(&pod(), &sh("echo out $GREETING; echo err >&2; exit 3"), vec![("GREETING".into(), "hi".into())]);
        let c = until(&rt, "exit", |c| matches!(c.state, RunState::Exited(_))).await;
        let RunState::Exited(t) = c.state else { unreachable!() };
        assert_eq!((t.exit_code, t.reason.as_str()), (3, "Error"));
        assert!(c.id.starts_with("process://"));
        let Some(LogSource::File { path, finished }) = rt.logs("ns", "p", "c", false) else { panic!("logs") };
        assert!(finished.load(Ordering::SeqCst));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(" stdout out hi\n"), "{text}");
        assert!(text.contains(" stderr err\n"), "{text}");
        rt.start(&pod(), &sh("sleep 30"), vec![]);
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
        let rt = ProcessRuntime::new(dir.path().to_path_buf(), Arc::new(|_: &str, _: &str| {})).unwrap();
        rt.start(&pod(), &sh("trap '' TERM; echo ready; while true; do sleep 0.05; done"), vec![]);
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
        rt.start(&pod(), &no_command, vec![]);
        let c = rt.containers("uid-p").pop().unwrap();
        assert!(matches!(&c.state, RunState::CreateFailed { reason, .. } if reason == "CreateContainerError"));
        assert_eq!(rt.running(), 0);
    }
}
