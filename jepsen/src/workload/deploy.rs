//! The deploy workload: clients create, scale, update (image or env) and delete a few
//! Deployments through the Kubernetes API of the server they are bound to, while the
//! leader's controllers and scheduler and the agents carry them out. Every write sets the
//! whole spec (replicas and template version) and a unique `jepsen/write` annotation, so
//! every write changes the object and the final object names the write it came from.
//!
//! After the final heal the harness waits (bounded) until every Deployment runs exactly
//! `replicas` Ready pods of its current template and no other pods, and records how long
//! that took (`converge`). The pod recorder runs throughout, so the bind checker also judges
//! the Deployments' pods.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rand::Rng;
use serde_json::{json, Value};

use super::{api_client_loop, Completion, WorkloadCtx};
use crate::history::{Call, DeployAction, DeploymentView, OpType};
use crate::kube_api::{self, deadline, NAMESPACE};

/// The Deployments the clients share.
pub const NAMES: [&str; 3] = ["d0", "d1", "d2"];
const MAX_REPLICAS: i32 = 3;
const VERSIONS: u32 = 3;
/// The annotation naming the write a Deployment's spec came from.
pub const WRITE_ANNOTATION: &str = "jepsen/write";

/// The pod template of `version`: odd and even versions differ in image, all in env.
fn template(name: &str, version: u32) -> Value {
    let image = if version.is_multiple_of(2) { "registry.k8s.io/pause:3.10" } else { "registry.k8s.io/pause:3.9" };
    json!({
        "metadata": {"labels": {"app": name, "version": version.to_string()}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": image,
                "env": [{"name": "VERSION", "value": version.to_string()}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}
            }]
        }
    })
}

/// The whole Deployment of one write.
pub fn deployment(name: &str, replicas: i32, version: u32, write_id: u64) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {WRITE_ANNOTATION: write_id.to_string()}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, version)}
    }))
    .expect("a valid Deployment")
}

/// The merge patch of a scale or update: the whole spec again (a merge patch replaces the
/// containers list, so the template ends up exactly as written).
fn spec_patch(name: &str, replicas: i32, version: u32, write_id: u64) -> Value {
    json!({
        "metadata": {"annotations": {WRITE_ANNOTATION: write_id.to_string()}},
        "spec": {"replicas": replicas, "template": template(name, version)}
    })
}

pub fn spawn(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    let next_write = Arc::new(AtomicU64::new(1));
    (0..ctx.concurrency)
        .map(|worker| {
            let next_write = next_write.clone();
            // What this worker last wrote per Deployment: a scale keeps its version, an
            // update its replicas.
            let mut mine: BTreeMap<&'static str, (i32, u32)> = BTreeMap::new();
            let generate = move |rng: &mut rand::rngs::StdRng| {
                let name = NAMES[rng.random_range(0..NAMES.len())];
                let write_id = next_write.fetch_add(1, Ordering::Relaxed);
                let (mut replicas, mut version) = *mine.get(name).unwrap_or(&(1, 1));
                let roll = rng.random_range(0..100);
                let action = match roll {
                    // Deletes are rarer than creates, so most Deployments exist at the end
                    // and the convergence check has pods to wait for.
                    0..5 => DeployAction::Delete,
                    5..25 => DeployAction::Create,
                    30..65 => DeployAction::Scale,
                    _ => DeployAction::Update,
                };
                match action {
                    DeployAction::Create => {
                        replicas = rng.random_range(0..=MAX_REPLICAS);
                        version = rng.random_range(1..=VERSIONS);
                    }
                    DeployAction::Scale => replicas = rng.random_range(0..=MAX_REPLICAS),
                    DeployAction::Update => version = version % VERSIONS + 1,
                    DeployAction::Delete => {}
                }
                mine.insert(name, (replicas, version));
                Call::DeploymentWrite {
                    name: name.to_string(),
                    action,
                    replicas,
                    version,
                    write_id,
                    resource_version: None,
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
    let Call::DeploymentWrite { name, action, replicas, version, write_id, .. } = call else {
        return Completion {
            kind: OpType::Fail,
            error: Some(format!("{} is not a deploy operation", call.name())),
            call,
        };
    };
    let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let result = match action {
        DeployAction::Create => {
            deadline(timeout, api.create(&PostParams::default(), &deployment(&name, replicas, version, write_id)))
                .await
                .map(|d| Some(kube_api::resource_version(d.resource_version())))
        }
        DeployAction::Scale | DeployAction::Update => {
            let patch = Patch::Merge(spec_patch(&name, replicas, version, write_id));
            deadline(timeout, api.patch(&name, &PatchParams::default(), &patch))
                .await
                .map(|d| Some(kube_api::resource_version(d.resource_version())))
        }
        // A delete's response carries the object as it was, not the delete's revision.
        DeployAction::Delete => deadline(timeout, api.delete(&name, &DeleteParams::default())).await.map(|_| None),
    };
    let done = |resource_version| Call::DeploymentWrite {
        name: name.clone(),
        action,
        replicas,
        version,
        write_id,
        resource_version,
    };
    match result {
        Ok(rv) => Completion::ok(done(rv)),
        Err(e) => Completion::from_error(done(None), e, false),
    }
}

/// Waits until every Deployment runs exactly `replicas` Ready pods of its current template
/// and nothing else, for at most `bound`; records a `converge` op (process of the harness)
/// whose `seconds` count from `healed_at`, the end of the final heal.
pub async fn converge(ctx: &WorkloadCtx, healed_at: Instant, bound: Duration) {
    let process = (ctx.concurrency * 1000 + 502) as i64;
    let (first, _) = ctx.api[0].clone();
    ctx.recorder.invoke(process, &first, Call::Converge { seconds: None, deployments: None, orphan_pods: 0 });
    let until = tokio::time::Instant::now() + bound;
    let mut last: Option<(String, Vec<DeploymentView>, u32)> = None;
    let mut last_error = String::from("no read");
    for attempt in 0usize.. {
        let (node, client) = ctx.api_client_for(attempt);
        match read_state(client, ctx.op_timeout).await {
            Ok((views, orphans)) => {
                let done =
                    orphans == 0 && views.iter().all(|v| v.ready_current as i32 == v.replicas && v.other_pods == 0);
                if done {
                    let seconds = Some(healed_at.elapsed().as_secs_f64());
                    let call = Call::Converge { seconds, deployments: Some(views), orphan_pods: orphans };
                    ctx.recorder.record(process, OpType::Ok, &node, call, None);
                    return;
                }
                last = Some((node, views, orphans));
            }
            Err(e) => last_error = e.message,
        }
        if tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let error = format!("not converged {} s after the final heal", bound.as_secs());
    match last {
        Some((node, views, orphans)) => {
            let call = Call::Converge { seconds: None, deployments: Some(views), orphan_pods: orphans };
            ctx.recorder.record(process, OpType::Fail, &node, call, Some(error));
        }
        None => {
            let call = Call::Converge { seconds: None, deployments: None, orphan_pods: 0 };
            ctx.recorder.record(process, OpType::Fail, &first, call, Some(format!("{error}: {last_error}")));
        }
    }
}

/// One read of the Deployments and their pods.
async fn read_state(
    client: kube::Client,
    timeout: Duration,
) -> Result<(Vec<DeploymentView>, u32), crate::client::CallError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let selector = format!("app in ({})", NAMES.join(","));
    let ds = deadline(timeout, deployments.list(&ListParams::default())).await?;
    let ps = deadline(timeout, pods.list(&ListParams::default().labels(&selector))).await?;
    Ok(views(&ds.items, &ps.items))
}

/// What the convergence read saw: per Deployment its spec and pods, and how many pods
/// belong to no Deployment any more.
pub fn views(deployments: &[Deployment], pods: &[Pod]) -> (Vec<DeploymentView>, u32) {
    let label = |p: &Pod, key: &str| p.labels().get(key).cloned().unwrap_or_default();
    let mut out = vec![];
    for d in deployments {
        let name = d.name_any();
        let spec = d.spec.as_ref();
        let version: u32 = spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get("version"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mine: Vec<&Pod> = pods.iter().filter(|p| label(p, "app") == name).collect();
        let current = mine
            .iter()
            .filter(|p| {
                label(p, "version") == version.to_string()
                    && p.metadata.deletion_timestamp.is_none()
                    && kube_api::is_ready(p)
            })
            .count() as u32;
        out.push(DeploymentView {
            name: name.clone(),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            version,
            write_id: d.annotations().get(WRITE_ANNOTATION).and_then(|w| w.parse().ok()).unwrap_or(0),
            resource_version: kube_api::resource_version(d.resource_version()),
            ready_current: current,
            other_pods: mine.len() as u32 - current,
        });
    }
    let orphans = pods.iter().filter(|p| !deployments.iter().any(|d| d.name_any() == label(p, "app"))).count() as u32;
    (out, orphans)
}
