//! The bind workload: clients create bare pods with CPU and memory requests (more than the
//! hollow nodes can hold) and delete some of them again, through the Kubernetes API of the
//! server they are bound to. The scheduler (a leader-only task) binds them meanwhile. The
//! pod recorder sees every binding; after healing, a final read of pods and nodes. The
//! checker ([`crate::checker::bind`]) looks for a pod bound twice or to two nodes and for a
//! node holding more than it can.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::{api_client_loop, Completion, WorkloadCtx};
use crate::history::{Call, OpType};
use crate::kube_api::{deadline, NAMESPACE};

/// Requests drawn per pod: with nodes of 2 CPUs / 2 GiB / 8 pods, a few hundred pods'
/// worth keeps every node near full, so the scheduler must get the arithmetic right.
const CPU_MILLI: [u64; 4] = [100, 250, 400, 700];
const MEMORY_MIB: [u64; 4] = [64, 128, 256, 512];
/// Pods one worker keeps before it deletes one.
const PODS_PER_WORKER: usize = 6;

/// The pod the workload creates.
pub fn pod(name: &str, cpu_milli: u64, memory_bytes: u64) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"jepsen": "bind"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.9",
                "resources": {"requests": {"cpu": format!("{cpu_milli}m"), "memory": memory_bytes.to_string()}}
            }]
        }
    }))
    .expect("a valid pod")
}

pub fn spawn(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..ctx.concurrency)
        .map(|worker| {
            let mut created: Vec<String> = vec![];
            let mut seq = 0u64;
            let generate = move |rng: &mut rand::rngs::StdRng| {
                // Each worker keeps at most a few pods, so pods keep leaving and the
                // scheduler keeps binding; all workers together still want more than the
                // nodes hold (10 workers × 6 pods against 24 pod slots), so nodes stay full.
                if created.len() >= PODS_PER_WORKER || (!created.is_empty() && rng.random_bool(0.3)) {
                    let i = rng.random_range(0..created.len());
                    return Call::DeletePod { name: created.swap_remove(i) };
                }
                seq += 1;
                let name = format!("p{worker}-{seq}");
                created.push(name.clone());
                let cpu_milli = *CPU_MILLI.choose(rng).unwrap_or(&100);
                let memory_bytes = MEMORY_MIB.choose(rng).unwrap_or(&64) << 20;
                Call::CreatePod { name, cpu_milli, memory_bytes, uid: None }
            };
            let timeout = ctx.op_timeout;
            tokio::spawn(api_client_loop(ctx.clone(), worker, generate, move |client, call| {
                execute(client, call, timeout)
            }))
        })
        .collect()
}

async fn execute(client: kube::Client, call: Call, timeout: std::time::Duration) -> Completion {
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    match call {
        Call::CreatePod { name, cpu_milli, memory_bytes, .. } => {
            let result =
                deadline(timeout, pods.create(&PostParams::default(), &pod(&name, cpu_milli, memory_bytes))).await;
            match result {
                Ok(created) => Completion::ok(Call::CreatePod { name, cpu_milli, memory_bytes, uid: created.uid() }),
                Err(e) => {
                    Completion::from_error(Call::CreatePod { name, cpu_milli, memory_bytes, uid: None }, e, false)
                }
            }
        }
        Call::DeletePod { ref name } => match deadline(timeout, pods.delete(name, &DeleteParams::default())).await {
            Ok(_) => Completion::ok(call),
            Err(e) => Completion::from_error(call, e, false),
        },
        other => Completion {
            kind: OpType::Fail,
            error: Some(format!("{} is not a bind operation", other.name())),
            call: other,
        },
    }
}
