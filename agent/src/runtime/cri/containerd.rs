//! The agent's own containerd, for nodes started without `--container-runtime-endpoint`
//! (as k3s runs its embedded containerd): everything it owns lives under
//! `DATA_DIR/containerd/` — `config.toml`, `root/`, `state/`, `containerd.sock`,
//! `containerd.log` and `certs.d/` (registry hosts, containerd's `hosts.toml` format, e.g.
//! `certs.d/127.0.0.1:5000/hosts.toml` for a plain-HTTP local registry) — and its CNI
//! configuration under `DATA_DIR/cni/net.d/`, so several agents (and tests) on one machine
//! never share state with each other or with a system containerd.
//!
//! [`config_toml`] is the pure decision; [`Containerd::start`] writes it, starts the
//! process and waits until the CRI answers; dropping the handle stops containerd
//! (SIGTERM, then SIGKILL after [`STOP_GRACE`]). Containers keep running across that: their
//! shims are separate processes, which the next containerd reconnects to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{connect, CriClient};
use crate::error::{AgentError, Result};

/// How long containerd gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// The longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where one agent's containerd keeps everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdLayout {
    /// `DATA_DIR/containerd`.
    pub dir: PathBuf,
    /// `DATA_DIR/cni/net.d`: the CNI conflist the agent writes for its pods.
    pub cni_conf_dir: PathBuf,
}

impl ContainerdLayout {
    pub fn under(data_dir: &Path) -> ContainerdLayout {
        ContainerdLayout { dir: data_dir.join("containerd"), cni_conf_dir: data_dir.join("cni").join("net.d") }
    }
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// Registry host configuration (`certs.d/HOST[:PORT]/hosts.toml`).
    pub fn registry_config_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }
    /// The CRI endpoint of this containerd, in kubelet's form.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
}

/// What the agent's containerd is configured with besides its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdSettings {
    /// The pod sandbox ("pause") image (kubelet's `--pod-infra-container-image`).
    pub sandbox_image: String,
    /// Where the CNI plugin binaries are (`/usr/lib/cni` on Debian).
    pub cni_bin_dir: PathBuf,
    /// Keep containers' `oom_score_adj` at or above the agent's own: needed where the agent
    /// lacks CAP_SYS_RESOURCE (inside a container), or runc fails to start every sandbox
    /// ("can't get final child's PID from pipe") when it sets the pause process's -998.
    pub restrict_oom_score_adj: bool,
}

/// CAP_SYS_RESOURCE's bit in a capability set.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether a `/proc/PID/status` text says the process holds CAP_SYS_RESOURCE (pure).
pub fn has_sys_resource(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps >> CAP_SYS_RESOURCE & 1 == 1)
}

impl ContainerdSettings {
    /// The settings for this process: `oom_score_adj` restricted unless it holds
    /// CAP_SYS_RESOURCE.
    pub fn for_this_process(sandbox_image: &str, cni_bin_dir: &Path) -> ContainerdSettings {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        ContainerdSettings {
            sandbox_image: sandbox_image.to_string(),
            cni_bin_dir: cni_bin_dir.to_path_buf(),
            restrict_oom_score_adj: !has_sys_resource(&status),
        }
    }
}

/// containerd's `config.toml` (version 2) for `layout` (pure). TOML strings are written
/// with `{:?}`, whose escaping of `"` and `\` is TOML's for the paths an agent uses.
pub fn config_toml(layout: &ContainerdLayout, settings: &ContainerdSettings) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        "# Written by berth-agent: its own containerd (rewritten at every start).\n\
         version = 2\n\
         root = {root:?}\n\
         state = {state:?}\n\
         \n\
         [grpc]\n  address = {socket:?}\n\
         \n\
         [{cri}]\n  sandbox_image = {sandbox:?}\n  restrict_oom_score_adj = {restrict_oom}\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
         \n\
         [{cri}.containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n\
         \n\
         [{cri}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [{cri}.cni]\n  bin_dir = {cni_bin:?}\n  conf_dir = {cni_conf:?}\n\
         \n\
         [{cri}.registry]\n  config_path = {registry:?}\n",
        root = layout.root().display().to_string(),
        state = layout.state().display().to_string(),
        socket = layout.socket().display().to_string(),
        sandbox = settings.sandbox_image,
        cni_bin = settings.cni_bin_dir.display().to_string(),
        cni_conf = layout.cni_conf_dir.display().to_string(),
        registry = layout.registry_config_dir().display().to_string(),
        restrict_oom = settings.restrict_oom_score_adj,
    )
}

/// A running containerd the agent started; stopped on drop. [`Containerd::supervise`]
/// starts it again when it exits (as k3s does); the [`CriClient`] reconnects by itself.
pub struct Containerd {
    child: std::sync::Mutex<Child>,
    binary: PathBuf,
    pub layout: ContainerdLayout,
    pub client: CriClient,
}

/// How often the supervisor checks containerd, and its restart back-off bounds.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
const RESTART_BACK_OFF_MAX: Duration = Duration::from_secs(30);

impl Containerd {
    /// Writes the configuration, starts `binary` and waits (at most `timeout`) until its CRI
    /// answers `Version`. A containerd that exits first is reported with the end of its log.
    pub async fn start(
        binary: &Path,
        layout: ContainerdLayout,
        settings: &ContainerdSettings,
        timeout: Duration,
    ) -> Result<Containerd> {
        let socket = layout.socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(AgentError::Config {
                flag: "--data-dir",
                message: format!(
                    "containerd's socket {} would be longer than the {MAX_SOCKET_PATH} bytes a Unix socket path may have; use a shorter data directory",
                    socket.display()
                ),
            });
        }
        for dir in [layout.root(), layout.state(), layout.registry_config_dir(), layout.cni_conf_dir.clone()] {
            std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("creating", &dir, e))?;
        }
        let config = layout.config_file();
        std::fs::write(&config, config_toml(&layout, settings)).map_err(|e| AgentError::io("writing", &config, e))?;
        let child = spawn(binary, &layout)?;
        tracing::info!(pid = child.id(), config = %config.display(), "started containerd");
        let mut started = StartingContainerd { child: Some(child) };
        let client = wait_until_serving(&mut started, &layout, timeout).await?;
        let child = started.child.take().expect("the child is kept until started");
        Ok(Containerd { child: std::sync::Mutex::new(child), binary: binary.to_path_buf(), layout, client })
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// Restarts containerd (same configuration, same directories: it takes back its
    /// running containers from their shims) whenever it exits, until `cancel`; restarts
    /// back off from 1 s to 30 s while they keep failing.
    pub async fn supervise(self: std::sync::Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let mut back_off = SUPERVISE_EVERY;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            }
            let exited = self.child.lock().unwrap_or_else(|e| e.into_inner()).try_wait().ok().flatten();
            let Some(status) = exited else { continue };
            tracing::error!(%status, log = %log_tail(&self.layout.log_file(), 5), "containerd exited; starting it again");
            match self.respawn().await {
                Ok(pid) => {
                    tracing::info!(pid, "containerd serves CRI again");
                    back_off = SUPERVISE_EVERY;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?back_off, "containerd did not start again");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(back_off) => {}
                    }
                    back_off = (back_off * 2).min(RESTART_BACK_OFF_MAX);
                }
            }
        }
    }

    /// Starts containerd again with the configuration already written.
    async fn respawn(&self) -> Result<u32> {
        let child = spawn(&self.binary, &self.layout)?;
        let mut started = StartingContainerd { child: Some(child) };
        wait_until_serving(&mut started, &self.layout, Duration::from_secs(30)).await?;
        let child = started.child.take().expect("the child is kept until started");
        let pid = child.id();
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = child;
        Ok(pid)
    }
}

/// Starts `binary` on the configuration written in `layout`, logging to its log file (the
/// socket a killed containerd left is removed first: the dial that follows would succeed
/// too early).
fn spawn(binary: &Path, layout: &ContainerdLayout) -> Result<Child> {
    let _ = std::fs::remove_file(layout.socket());
    let log_path = layout.log_file();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| AgentError::io("opening", &log_path, e))?;
    let err_log = log.try_clone().map_err(|e| AgentError::io("opening", &log_path, e))?;
    Command::new(binary)
        .arg("--config")
        .arg(layout.config_file())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| AgentError::io("starting containerd", binary, e))
}

/// Dials until the CRI answers, failing early when the process exits.
async fn wait_until_serving(
    started: &mut StartingContainerd,
    layout: &ContainerdLayout,
    timeout: Duration,
) -> Result<CriClient> {
    let deadline = Instant::now() + timeout;
    let endpoint = layout.endpoint();
    let mut last = String::from("no attempt");
    loop {
        if let Some(status) = started.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(AgentError::Runtime(format!(
                "containerd exited ({status}) before serving; the end of {}:\n{}",
                layout.log_file().display(),
                log_tail(&layout.log_file(), 10)
            )));
        }
        if layout.socket().exists() {
            match connect(&endpoint, Duration::from_secs(1)).await {
                Ok(client) => match client.version(Duration::from_secs(2)).await {
                    Ok(v) => {
                        tracing::info!(runtime = %v.runtime_name, version = %v.runtime_version, api = %v.runtime_api_version, "containerd is serving CRI");
                        return Ok(client);
                    }
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(AgentError::Timeout {
                what: format!("waiting {} s for containerd to serve CRI (last: {last})", timeout.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `lines` lines of a log file (for error messages).
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`; always reaped.
fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill(2) on our own child's pid, which is not reaped yet (so not reused).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(pid = child.id(), "containerd did not exit within its grace period; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// A containerd between spawn and serving: stopped if starting fails.
struct StartingContainerd {
    child: Option<Child>,
}

impl Drop for StartingContainerd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_child(child, STOP_GRACE);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop_child(self.child.get_mut().unwrap_or_else(|e| e.into_inner()), STOP_GRACE);
        tracing::info!("stopped containerd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_under_the_data_dir() {
        let layout = ContainerdLayout::under(Path::new("/var/lib/berth-agent"));
        let settings = ContainerdSettings {
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            restrict_oom_score_adj: true,
        };
        let toml = config_toml(&layout, &settings);
        for line in [
            "version = 2",
            "root = \"/var/lib/berth-agent/containerd/root\"",
            "state = \"/var/lib/berth-agent/containerd/state\"",
            "address = \"/var/lib/berth-agent/containerd/containerd.sock\"",
            "sandbox_image = \"registry.k8s.io/pause:3.10\"",
            "restrict_oom_score_adj = true",
            "snapshotter = \"overlayfs\"",
            "bin_dir = \"/usr/lib/cni\"",
            "conf_dir = \"/var/lib/berth-agent/cni/net.d\"",
            "config_path = \"/var/lib/berth-agent/containerd/certs.d\"",
        ] {
            assert!(toml.lines().any(|l| l.trim() == line), "missing {line:?} in\n{toml}");
        }
        assert_eq!(layout.endpoint(), "unix:///var/lib/berth-agent/containerd/containerd.sock");
    }

    #[test]
    fn cap_sys_resource_is_read_from_the_effective_set() {
        assert!(has_sys_resource("Name:\tx\nCapEff:\t000001ffffffffff\n"));
        assert!(!has_sys_resource("CapPrm:\t000001ffffffffff\nCapEff:\t000001fffeffffff\n"));
        assert!(!has_sys_resource("no capabilities here"));
    }
}
