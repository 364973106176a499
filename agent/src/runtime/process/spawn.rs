//! Starting a container: its command as a child process in its own process group, with
//! its environment, working directory, volume mounts and cgroup, output into its FIFOs; and
//! recording the end of a run ([`RunEnd`]), shared with adopted containers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::task::JoinHandle;

use super::logs::{fifo_paths, mkfifo, start_readers};
use super::saved::save;
use super::{signal_group, ProcessRuntime, State, DEFAULT_PATH};
use crate::runtime::cgroups::{ContainerCgroup, Limits};
use crate::runtime::env::expand;
use crate::runtime::{mounts, now, pod_keys, stats, Mount, RunState, Terminated, Wake};

/// How long the output of an exited container's group may take to drain.
const DRAIN: Duration = Duration::from_secs(2);

impl ProcessRuntime {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn(
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
pub(super) struct RunEnd {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) data_dir: PathBuf,
    pub(super) wake: Wake,
    pub(super) uid: String,
    pub(super) name: String,
    pub(super) node: String,
    /// The run (a newer run makes this one's end a no-op).
    pub(super) generation: u64,
    pub(super) pid: i32,
    pub(super) cgroup: Option<ContainerCgroup>,
}

impl RunEnd {
    /// The end of a run: kill what is left of its group and cgroup, drain its output,
    /// record the exit (`OOMKilled` when the kernel killed it for memory) unless a newer
    /// run replaced it, save, wake the worker.
    pub(super) async fn finish(self, readers: Vec<JoinHandle<()>>, mut t: Terminated) {
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
