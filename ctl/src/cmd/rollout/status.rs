//! `rollout status`: kubectl's status viewers as pure functions of the object, and the
//! watch that feeds them until the rollout is done, fails, or `--timeout` passes.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{DynamicObject, WatchEvent, WatchParams};
use serde_json::Value;

use crate::error::{CtlError, Result};
use crate::resources::ResourceInfo;
use crate::session::Session;
use crate::{emit, Out};

use super::deployutil;

/// One look at a rollout: the line to print and whether it is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub message: String,
    pub done: bool,
}

fn waiting(message: String) -> std::result::Result<Status, String> {
    Ok(Status { message, done: false })
}

/// kubectl's `DeploymentStatusViewer.Status` (`revision` 0 = any).
pub fn deployment_status(d: &Value, revision: i64) -> std::result::Result<Status, String> {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    if revision > 0 {
        let current = deployutil::revision(d)
            .ok_or_else(|| format!("cannot get the revision of deployment {name:?}: invalid revision annotation"))?;
        if revision != current {
            return Err(format!("desired revision ({revision}) is different from the running revision ({current})"));
        }
    }
    let status = &d["status"];
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    if int(&d["metadata"]["generation"]) <= int(&status["observedGeneration"]) {
        let progressing = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Progressing");
        if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
            return Err(format!("deployment {name:?} exceeded its progress deadline"));
        }
        let (updated, replicas, available) =
            (int(&status["updatedReplicas"]), int(&status["replicas"]), int(&status["availableReplicas"]));
        if let Some(desired) = d["spec"]["replicas"].as_i64() {
            if updated < desired {
                return waiting(format!(
                    "Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated...\n"
                ));
            }
        }
        if replicas > updated {
            return waiting(format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...\n",
                replicas - updated
            ));
        }
        if available < updated {
            return waiting(format!(
                "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available...\n"
            ));
        }
        return Ok(Status { message: format!("deployment {name:?} successfully rolled out\n"), done: true });
    }
    waiting("Waiting for deployment spec update to be observed...\n".into())
}

/// kubectl's `DaemonSetStatusViewer.Status`.
pub fn daemon_set_status(ds: &Value) -> std::result::Result<Status, String> {
    let name = ds["metadata"]["name"].as_str().unwrap_or("");
    if ds["spec"]["updateStrategy"]["type"].as_str().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let status = &ds["status"];
    if int(&ds["metadata"]["generation"]) <= int(&status["observedGeneration"]) {
        let (updated, desired, available) = (
            int(&status["updatedNumberScheduled"]),
            int(&status["desiredNumberScheduled"]),
            int(&status["numberAvailable"]),
        );
        if updated < desired {
            return waiting(format!(
                "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated...\n"
            ));
        }
        if available < desired {
            return waiting(format!(
                "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available...\n"
            ));
        }
        return Ok(Status { message: format!("daemon set {name:?} successfully rolled out\n"), done: true });
    }
    waiting("Waiting for daemon set spec update to be observed...\n".into())
}

/// kubectl's `StatefulSetStatusViewer.Status`.
pub fn stateful_set_status(sts: &Value) -> std::result::Result<Status, String> {
    if sts["spec"]["updateStrategy"]["type"].as_str().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let status = &sts["status"];
    let observed = int(&status["observedGeneration"]);
    if observed == 0 || int(&sts["metadata"]["generation"]) > observed {
        return waiting("Waiting for statefulset spec update to be observed...\n".into());
    }
    let replicas = sts["spec"]["replicas"].as_i64();
    if let Some(r) = replicas {
        if int(&status["readyReplicas"]) < r {
            return waiting(format!("Waiting for {} pods to be ready...\n", r - int(&status["readyReplicas"])));
        }
    }
    let ru = &sts["spec"]["updateStrategy"]["rollingUpdate"];
    if !ru.is_null() {
        if let (Some(r), Some(partition)) = (replicas, ru["partition"].as_i64()) {
            if int(&status["updatedReplicas"]) < r - partition {
                return waiting(format!(
                    "Waiting for partitioned roll out to finish: {} out of {} new pods have been updated...\n",
                    int(&status["updatedReplicas"]),
                    r - partition
                ));
            }
        }
        return Ok(Status {
            message: format!(
                "partitioned roll out complete: {} new pods have been updated...\n",
                int(&status["updatedReplicas"])
            ),
            done: true,
        });
    }
    let (update, current) =
        (status["updateRevision"].as_str().unwrap_or(""), status["currentRevision"].as_str().unwrap_or(""));
    if update != current {
        return waiting(format!(
            "waiting for statefulset rolling update to complete {} pods at revision {update}...\n",
            int(&status["updatedReplicas"])
        ));
    }
    Ok(Status {
        message: format!(
            "statefulset rolling update complete {} pods at revision {current}...\n",
            int(&status["currentReplicas"])
        ),
        done: true,
    })
}

/// The viewer for a kind, as kubectl's `StatusViewerFor`.
pub fn status_of(info: &ResourceInfo, object: &Value, revision: i64) -> std::result::Result<Status, String> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("apps" | "extensions", "Deployment") => deployment_status(object, revision),
        ("apps" | "extensions", "DaemonSet") => daemon_set_status(object),
        ("apps", "StatefulSet") => stateful_set_status(object),
        _ => Err(format!("no status viewer has been implemented for {}", kind_string(info))),
    }
}

/// `schema.GroupKind.String()`: `Deployment.apps`, `Pod`.
pub fn kind_string(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.kind.clone()
    } else {
        format!("{}.{}", info.kind, info.group)
    }
}

/// How many times the watch may be re-established in a row without seeing an event.
const MAX_RECONNECTS: u32 = 5;
/// Pause between re-establishing a dropped watch.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Watches `object` (already fetched) and prints its status on every change until done.
pub async fn watch_status(
    session: &mut Session,
    info: &ResourceInfo,
    object: Value,
    revision: i64,
    watch: bool,
    timeout: Option<Duration>,
    out: &mut Out,
) -> Result<()> {
    let work = watch_loop(session, info, object, revision, watch, out);
    match timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(CtlError::usage("timed out waiting for the condition"))),
        None => work.await,
    }
}

async fn watch_loop(
    session: &mut Session,
    info: &ResourceInfo,
    mut object: Value,
    revision: i64,
    watch: bool,
    out: &mut Out,
) -> Result<()> {
    let (ns, name) = {
        let (ns, name) = crate::cmd::describe::fetch::ns_name(&object);
        (ns.map(str::to_string), name.to_string())
    };
    let mut failures = 0;
    let mut report = true;
    loop {
        // Like kubectl's UntilWithSync: judge the current object, then watch from its version.
        let status = status_of(info, &object, revision).map_err(CtlError::Usage)?;
        if report {
            emit(out, &status.message)?;
        }
        if status.done || !watch {
            return Ok(());
        }
        let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
        let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(290);
        let (ar, namespaced) = (info.api_resource(), info.namespaced);
        let ns_for_api = ns.clone();
        let stream = session
            .call(|client| {
                let (ar, params, rv, ns) = (ar.clone(), params.clone(), rv.clone(), ns_for_api.clone());
                async move {
                    let api: kube::Api<DynamicObject> = match (namespaced, ns.as_deref()) {
                        (true, Some(ns)) => kube::Api::namespaced_with(client, ns, &ar),
                        _ => kube::Api::all_with(client, &ar),
                    };
                    api.watch(&params, &rv).await
                }
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.boxed(),
            Err(e) => {
                failures += 1;
                if failures > MAX_RECONNECTS {
                    return Err(e);
                }
                tracing::debug!(error = %e, "rollout status watch failed; retrying");
                tokio::time::sleep(RECONNECT_DELAY).await;
                let fresh = refetch(session, info, ns.as_deref(), &name).await?;
                report = fresh["metadata"]["resourceVersion"] != object["metadata"]["resourceVersion"];
                object = fresh;
                continue;
            }
        };
        let mut seen_event = false;
        let mut relist = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => {
                    seen_event = true;
                    let value = serde_json::to_value(&o).map_err(|e| CtlError::usage(e.to_string()))?;
                    let status = status_of(info, &value, revision).map_err(CtlError::Usage)?;
                    emit(out, &status.message)?;
                    if status.done {
                        return Ok(());
                    }
                    object = value;
                }
                Ok(WatchEvent::Deleted(_)) => return Err(CtlError::usage("object has been deleted")),
                Ok(WatchEvent::Bookmark(_)) => {}
                Ok(WatchEvent::Error(e)) => {
                    // 410 Gone (or any watch error): start over from a fresh read.
                    tracing::debug!(code = e.code, message = %e.message, "watch error event");
                    relist = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watch stream broke");
                    relist = true;
                    break;
                }
            }
        }
        failures = if seen_event { 0 } else { failures + 1 };
        if failures > MAX_RECONNECTS {
            return Err(CtlError::usage("watch of the rollout kept closing without events"));
        }
        tokio::time::sleep(if relist { RECONNECT_DELAY } else { Duration::ZERO }).await;
        // The watch ended (server timeout, failover, or error): re-read and watch again
        // without printing the unchanged status twice.
        let fresh = refetch(session, info, ns.as_deref(), &name).await?;
        report = fresh["metadata"]["resourceVersion"] != object["metadata"]["resourceVersion"];
        object = fresh;
    }
}

async fn refetch(session: &mut Session, info: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value> {
    let ns = if info.namespaced { ns } else { None };
    crate::cmd::describe::fetch::get(session, &info.url_path(ns, Some(name))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(generation: i64, observed: i64, replicas: i64, updated: i64, total: i64, available: i64) -> Value {
        json!({
            "metadata": {"name": "web", "generation": generation, "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total, "availableReplicas": available}
        })
    }

    #[test]
    fn deployment_viewer_matches_kubectl() {
        let msg = |d: &Value| deployment_status(d, 0).unwrap();
        assert_eq!(
            msg(&deploy(2, 1, 3, 3, 3, 3)),
            Status { message: "Waiting for deployment spec update to be observed...\n".into(), done: false }
        );
        assert_eq!(
            msg(&deploy(2, 2, 3, 1, 4, 3)).message,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
        );
        assert_eq!(
            msg(&deploy(2, 2, 3, 3, 4, 3)).message,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"
        );
        assert_eq!(
            msg(&deploy(2, 2, 3, 3, 3, 2)).message,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n"
        );
        assert_eq!(
            msg(&deploy(2, 2, 3, 3, 3, 3)),
            Status { message: "deployment \"web\" successfully rolled out\n".into(), done: true }
        );
    }

    #[test]
    fn deployment_viewer_errors() {
        let mut d = deploy(2, 2, 3, 1, 3, 1);
        d["status"]["conditions"] =
            json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(deployment_status(&d, 0).unwrap_err(), "deployment \"web\" exceeded its progress deadline");
        assert_eq!(
            deployment_status(&deploy(2, 2, 3, 3, 3, 3), 1).unwrap_err(),
            "desired revision (1) is different from the running revision (2)"
        );
        assert!(deployment_status(&deploy(2, 2, 3, 3, 3, 3), 2).unwrap().done);
    }

    #[test]
    fn daemon_set_and_stateful_set_viewers() {
        let ds = json!({"metadata": {"name": "d", "generation": 1}, "spec": {},
            "status": {"observedGeneration": 1, "updatedNumberScheduled": 1, "desiredNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            daemon_set_status(&ds).unwrap().message,
            "Waiting for daemon set \"d\" rollout to finish: 1 out of 2 new pods have been updated...\n"
        );
        let sts = json!({"metadata": {"name": "s", "generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "currentReplicas": 2, "updateRevision": "r1", "currentRevision": "r1"}});
        assert_eq!(
            stateful_set_status(&sts).unwrap(),
            Status { message: "statefulset rolling update complete 2 pods at revision r1...\n".into(), done: true }
        );
    }
}
