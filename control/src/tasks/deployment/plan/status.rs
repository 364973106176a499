//! The Deployment's status: its conditions (Progressing, Available, paused), the replica
//! counts, and the progress deadline (`syncRolloutStatus`, `requeueStuckDeployment`).

use super::*;

pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: same status and reason → unchanged; same status →
/// keeps the transition time.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
    }
}

/// Kubernetes' `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = desired_replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Kubernetes' `DeploymentProgressing`: any sign of progress since the last status.
fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Time left before the progress deadline counted from `cond`'s last update (negative
/// once it has passed).
fn deadline_left(cond: &DeploymentCondition, deadline_seconds: i32, now: Timestamp) -> Option<SignedDuration> {
    let from = cond.last_update_time.as_ref()?.0;
    Some((from + SignedDuration::from_secs(deadline_seconds.into())).duration_since(now))
}

impl Sync<'_> {
    /// Kubernetes' `checkPausedConditions`.
    pub(super) fn check_paused_conditions(&mut self) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let cond = condition(&self.status, PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return;
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        if is_paused(self.d) && !paused_cond {
            let c = new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), self.now);
            set_condition(&mut self.status, c);
        } else if !is_paused(self.d) && paused_cond {
            let c = new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), self.now);
            set_condition(&mut self.status, c);
        }
    }

    /// Kubernetes' `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all_indices();
        let available = self.sum(&all, status_available);
        let total = self.sum(&all, spec_replicas);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(self.sum(&all, status_replicas)),
            updated_replicas: Some(self.new.map_or(0, |i| status_replicas(&self.rses[i]))),
            ready_replicas: Some(self.sum(&all, status_ready)),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let cond = if available >= desired_replicas(self.d) - max_unavailable(self.d) {
            new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.".into(), self.now)
        } else {
            let msg = "Deployment does not have minimum availability.".into();
            new_condition(AVAILABLE, "False", MIN_UNAVAILABLE, msg, self.now)
        };
        set_condition(&mut status, cond);
        status
    }

    /// Kubernetes' `syncDeploymentStatus` (scaling and paused syncs: no progress estimate).
    pub(super) fn sync_status(&mut self) {
        self.status = self.calculate_status();
    }

    /// Kubernetes' `syncRolloutStatus`: counts, plus the Progressing condition.
    pub(super) fn sync_rollout_status(&mut self) {
        let mut new_status = self.calculate_status();
        let deadline = progress_deadline(self.d);
        if deadline.is_none() {
            remove_condition(&mut new_status, PROGRESSING);
        }
        let old = self.d.status.clone().unwrap_or_default();
        let current = condition(&self.status, PROGRESSING).cloned();
        let complete_already = new_status.replicas == new_status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        let new_name = self.new.map(|i| self.rses[i].metadata.name.clone().unwrap_or_default());
        let d_name = self.d.metadata.name.clone().unwrap_or_default();
        let subject = match &new_name {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!("Deployment {d_name:?}"),
        };
        if let (Some(seconds), false) = (deadline, complete_already) {
            if deployment_complete(self.d, &new_status) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(&mut new_status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, self.now));
            } else if deployment_progressing(&old, &new_status) {
                let msg = format!("{subject} is progressing.");
                let mut cond = new_condition(PROGRESSING, "True", RS_UPDATED, msg, self.now);
                // Same reason again still refreshes lastUpdateTime: that is what progress is.
                if let Some(c) = &current {
                    if c.status == "True" {
                        cond.last_transition_time = c.last_transition_time.clone();
                    }
                    remove_condition(&mut new_status, PROGRESSING);
                }
                set_condition(&mut new_status, cond);
            } else if self.timed_out(&new_status, seconds) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(&mut new_status, new_condition(PROGRESSING, "False", TIMED_OUT, msg, self.now));
            }
        }
        if new_status == old {
            self.requeue_after = self.requeue_stuck(&new_status);
        }
        self.status = new_status;
    }

    /// Kubernetes' `DeploymentTimedOut`.
    fn timed_out(&self, status: &DeploymentStatus, seconds: i32) -> bool {
        let Some(cond) = condition(status, PROGRESSING) else { return false };
        match cond.reason.as_deref() {
            Some(NEW_RS_AVAILABLE) => false,
            Some(TIMED_OUT) => true,
            _ => deadline_left(cond, seconds, self.now).is_some_and(|left| left.is_negative()),
        }
    }

    /// Kubernetes' `requeueStuckDeployment`: when to check the progress deadline again.
    fn requeue_stuck(&self, status: &DeploymentStatus) -> Option<Duration> {
        let seconds = progress_deadline(self.d)?;
        let current = condition(self.d.status.as_ref()?, PROGRESSING)?;
        if deployment_complete(self.d, status) || current.reason.as_deref() == Some(TIMED_OUT) {
            return None;
        }
        let left = deadline_left(current, seconds, self.now)?.max(SignedDuration::ZERO);
        // Timestamps have one-second resolution: look a little after the deadline.
        Some(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(1100))
    }
}
