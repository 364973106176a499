//! The rollout strategies: RollingUpdate (surge the new ReplicaSet, shrink old ones within
//! maxUnavailable) and Recreate (old ones to zero, wait for their pods, then the new one).

use super::*;

impl Sync<'_> {
    /// Kubernetes' `NewRSNewReplicas`.
    pub(super) fn new_rs_new_replicas(&self, new: usize) -> i32 {
        let desired = desired_replicas(self.d);
        let current = spec_replicas(&self.rses[new]);
        if !is_rolling(self.d) {
            return desired;
        }
        let max_total = desired + max_surge(self.d);
        let pods = self.sum(&self.all_indices(), pods_upper_bound);
        if pods >= max_total {
            return current;
        }
        current + (max_total - pods).min(desired - current).max(0)
    }

    /// Kubernetes' `rolloutRolling`.
    pub(super) fn rollout_rolling(&mut self) {
        self.get_all(true);
        let new = self.new.expect("get_all(true) yields a new ReplicaSet");
        if self.reconcile_new_rs(new) || self.reconcile_old_rses(new) {
            return self.sync_rollout_status();
        }
        if deployment_complete(self.d, &self.status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `reconcileNewReplicaSet`.
    fn reconcile_new_rs(&mut self, new: usize) -> bool {
        let desired = desired_replicas(self.d);
        let current = spec_replicas(&self.rses[new]);
        match current.cmp(&desired) {
            Ordering::Equal => false,
            Ordering::Greater => self.scale_rs_and_record(new, desired),
            Ordering::Less => {
                let count = self.new_rs_new_replicas(new);
                self.scale_rs_and_record(new, count)
            }
        }
    }

    /// Kubernetes' `reconcileOldReplicaSets`.
    fn reconcile_old_rses(&mut self, new: usize) -> bool {
        let old = self.active(&self.old_indices());
        if self.sum(&old, spec_replicas) == 0 {
            return false;
        }
        let all_pods = self.sum(&self.all_indices(), spec_replicas);
        let min_available = desired_replicas(self.d) - max_unavailable(self.d);
        let new_rs = &self.rses[new];
        let new_unavailable = (spec_replicas(new_rs) - available_lower_bound(new_rs)).max(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(&old, max_scaled_down);
        let scaled = self.scale_down_old_for_rolling(&old);
        cleaned + scaled > 0
    }

    /// Kubernetes' `cleanupUnhealthyReplicas`: shrink old ReplicaSets by their unavailable
    /// pods first (they cost no availability and would block the rollout).
    fn cleanup_unhealthy(&mut self, old: &[usize], max_cleanup: i32) -> i32 {
        let mut total = 0;
        for &i in old {
            if total >= max_cleanup {
                break;
            }
            let rs = &self.rses[i];
            let replicas = spec_replicas(rs);
            let unhealthy = replicas - available_lower_bound(rs);
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let count = (max_cleanup - total).min(unhealthy);
            self.scale_rs_and_record(i, replicas - count);
            total += count;
        }
        total
    }

    /// Kubernetes' `scaleDownOldReplicaSetsForRollingUpdate`.
    fn scale_down_old_for_rolling(&mut self, old: &[usize]) -> i32 {
        let min_available = desired_replicas(self.d) - max_unavailable(self.d);
        let available = self.sum(&self.all_indices(), available_lower_bound);
        if available <= min_available {
            return 0;
        }
        let budget = available - min_available;
        let mut total = 0;
        for &i in old {
            if total >= budget {
                break;
            }
            let replicas = spec_replicas(&self.rses[i]);
            if replicas == 0 {
                continue;
            }
            let count = replicas.min(budget - total);
            self.scale_rs_and_record(i, replicas - count);
            total += count;
        }
        total
    }

    /// Kubernetes' `rolloutRecreate`: old to zero, wait for their pods to be gone, then the
    /// new ReplicaSet at full size.
    pub(super) fn rollout_recreate(&mut self) {
        self.get_all(false);
        let mut scaled_down = false;
        for i in self.active(&self.old_indices()) {
            scaled_down |= self.scale_rs_and_record(i, 0);
        }
        if scaled_down || self.old_pods_running() {
            return self.sync_rollout_status();
        }
        if self.new.is_none() {
            self.get_all(true);
        }
        let new = self.new.expect("get_all(true) yields a new ReplicaSet");
        self.scale_rs_and_record(new, desired_replicas(self.d));
        if deployment_complete(self.d, &self.status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `oldPodsRunning`.
    fn old_pods_running(&self) -> bool {
        let old = self.old_indices();
        if self.sum(&old, status_replicas) > 0 {
            return true;
        }
        old.iter().any(|i| {
            let uid = self.rses[*i].metadata.uid.as_deref().unwrap_or_default();
            self.live_pods.get(uid).copied().unwrap_or(0) > 0
        })
    }
}
