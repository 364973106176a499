//! `berth-bench-control pod-startup`: pod startup latency on one real node running
//! containers with its own containerd (image present: the Kubernetes SLO is p99 ≤ 5 s from
//! creation to Running, pulls excluded), and the node's footprint at that density.
//!
//! One `berth-server`, one `berth-agent --runtime containerd` importing the demo images
//! (`scripts/build-images --archives`); N pods of `berth/busybox:1.35` running `sleep`,
//! created one by one (each waited for) and then all at once. A watch records when each
//! pod is first seen Running and Ready; latencies are from just before its create request.
//! Then, with N pods running, the agent's CPU and RSS over a sampling window, and
//! containerd's and the shims' memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::control_bench::{client, err, memory_mib, start_servers, until, wait_nodes_ready, BenchResult};
use crate::procs::berth_agent_binary;

#[derive(Debug, Clone)]
pub struct PodStartupConfig {
    pub pods: usize,
    /// Image archives to import (None: built with `scripts/build-images` under the dir).
    pub images_dir: Option<PathBuf>,
    /// How long to sample the node's CPU with all pods running.
    pub sample: Duration,
}

/// Latencies of one way of creating pods, in milliseconds.
pub struct Phase {
    pub name: &'static str,
    pub to_running: Histogram<u64>,
    pub to_ready: Histogram<u64>,
    pub wall: Duration,
}

pub struct PodStartupReport {
    pub pods: usize,
    pub phases: Vec<Phase>,
    /// (agent CPU in cores, agent RSS MiB, containerd RSS MiB, shims' RSS MiB in total).
    pub footprint: (f64, f64, f64, f64),
}

/// A `berth-agent` with its own containerd; stopped with SIGTERM (it removes its pods'
/// sandboxes, then stops containerd), killed if it does not stop in time.
struct ContainerdAgent {
    child: Child,
}

impl ContainerdAgent {
    fn start(server: &str, dir: &Path, images: &Path) -> BenchResult<ContainerdAgent> {
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let child = Command::new(berth_agent_binary()?)
            .args(["--server", server, "--node-name", "bench-node", "--runtime", "containerd"])
            .args(["--pod-infra-container-image", "berth/pause:1", "--pod-bridge", "berthbench0"])
            .args(["--listen-port", "0", "--node-ip", "127.0.0.1", "--log-level", "warn", "--stop-containers-on-exit"])
            // A single node in the host's own namespace: no routes, masquerade or service
            // rules of the agent's on the host.
            .args(["--pod-network", "none"])
            .arg("--images-dir")
            .arg(images)
            .arg("--data-dir")
            .arg(dir.join("agent"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(ContainerdAgent { child })
    }
}

impl Drop for ContainerdAgent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = Command::new("ip").args(["link", "del", "berthbench0"]).stderr(Stdio::null()).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "app", "image": "berth/busybox:1.35",
            "command": ["sleep", "3600"], "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]}
    }))
    .expect("a valid pod")
}

/// When each pod was first seen Running and Ready.
type Seen = Arc<Mutex<HashMap<String, (Option<Instant>, Option<Instant>)>>>;

fn observe(seen: &Seen, p: &Pod) {
    let Some(name) = p.metadata.name.clone() else { return };
    let status = p.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let now = Instant::now();
    let mut seen = seen.lock().unwrap();
    let entry = seen.entry(name).or_default();
    if running && entry.0.is_none() {
        entry.0 = Some(now);
    }
    if ready && entry.1.is_none() {
        entry.1 = Some(now);
    }
}

/// CPU time (user + system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks)
}

/// PIDs whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

async fn run_phase(name: &'static str, pods: &Api<Pod>, seen: &Seen, n: usize, one_by_one: bool) -> BenchResult<Phase> {
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let began = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("{name}-{i}")).collect();
    let create = |pod_name: String| {
        let (pods, created) = (pods.clone(), created.clone());
        async move {
            let at = Instant::now();
            pods.create(&PostParams::default(), &pod(&pod_name)).await.map_err(err)?;
            created.lock().unwrap().insert(pod_name, at);
            BenchResult::Ok(())
        }
    };
    if one_by_one {
        for pod_name in &names {
            create(pod_name.clone()).await?;
            let seen = seen.clone();
            let pod_name = pod_name.clone();
            until(Duration::from_secs(120), &format!("{pod_name} Ready"), || {
                let ready = seen.lock().unwrap().get(&pod_name).is_some_and(|s| s.1.is_some());
                async move { ready.then_some(()) }
            })
            .await?;
        }
    } else {
        futures::stream::iter(names.clone()).map(create).buffer_unordered(32).try_collect::<Vec<()>>().await?;
        until(Duration::from_secs(600), &format!("{n} pods Ready"), || {
            let seen = seen.lock().unwrap();
            let all = names.iter().all(|p| seen.get(p).is_some_and(|s| s.1.is_some()));
            async move { all.then_some(()) }
        })
        .await?;
    }
    let wall = began.elapsed();
    let mut to_running = Histogram::<u64>::new(3).map_err(err)?;
    let mut to_ready = Histogram::<u64>::new(3).map_err(err)?;
    let created = created.lock().unwrap();
    let seen = seen.lock().unwrap();
    for pod_name in &names {
        let (Some(at), Some((Some(running), Some(ready)))) = (created.get(pod_name), seen.get(pod_name)) else {
            continue;
        };
        to_running.record(running.saturating_duration_since(*at).as_millis() as u64).map_err(err)?;
        to_ready.record(ready.saturating_duration_since(*at).as_millis() as u64).map_err(err)?;
    }
    Ok(Phase { name, to_running, to_ready, wall })
}

async fn delete_all(pods: &Api<Pod>) -> BenchResult<()> {
    let lp = ListParams::default().labels("bench=startup");
    pods.delete_collection(&DeleteParams::default(), &lp).await.map_err(err)?;
    until(Duration::from_secs(300), "the pods deleted", || async {
        pods.list(&lp).await.ok().filter(|l| l.items.is_empty()).map(|_| ())
    })
    .await
}

pub async fn pod_startup(dir: &Path, cfg: &PodStartupConfig) -> BenchResult<PodStartupReport> {
    let images = match &cfg.images_dir {
        Some(d) => d.clone(),
        None => crate::procs::build_image_archives(dir)?,
    };
    // A cluster CIDR of its own: the pod bridge must not overlap a local cluster's.
    let extra = ["--cluster-cidr".to_string(), "10.250.0.0/16".to_string()];
    let cluster = start_servers(dir, 1, &extra).await?;
    let api_url = cluster.members[0].api_url.clone();
    let c = client(&api_url)?;
    let agent = ContainerdAgent::start(&api_url, dir, &images)?;
    wait_nodes_ready(&c, 1, Duration::from_secs(120)).await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let seen: Seen = Arc::default();
    let watch = {
        let (pods, seen) = (pods.clone(), seen.clone());
        tokio::spawn(async move {
            let stream = watcher(pods, watcher::Config::default().labels("bench=startup")).applied_objects();
            futures::pin_mut!(stream);
            while let Some(Ok(p)) = stream.next().await {
                observe(&seen, &p);
            }
        })
    };
    let mut phases = Vec::new();
    phases.push(run_phase("serial", &pods, &seen, cfg.pods, true).await?);
    delete_all(&pods).await?;
    phases.push(run_phase("burst", &pods, &seen, cfg.pods, false).await?);

    // The node's footprint with every pod running.
    let agent_pid = agent.child.id();
    let cpu_before = cpu_seconds(agent_pid).unwrap_or(0.0);
    let sampled = Instant::now();
    tokio::time::sleep(cfg.sample).await;
    let cpu = (cpu_seconds(agent_pid).unwrap_or(0.0) - cpu_before) / sampled.elapsed().as_secs_f64();
    let agent_rss = memory_mib(agent_pid).map_or(0.0, |m| m.0);
    let socket = dir.join("agent/containerd/containerd.sock").display().to_string();
    let config = dir.join("agent/containerd/config.toml").display().to_string();
    let containerd_rss: f64 = pids_with(&config).into_iter().filter_map(memory_mib).map(|m| m.0).sum();
    let shims_rss: f64 = pids_with(&format!("-address {socket}")).into_iter().filter_map(memory_mib).map(|m| m.0).sum();
    delete_all(&pods).await?;
    watch.abort();
    drop(agent);
    drop(cluster);
    Ok(PodStartupReport { pods: cfg.pods, phases, footprint: (cpu, agent_rss, containerd_rss, shims_rss) })
}

impl PodStartupReport {
    pub fn print(&self) {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q);
        println!("pod startup, containerd, image present, {} pods on one node", self.pods);
        println!(
            "{:<8} {:>16} {:>16} {:>16} {:>16} {:>8}",
            "created", "Running p50 ms", "Running p99 ms", "Ready p50 ms", "Ready p99 ms", "wall s"
        );
        for p in &self.phases {
            println!(
                "{:<8} {:>16} {:>16} {:>16} {:>16} {:>8.1}",
                p.name,
                ms(&p.to_running, 0.5),
                ms(&p.to_running, 0.99),
                ms(&p.to_ready, 0.5),
                ms(&p.to_ready, 0.99),
                p.wall.as_secs_f64()
            );
        }
        let (cpu, agent, containerd, shims) = self.footprint;
        println!(
            "with {} pods running: agent CPU {:.1}% of a core, agent RSS {agent:.1} MiB, containerd RSS {containerd:.1} MiB, shims RSS {shims:.1} MiB in total",
            self.pods,
            cpu * 100.0
        );
        println!("reference: the Kubernetes pod startup SLO is p99 <= 5000 ms (creation to Running, pulls excluded)");
    }
}
