//! Container probes (startup, liveness, readiness) with the kubelet's semantics, split into
//! a pure part — [`Timing`] (the spec's fields with Kubernetes defaults), [`Tracker`] (a
//! result sequence → the probe's state through the success/failure thresholds) and
//! [`health`] (trackers → started / ready / kill) — and the part that runs probes:
//! [`run_probe`] (exec, httpGet, tcpSocket) and [`spawn`], one task per container run that
//! probes on schedule and publishes [`Health`] for the node worker.
//!
//! Rules (the kubelet's prober): readiness starts as failed, liveness as succeeded, startup
//! as unknown; while a startup probe has not succeeded nothing else runs and the container
//! is neither started nor ready; each probe first runs `initialDelaySeconds` after the
//! container started, then every `periodSeconds`; `successThreshold` consecutive successes
//! make it succeed, `failureThreshold` consecutive failures make it fail; a failed liveness
//! or startup probe kills the container (restarted per `restartPolicy`), and its probing
//! ends with that run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// A probe's timing fields with Kubernetes' defaults (period 10 s, timeout 1 s, success 1,
/// failure 3, no initial delay); liveness and startup always use a success threshold of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(kind: Kind, p: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: i32, min: i32| Duration::from_secs(v.unwrap_or(default).max(min) as u64);
        let success = if kind == Kind::Readiness { p.success_threshold.unwrap_or(1).max(1) as u32 } else { 1 };
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: success,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// One probe's state: its current result (None = unknown) and the run of equal outcomes
/// that moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub result: Option<bool>,
    successes: u32,
    failures: u32,
    /// The message of the latest failure.
    pub last_failure: Option<String>,
}

impl Tracker {
    /// The initial state of a probe of `kind`.
    pub fn new(kind: Kind) -> Tracker {
        let result = match kind {
            Kind::Startup => None,
            Kind::Liveness => Some(true),
            Kind::Readiness => Some(false),
        };
        Tracker { result, successes: 0, failures: 0, last_failure: None }
    }

    /// Records one probe outcome (`Err(message)` = failed); returns whether the result
    /// changed.
    pub fn observe(&mut self, outcome: &Result<(), String>, timing: &Timing) -> bool {
        let before = self.result;
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= timing.success_threshold {
                    self.result = Some(true);
                }
            }
            Err(m) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.last_failure = Some(m.clone());
                if self.failures >= timing.failure_threshold {
                    self.result = Some(false);
                }
            }
        }
        self.result != before
    }
}

/// What the probes say about one container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The startup probe succeeded (or there is none).
    pub started: bool,
    /// Started and the readiness probe succeeded (or there is none).
    pub ready: bool,
    /// A liveness or startup probe failed: kill the container, with this message.
    pub kill: Option<String>,
}

/// The trackers of one container's probes (None: the container has no such probe).
#[derive(Debug, Clone, Default)]
pub struct Trackers {
    pub startup: Option<Tracker>,
    pub liveness: Option<Tracker>,
    pub readiness: Option<Tracker>,
}

impl Trackers {
    pub fn for_container(c: &Container) -> Trackers {
        Trackers {
            startup: c.startup_probe.as_ref().map(|_| Tracker::new(Kind::Startup)),
            liveness: c.liveness_probe.as_ref().map(|_| Tracker::new(Kind::Liveness)),
            readiness: c.readiness_probe.as_ref().map(|_| Tracker::new(Kind::Readiness)),
        }
    }

    pub fn get_mut(&mut self, kind: Kind) -> Option<&mut Tracker> {
        match kind {
            Kind::Startup => self.startup.as_mut(),
            Kind::Liveness => self.liveness.as_mut(),
            Kind::Readiness => self.readiness.as_mut(),
        }
    }

    /// Whether the startup gate is open.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(|t| t.result == Some(true))
    }

    /// The probes that run now: the startup probe until it succeeds, then the others.
    pub fn active(&self) -> Vec<Kind> {
        if !self.started() {
            return if self.startup.is_some() { vec![Kind::Startup] } else { vec![] };
        }
        let mut kinds = Vec::new();
        if self.liveness.is_some() {
            kinds.push(Kind::Liveness);
        }
        if self.readiness.is_some() {
            kinds.push(Kind::Readiness);
        }
        kinds
    }
}

/// Trackers → health.
pub fn health(t: &Trackers) -> Health {
    let started = t.started();
    let failed = |tracker: &Option<Tracker>, kind: Kind| {
        tracker
            .as_ref()
            .filter(|t| t.result == Some(false))
            .map(|t| format!("{} probe failed: {}", kind.label(), t.last_failure.clone().unwrap_or_default()))
    };
    let kill = failed(&t.startup, Kind::Startup).or_else(|| failed(&t.liveness, Kind::Liveness));
    let ready = started && kill.is_none() && t.readiness.as_ref().is_none_or(|r| r.result == Some(true));
    Health { started, ready, kill }
}

/// Whether a container has any probe.
pub fn has_probes(c: &Container) -> bool {
    c.startup_probe.is_some() || c.liveness_probe.is_some() || c.readiness_probe.is_some()
}

/// Where an exec probe's or hook's command runs.
#[derive(Clone)]
pub enum ExecTarget {
    /// On the host (process runtime): the container's environment and working directory,
    /// and (when the container has its own mount namespace) the pid whose namespace to
    /// enter.
    Host { env: Vec<(String, String)>, dir: PathBuf, mount_ns_of: Option<i32> },
    /// Inside the container, through its runtime (CRI `ExecSync`): runs `command` within
    /// the timeout; Err carries the exit code and output.
    Runtime(RuntimeExec),
}

/// Runs a command in one container through its runtime.
pub type RuntimeExec =
    Arc<dyn Fn(Vec<String>, Duration) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

impl std::fmt::Debug for ExecTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecTarget::Host { dir, mount_ns_of, .. } => {
                f.debug_struct("Host").field("dir", dir).field("mount_ns_of", mount_ns_of).finish()
            }
            ExecTarget::Runtime(_) => f.write_str("Runtime"),
        }
    }
}

/// What a probe needs besides its spec.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod IP (httpGet/tcpSocket host default).
    pub pod_ip: String,
    pub container: Container,
    pub exec: Option<ExecTarget>,
}

pub(crate) fn port_of(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

/// Runs a lifecycle hook's exec command in the container's context (environment, working
/// directory, mount namespace), bounded by `timeout`.
pub async fn run_hook(command: &[String], target: Option<&ExecTarget>, timeout: Duration) -> Result<(), String> {
    run_exec(command, target, timeout).await
}

/// Runs one probe attempt within its timeout: Ok on success, Err(message) on failure.
pub async fn run_probe(p: &Probe, timing: &Timing, target: &Target) -> Result<(), String> {
    let attempt = async {
        if let Some(exec) = &p.exec {
            run_exec(exec.command.as_deref().unwrap_or_default(), target.exec.as_ref(), timing.timeout).await
        } else if let Some(h) = &p.http_get {
            if h.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
                return Err("HTTPS probes are not supported by this agent".into());
            }
            let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
            let port = port_of(&h.port, &target.container)?;
            let headers: Vec<(String, String)> =
                h.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
            http_get(&host, port, h.path.as_deref().unwrap_or("/"), &headers).await
        } else if let Some(t) = &p.tcp_socket {
            let host = t.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
            let port = port_of(&t.port, &target.container)?;
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else if p.grpc.is_some() {
            Err("gRPC probes are not supported by this agent".into())
        } else {
            Err("the probe has no handler".into())
        }
    };
    match tokio::time::timeout(timing.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout: the probe did not finish within {}s", timing.timeout.as_secs())),
    }
}

/// An HTTP/1.1 GET; a status in 200..400 succeeds.
pub async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream =
        tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("Get \"{url}\": dial tcp: {e}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("User-Agent") {
        req.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// `command` set up to run in a host container's context — its environment (and nothing
/// else of the agent's), working directory and mount namespace — killed when dropped. Its
/// process group (or session) and stdio are the caller's to set.
pub fn host_command(
    command: &[String],
    env: &[(String, String)],
    dir: &std::path::Path,
    mount_ns_of: Option<i32>,
) -> Result<tokio::process::Command, String> {
    let Some((program, args)) = command.split_first() else { return Err("no command given".into()) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", crate::runtime::process::DEFAULT_PATH)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    if dir.is_dir() {
        cmd.current_dir(dir);
    }
    if let Some(pid) = mount_ns_of {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(|e| format!("container gone: {e}"))?;
        crate::runtime::mounts::enter_mount_ns(&mut cmd, ns);
    }
    Ok(cmd)
}

async fn run_exec(command: &[String], target: Option<&ExecTarget>, timeout: Duration) -> Result<(), String> {
    let Some(program) = command.first() else { return Err("exec probe without command".into()) };
    let (env, dir, mount_ns_of) = match target {
        Some(ExecTarget::Runtime(exec)) => return exec(command.to_vec(), timeout).await,
        Some(ExecTarget::Host { env, dir, mount_ns_of }) => (env.clone(), dir.clone(), *mount_ns_of),
        None => (Vec::new(), PathBuf::new(), None),
    };
    let mut cmd = host_command(command, &env, &dir, mount_ns_of)?;
    cmd.process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("exec {program:?}: {e}"))?;
    let pid = child.id().map(|p| p as i32);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let code = out.status.code().map(|c| c.to_string()).unwrap_or_else(|| "signal".into());
            Err(format!("command {command:?} exited with {code}: {}", text.trim()))
        }
        Ok(Err(e)) => Err(format!("exec {program:?}: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the probe's own process group.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            Err(format!("command {command:?} timed out"))
        }
    }
}

/// The probing of one container run: shared health plus the task's cancellation.
pub struct Handle {
    pub run_id: String,
    pub health: Arc<Mutex<Health>>,
    cancel: CancellationToken,
}

impl Handle {
    pub fn health(&self) -> Health {
        self.health.lock().unwrap().clone()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts probing the run `run_id` of `target.container`, which started `since_start`
/// ago; `changed` is called whenever its [`Health`] changes. Probing ends when the handle
/// is dropped or the container must be killed.
pub fn spawn(run_id: String, target: Target, since_start: Duration, changed: Arc<dyn Fn() + Send + Sync>) -> Handle {
    let mut trackers = Trackers::for_container(&target.container);
    let health = Arc::new(Mutex::new(self::health(&trackers)));
    let cancel = CancellationToken::new();
    let handle = Handle { run_id, health: health.clone(), cancel: cancel.clone() };
    let started_at = Instant::now().checked_sub(since_start).unwrap_or_else(Instant::now);
    tokio::spawn(async move {
        let c = target.container.clone();
        let probe_of = |k: Kind| match k {
            Kind::Startup => c.startup_probe.clone(),
            Kind::Liveness => c.liveness_probe.clone(),
            Kind::Readiness => c.readiness_probe.clone(),
        };
        // Next run per probe kind; a probe first runs initialDelaySeconds after the start.
        let mut next: std::collections::HashMap<Kind, Instant> = std::collections::HashMap::new();
        loop {
            let active = trackers.active();
            if active.is_empty() {
                return;
            }
            for k in &active {
                if let Some(p) = probe_of(*k) {
                    let t = Timing::of(*k, &p);
                    next.entry(*k).or_insert_with(|| (started_at + t.initial_delay).max(Instant::now()));
                }
            }
            let Some(at) = active.iter().filter_map(|k| next.get(k)).min().copied() else { return };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
            let now = Instant::now();
            let mut any_change = false;
            for k in active {
                if next.get(&k).is_none_or(|n| *n > now) {
                    continue;
                }
                let Some(p) = probe_of(k) else { continue };
                let timing = Timing::of(k, &p);
                let outcome = tokio::select! {
                    _ = cancel.cancelled() => return,
                    o = run_probe(&p, &timing, &target) => o,
                };
                if let Err(m) = &outcome {
                    tracing::debug!(container = %c.name, probe = k.label(), message = %m, "probe failed");
                }
                if let Some(t) = trackers.get_mut(k) {
                    any_change |= t.observe(&outcome, &timing);
                }
                next.insert(k, Instant::now() + timing.period);
            }
            if any_change {
                let h = self::health(&trackers);
                let kill = h.kill.is_some();
                *health.lock().unwrap() = h;
                changed();
                if kill {
                    return;
                }
            }
        }
    });
    handle
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction};

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn run(kind: Kind, t: &Timing, outcomes: &[bool]) -> Vec<Option<bool>> {
        let mut tr = Tracker::new(kind);
        outcomes
            .iter()
            .map(|ok| {
                tr.observe(&if *ok { Ok(()) } else { Err("no".into()) }, t);
                tr.result
            })
            .collect()
    }

    #[test]
    fn defaults_and_thresholds_from_the_spec() {
        let p = Probe { success_threshold: Some(3), ..Default::default() };
        let t = Timing::of(Kind::Readiness, &p);
        assert_eq!(
            (t.initial_delay, t.period, t.timeout, t.success_threshold, t.failure_threshold),
            (Duration::ZERO, Duration::from_secs(10), Duration::from_secs(1), 3, 3)
        );
        // Liveness and startup always use a success threshold of 1.
        assert_eq!(Timing::of(Kind::Liveness, &p).success_threshold, 1);
        let p = Probe { period_seconds: Some(0), initial_delay_seconds: Some(5), ..Default::default() };
        let t = Timing::of(Kind::Startup, &p);
        assert_eq!((t.period, t.initial_delay), (Duration::from_secs(1), Duration::from_secs(5)));
    }

    #[test]
    fn result_sequences() {
        // Readiness starts failed and needs successThreshold consecutive successes.
        assert_eq!(
            run(Kind::Readiness, &timing(2, 3), &[true, false, true, true, false, false, false]),
            vec![Some(false), Some(false), Some(false), Some(true), Some(true), Some(true), Some(false)]
        );
        // Liveness starts succeeded and fails after failureThreshold consecutive failures.
        assert_eq!(
            run(Kind::Liveness, &timing(1, 2), &[false, true, false, false, true]),
            vec![Some(true), Some(true), Some(true), Some(false), Some(true)]
        );
        // Startup is unknown until it succeeds or fails enough.
        assert_eq!(run(Kind::Startup, &timing(1, 2), &[false]), vec![None]);
        assert_eq!(run(Kind::Startup, &timing(1, 2), &[false, true]), vec![None, Some(true)]);
        assert_eq!(run(Kind::Startup, &timing(1, 2), &[false, false]), vec![None, Some(false)]);
    }

    fn container(startup: bool, liveness: bool, readiness: bool) -> Container {
        let p = || Some(Probe { exec: Some(ExecAction { command: Some(vec!["true".into()]) }), ..Default::default() });
        Container {
            name: "c".into(),
            startup_probe: if startup { p() } else { None },
            liveness_probe: if liveness { p() } else { None },
            readiness_probe: if readiness { p() } else { None },
            ..Default::default()
        }
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let t = timing(1, 1);
        let mut tr = Trackers::for_container(&container(true, true, true));
        assert_eq!(tr.active(), vec![Kind::Startup]);
        assert_eq!(health(&tr), Health { started: false, ready: false, kill: None });
        tr.startup.as_mut().unwrap().observe(&Ok(()), &t);
        assert_eq!(tr.active(), vec![Kind::Liveness, Kind::Readiness]);
        assert_eq!(health(&tr), Health { started: true, ready: false, kill: None });
        tr.readiness.as_mut().unwrap().observe(&Ok(()), &t);
        assert_eq!(health(&tr), Health { started: true, ready: true, kill: None });
        tr.liveness.as_mut().unwrap().observe(&Err("exit 1".into()), &t);
        let h = health(&tr);
        assert!(!h.ready);
        assert_eq!(h.kill.as_deref(), Some("Liveness probe failed: exit 1"));

        // A failed startup probe kills too.
        let mut tr = Trackers::for_container(&container(true, false, false));
        tr.startup.as_mut().unwrap().observe(&Err("refused".into()), &t);
        assert_eq!(health(&tr).kill.as_deref(), Some("Startup probe failed: refused"));

        // No probes: started and ready; nothing to run.
        let tr = Trackers::for_container(&container(false, false, false));
        assert!(tr.active().is_empty());
        assert_eq!(health(&tr), Health { started: true, ready: true, kill: None });
    }

    #[tokio::test]
    async fn handlers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = if req.starts_with("GET /ok ") { "200 OK" } else { "500 Oops" };
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let target = Target { pod_ip: "127.0.0.1".into(), container: Container::default(), exec: None };
        let t = timing(1, 1);
        let http = |path: &str, port: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(run_probe(&http("/ok", port as i32), &t, &target).await, Ok(()));
        let e = run_probe(&http("/bad", port as i32), &t, &target).await.unwrap_err();
        assert!(e.contains("statuscode: 500"), "{e}");
        let exec = |cmd: &[&str]| Probe {
            exec: Some(ExecAction { command: Some(cmd.iter().map(|s| s.to_string()).collect()) }),
            ..Default::default()
        };
        assert_eq!(run_probe(&exec(&["true"]), &t, &target).await, Ok(()));
        assert!(run_probe(&exec(&["sh", "-c", "echo nope; exit 2"]), &t, &target).await.unwrap_err().contains("nope"));
        assert!(run_probe(&exec(&["sleep", "5"]), &t, &target).await.unwrap_err().contains("time"));
        let tcp = |port: i32| Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction { port: IntOrString::Int(port), host: None }),
            ..Default::default()
        };
        assert_eq!(run_probe(&tcp(port as i32), &t, &target).await, Ok(()));
        // A port nothing listens on: bind then drop to find one.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(run_probe(&tcp(free as i32), &t, &target).await.is_err());
    }
}
