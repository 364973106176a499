//! The HorizontalPodAutoscaler controller (autoscaling/v2), as Kubernetes'
//! `HorizontalController` does it: every `--horizontal-pod-autoscaler-sync-period` each
//! HPA is reconciled —
//!
//! 1. read the target's `scale` subresource (Deployments, ReplicaSets, StatefulSets);
//! 2. unless the current size is outside [minReplicas, maxReplicas] (then it is brought
//!    back), compute a proposal per metric from metrics.k8s.io pod usage and the pods the
//!    scale's selector picks ([`replicas`], pure) and take the largest;
//! 3. stabilize, rate-limit and bound it ([`normalize`], pure, over this HPA's history);
//! 4. write the new size through the scale subresource (pinned to the Scale read), record
//!    `SuccessfulRescale`, and update the status — currentReplicas, desiredReplicas,
//!    currentMetrics, lastScaleTime, observedGeneration and the AbleToScale, ScalingActive
//!    and ScalingLimited conditions with Kubernetes' reasons and messages.
//!
//! Only `Resource` metrics (cpu, memory; `Utilization` and `AverageValue` targets) are
//! supported: Berth serves no custom or external metrics API, so `Pods`, `Object`,
//! `External` and `ContainerResource` metrics report FailedGet…Metric.
//!
//! The recommendation and scale-event history lives in memory on the leader, as in
//! Kubernetes: a new leader starts it afresh (with the current size as the first
//! recommendation, so it never scales down sooner than a window after taking over).

pub mod normalize;
pub mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::selectors::LabelSelector;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::events::{reference, EventType, Recorder};
use crate::periodic::Every;
use crate::registry::object;
use crate::resource::table as resources;
use crate::tasks::context::TaskContext;
use crate::usage::quantity;
use normalize::History;
use replicas::{PodFacts, PodSample, Target};

const COMPONENT: &str = "horizontal-pod-autoscaler";
/// HPAs reconciled at once.
const CONCURRENCY: usize = 8;
/// Longest one HPA's reconcile may take (each API call is in-process and quick).
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// A condition to set: (type, status, reason, message).
type Cond = (&'static str, bool, String, String);

/// Sets `cond` in `conditions` as Kubernetes' `setCondition` does: the transition time
/// changes only when the status does.
fn set_condition(conditions: &mut Vec<Value>, (kind, status, reason, message): Cond, now: &str) {
    let status = if status { "True" } else { "False" };
    let previous = conditions.iter().position(|c| c["type"] == kind);
    let since = previous
        .map(|i| &conditions[i])
        .filter(|c| c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_string();
    let c = json!({"type": kind, "status": status, "lastTransitionTime": since, "reason": reason, "message": message});
    match previous {
        Some(i) => conditions[i] = c,
        None => conditions.push(c),
    }
}

fn cond(kind: &'static str, status: bool, reason: &str, message: impl Into<String>) -> Cond {
    (kind, status, reason.to_string(), message.into())
}

/// The served resource a `scaleTargetRef` names (it must have a scale subresource).
fn scale_resource(api_version: &str, kind: &str) -> Result<&'static resources::ResourceInfo, String> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    resources::RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind && r.has_scale && !r.is_alias())
        .ok_or_else(|| format!("no matches for kind \"{kind}\" in group \"{group}\""))
}

/// The URL of a namespaced object's scale subresource.
fn scale_path(info: &resources::ResourceInfo, ns: &str, name: &str) -> String {
    let prefix =
        if info.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", info.group, info.version) };
    format!("{prefix}/namespaces/{ns}/{}/{name}/scale", info.plural)
}

/// What one metric spec asks for, or why it cannot be served.
fn resource_target(spec: &MetricSpec) -> Result<(String, Target), (String, String)> {
    let Some(source) = spec.resource.as_ref().filter(|_| spec.type_ == "Resource") else {
        let reason = format!("FailedGet{}Metric", spec.type_);
        return Err((reason, format!("unable to get metric: {} metrics are not served by Berth", spec.type_)));
    };
    let name = source.name.clone();
    let target = match source.target.type_.as_str() {
        "Utilization" => source.target.average_utilization.map(Target::Utilization),
        "AverageValue" => source
            .target
            .average_value
            .as_ref()
            .and_then(|q| berth_proto::Quantity::parse(&q.0).ok().map(|q| q.milli_value()))
            .map(Target::AverageValue),
        _ => None,
    };
    let target = target.ok_or_else(|| {
        ("FailedGetResourceMetric".to_string(), format!("invalid resource metric source: {} target", name))
    })?;
    Ok((name, target))
}

/// The facts the replica calculator needs of one pod, for `resource`.
fn pod_facts(pod: &Pod, resource: &str) -> PodFacts {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status == "True", c.last_transition_time.as_ref().map_or(Timestamp::MIN, |t| t.0)));
    let mut request: Result<i64, String> = Ok(0);
    for c in pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default() {
        let q = c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(resource));
        match (q.and_then(|q| berth_proto::Quantity::parse(&q.0).ok().map(|q| q.milli_value())), &mut request) {
            (Some(v), Ok(total)) => *total += v,
            (None, Ok(_)) => request = Err(c.name.clone()),
            _ => {}
        }
    }
    PodFacts {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        request_milli: request,
    }
}

/// Per-pod samples of `resource` from a PodMetricsList (milli-units; a pod missing the
/// resource in any container is left out, as Kubernetes' metrics client does).
fn samples(list: &Value, resource: &str) -> HashMap<String, PodSample> {
    let mut out = HashMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = object::name(item) else { continue };
        let mut total = Some(0i64);
        for c in item["containers"].as_array().into_iter().flatten() {
            let v = c["usage"][resource]
                .as_str()
                .and_then(|q| berth_proto::Quantity::parse(q).ok().map(|q| q.milli_value()));
            total = total.zip(v).map(|(a, b)| a + b);
        }
        let timestamp = item["timestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok());
        let window = item["window"].as_str().and_then(berth_proto::model::duration::parse_go_duration);
        if let (Some(value_milli), Some(timestamp), Some(window)) = (total, timestamp, window) {
            out.insert(name.to_string(), PodSample { timestamp, window, value_milli });
        }
    }
    out
}

struct Controller {
    ctx: TaskContext,
    pods: Store<Pod>,
    recorder: Recorder,
    histories: Mutex<HashMap<(String, String), History>>,
}

/// The outcome of one metric.
struct MetricResult {
    replicas: i32,
    name: String,
    status: Value,
}

impl Controller {
    async fn get_json(&self, path: &str) -> Result<Value, String> {
        let req = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
        self.ctx.client.request::<Value>(req).await.map_err(|e| match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        })
    }

    async fn put_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        let req = http::Request::put(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        self.ctx.client.request::<Value>(req).await.map_err(|e| match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        })
    }

    /// One metric's proposal (Kubernetes' `computeStatusForResourceMetric`), or the
    /// condition and error it failed with.
    async fn metric(
        &self,
        hpa: &HorizontalPodAutoscaler,
        spec: &MetricSpec,
        current: i32,
        pods: &[&Pod],
        selector: &str,
        now: Timestamp,
    ) -> Result<MetricResult, (Cond, String)> {
        let (resource, target) = resource_target(spec).map_err(|(reason, message)| {
            let c = cond(
                "ScalingActive",
                false,
                &reason,
                format!("the HPA was unable to compute the replica count: {message}"),
            );
            (c, message)
        })?;
        let what = match target {
            Target::Utilization(_) => "utilization",
            Target::AverageValue(_) => "usage",
        };
        let ns = hpa.metadata.namespace.as_deref().unwrap_or("default");
        let path = format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?{}",
            url::form_urlencoded::Serializer::new(String::new()).append_pair("labelSelector", selector).finish()
        );
        let computed = async {
            let list = self.get_json(&path).await.map_err(|e| {
                format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}")
            })?;
            let samples = samples(&list, &resource);
            if samples.is_empty() {
                return Err(format!(
                    "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
                ));
            }
            let facts: Vec<PodFacts> = pods.iter().map(|p| pod_facts(p, &resource)).collect();
            replicas::resource_replicas(
                current,
                target,
                &resource,
                &facts,
                &samples,
                self.ctx.settings.hpa_tolerance,
                now,
            )
        };
        match computed.await {
            Ok(p) => {
                let (name, current_status) = match target {
                    Target::Utilization(_) => (
                        format!("{resource} resource utilization (percentage of request)"),
                        json!({"averageUtilization": p.utilization, "averageValue": quantity::milli(p.average_milli)}),
                    ),
                    Target::AverageValue(_) => {
                        (format!("{resource} resource"), json!({"averageValue": quantity::milli(p.average_milli)}))
                    }
                };
                let status = json!({"type": "Resource", "resource": {"name": resource, "current": current_status}});
                Ok(MetricResult { replicas: p.replicas, name, status })
            }
            Err(e) => {
                let inner = format!("failed to get {resource} {what}: {e}");
                self.recorder.publish(&reference(hpa), EventType::Warning, "FailedGetResourceMetric", &inner).await;
                let c = cond(
                    "ScalingActive",
                    false,
                    "FailedGetResourceMetric",
                    format!("the HPA was unable to compute the replica count: {inner}"),
                );
                Err((c, format!("failed to get {resource} resource metric value: {inner}")))
            }
        }
    }

    /// Reconciles one HPA (Kubernetes' `reconcileAutoscaler`).
    async fn sync(&self, hpa: &HorizontalPodAutoscaler) -> Result<(), String> {
        let now = Timestamp::now();
        let now_text = object::timestamp(chrono::Utc::now());
        let ns = hpa.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let key = (ns.clone(), name.clone());
        let Some(spec) = hpa.spec.as_ref() else { return Ok(()) };
        let old_status = hpa.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default()).unwrap_or(json!({}));
        let mut conditions: Vec<Value> = old_status["conditions"].as_array().cloned().unwrap_or_default();
        let mut status = old_status.clone();
        status["observedGeneration"] = json!(hpa.metadata.generation);
        let target = &spec.scale_target_ref;
        let reference_text = format!("{}/{}", target.kind, target.name);

        // 1. The target's scale.
        let scale = match scale_resource(target.api_version.as_deref().unwrap_or(""), &target.kind) {
            Ok(info) => self.get_json(&scale_path(info, &ns, &target.name)).await.map(|s| (s, info)),
            Err(e) => Err(e),
        };
        let (scale, info) = match scale {
            Ok(found) => found,
            Err(e) => {
                let message = format!("the HPA controller was unable to get the target's current scale: {e}");
                self.recorder.publish(&reference(hpa), EventType::Warning, "FailedGetScale", &e).await;
                set_condition(&mut conditions, cond("AbleToScale", false, "FailedGetScale", message), &now_text);
                status["conditions"] = json!(conditions);
                return self.write_status(hpa, &old_status, status).await;
            }
        };
        set_condition(
            &mut conditions,
            cond(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
            &now_text,
        );
        let current = scale["spec"]["replicas"].as_i64().unwrap_or(0) as i32;
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let behavior = normalize::behavior(spec.behavior.as_ref(), self.ctx.settings.hpa_downscale_stabilization);
        let mut history = self.histories.lock().unwrap().remove(&key).unwrap_or_default();
        history.record_initial(current, now);

        // 2. What the metrics ask for.
        let mut metric_statuses: Vec<Value> = Vec::new();
        let (desired, reason) = if current == 0 && min != 0 {
            set_condition(
                &mut conditions,
                cond(
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
                &now_text,
            );
            (0, String::new())
        } else if current > max {
            (max, "Current number of replicas above Spec.MaxReplicas".to_string())
        } else if current < min {
            (min, "Current number of replicas below Spec.MinReplicas".to_string())
        } else {
            let selector_text = scale["status"]["selector"].as_str().unwrap_or_default().to_string();
            let selector = if selector_text.is_empty() {
                Err((
                    "SelectorRequired",
                    "the HPA target's scale is missing a selector",
                    "selector is required".to_string(),
                ))
            } else {
                LabelSelector::parse(&selector_text).map_err(|e| {
                    ("InvalidSelector", "the HPA was unable to compute the replica count: couldn't convert selector into a corresponding internal selector object", e.0)
                })
            };
            let selector = match selector {
                Ok(s) => s,
                Err((event_reason, message, error)) => {
                    self.recorder.publish(&reference(hpa), EventType::Warning, event_reason, &error).await;
                    set_condition(&mut conditions, cond("ScalingActive", false, "InvalidSelector", message), &now_text);
                    status["conditions"] = json!(conditions);
                    self.histories.lock().unwrap().insert(key, history);
                    return self.write_status(hpa, &old_status, status).await;
                }
            };
            let all_pods = self.pods.state();
            let pods: Vec<&Pod> = all_pods
                .iter()
                .map(|p| p.as_ref())
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
                .collect();
            let specs = spec.metrics.clone().unwrap_or_default();
            let (mut best, mut best_name) = (0, String::new());
            let mut invalid: Vec<(Cond, String)> = Vec::new();
            for m in &specs {
                match self.metric(hpa, m, current, &pods, &selector_text, now).await {
                    Ok(r) => {
                        if best == 0 || r.replicas > best {
                            best = r.replicas;
                            best_name = r.name;
                        }
                        metric_statuses.push(r.status);
                    }
                    Err(e) => {
                        metric_statuses.push(json!({"type": ""}));
                        invalid.push(e);
                    }
                }
            }
            if !invalid.is_empty() && (invalid.len() >= specs.len() || best < current) {
                let count = invalid.len();
                let (condition, first) = invalid.swap_remove(0);
                set_condition(&mut conditions, condition, &now_text);
                let error =
                    format!("invalid metrics ({count} invalid out of {}), first error is: {first}", specs.len());
                self.recorder
                    .publish(&reference(hpa), EventType::Warning, "FailedComputeMetricsReplicas", &error)
                    .await;
                status["currentReplicas"] = json!(current);
                status["currentMetrics"] = json!(metric_statuses);
                status["conditions"] = json!(conditions);
                self.histories.lock().unwrap().insert(key, history);
                self.write_status(hpa, &old_status, status).await?;
                return Err(format!(
                    "failed to compute desired number of replicas based on listed metrics for {reference_text}: {error}"
                ));
            }
            set_condition(
                &mut conditions,
                cond(
                    "ScalingActive",
                    true,
                    "ValidMetricFound",
                    format!("the HPA was able to successfully calculate a replica count from {best_name}"),
                ),
                &now_text,
            );
            let reason = if best > current {
                format!("{best_name} above target")
            } else if best < current {
                "All metrics below target".to_string()
            } else {
                String::new()
            };
            // 3. Stabilize, rate-limit, bound.
            let n = history.normalize(
                behavior.as_ref(),
                self.ctx.settings.hpa_downscale_stabilization,
                current,
                best,
                min,
                max,
                now,
            );
            set_condition(
                &mut conditions,
                cond("AbleToScale", true, n.able_to_scale.reason, n.able_to_scale.message),
                &now_text,
            );
            set_condition(
                &mut conditions,
                cond("ScalingLimited", n.limited, n.limit.reason, n.limit.message),
                &now_text,
            );
            (n.replicas, reason)
        };

        // 4. Rescale.
        let rescale = desired != current && !(current == 0 && min != 0);
        let mut desired_now = current;
        if rescale {
            let mut next = scale.clone();
            next["spec"]["replicas"] = json!(desired);
            let path = scale_path(info, &ns, &target.name);
            if let Err(e) = self.put_json(&path, &next).await {
                let message = format!("New size: {desired}; reason: {reason}; error: {e}");
                self.recorder.publish(&reference(hpa), EventType::Warning, "FailedRescale", &message).await;
                set_condition(
                    &mut conditions,
                    cond(
                        "AbleToScale",
                        false,
                        "FailedUpdateScale",
                        format!("the HPA controller was unable to update the target scale: {e}"),
                    ),
                    &now_text,
                );
                status["conditions"] = json!(conditions);
                self.histories.lock().unwrap().insert(key, history);
                self.write_status(hpa, &old_status, status).await?;
                return Err(format!("failed to rescale {reference_text}: {e}"));
            }
            history.record_scale(behavior.as_ref(), current, desired, now);
            set_condition(
                &mut conditions,
                cond(
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                ),
                &now_text,
            );
            let message = format!("New size: {desired}; reason: {reason}");
            self.recorder.publish(&reference(hpa), EventType::Normal, "SuccessfulRescale", &message).await;
            tracing::info!(hpa = %format!("{ns}/{name}"), target = %reference_text, from = current, to = desired, %reason, "rescaled");
            desired_now = desired;
            status["lastScaleTime"] = json!(now_text);
        }
        self.histories.lock().unwrap().insert(key, history);
        status["currentReplicas"] = json!(current);
        status["desiredReplicas"] = json!(desired_now);
        status["currentMetrics"] = json!(metric_statuses);
        status["conditions"] = json!(conditions);
        self.write_status(hpa, &old_status, status).await
    }

    /// Writes `status` if it differs from what the HPA has, pinned to the version read.
    async fn write_status(&self, hpa: &HorizontalPodAutoscaler, old: &Value, mut status: Value) -> Result<(), String> {
        if let Some(m) = status.as_object_mut() {
            // Kubernetes omits empty currentMetrics.
            if m.get("currentMetrics").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                m.insert("currentMetrics".into(), Value::Null);
            }
        }
        let mut cleaned = status.clone();
        if let Some(m) = cleaned.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
        if &cleaned == old {
            return Ok(());
        }
        let api: Api<HorizontalPodAutoscaler> =
            Api::namespaced(self.ctx.client.clone(), hpa.metadata.namespace.as_deref().unwrap_or("default"));
        let patch = json!({"metadata": {"resourceVersion": hpa.metadata.resource_version}, "status": status});
        let result = api
            .patch_status(
                hpa.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        self.ctx.status.record(result.is_ok());
        result.map(|_| ()).map_err(|e| format!("updating status: {e}"))
    }
}

/// The leader task: informers for HPAs and pods, then a reconcile of every HPA each sync period.
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let cancel = cancel.child_token();
    let hpas = ctx.informers.store::<HorizontalPodAutoscaler>();
    let pods = ctx.informers.store::<Pod>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let period = ctx.settings.hpa_sync_period;
    tracing::info!(?period, "horizontal pod autoscaler started");
    let controller = Arc::new(Controller {
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        ctx,
        pods,
        histories: Mutex::default(),
    });
    let mut every = Every::new(period, cancel);
    while every.tick().await {
        let all = hpas.state();
        {
            let live: std::collections::HashSet<(String, String)> = all
                .iter()
                .map(|h| {
                    (h.metadata.namespace.clone().unwrap_or_default(), h.metadata.name.clone().unwrap_or_default())
                })
                .collect();
            controller.histories.lock().unwrap().retain(|k, _| live.contains(k));
        }
        let round = futures::stream::iter(all).for_each_concurrent(CONCURRENCY, |hpa| {
            let controller = controller.clone();
            async move {
                let name = format!(
                    "{}/{}",
                    hpa.metadata.namespace.as_deref().unwrap_or_default(),
                    hpa.metadata.name.as_deref().unwrap_or_default()
                );
                match tokio::time::timeout(SYNC_TIMEOUT, controller.sync(&hpa)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(hpa = %name, error = %e, "hpa sync failed"),
                    Err(_) => tracing::warn!(hpa = %name, "hpa sync timed out"),
                }
            }
        });
        if every.pass(round).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time() {
        let mut cs = Vec::new();
        set_condition(&mut cs, cond("AbleToScale", true, "SucceededGetScale", "m1"), "T1");
        set_condition(&mut cs, cond("AbleToScale", true, "ReadyForNewScale", "m2"), "T2");
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["lastTransitionTime"], "T1", "same status: the time stays");
        assert_eq!(cs[0]["reason"], "ReadyForNewScale");
        set_condition(&mut cs, cond("AbleToScale", false, "FailedGetScale", "m3"), "T3");
        assert_eq!(cs[0]["lastTransitionTime"], "T3");
    }

    #[test]
    fn scale_targets_and_metric_specs() {
        assert_eq!(scale_resource("apps/v1", "Deployment").unwrap().plural, "deployments");
        assert_eq!(scale_resource("apps/v1", "StatefulSet").unwrap().plural, "statefulsets");
        assert_eq!(
            scale_resource("apps/v1", "DaemonSet").unwrap_err(),
            "no matches for kind \"DaemonSet\" in group \"apps\""
        );
        let spec: MetricSpec = serde_json::from_value(json!({"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "100Mi"}}}))
        .unwrap();
        assert_eq!(resource_target(&spec).unwrap(), ("memory".to_string(), Target::AverageValue(104_857_600_000)));
        let spec: MetricSpec =
            serde_json::from_value(json!({"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}}))
                .unwrap();
        assert_eq!(resource_target(&spec).unwrap_err().0, "FailedGetExternalMetric");
    }

    #[test]
    fn samples_and_pod_facts() {
        let list = json!({"items": [
            {"metadata": {"name": "a"}, "timestamp": "2026-01-01T00:00:00Z", "window": "15.002s",
             "containers": [{"name": "x", "usage": {"cpu": "250000000n", "memory": "1Ki"}},
                            {"name": "y", "usage": {"cpu": "5m", "memory": "1Ki"}}]},
            {"metadata": {"name": "b"}, "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
             "containers": [{"name": "x", "usage": {"memory": "1Ki"}}]}]});
        let s = samples(&list, "cpu");
        assert_eq!(s.len(), 1, "b has no cpu sample");
        assert_eq!(s["a"].value_milli, 255);
        assert_eq!(s["a"].window, Duration::from_millis(15_002));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "a"},
            "spec": {"containers": [{"name": "x", "resources": {"requests": {"cpu": "100m"}}},
                                    {"name": "y", "resources": {"requests": {"cpu": "0.2"}}}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}]}}))
        .unwrap();
        let f = pod_facts(&pod, "cpu");
        assert_eq!(f.request_milli, Ok(300));
        assert_eq!(f.ready.map(|r| r.0), Some(true));
        assert_eq!(pod_facts(&pod, "memory").request_milli, Err("x".to_string()));
    }
}
