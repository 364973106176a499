//! From the metrics' proposal to the replica count actually set — Kubernetes'
//! `normalizeDesiredReplicas` (HPAs without `behavior`) and
//! `normalizeDesiredReplicasWithBehaviors`, pure over a per-HPA [`History`]:
//!
//! 1. *stabilization*: the proposal is compared with this HPA's recommendations of the
//!    last stabilization window — scaling down takes the highest of them, scaling up the
//!    lowest — so a brief dip or spike does not flap the target (default windows: 300 s
//!    down, 0 s up);
//! 2. *rate limits*: `behavior` policies cap how many pods may be added or removed per
//!    period (defaults: up by 100% or 4 pods per 15 s, whichever is more; down by 100%),
//!    counting the changes already made in that period; without `behavior`, up to
//!    max(2 × current, 4);
//! 3. *bounds*: minReplicas and maxReplicas.
//!
//! It also says why, as the AbleToScale and ScalingLimited conditions' reason and message.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::Timestamp;

/// How one scaling direction's policies combine (`selectPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period: Duration,
}

/// One direction of `behavior`, with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

/// `behavior` with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

fn rules(spec: Option<&HPAScalingRules>, window: Duration, policies: Vec<Policy>) -> Rules {
    let select = match spec.and_then(|s| s.select_policy.as_deref()) {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let given: Vec<Policy> = spec
        .and_then(|s| s.policies.as_ref())
        .into_iter()
        .flatten()
        .map(|p| Policy {
            kind: if p.type_ == "Pods" { PolicyKind::Pods } else { PolicyKind::Percent },
            value: p.value,
            period: Duration::from_secs(p.period_seconds.max(0) as u64),
        })
        .collect();
    Rules {
        stabilization_window: spec
            .and_then(|s| s.stabilization_window_seconds)
            .map_or(window, |s| Duration::from_secs(s.max(0) as u64)),
        select,
        policies: if given.is_empty() { policies } else { given },
    }
}

/// The rules an HPA's `behavior` means (`None` without one: the legacy rules apply).
/// `downscale_window` stands in for an unset scale-down stabilization window
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub fn behavior(spec: Option<&HorizontalPodAutoscalerBehavior>, downscale_window: Duration) -> Option<Behavior> {
    let spec = spec?;
    let fifteen = Duration::from_secs(15);
    Some(Behavior {
        up: rules(
            spec.scale_up.as_ref(),
            Duration::ZERO,
            vec![
                Policy { kind: PolicyKind::Pods, value: 4, period: fifteen },
                Policy { kind: PolicyKind::Percent, value: 100, period: fifteen },
            ],
        ),
        down: rules(
            spec.scale_down.as_ref(),
            downscale_window,
            vec![Policy { kind: PolicyKind::Percent, value: 100, period: fifteen }],
        ),
    })
}

/// A condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    pub reason: &'static str,
    pub message: &'static str,
}

const fn why(reason: &'static str, message: &'static str) -> Why {
    Why { reason, message }
}

/// The outcome of normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    /// AbleToScale=True's reason (stabilized or ready for a new scale).
    pub able_to_scale: Why,
    /// ScalingLimited: whether the bounds or rates changed the stabilized count, and why.
    pub limited: bool,
    pub limit: Why,
}

/// What one HPA's past decisions were (kept in memory by the leader, as Kubernetes does).
#[derive(Debug, Clone, Default)]
pub struct History {
    recommendations: Vec<(i32, Timestamp)>,
    scale_ups: Vec<(i32, Timestamp)>,
    scale_downs: Vec<(i32, Timestamp)>,
}

fn before(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_sub(k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or_default()).unwrap_or(now)
}

fn changes_within(events: &[(i32, Timestamp)], period: Duration, now: Timestamp) -> i32 {
    let cutoff = before(now, period);
    events.iter().filter(|(_, at)| *at > cutoff).map(|(n, _)| n).sum()
}

const STABILIZED_DOWN: Why = why(
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const STABILIZED_UP: Why = why(
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const READY: Why = why("ReadyForNewScale", "recommended size matches current size");
const WITHIN_RANGE: Why = why("DesiredWithinRange", "the desired count is within the acceptable range");
const TOO_MANY: Why = why("TooManyReplicas", "the desired replica count is more than the maximum replica count");
const TOO_FEW: Why = why("TooFewReplicas", "the desired replica count is less than the minimum replica count");
const UP_LIMIT: Why = why("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate");
const DOWN_LIMIT: Why =
    why("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate");

/// Kubernetes' `calculateScaleUpLimitWithScalingRules` (`up`) and
/// `calculateScaleDownLimitWithBehaviors`: the same walk over the policies, mirrored. `Min`
/// selects the policy allowing the least change, `Max` the most.
fn scale_limit(
    up: bool,
    current: i32,
    ups: &[(i32, Timestamp)],
    downs: &[(i32, Timestamp)],
    r: &Rules,
    now: Timestamp,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match (r.select, up) {
        (Select::Disabled, _) => return current,
        (Select::Min, true) | (Select::Max, false) => (i32::MAX, i32::min),
        (Select::Max, true) | (Select::Min, false) => (i32::MIN, i32::max),
    };
    for p in &r.policies {
        let start = current - changes_within(ups, p.period, now) + changes_within(downs, p.period, now);
        let proposed = match (p.kind, up) {
            (PolicyKind::Pods, true) => start + p.value,
            (PolicyKind::Pods, false) => start - p.value,
            (PolicyKind::Percent, true) => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
            (PolicyKind::Percent, false) => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = pick(result, proposed);
    }
    result
}

impl History {
    /// Kubernetes' `recordInitialRecommendation`: the first recommendation is the current
    /// size, so a fresh HPA does not scale down before a window of observations.
    pub fn record_initial(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push((current, now));
        }
    }

    /// Adds a recommendation, reusing the slot of one older than `keep` (bounded memory).
    fn remember(&mut self, desired: i32, keep: Duration, now: Timestamp) {
        let obsolete = before(now, keep);
        match self.recommendations.iter().position(|(_, at)| *at < obsolete) {
            Some(i) => self.recommendations[i] = (desired, now),
            None => self.recommendations.push((desired, now)),
        }
    }

    /// The replica count to set, from `current` and the metrics' `desired`.
    #[allow(clippy::too_many_arguments)]
    pub fn normalize(
        &mut self,
        behavior: Option<&Behavior>,
        downscale_window: Duration,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: Timestamp,
    ) -> Normalized {
        match behavior {
            None => self.normalize_legacy(downscale_window, current, desired, min, max, now),
            Some(b) => self.normalize_with_behavior(b, current, desired, min, max, now),
        }
    }

    fn normalize_legacy(
        &mut self,
        window: Duration,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: Timestamp,
    ) -> Normalized {
        let cutoff = before(now, window);
        let stabilized =
            self.recommendations.iter().filter(|(_, at)| *at >= cutoff).map(|(r, _)| *r).fold(desired, i32::max);
        self.remember(desired, window, now);
        let able_to_scale = if stabilized != desired { STABILIZED_DOWN } else { READY };
        let up_limit = (2 * current).max(4);
        let (ceiling, ceiling_why) = if max > up_limit { (up_limit, UP_LIMIT) } else { (max, TOO_MANY) };
        let (replicas, limit) = if stabilized < min {
            (min, TOO_FEW)
        } else if stabilized > ceiling {
            (ceiling, ceiling_why)
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Normalized { replicas, able_to_scale, limited: replicas != stabilized, limit }
    }

    fn normalize_with_behavior(
        &mut self,
        b: &Behavior,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: Timestamp,
    ) -> Normalized {
        // Stabilization (`stabilizeRecommendationWithBehaviors`).
        let (window, pick, why_stabilized): (Duration, fn(i32, i32) -> i32, Why) = if desired >= current {
            (b.up.stabilization_window, i32::min, STABILIZED_UP)
        } else {
            (b.down.stabilization_window, i32::max, STABILIZED_DOWN)
        };
        let cutoff = before(now, window);
        let stabilized =
            self.recommendations.iter().filter(|(_, at)| *at > cutoff).map(|(r, _)| *r).fold(desired, pick);
        self.remember(desired, b.up.stabilization_window.max(b.down.stabilization_window), now);
        let able_to_scale = if stabilized != desired { why_stabilized } else { READY };
        // Rate limits and bounds (`convertDesiredReplicasWithBehaviorRate`).
        let (replicas, limit) = if stabilized > current {
            let rate = scale_limit(true, current, &self.scale_ups, &self.scale_downs, &b.up, now).max(current);
            let (ceiling, why) = if max > rate { (rate, UP_LIMIT) } else { (max, TOO_MANY) };
            if stabilized > ceiling {
                (ceiling, why)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else if stabilized < current {
            let rate = scale_limit(false, current, &self.scale_ups, &self.scale_downs, &b.down, now).min(current);
            let (floor, why) = if min < rate { (rate, DOWN_LIMIT) } else { (min, TOO_FEW) };
            if stabilized < floor {
                (floor, why)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Normalized { replicas, able_to_scale, limited: replicas != stabilized, limit }
    }

    /// Kubernetes' `storeScaleEvent`: remembers a rescale for the rate limits (only HPAs
    /// with `behavior` have them), forgetting events older than every policy's period.
    pub fn record_scale(&mut self, behavior: Option<&Behavior>, from: i32, to: i32, now: Timestamp) {
        let Some(b) = behavior else { return };
        let (events, rules, change) = if to > from {
            (&mut self.scale_ups, &b.up, to - from)
        } else {
            (&mut self.scale_downs, &b.down, from - to)
        };
        let longest = rules.policies.iter().map(|p| p.period).max().unwrap_or_default();
        let cutoff = before(now, longest);
        events.retain(|(_, at)| *at > cutoff);
        events.push((change, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn default_behavior(down_window_secs: i32) -> Behavior {
        let spec = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(down_window_secs),
                ..Default::default()
            }),
            scale_up: None,
        };
        behavior(Some(&spec), Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn defaults_fill_behavior() {
        let b = behavior(Some(&HorizontalPodAutoscalerBehavior::default()), Duration::from_secs(300)).unwrap();
        assert_eq!(b.down.stabilization_window, Duration::from_secs(300));
        assert_eq!(b.up.stabilization_window, Duration::ZERO);
        assert_eq!(b.up.policies.len(), 2);
        assert_eq!(b.down.select, Select::Max);
        assert!(behavior(None, Duration::from_secs(300)).is_none());
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let b = default_behavior(30);
        let mut h = History::default();
        h.record_initial(3, t(0));
        // Usage drops: the recommendation of 3 made at t=0 holds the count for 30 s.
        let n = h.normalize(Some(&b), Duration::ZERO, 3, 1, 1, 5, t(10));
        assert_eq!(n.replicas, 3);
        assert_eq!(n.able_to_scale, STABILIZED_DOWN);
        let n = h.normalize(Some(&b), Duration::ZERO, 3, 1, 1, 5, t(31));
        assert_eq!(n.replicas, 1, "the window passed");
        assert_eq!(n.able_to_scale, READY);
        assert!(!n.limited);
    }

    #[test]
    fn scale_up_is_immediate_but_rate_limited() {
        let b = default_behavior(300);
        let mut h = History::default();
        h.record_initial(1, t(0));
        // 1 → 20: at most max(1 + 4, 2 × 1) = 5 per 15 s.
        let n = h.normalize(Some(&b), Duration::ZERO, 1, 20, 1, 50, t(1));
        assert_eq!((n.replicas, n.limited, n.limit), (5, true, UP_LIMIT));
        h.record_scale(Some(&b), 1, 5, t(1));
        // Within the same 15 s the 4 already added count: the period started at 1 pod.
        assert_eq!(h.normalize(Some(&b), Duration::ZERO, 5, 20, 1, 50, t(5)).replicas, 5);
        // After the period: 5 → max(9, 10) = 10.
        assert_eq!(h.normalize(Some(&b), Duration::ZERO, 5, 20, 1, 50, t(20)).replicas, 10);
        // maxReplicas below the rate limit: TooManyReplicas.
        let n = h.normalize(Some(&b), Duration::ZERO, 5, 20, 1, 6, t(40));
        assert_eq!((n.replicas, n.limit), (6, TOO_MANY));
    }

    #[test]
    fn min_and_max_bound_the_count() {
        let b = default_behavior(0);
        let mut h = History::default();
        let n = h.normalize(Some(&b), Duration::ZERO, 3, 0, 2, 5, t(0));
        assert_eq!((n.replicas, n.limited, n.limit), (2, true, TOO_FEW));
        let n = h.normalize(Some(&b), Duration::ZERO, 3, 3, 2, 5, t(1));
        assert_eq!((n.replicas, n.limited, n.limit), (3, false, WITHIN_RANGE));
    }

    #[test]
    fn scale_down_policies_and_disabled() {
        let spec = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(0),
                policies: Some(vec![HPAScalingPolicy { type_: "Pods".into(), value: 1, period_seconds: 60 }]),
                select_policy: None,
                tolerance: None,
            }),
            scale_up: Some(HPAScalingRules { select_policy: Some("Disabled".into()), ..Default::default() }),
        };
        let b = behavior(Some(&spec), Duration::from_secs(300)).unwrap();
        let mut h = History::default();
        let n = h.normalize(Some(&b), Duration::ZERO, 5, 1, 1, 10, t(0));
        assert_eq!((n.replicas, n.limit), (4, DOWN_LIMIT));
        h.record_scale(Some(&b), 5, 4, t(0));
        assert_eq!(h.normalize(Some(&b), Duration::ZERO, 4, 1, 1, 10, t(30)).replicas, 4, "one pod per minute");
        assert_eq!(h.normalize(Some(&b), Duration::ZERO, 4, 1, 1, 10, t(61)).replicas, 3);
        assert_eq!(h.normalize(Some(&b), Duration::ZERO, 3, 9, 1, 10, t(62)).replicas, 3, "scale-up disabled");
    }

    #[test]
    fn legacy_rules_without_behavior() {
        let mut h = History::default();
        h.record_initial(4, t(0));
        let window = Duration::from_secs(300);
        let n = h.normalize(None, window, 4, 1, 1, 10, t(10));
        assert_eq!((n.replicas, n.able_to_scale.reason), (4, "ScaleDownStabilized"));
        assert_eq!(h.normalize(None, window, 4, 1, 1, 10, t(311)).replicas, 1);
        let n = h.normalize(None, window, 2, 30, 1, 100, t(312));
        assert_eq!((n.replicas, n.limit), (4, UP_LIMIT), "max(2 × 2, 4)");
    }
}
