//! maxSurge and maxUnavailable: Kubernetes' `GetScaledValueFromIntOrPercent`,
//! `ResolveFenceposts`, `MaxSurge` and `MaxUnavailable`.

use super::*;

/// Kubernetes' `GetScaledValueFromIntOrPercent`: a count, or a percentage of `total`
/// rounded up or down.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%') {
            Some(p) => {
                let percent: i64 = p.trim().parse().unwrap_or(0);
                let scaled = percent * i64::from(total);
                let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
                v as i32
            }
            None => s.trim().parse().unwrap_or(0),
        },
    }
}

/// Kubernetes' `ResolveFenceposts`: (maxSurge, maxUnavailable) for `desired` replicas;
/// surge rounds up, unavailability down, and both 0 becomes unavailability 1 (a rollout
/// must be able to make progress).
pub fn resolve_fenceposts(surge: Option<&IntOrString>, unavailable: Option<&IntOrString>, desired: i32) -> (i32, i32) {
    let surge = scaled_value(surge, desired, true).max(0);
    let unavailable = scaled_value(unavailable, desired, false).max(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = ru.map_or(Some(&default), |r| r.max_surge.as_ref());
    let unavailable = ru.map_or(Some(&default), |r| r.max_unavailable.as_ref());
    resolve_fenceposts(surge, unavailable, desired_replicas(d))
}

/// Kubernetes' `MaxSurge`.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// Kubernetes' `MaxUnavailable` (never more than the desired replicas).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = desired_replicas(d);
    if !is_rolling(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}
