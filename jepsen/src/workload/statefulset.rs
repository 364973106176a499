//! The statefulset workload: two StatefulSets (`s0` OrderedReady, `s1` Parallel) whose pods
//! run real processes on process-runtime agents, while clients scale them and delete their
//! pods and the nemesis partitions, kills and pauses agents and servers (a partition longer
//! than the node-monitor grace plus the eviction timeout evicts the node's pods).
//!
//! Every container appends a heartbeat line `pod uid node pid time_ns` to the run's ledger
//! every 100 ms for as long as it runs. After teardown the harness folds the ledger into
//! container runs (`container-runs`), which the statefulset checker holds to "at most one
//! running container per StatefulSet identity". Before that, after the final heal, the
//! harness waits (bounded) until each StatefulSet runs exactly its `replicas` Ready pods
//! (`statefulset-converge`): a Berth that never replaced a pod would pass the at-most-one
//! check trivially, so not converging is an anomaly too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rand::Rng;
use serde_json::json;

use super::{api_client_loop, retry_until, Completion, WorkloadCtx};
use crate::history::{Call, ContainerRun, OpType};
use crate::kube_api::{self, deadline, NAMESPACE};
use crate::HarnessError;

/// The StatefulSets and their pod management policies.
pub const SETS: [(&str, &str); 2] = [("s0", "OrderedReady"), ("s1", "Parallel")];
const MAX_REPLICAS: i32 = 3;
const INITIAL_REPLICAS: i32 = 2;
/// The ledger's file name in the run directory.
pub const LEDGER: &str = "ledger.txt";

/// The heartbeat loop every container runs (`/bin/sh` of the agent's host: the process
/// runtime has no images). The shell's `$$` (its pid: one run per process) is written
/// `$$$$` because the kubelet reduces `$$` to `$` in a command.
const HEARTBEAT: &str = r#"trap 'exit 0' TERM; while :; do echo "$POD_NAME $POD_UID $NODE_NAME $$$$ $(date +%s%N)" >> "$LEDGER"; sleep 0.1; done"#;

fn field_env(name: &str, path: &str) -> serde_json::Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

/// The StatefulSet `name` with `replicas`, whose containers write to `ledger`.
pub fn statefulset(name: &str, policy: &str, replicas: i32, ledger: &Path) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app",
                        "image": "busybox",
                        "command": ["/bin/sh", "-c", HEARTBEAT],
                        "env": [
                            {"name": "LEDGER", "value": ledger.display().to_string()},
                            field_env("POD_NAME", "metadata.name"),
                            field_env("POD_UID", "metadata.uid"),
                            field_env("NODE_NAME", "spec.nodeName"),
                        ],
                        "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}
                    }]
                }
            }
        }
    }))
    .expect("a valid StatefulSet")
}

/// Creates the StatefulSets (bounded by `patience`, through any server).
pub async fn prepare(ctx: &WorkloadCtx, ledger: &Path, patience: Duration) -> Result<(), HarnessError> {
    let until = tokio::time::Instant::now() + patience;
    for (name, policy) in SETS {
        let mut attempt = 0usize;
        retry_until(until, || {
            attempt += 1;
            let (_, client) = ctx.api_client_for(attempt);
            let set = statefulset(name, policy, INITIAL_REPLICAS, ledger);
            async move {
                let api: Api<StatefulSet> = Api::namespaced(client, NAMESPACE);
                match deadline(ctx.op_timeout, api.create(&PostParams::default(), &set)).await {
                    Err(e) if e.message.starts_with("409") => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        })
        .await
        .map_err(|e| HarnessError::NotReady { seconds: patience.as_secs(), detail: format!("creating {name}: {e}") })?;
    }
    Ok(())
}

pub fn spawn(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..ctx.concurrency)
        .map(|worker| {
            let generate = |rng: &mut rand::rngs::StdRng| {
                let (name, _) = SETS[rng.random_range(0..SETS.len())];
                if rng.random_bool(0.5) {
                    Call::StatefulSetScale { name: name.to_string(), replicas: rng.random_range(0..=MAX_REPLICAS) }
                } else {
                    Call::DeletePod { name: format!("{name}-{}", rng.random_range(0..MAX_REPLICAS)) }
                }
            };
            let timeout = ctx.op_timeout;
            tokio::spawn(api_client_loop(ctx.clone(), worker, generate, move |client, call| {
                execute(client, call, timeout)
            }))
        })
        .collect()
}

async fn execute(client: kube::Client, call: Call, timeout: Duration) -> Completion {
    let result = match &call {
        Call::StatefulSetScale { name, replicas } => {
            let api: Api<StatefulSet> = Api::namespaced(client, NAMESPACE);
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            deadline(timeout, api.patch(name, &PatchParams::default(), &patch)).await.map(|_| ())
        }
        Call::DeletePod { name } => {
            let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
            deadline(timeout, api.delete(name, &DeleteParams::default())).await.map(|_| ())
        }
        other => {
            let error = format!("{} is not a statefulset operation", other.name());
            return Completion { kind: OpType::Fail, error: Some(error), call };
        }
    };
    match result {
        Ok(()) => Completion::ok(call),
        Err(e) => Completion::from_error(call, e, false),
    }
}

/// Waits until every StatefulSet runs exactly `replicas` Ready, not terminating pods and no
/// other pod, for at most `bound`; records `statefulset-converge` with the seconds since
/// `healed_at` (`ok`) or what was last seen (`fail`).
pub async fn converge(ctx: &WorkloadCtx, healed_at: Instant, bound: Duration) {
    let process = (ctx.concurrency * 1000 + 503) as i64;
    let (first, _) = ctx.api[0].clone();
    ctx.recorder.invoke(process, &first, Call::StatefulSetConverge { seconds: None, state: None });
    let until = tokio::time::Instant::now() + bound;
    let mut last = String::from("no read");
    for attempt in 0usize.. {
        let (node, client) = ctx.api_client_for(attempt);
        match read_state(client, ctx.op_timeout).await {
            Ok((state, done)) => {
                if done {
                    let call = Call::StatefulSetConverge {
                        seconds: Some(healed_at.elapsed().as_secs_f64()),
                        state: Some(state),
                    };
                    ctx.recorder.record(process, OpType::Ok, &node, call, None);
                    return;
                }
                last = state;
            }
            Err(e) => last = format!("{node}: {e}"),
        }
        if tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let error = format!("not converged {} s after the final heal", bound.as_secs());
    let call = Call::StatefulSetConverge { seconds: None, state: Some(last) };
    ctx.recorder.record(process, OpType::Fail, &first, call, Some(error));
}

/// One read: a line per StatefulSet (`s0 replicas=2 ready=[s0-0,s0-1] other=[]`) and
/// whether every one runs exactly its replicas.
async fn read_state(client: kube::Client, timeout: Duration) -> Result<(String, bool), crate::client::CallError> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let sets = deadline(timeout, sets.list(&ListParams::default())).await?;
    let pods = deadline(timeout, pods.list(&ListParams::default())).await?;
    let mut lines = vec![];
    let mut done = true;
    for set in &sets.items {
        let name = set.name_any();
        let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mine = pods.items.iter().filter(|p| p.labels().get("app") == Some(&name));
        let (ready, other): (Vec<&Pod>, Vec<&Pod>) =
            mine.partition(|p| p.metadata.deletion_timestamp.is_none() && kube_api::is_ready(p));
        let wanted: BTreeSet<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
        let ready_names: BTreeSet<String> = ready.iter().map(|p| p.name_any()).collect();
        done &= ready_names == wanted && other.is_empty();
        let other_names: Vec<String> = other.iter().map(|p| p.name_any()).collect();
        lines.push(format!("{name} replicas={replicas} ready={ready_names:?} other={other_names:?}"));
    }
    Ok((lines.join("; "), done))
}

/// One ledger line: (pod, uid, node, pid, time_ns); None for a torn or foreign line.
fn parse_beat(line: &str) -> Option<(&str, &str, &str, u32, u64)> {
    let mut f = line.split_whitespace();
    let beat = (f.next()?, f.next()?, f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
    f.next().is_none().then_some(beat)
}

/// Folds ledger lines into one run per (pod, uid, node, pid) (pure).
pub fn runs(ledger: &str) -> Vec<ContainerRun> {
    let mut by_process: BTreeMap<(&str, &str, &str, u32), ContainerRun> = BTreeMap::new();
    for (pod, uid, node, pid, t) in ledger.lines().filter_map(parse_beat) {
        let run = by_process.entry((pod, uid, node, pid)).or_insert_with(|| ContainerRun {
            pod: pod.into(),
            uid: uid.into(),
            node: node.into(),
            pid,
            first_ns: t,
            last_ns: t,
            beats: 0,
        });
        run.first_ns = run.first_ns.min(t);
        run.last_ns = run.last_ns.max(t);
        run.beats += 1;
    }
    by_process.into_values().collect()
}

/// After teardown (every container is gone): records the ledger's container runs.
pub fn record_runs(ctx: &WorkloadCtx, dir: &Path) {
    let runs = runs(&std::fs::read_to_string(dir.join(LEDGER)).unwrap_or_default());
    let process = (ctx.concurrency * 1000 + 504) as i64;
    ctx.recorder.record(process, OpType::Ok, "", Call::ContainerRuns { runs }, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_folds_into_one_run_per_process_and_skips_torn_lines() {
        let ledger = "s0-0 u1 a1 10 1000\ns0-0 u1 a1 10 1100\ns0-0 u1 a1 10 12\ns0-0 u2 a2 11 1300\ns0-0 u1 a1\n\
                      s0-1 u3 a2 12 1400 extra\n";
        let runs = runs(ledger);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].uid.as_str(), runs[0].first_ns, runs[0].last_ns, runs[0].beats), ("u1", 12, 1100, 3));
        assert_eq!((runs[1].node.as_str(), runs[1].beats), ("a2", 1));
    }

    #[test]
    fn the_statefulset_is_valid_json_for_the_api() {
        let set = statefulset("s0", "OrderedReady", 2, Path::new("/tmp/ledger"));
        let spec = set.spec.expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let container = &spec.template.spec.expect("pod spec").containers[0];
        assert_eq!(container.command.as_ref().map(|c| c[0].as_str()), Some("/bin/sh"));
        assert_eq!(container.env.as_ref().map(Vec::len), Some(4));
    }
}
