//! Workloads: what the client processes do during a test and what the harness reads after
//! healing. A workload is pluggable: it names its client operations (a generator of
//! [`Call`]s), how one is executed against the etcd API, its extra long-running tasks
//! (watchers), its final reads, and the checker that decides the history. Adding the
//! Kubernetes-API workload later means adding a variant here and a module beside these.
//!
//! The client loop is Jepsen's: each worker is bound to one node, invokes one operation at
//! a time, records invoke → ok/fail/info, and after an `info` continues as a fresh process
//! (process + concurrency), so every process stays sequential.

pub mod api_watch;
pub mod bind;
pub mod deploy;
pub mod durability;
pub mod fencing;
pub mod pods;
pub mod register;
pub mod set;
pub mod statefulset;
pub mod watch;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::checker::CheckResult;
use crate::client::{CallError, Client};
use crate::history::{Call, History, OpType};
use crate::recorder::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Register,
    Set,
    Watch,
    Durability,
    /// Control plane: pods with requests created and deleted; bindings checked.
    Bind,
    /// Control plane: Deployments created, scaled, updated, deleted; convergence checked.
    Deploy,
    /// Kubernetes list+watch of ConfigMaps (Berth only, no agents).
    ApiWatch,
    /// Control plane: StatefulSets of real processes scaled, their pods deleted; at most
    /// one running container per identity checked.
    StatefulSet,
}

impl WorkloadKind {
    /// Whether the workload drives the Kubernetes API (and needs agents).
    pub fn is_control_plane(self) -> bool {
        matches!(self, WorkloadKind::Bind | WorkloadKind::Deploy | WorkloadKind::StatefulSet)
    }

    /// The agents' container runtime: real processes where the workload watches them run.
    pub fn agent_runtime(self) -> &'static str {
        if self == WorkloadKind::StatefulSet {
            "process"
        } else {
            "fake"
        }
    }

    /// Whether the workload needs Berth's Kubernetes API (agents or not).
    pub fn needs_kube_api(self) -> bool {
        self.is_control_plane() || self == WorkloadKind::ApiWatch
    }
}

impl FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "register" => WorkloadKind::Register,
            "set" => WorkloadKind::Set,
            "watch" => WorkloadKind::Watch,
            "durability" => WorkloadKind::Durability,
            "bind" => WorkloadKind::Bind,
            "deploy" => WorkloadKind::Deploy,
            "api-watch" => WorkloadKind::ApiWatch,
            "statefulset" => WorkloadKind::StatefulSet,
            other => {
                return Err(format!(
                    "unknown workload {other:?} (expected register, set, watch, durability, bind, deploy, api-watch or statefulset)"
                ))
            }
        })
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Set => "set",
            WorkloadKind::Watch => "watch",
            WorkloadKind::Durability => "durability",
            WorkloadKind::Bind => "bind",
            WorkloadKind::Deploy => "deploy",
            WorkloadKind::ApiWatch => "api-watch",
            WorkloadKind::StatefulSet => "statefulset",
        })
    }
}

/// What client workers share.
pub struct WorkloadCtx {
    pub recorder: Arc<Recorder>,
    /// (node name, client URL) of every node.
    pub nodes: Vec<(String, String)>,
    /// (node name, Kubernetes API URL) of every Berth server (empty for etcd).
    pub api: Vec<(String, String)>,
    pub concurrency: usize,
    /// Target operations per second over all workers (0 = as fast as they can).
    pub rate: f64,
    pub seed: u64,
    pub op_timeout: Duration,
    /// Fired when workers must stop invoking new operations.
    pub stop: CancellationToken,
}

impl WorkloadCtx {
    /// The client of worker `worker` (workers are spread round-robin over the nodes).
    pub fn client_for(&self, worker: usize) -> Client {
        let (name, url) = &self.nodes[worker % self.nodes.len()];
        // The URL was built by the harness; a parse failure would be a harness bug.
        Client::new(name, url, self.op_timeout).expect("harness-built client URL")
    }

    /// The Kubernetes API client of worker `worker` (round-robin over the servers) and the
    /// server's name.
    pub fn api_client_for(&self, worker: usize) -> (String, kube::Client) {
        let (name, url) = &self.api[worker % self.api.len()];
        // The URL was built by the harness; a parse failure would be a harness bug.
        (name.clone(), crate::kube_api::client(url, self.op_timeout).expect("harness-built API URL"))
    }

    pub fn rng_for(&self, worker: usize) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_mul(1_000_003).wrapping_add(worker as u64))
    }

    /// Sleeps a random stagger so that, on average, all workers together keep to `rate`.
    pub async fn pace(&self, rng: &mut StdRng) {
        if self.rate <= 0.0 {
            return;
        }
        let mean = self.concurrency as f64 / self.rate;
        let delay = Duration::from_secs_f64(rng.random_range(0.0..2.0 * mean));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

/// How a completed operation is recorded.
pub struct Completion {
    pub kind: OpType,
    pub call: Call,
    pub error: Option<String>,
}

impl Completion {
    pub(crate) fn ok(call: Call) -> Completion {
        Completion { kind: OpType::Ok, call, error: None }
    }

    /// A failed call: `fail` if it certainly had no effect, else `info`. Reads never have
    /// an effect, so a failed read is always `fail`.
    pub(crate) fn from_error(call: Call, error: CallError, read_only: bool) -> Completion {
        let kind = if error.definite || read_only { OpType::Fail } else { OpType::Info };
        Completion { kind, call, error: Some(error.message) }
    }
}

/// Runs one client operation against `client`.
pub async fn execute(client: &Client, call: Call) -> Completion {
    match call {
        Call::Read { key, .. } => match client.get(&key, false).await {
            Ok(kv) => {
                let value = kv.map(|kv| parse_i64(&kv.value));
                match value {
                    Some(None) => Completion {
                        kind: OpType::Fail,
                        call: Call::Read { key, value: None },
                        error: Some("value is not an integer".into()),
                    },
                    Some(Some(v)) => Completion::ok(Call::Read { key, value: Some(v) }),
                    None => Completion::ok(Call::Read { key, value: None }),
                }
            }
            Err(e) => Completion::from_error(Call::Read { key, value: None }, e, true),
        },
        Call::Write { ref key, value } => match client.put(key, &value.to_string()).await {
            Ok(_) => Completion::ok(call),
            Err(e) => Completion::from_error(call, e, false),
        },
        Call::Cas { ref key, from, to } => match client.cas(key, &from.to_string(), &to.to_string()).await {
            Ok(true) => Completion::ok(call),
            // The compare did not hold: nothing was written.
            Ok(false) => Completion { kind: OpType::Fail, call, error: Some("compare failed".into()) },
            Err(e) => Completion::from_error(call, e, false),
        },
        Call::Add { element } => {
            match client.put(&set::element_key(set::PREFIX, element), &element.to_string()).await {
                Ok(_) => Completion::ok(call),
                Err(e) => Completion::from_error(call, e, false),
            }
        }
        Call::Put { key, value, .. } => match client.put(&key, &value).await {
            Ok(revision) => Completion::ok(Call::Put { key, value, revision: Some(revision) }),
            Err(e) => Completion::from_error(Call::Put { key, value, revision: None }, e, false),
        },
        Call::Delete { key, .. } => match client.delete(&key).await {
            Ok((revision, deleted)) => {
                Completion::ok(Call::Delete { key, revision: Some(revision), deleted: Some(deleted) })
            }
            Err(e) => Completion::from_error(Call::Delete { key, revision: None, deleted: None }, e, false),
        },
        other => Completion {
            kind: OpType::Fail,
            error: Some(format!("{} is not a client operation", other.name())),
            call: other,
        },
    }
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Jepsen's worker loop: until `stop`, generate an op, record its invocation, execute it,
/// record its completion. After `info` the worker continues as a new process.
async fn worker_loop<Fut>(
    ctx: &WorkloadCtx,
    worker: usize,
    node: &str,
    mut generate: impl FnMut(&mut StdRng) -> Call,
    mut execute: impl FnMut(Call) -> Fut,
) where
    Fut: std::future::Future<Output = Completion>,
{
    let mut rng = ctx.rng_for(worker);
    let mut process = worker as i64;
    while !ctx.stop.is_cancelled() {
        ctx.pace(&mut rng).await;
        if ctx.stop.is_cancelled() {
            break;
        }
        let call = generate(&mut rng);
        ctx.recorder.invoke(process, node, call.clone());
        let done = execute(call).await;
        let indeterminate = done.kind == OpType::Info;
        ctx.recorder.record(process, done.kind, node, done.call, done.error);
        if indeterminate {
            process += ctx.concurrency as i64;
        }
    }
}

/// [`worker_loop`] for the etcd-API workloads, through the worker's etcd client.
pub async fn client_loop(ctx: Arc<WorkloadCtx>, worker: usize, generate: impl FnMut(&mut StdRng) -> Call) {
    let client = ctx.client_for(worker);
    worker_loop(&ctx, worker, &client.node, generate, |call| execute(&client, call)).await
}

/// [`worker_loop`] for the Kubernetes-API workloads: `execute` runs one call through the
/// worker's API client (bound to one server) and says how it completed.
pub async fn api_client_loop<Fut>(
    ctx: Arc<WorkloadCtx>,
    worker: usize,
    generate: impl FnMut(&mut StdRng) -> Call,
    execute: impl Fn(kube::Client, Call) -> Fut,
) where
    Fut: std::future::Future<Output = Completion>,
{
    let (node, client) = ctx.api_client_for(worker);
    worker_loop(&ctx, worker, &node, generate, |call| execute(client.clone(), call)).await
}

/// Spawns `count` client loops (workers `first..first+count`).
pub fn spawn_clients<G>(
    ctx: &Arc<WorkloadCtx>,
    first: usize,
    count: usize,
    make_generator: impl Fn(usize) -> G,
) -> Vec<tokio::task::JoinHandle<()>>
where
    G: FnMut(&mut StdRng) -> Call + Send + 'static,
{
    (first..first + count).map(|w| tokio::spawn(client_loop(ctx.clone(), w, make_generator(w)))).collect()
}

/// Retries `attempt` until it succeeds or `deadline` passes (bounded final reads).
pub async fn retry_until<T, F, Fut>(deadline: tokio::time::Instant, mut attempt: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Decides a history with the checker(s) its operations call for, so `check DIR` needs
/// nothing but the history file.
pub fn check_history(history: &History, linear_budget: Duration) -> Vec<CheckResult> {
    let has = |f: &str| history.ops.iter().any(|o| o.call.name() == f);
    let mut results = vec![];
    if has("read") || has("write") || has("cas") {
        results.push(crate::checker::linear::check(history, linear_budget));
    }
    if has("member-read") || has("boot") {
        results.push(crate::checker::durability::check(history));
    } else if has("add") || has("read-all") {
        results.push(crate::checker::set::check(history));
    }
    // The api-watch workload's reference is a final-history record too; the etcd watch
    // checker is not about it.
    if has("api-watch") || has("config-map-write") {
        results.push(crate::checker::api_watch::check(history));
    } else if has("watch") || has("put") || has("final-history") {
        results.push(crate::checker::watch::check(history));
    }
    if has("pod-seen") || has("pod-list") || has("final-state") {
        results.push(crate::checker::bind::check(history));
    }
    if has("deployment-write") || has("converge") {
        results.push(crate::checker::deploy::check(history));
    }
    if has("statefulset-scale") || has("statefulset-converge") || has("container-runs") {
        results.push(crate::checker::statefulset::check(history));
    }
    if has("fence-history") {
        results.push(crate::checker::fencing::check(history));
    }
    results
}
