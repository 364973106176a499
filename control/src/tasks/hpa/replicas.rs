//! The replica calculator for `Resource` metrics — Kubernetes' `ReplicaCalculator`
//! (`GetResourceReplicas` for `Utilization` targets, `GetRawResourceReplicas` for
//! `AverageValue`), pure: pods, their usage and the target in, a proposal out.
//!
//! How pods count (Kubernetes' `groupPods`):
//! * deleting or failed pods are ignored;
//! * pending pods are *unready*; so are, for CPU, pods that are not Ready, and pods still in
//!   their CPU initialization period (5 min after start) whose sample was taken less than a
//!   metric window after they turned Ready (their start-up burst would mislead);
//! * pods without a sample are *missing*.
//!
//! The ratio is computed over ready pods with samples; if it is within the tolerance of 1
//! and nothing is missing, nothing changes. Otherwise the calculator is conservative: on a
//! scale-down, missing pods are assumed to use 100% of their request (or the target, if
//! higher); on a scale-up, missing and unready pods are assumed to use nothing. If that
//! assumption flips the direction or brings the ratio within tolerance, the replica count
//! stays.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// After a pod starts, CPU samples are distrusted for this long unless the pod has been
/// Ready for a whole metric window (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that turned not-Ready this soon after starting is taken as never having been
/// ready (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const DELAY_OF_INITIAL_READINESS: Duration = Duration::from_secs(30);

/// What the calculator needs to know of one pod selected by the scale target.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: (is it True, when it last changed).
    pub ready: Option<(bool, Timestamp)>,
    pub start_time: Option<Timestamp>,
    /// Sum of the containers' requests of the resource, in milli-units; `Err(container)`
    /// names a container without one.
    pub request_milli: Result<i64, String>,
}

/// One pod's usage sample (milli-units), as the metrics API gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSample {
    pub timestamp: Timestamp,
    pub window: Duration,
    pub value_milli: i64,
}

/// What a `Resource` metric aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Average usage per pod, milli-units.
    AverageValue(i64),
}

/// The calculator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    /// Current average utilization (percent of request) for `Utilization` targets.
    pub utilization: Option<i32>,
    /// Current average usage per measured pod, milli-units.
    pub average_milli: i64,
}

fn add(d: Timestamp, by: Duration) -> Timestamp {
    d.checked_add(k8s_openapi::jiff::SignedDuration::try_from(by).unwrap_or_default()).unwrap_or(d)
}

/// Kubernetes' `groupPods`: (ready pod count, unready, missing, ignored).
fn group_pods<'a>(
    pods: &'a [PodFacts],
    samples: &HashMap<String, PodSample>,
    resource: &str,
    now: Timestamp,
) -> (usize, Vec<&'a PodFacts>, Vec<&'a PodFacts>, Vec<&'a PodFacts>) {
    let (mut ready, mut unready, mut missing, mut ignored) = (0, Vec::new(), Vec::new(), Vec::new());
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            ignored.push(pod);
            continue;
        }
        if pod.phase == "Pending" {
            unready.push(pod);
            continue;
        }
        let Some(sample) = samples.get(&pod.name) else {
            missing.push(pod);
            continue;
        };
        if resource == "cpu" {
            let is_unready = match (pod.ready, pod.start_time) {
                (Some((is_ready, changed)), Some(start)) => {
                    if add(start, CPU_INITIALIZATION_PERIOD) > now {
                        !is_ready || sample.timestamp < add(changed, sample.window)
                    } else {
                        !is_ready && add(start, DELAY_OF_INITIAL_READINESS) > changed
                    }
                }
                _ => true,
            };
            if is_unready {
                unready.push(pod);
                continue;
            }
        }
        ready += 1;
    }
    (ready, unready, missing, ignored)
}

/// Kubernetes' `GetResourceUtilizationRatio` / `GetMetricUsageRatio` over `samples`:
/// (usage/target ratio, utilization percent, average usage per pod).
fn ratio(
    samples: &HashMap<String, i64>,
    requests: &HashMap<&str, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), String> {
    let total: i64 = samples.values().sum();
    let average = total / samples.len().max(1) as i64;
    match target {
        Target::Utilization(percent) => {
            let mut requested = 0i64;
            for name in samples.keys() {
                requested += requests.get(name.as_str()).ok_or_else(|| format!("missing request for pod {name}"))?;
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = (total * 100 / requested) as i32;
            Ok((f64::from(utilization) / f64::from(percent), Some(utilization), average))
        }
        Target::AverageValue(milli) => Ok((average as f64 / milli as f64, None, average)),
    }
}

/// The replica count `target` asks for, from `current` replicas, the pods the scale
/// selects and their `samples` (by pod name). Errors are Kubernetes' messages.
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    pods: &[PodFacts],
    samples: &HashMap<String, PodSample>,
    tolerance: f64,
    now: Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let (ready_count, unready, missing, ignored) = group_pods(pods, samples, resource, now);
    let mut values: HashMap<String, i64> = samples
        .iter()
        .filter(|(name, _)| pods.iter().any(|p| &p.name == *name))
        .filter(|(name, _)| !ignored.iter().chain(unready.iter()).any(|p| &p.name == *name))
        .map(|(name, s)| (name.clone(), s.value_milli))
        .collect();
    if values.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let mut requests: HashMap<&str, i64> = HashMap::new();
    if let Target::Utilization(_) = target {
        for p in pods {
            match &p.request_milli {
                Ok(r) => requests.insert(p.name.as_str(), *r),
                Err(container) => {
                    return Err(format!("missing request for {resource} in container {container} of Pod {}", p.name))
                }
            };
        }
    }
    let (usage_ratio, utilization, average) = ratio(&values, &requests, target)?;
    let proposal = |replicas| Proposal { replicas, utilization, average_milli: average };
    let scale_up_with_unready = !unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= tolerance {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * ready_count as f64).ceil() as i32));
    }
    // Conservative assumptions for what could not be measured.
    for pod in &missing {
        let assumed = match target {
            _ if usage_ratio == 1.0 => continue,
            Target::Utilization(percent) if usage_ratio < 1.0 => {
                requests.get(pod.name.as_str()).copied().unwrap_or(0) * i64::from(percent.max(100)) / 100
            }
            Target::AverageValue(milli) if usage_ratio < 1.0 => milli,
            _ => 0,
        };
        values.insert(pod.name.clone(), assumed);
    }
    if scale_up_with_unready {
        for pod in &unready {
            values.insert(pod.name.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&values, &requests, target)?;
    if (1.0 - new_ratio).abs() <= tolerance
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * values.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    /// A running pod, Ready since long ago, requesting 100m.
    fn pod(name: &str) -> PodFacts {
        PodFacts {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, t(-1000))),
            start_time: Some(t(-1000)),
            request_milli: Ok(100),
        }
    }

    fn samples(values: &[(&str, i64)]) -> HashMap<String, PodSample> {
        values
            .iter()
            .map(|(n, v)| {
                (n.to_string(), PodSample { timestamp: t(0), window: Duration::from_secs(15), value_milli: *v })
            })
            .collect()
    }

    fn calc(current: i32, target: Target, pods: &[PodFacts], s: &[(&str, i64)]) -> Result<Proposal, String> {
        resource_replicas(current, target, "cpu", pods, &samples(s), 0.1, t(0))
    }

    #[test]
    fn scales_by_the_usage_ratio() {
        let pods = [pod("a")];
        let p = calc(1, Target::Utilization(50), &pods, &[("a", 100)]).unwrap();
        assert_eq!(p, Proposal { replicas: 2, utilization: Some(100), average_milli: 100 });
        let p = calc(1, Target::Utilization(50), &pods, &[("a", 990)]).unwrap();
        assert_eq!(p.replicas, 20, "ceil(1 × 990%/50%)");
        let pods = [pod("a"), pod("b"), pod("c")];
        let p = calc(3, Target::Utilization(50), &pods, &[("a", 0), ("b", 1), ("c", 0)]).unwrap();
        assert_eq!(p.replicas, 0, "1m of 300m is 0%: zero replicas (the controller then applies minReplicas)");
    }

    #[test]
    fn tolerance_keeps_the_count() {
        let pods = [pod("a"), pod("b")];
        // 54% against 50%: ratio 1.08, within 0.1.
        assert_eq!(calc(2, Target::Utilization(50), &pods, &[("a", 54), ("b", 54)]).unwrap().replicas, 2);
        // 56%: ratio 1.12, outside: ceil(2 × 1.12) = 3.
        assert_eq!(calc(2, Target::Utilization(50), &pods, &[("a", 56), ("b", 56)]).unwrap().replicas, 3);
        // A zero tolerance rescales on any difference.
        let s = samples(&[("a", 54), ("b", 54)]);
        let p = resource_replicas(2, Target::Utilization(50), "cpu", &pods, &s, 0.0, t(0)).unwrap();
        assert_eq!(p.replicas, 3);
    }

    #[test]
    fn average_value_targets() {
        let pods = [pod("a"), pod("b")];
        let mib = 1024 * 1024 * 1000;
        let p = resource_replicas(
            2,
            Target::AverageValue(100 * mib),
            "memory",
            &pods,
            &samples(&[("a", 300 * mib), ("b", 100 * mib)]),
            0.1,
            t(0),
        )
        .unwrap();
        assert_eq!(p, Proposal { replicas: 4, utilization: None, average_milli: 200 * mib });
    }

    #[test]
    fn missing_metrics_are_conservative() {
        let pods = [pod("a"), pod("b"), pod("c")];
        // Scale-down: the missing pod is assumed at 100% of its request, so 2 pods at 10%
        // plus one at 100% average 40% — ratio 0.8 over 3 samples: ceil(2.4) = 3, no change.
        assert_eq!(calc(3, Target::Utilization(50), &pods, &[("a", 10), ("b", 10)]).unwrap().replicas, 3);
        // Deeper: 2 at 0% + 1 at 100% = 33%: ceil(3 × 0.66) = 2.
        assert_eq!(calc(3, Target::Utilization(50), &pods, &[("a", 0), ("b", 0)]).unwrap().replicas, 2);
        // Scale-up: the missing pod is assumed at 0: 2 at 100% + 0 = 66% → ceil(3 × 1.32) = 4.
        assert_eq!(calc(3, Target::Utilization(50), &pods, &[("a", 100), ("b", 100)]).unwrap().replicas, 4);
        // Scale-up that the assumption cancels: 2 at 60% + 0 = 40% < 50% → no change.
        assert_eq!(calc(3, Target::Utilization(50), &pods, &[("a", 60), ("b", 60)]).unwrap().replicas, 3);
    }

    #[test]
    fn unready_and_ignored_pods() {
        let mut pending = pod("p");
        pending.phase = "Pending".into();
        let mut failed = pod("f");
        failed.phase = "Failed".into();
        let mut deleting = pod("d");
        deleting.deleting = true;
        let pods = [pod("a"), pending.clone(), failed, deleting];
        // Scale-up: the pending pod counts as 0: (200 + 0) / 2 = 100% → ceil(2 × 2) = 4;
        // failed and deleting pods are ignored even with samples.
        let p = calc(2, Target::Utilization(50), &pods, &[("a", 200), ("f", 900), ("d", 900)]).unwrap();
        assert_eq!(p.replicas, 4);
        assert_eq!(p.utilization, Some(200), "reported utilization is over measured ready pods");
        // Scale-down ignores unready pods: 1 ready pod at 10% → ceil(1 × 0.2) = 1.
        assert_eq!(calc(2, Target::Utilization(50), &[pod("a"), pending], &[("a", 10)]).unwrap().replicas, 1);
        // A CPU sample taken less than a window after the pod turned Ready is not trusted.
        let mut fresh = pod("n");
        fresh.start_time = Some(t(-20));
        fresh.ready = Some((true, t(-10)));
        let err = calc(1, Target::Utilization(50), &[fresh.clone()], &[("n", 500)]).unwrap_err();
        assert_eq!(err, "did not receive metrics for targeted pods (pods might be unready)");
        // …but for memory it is.
        let s = samples(&[("n", 500)]);
        assert!(resource_replicas(1, Target::AverageValue(100), "memory", &[fresh], &s, 0.1, t(0)).is_ok());
    }

    #[test]
    fn errors_read_like_kubernetes() {
        assert_eq!(
            calc(1, Target::Utilization(50), &[], &[]).unwrap_err(),
            "no pods returned by selector while calculating replica count"
        );
        let mut no_request = pod("a");
        no_request.request_milli = Err("burn".into());
        assert_eq!(
            calc(1, Target::Utilization(50), &[no_request], &[("a", 1)]).unwrap_err(),
            "missing request for cpu in container burn of Pod a"
        );
    }
}
