//! Control-plane benchmarks on real processes: 3 `berth-server`s and one `berth-agent`
//! running hollow nodes (`--runtime fake`), driven through the Kubernetes API.
//!
//! * [`failover`]: kill -9 the server running the controllers, delete a Deployment's pod,
//!   and time until the new leader's ReplicaSet controller has created its replacement
//!   and the scheduler has bound it.
//! * [`scheduling`]: N hollow nodes, Deployments totalling P pods; pods bound per second,
//!   time until all are Running, API latency meanwhile, and memory of every process.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::procs::{berth_agent_binary, ClusterSpec, Db, ProcessCluster};
use crate::HarnessError;

pub(crate) type BenchResult<T> = Result<T, HarnessError>;

pub(crate) fn err(what: impl std::fmt::Display) -> HarnessError {
    HarnessError::Rpc(what.to_string())
}

pub fn client(api_url: &str) -> BenchResult<kube::Client> {
    let mut config = crate::pki::admin_config(api_url)?;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(30));
    kube::Client::try_from(config).map_err(err)
}

/// Polls `check` every 100 ms until it yields, or fails after `timeout`.
pub(crate) async fn until<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> BenchResult<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(HarnessError::NotReady { seconds: timeout.as_secs(), detail: what.to_string() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `berth-agent` process; killed (by PID) when dropped.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    pub fn start(server: &str, nodes: usize, dir: &Path) -> BenchResult<AgentProcess> {
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let kubeconfig = crate::pki::write_hollow_kubeconfig(dir, "hollow", &[server.to_string()])?;
        let child = Command::new(berth_agent_binary()?)
            .args(["--server", server, "--node-name", "hollow", "--runtime", "fake"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--fake-nodes",
                &nodes.to_string(),
                "--listen-port",
                "0",
                "--node-ip",
                "127.0.0.1",
                "--log-level",
                "warn",
            ])
            .arg("--data-dir")
            .arg(dir.join("agent"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(AgentProcess { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident and peak memory of a process, in MiB, from /proc.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Starts the servers and waits for their API and the system namespaces.
pub async fn start_servers(dir: &Path, servers: usize, extra: &[String]) -> BenchResult<ProcessCluster> {
    let mut spec = ClusterSpec::new(Db::Berth, servers);
    spec.extra_args = extra.to_vec();
    spec.extra_args.extend(["--log-level".into(), "warn".into()]);
    let mut cluster = ProcessCluster::start(&spec, dir)?;
    cluster.wait_ready(Duration::from_secs(60)).await?;
    let c = client(&cluster.members[0].api_url)?;
    let namespaces: Api<Namespace> = Api::all(c);
    until(Duration::from_secs(60), "system namespaces", || async {
        namespaces.get_opt("kube-node-lease").await.ok().flatten().map(|_| ())
    })
    .await?;
    Ok(cluster)
}

fn is_ready_node(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub async fn wait_nodes_ready(c: &kube::Client, nodes: usize, timeout: Duration) -> BenchResult<()> {
    let api: Api<Node> = Api::all(c.clone());
    until(timeout, &format!("{nodes} Ready nodes"), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|n| is_ready_node(n)).count() >= nodes).then_some(())
    })
    .await
}

pub fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                                  "command": ["sleep", "infinity"],
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
    }))
    .expect("a valid Deployment")
}

/// A pod like the Deployments' (same requests), created directly.
pub fn bare_pod(i: usize) -> Pod {
    let template = deployment("bare", 1).spec.expect("spec").template;
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = Some(format!("bare-{i}"));
    Pod { metadata: meta, spec: template.spec, ..Default::default() }
}

fn is_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn percentile(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[derive(Debug, Clone)]
pub struct FailoverConfig {
    pub trials: usize,
    pub replicas: i32,
    pub nodes: usize,
    /// 3 or 5 servers.
    pub servers: usize,
}

/// Who holds the controller-manager Lease (the server running the leader tasks).
async fn controller_holder(c: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-system");
    leases.get_opt("berth-controller-manager").await.ok().flatten()?.spec?.holder_identity
}

async fn pods_of(c: &kube::Client, app: &str) -> Option<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    Some(pods.list(&ListParams::default().labels(&format!("app={app}"))).await.ok()?.items)
}

/// kill -9 the controllers' server, delete a pod, time the replacement. Prints one line
/// per trial and returns (created, bound) latencies in ms.
pub async fn failover(dir: &Path, cfg: &FailoverConfig) -> BenchResult<(Histogram<u64>, Histogram<u64>)> {
    let mut cluster = start_servers(dir, cfg.servers, &[]).await?;
    let api_urls: Vec<String> = cluster.members.iter().map(|m| m.api_url.clone()).collect();
    let clients: Vec<kube::Client> = api_urls.iter().map(|u| client(u)).collect::<Result<_, _>>()?;
    // The agent gets member 0 and learns the others (it fails over when member 0 is the
    // one killed); the measurement (the controllers' and scheduler's reaction) does not
    // depend on it.
    let _agent = AgentProcess::start(&api_urls[0], cfg.nodes, dir)?;
    wait_nodes_ready(&clients[1], cfg.nodes, Duration::from_secs(60)).await?;
    let deployments: Api<Deployment> = Api::namespaced(clients[1].clone(), "default");
    deployments.create(&PostParams::default(), &deployment("web", cfg.replicas)).await.map_err(err)?;
    let mut created = Histogram::<u64>::new(3).expect("histogram");
    let mut bound = Histogram::<u64>::new(3).expect("histogram");
    for trial in 0..cfg.trials {
        // Settle: every member up, the deployment fully running, a known lease holder.
        let leader = until(Duration::from_secs(120), "a settled cluster", || async {
            for c in &clients {
                let holder = controller_holder(c).await?;
                let leader = cluster.members.iter().position(|m| m.name == holder)?;
                let pods = pods_of(c, "web").await?;
                let running = pods.iter().filter(|p| is_running(p) && p.metadata.deletion_timestamp.is_none());
                if running.count() == cfg.replicas as usize && pods.len() == cfg.replicas as usize {
                    return Some(leader);
                }
            }
            None
        })
        .await?;
        let survivor = (leader + 1) % clients.len();
        let before = pods_of(&clients[survivor], "web").await.ok_or_else(|| err("listing pods"))?;
        let victim = before[trial % before.len()].metadata.name.clone().unwrap_or_default();
        let known: HashSet<String> = before.iter().filter_map(|p| p.metadata.name.clone()).collect();
        let t0 = Instant::now();
        cluster.members[leader].kill();
        let pods: Api<Pod> = Api::namespaced(clients[survivor].clone(), "default");
        until(Duration::from_secs(30), "deleting a pod after the kill", || async {
            pods.delete(&victim, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.ok()
        })
        .await?;
        let is_new = |p: &Pod| !known.contains(p.metadata.name.as_deref().unwrap_or(""));
        let is_bound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let t_created = until(Duration::from_secs(60), "a replacement pod", || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
            list.items.iter().any(is_new).then(|| t0.elapsed())
        })
        .await?;
        let bound_after = until(Duration::from_secs(60), "the replacement bound", || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
            list.items.iter().any(|p| is_new(p) && is_bound(p)).then(|| t0.elapsed())
        })
        .await?;
        created.record(t_created.as_millis() as u64).ok();
        bound.record(bound_after.as_millis() as u64).ok();
        println!(
            "trial {:>2}: killed {} (leader); replacement created after {:>5} ms, bound after {:>5} ms",
            trial + 1,
            cluster.members[leader].name,
            t_created.as_millis(),
            bound_after.as_millis()
        );
        cluster.members[leader].start()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        cluster.members[leader].wait_ready(deadline, Duration::from_secs(60)).await?;
    }
    Ok((created, bound))
}

pub fn print_failover(created: &Histogram<u64>, bound: &Histogram<u64>) {
    println!();
    println!("failover over {} trials (ms)     p50      p99      max", created.len());
    for (what, h) in [("replacement created", created), ("replacement bound", bound)] {
        println!(
            "  {what:<26} {:>8.0} {:>8.0} {:>8.0}",
            percentile(h, 0.5) * 1000.0,
            percentile(h, 0.99) * 1000.0,
            h.max() as f64
        );
    }
}

#[derive(Debug, Clone)]
pub struct SchedulingConfig {
    pub nodes: usize,
    pub pods: usize,
    pub deployments: usize,
    /// Create the pods directly (`create_concurrency` creates in flight) instead of through
    /// Deployments: measures the scheduler without the ReplicaSet controller's creation rate.
    pub bare_pods: bool,
    /// Pod creates in flight with `bare_pods` (more keeps a fast scheduler fed).
    pub create_concurrency: usize,
}

#[derive(Debug, Default)]
pub struct SchedulingReport {
    pub pods: usize,
    pub bare_pods: bool,
    pub nodes: usize,
    pub all_created: Duration,
    pub first_bound: Duration,
    pub all_bound: Duration,
    pub all_running: Duration,
    pub api_latency_ms: (f64, f64, f64),
    pub memory: Vec<(String, f64, f64)>,
}

impl SchedulingReport {
    pub fn print(&self) {
        let window = (self.all_bound - self.first_bound).as_secs_f64().max(1e-3);
        println!();
        let how = if self.bare_pods { "created directly" } else { "from Deployments" };
        println!("scheduling: {} pods ({how}) on {} hollow nodes, 3 servers", self.pods, self.nodes);
        println!("  pods bound/s (first→last bind)     {:>10.0}", self.pods as f64 / window);
        println!("  pods bound/s (create→all bound)    {:>10.0}", self.pods as f64 / self.all_bound.as_secs_f64());
        println!("  all pods created after             {:>10.2} s", self.all_created.as_secs_f64());
        println!("  all pods bound after               {:>10.2} s", self.all_bound.as_secs_f64());
        println!("  all pods Running after             {:>10.2} s", self.all_running.as_secs_f64());
        let (p50, p99, max) = self.api_latency_ms;
        println!("  API GET latency during the run     p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
        for (who, rss, peak) in &self.memory {
            println!("  memory {who:<12} RSS {rss:>8.0} MiB   peak {peak:>8.0} MiB");
        }
    }
}

/// When the benchmark's watch first saw a pod bound, and Running.
type PodTimes = (Option<Instant>, Option<Instant>);

/// Deployments totalling `pods` on `nodes` hollow nodes; times binding and Running.
pub async fn scheduling(dir: &Path, cfg: &SchedulingConfig) -> BenchResult<SchedulingReport> {
    let cluster = start_servers(dir, 3, &[]).await?;
    let api_urls: Vec<String> = cluster.members.iter().map(|m| m.api_url.clone()).collect();
    let clients: Vec<kube::Client> = api_urls.iter().map(|u| client(u)).collect::<Result<_, _>>()?;
    let agent = AgentProcess::start(&api_urls[0], cfg.nodes, dir)?;
    wait_nodes_ready(&clients[1], cfg.nodes, Duration::from_secs(300)).await?;
    println!("{} hollow nodes Ready", cfg.nodes);

    // Observe every pod through a watch on a third server.
    let seen: Arc<Mutex<HashMap<String, PodTimes>>> = Arc::default();
    let pods_api: Api<Pod> = Api::namespaced(clients[2].clone(), "default");
    let observer = tokio::spawn({
        let seen = seen.clone();
        let stream = watcher(pods_api, watcher::Config::default()).applied_objects();
        async move {
            let mut stream = stream.boxed();
            while let Ok(Some(p)) = stream.try_next().await {
                let name = p.metadata.name.clone().unwrap_or_default();
                let now = Instant::now();
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(name).or_default();
                if entry.0.is_none() && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    entry.0 = Some(now);
                }
                if entry.1.is_none() && is_running(&p) {
                    entry.1 = Some(now);
                }
            }
        }
    });
    // Probe API latency on the remaining server while the run goes on.
    let probe_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = tokio::spawn({
        let nodes: Api<Node> = Api::all(clients[1].clone());
        let stop = probe_stop.clone();
        async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let _ = nodes.get_opt("hollow-0").await;
                h.record(t.elapsed().as_micros() as u64).ok();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            h
        }
    });

    let t0 = Instant::now();
    let creator = if cfg.bare_pods {
        let pods: Api<Pod> = Api::namespaced(clients[1].clone(), "default");
        let count = cfg.pods;
        let in_flight = cfg.create_concurrency.max(1);
        Some(tokio::spawn(async move {
            futures::stream::iter(0..count)
                .for_each_concurrent(in_flight, |i| {
                    let pods = pods.clone();
                    async move {
                        let _ = pods.create(&PostParams::default(), &bare_pod(i)).await;
                    }
                })
                .await
        }))
    } else {
        let deployments: Api<Deployment> = Api::namespaced(clients[1].clone(), "default");
        let per = cfg.pods / cfg.deployments;
        for i in 0..cfg.deployments {
            let replicas = if i + 1 == cfg.deployments { cfg.pods - per * (cfg.deployments - 1) } else { per };
            let d = deployment(&format!("load-{i}"), replicas as i32);
            deployments.create(&PostParams::default(), &d).await.map_err(err)?;
        }
        None
    };
    let timeout = Duration::from_secs(600);
    let mut report =
        SchedulingReport { pods: cfg.pods, nodes: cfg.nodes, bare_pods: cfg.bare_pods, ..Default::default() };
    let mut last_print = Instant::now();
    loop {
        let (created, bound, running, first_bound, last_bound, last_running) = {
            let seen = seen.lock().unwrap();
            let bound: Vec<Instant> = seen.values().filter_map(|(b, _)| *b).collect();
            let running: Vec<Instant> = seen.values().filter_map(|(_, r)| *r).collect();
            (
                seen.len(),
                bound.len(),
                running.len(),
                bound.iter().min().copied(),
                bound.iter().max().copied(),
                running.iter().max().copied(),
            )
        };
        if created >= cfg.pods && report.all_created.is_zero() {
            report.all_created = t0.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            println!(
                "  t={:>6.1}s created {created:>6} bound {bound:>6} running {running:>6}",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if bound >= cfg.pods && running >= cfg.pods {
            report.first_bound = first_bound.map(|t| t - t0).unwrap_or_default();
            report.all_bound = last_bound.map(|t| t - t0).unwrap_or_default();
            report.all_running = last_running.map(|t| t - t0).unwrap_or_default();
            break;
        }
        if t0.elapsed() > timeout {
            return Err(HarnessError::NotReady {
                seconds: timeout.as_secs(),
                detail: format!("{bound}/{} pods bound, {running} running", cfg.pods),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    probe_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(c) = creator {
        let _ = c.await;
    }
    let h = probe.await.map_err(err)?;
    observer.abort();
    report.api_latency_ms = (percentile(&h, 0.5), percentile(&h, 0.99), h.max() as f64 / 1000.0);
    for m in &cluster.members {
        if let Some((rss, peak)) = m.pid().and_then(memory_mib) {
            report.memory.push((format!("server {}", m.name), rss, peak));
        }
    }
    if let Some((rss, peak)) = memory_mib(agent.pid()) {
        report.memory.push(("agent".into(), rss, peak));
    }
    Ok(report)
}
