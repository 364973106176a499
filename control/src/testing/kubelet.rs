//! A stand-in for the agent in controller tests: marks the pods of a namespace Running and
//! Ready (phase, PodScheduled/Initialized/ContainersReady/Ready conditions with
//! lastTransitionTime, podIP) through the status subresource, as a kubelet would once
//! the containers pass their readiness probes. Pods annotated
//! [`NEVER_READY`]`: "true"` run but never become ready (a broken rollout).
//! It tries each given client in turn, so it survives the loss of a server.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub const NEVER_READY: &str = "test.berth.dev/never-ready";

pub struct KubeletSim {
    cancel: CancellationToken,
}

impl Drop for KubeletSim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_ready(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

impl KubeletSim {
    pub fn start(clients: Vec<kube::Client>, namespace: &str) -> KubeletSim {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let namespace = namespace.to_string();
        tokio::spawn(async move {
            let mut ip = 0u32;
            let mut which = 0usize;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                let api: Api<Pod> = Api::namespaced(clients[which % clients.len()].clone(), &namespace);
                let Ok(pods) = api.list(&ListParams::default()).await else {
                    which += 1;
                    continue;
                };
                for pod in pods.items {
                    if pod.metadata.deletion_timestamp.is_some() || is_ready(&pod) {
                        continue;
                    }
                    let never = pod.metadata.annotations.as_ref().and_then(|a| a.get(NEVER_READY)).map(String::as_str)
                        == Some("true");
                    if never && running(&pod) {
                        continue;
                    }
                    ip += 1;
                    let at = now();
                    let ready = if never { "False" } else { "True" };
                    let status = json!({"status": {
                        "phase": "Running",
                        "podIP": format!("10.244.{}.{}", ip / 250, ip % 250 + 1),
                        "startTime": at,
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": at},
                            {"type": "Initialized", "status": "True", "lastTransitionTime": at},
                            {"type": "ContainersReady", "status": ready, "lastTransitionTime": at},
                            {"type": "Ready", "status": ready, "lastTransitionTime": at},
                        ],
                    }});
                    let name = pod.metadata.name.unwrap_or_default();
                    if api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.is_err() {
                        which += 1;
                    }
                }
            }
        });
        KubeletSim { cancel }
    }
}
