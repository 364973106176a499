//! `berth-bench-control data-path`: what the service proxy costs a request. On a local
//! two-node containerd cluster (`berthctl up --agents 2`, its own node network), a client
//! pod on node-1 sends HTTP requests to an HTTP pod on node-1 and to one on node-2, each
//! both by pod IP and through its Service's ClusterIP. The load comes from this process's
//! threads, each moved into the client pod's network namespace (`setns`), so the packets
//! take exactly the pod's path: pod → (DNAT) → bridge or route to the other node → pod.
//!
//! Per path: latency of one request at a time (new connection, GET, whole answer; p50 and
//! p99) and throughput with several in flight. The reference is the same request straight
//! to the pod's IP, in the same run: the ratio ClusterIP/pod IP is the proxy's cost.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The benchmark's shape.
#[derive(Debug, Clone)]
pub struct DataPathConfig {
    /// Length of each latency and each throughput run.
    pub duration: Duration,
    /// Requests in flight in the throughput runs.
    pub concurrency: usize,
    /// Image archives (None: built with scripts/build-images under the dir).
    pub images_dir: Option<PathBuf>,
}

/// One path's figures.
#[derive(Debug, Clone)]
pub struct PathFigures {
    pub path: String,
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
    pub errors: u64,
}

/// `berthctl down --purge` when dropped.
struct Cluster {
    berthctl: PathBuf,
    dir: PathBuf,
}

impl Cluster {
    fn berthctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("timeout")
            .arg("300")
            .arg(&self.berthctl)
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .env("NO_COLOR", "1")
            .output()?;
        if !out.status.success() {
            bail!(
                "berthctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut child = Command::new("timeout")
            .args(["120", "kubectl", "--kubeconfig"])
            .arg(self.dir.join("admin.kubeconfig"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        if let Some(input) = stdin {
            child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.berthctl(&["down", "--purge"]) {
            eprintln!("removing the benchmark's cluster: {e}");
        }
    }
}

/// Four server pods, so that no path meets the TIME_WAIT connections another path left
/// at its server (a reused client port would collide with them): `srv-1` and `srv-1s` on
/// node-1, `srv-2` and `srv-2s` on node-2; the `-s` ones are reached through Services.
fn manifests() -> String {
    let mut out = String::new();
    for (pod, node) in [("srv-1", "node-1"), ("srv-1s", "node-1"), ("srv-2", "node-2"), ("srv-2s", "node-2")] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, labels: {{bench: {pod}}}}}\n\
             spec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n\
             \x20 containers: [{{name: http, image: berth/http:v1, ports: [{{containerPort: 8080}}]}}]\n"
        ));
    }
    for svc in ["srv-1s", "srv-2s"] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}}}\n\
             spec: {{selector: {{bench: {svc}}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
        ));
    }
    out.push_str(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  nodeName: node-1\n\
         \x20 terminationGracePeriodSeconds: 1\n\
         \x20 containers: [{name: c, image: berth/busybox:1.35, command: [sleep, \"7201\"]}]\n",
    );
    out
}

/// The host PID of the client pod's `sleep 7201` (its own network namespace).
fn client_pid() -> Option<u32> {
    let own = std::fs::read_link("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
        (cmdline == b"sleep\x007201\x00" && netns != own).then_some(pid)
    })
}

/// One HTTP/1.0 GET on a new connection; Ok when the answer is a 200.
fn get(target: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.0 200") || answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not a 200"))
    }
}

/// Runs `threads` loops of [`get`] on `target` for `duration`, each thread inside the
/// network namespace at `netns`; returns every request's latency and the error count.
fn load(netns: &Path, target: SocketAddr, duration: Duration, threads: usize) -> Result<(Vec<Duration>, u64)> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let netns = netns.to_path_buf();
            std::thread::spawn(move || -> Result<(Vec<Duration>, u64)> {
                let file = std::fs::File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
                // SAFETY: setns(2) moves only this thread, which does nothing else.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns into {}: {}", netns.display(), std::io::Error::last_os_error());
                }
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    let started = Instant::now();
                    match get(target) {
                        Ok(()) => latencies.push(started.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for h in handles {
        let (l, e) = h.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        all.extend(l);
        errors += e;
    }
    all.sort();
    Ok((all, errors))
}

/// The client's whole ephemeral port range (1024–65535, a per-namespace sysctl), so a run
/// reuses no client port while its server still holds the old connection in TIME_WAIT.
fn widen_port_range(netns: &Path) -> Result<()> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<()> {
        let file = std::fs::File::open(&netns)?;
        // SAFETY: setns(2) moves only this thread, which ends right after.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        // /proc/sys/net is the namespace of the thread that opens it.
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")
            .context("widening the client's port range")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the sysctl thread panicked"))?
}

/// The nearest-rank percentile `p` (0–1) of `sorted` (zero when empty).
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Brings the cluster up in `dir`, measures the four paths, removes the cluster.
pub fn data_path(dir: &Path, cfg: &DataPathConfig) -> Result<Vec<PathFigures>> {
    anyhow::ensure!(cfg.concurrency > 0 && !cfg.duration.is_zero(), "--concurrency and --duration must be positive");
    let archives = match &cfg.images_dir {
        Some(d) => d.clone(),
        None => crate::procs::build_image_archives(dir)?,
    };
    let berthctl = crate::procs::sibling_binary("berthctl", "BERTHCTL", "cargo build -p berth-ctl [--release]")?;
    let cluster = Cluster { berthctl, dir: dir.join("cluster") };
    let base_port = crate::procs::free_port().to_string();
    let archives = archives.display().to_string();
    cluster.berthctl(&[
        "up",
        "--agents",
        "2",
        "--runtime",
        "containerd",
        "--base-port",
        &base_port,
        "--images-dir",
        &archives,
        "--pod-infra-container-image",
        "berth/pause:1",
    ])?;
    cluster.kubectl(&["apply", "-f", "-"], Some(&manifests()))?;
    cluster.kubectl(&["wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s"], None)?;
    let ip = |kind: &str, name: &str, path: &str| {
        cluster.kubectl(&["get", kind, name, "-o", &format!("jsonpath={path}")], None)
    };
    let targets: Vec<(String, SocketAddr)> = vec![
        ("same node, pod IP".into(), format!("{}:8080", ip("pod", "srv-1", "{.status.podIP}")?).parse()?),
        ("same node, ClusterIP".into(), format!("{}:80", ip("svc", "srv-1s", "{.spec.clusterIP}")?).parse()?),
        ("other node, pod IP".into(), format!("{}:8080", ip("pod", "srv-2", "{.status.podIP}")?).parse()?),
        ("other node, ClusterIP".into(), format!("{}:80", ip("svc", "srv-2s", "{.spec.clusterIP}")?).parse()?),
    ];
    let pid = client_pid().context("the client pod's process")?;
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    widen_port_range(&netns)?;
    // The proxy's rules follow the slices a moment after the pods are ready.
    for (path, target) in &targets {
        let deadline = Instant::now() + Duration::from_secs(60);
        while load(&netns, *target, Duration::from_millis(200), 1)?.0.is_empty() {
            anyhow::ensure!(Instant::now() < deadline, "{path} ({target}) never answered");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let mut figures = Vec::new();
    for (path, target) in targets {
        let (latencies, latency_errors) = load(&netns, target, cfg.duration, 1)?;
        let (done, errors) = load(&netns, target, cfg.duration, cfg.concurrency)?;
        figures.push(PathFigures {
            path,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            per_second: done.len() as f64 / cfg.duration.as_secs_f64(),
            errors: latency_errors + errors,
        });
    }
    Ok(figures)
}

/// Prints the figures and the ClusterIP/pod IP ratios.
pub fn print(cfg: &DataPathConfig, figures: &[PathFigures]) {
    println!(
        "data path: client pod on node-1 → busybox httpd pod (new connection per request); {}s runs, {} in flight for throughput",
        cfg.duration.as_secs(),
        cfg.concurrency
    );
    println!("{:<24} {:>10} {:>10} {:>10} {:>7}", "path", "p50", "p99", "req/s", "errors");
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    for f in figures {
        println!("{:<24} {:>10} {:>10} {:>10.0} {:>7}", f.path, us(f.p50), us(f.p99), f.per_second, f.errors);
    }
    for pair in figures.chunks(2) {
        if let [direct, service] = pair {
            println!(
                "{}: ClusterIP/pod IP latency p50 {:.2}×, p99 {:.2}×, throughput {:.2}×",
                direct.path.split(',').next().unwrap_or_default(),
                service.p50.as_secs_f64() / direct.p50.as_secs_f64().max(1e-9),
                service.p99.as_secs_f64() / direct.p99.as_secs_f64().max(1e-9),
                service.per_second / direct.per_second.max(1e-9)
            );
        }
    }
}
