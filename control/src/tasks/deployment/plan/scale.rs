//! Scaling without a rollout (Kubernetes' `sync` and `scale`): a changed replica count is
//! spread over the active ReplicaSets in proportion to their size; also the primitive that
//! resizes one ReplicaSet.

use super::*;

/// Kubernetes' `GetProportion`: how many replicas `rs` gets of `to_add`, given `added`
/// already handed out.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `getReplicaSetFraction`: `rs`'s share of the new size, by the size it had
/// relative to the Deployment's previous maximum (its max-replicas annotation).
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let desired = desired_replicas(d);
    if desired == 0 {
        return -spec_replicas(rs);
    }
    let deployment_max = desired + max_surge(d);
    let annotated = int_annotation(&rs.metadata, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(spec_replicas(rs)) * f64::from(deployment_max) / f64::from(annotated);
    size.round() as i32 - spec_replicas(rs)
}

impl Sync<'_> {
    /// Kubernetes' `scaleReplicaSet`: sets size and replica annotations; true when the size
    /// changed.
    pub(super) fn scale_rs(&mut self, i: usize, new_scale: i32, operation: &str) -> bool {
        let desired = desired_replicas(self.d);
        let max = desired + max_surge(self.d);
        let old_scale = spec_replicas(&self.rses[i]);
        let resize = old_scale != new_scale;
        if !resize && !replicas_annotations_need_update(&self.rses[i], desired, max) {
            return false;
        }
        let rs = &mut self.rses[i];
        set_spec_replicas(rs, new_scale);
        set_replicas_annotations(rs, desired, max);
        self.dirty.insert(i);
        if resize {
            let name = rs.metadata.name.clone().unwrap_or_default();
            self.events.push((
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {operation} replica set {name} from {old_scale} to {new_scale}"),
            ));
        }
        resize
    }

    /// Kubernetes' `scaleReplicaSetAndRecordEvent`.
    pub(super) fn scale_rs_and_record(&mut self, i: usize, new_scale: i32) -> bool {
        let current = spec_replicas(&self.rses[i]);
        if current == new_scale {
            return false;
        }
        let operation = if current < new_scale { "up" } else { "down" };
        self.scale_rs(i, new_scale, operation)
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    pub(super) fn is_scaling_event(&mut self) -> bool {
        self.get_all(false);
        let desired = desired_replicas(self.d);
        self.active(&self.all_indices())
            .iter()
            .any(|i| int_annotation(&self.rses[*i].metadata, DESIRED_REPLICAS).is_some_and(|n| n != desired))
    }

    /// Kubernetes' `sync`: scaling (proportional), and history cleanup while paused.
    pub(super) fn sync_scale(&mut self) {
        self.get_all(false);
        self.scale();
        if is_paused(self.d) {
            self.cleanup();
        }
        self.sync_status();
    }

    /// Kubernetes' `scale`.
    fn scale(&mut self) {
        let desired = desired_replicas(self.d);
        if let Some(i) = self.active_or_latest() {
            if spec_replicas(&self.rses[i]) != desired {
                self.scale_rs_and_record(i, desired);
            }
            return;
        }
        if let Some(new) = self.new {
            if self.is_saturated(new) {
                for i in self.active(&self.old_indices()) {
                    self.scale_rs_and_record(i, 0);
                }
                return;
            }
        }
        if !is_rolling(self.d) {
            return;
        }
        let mut all = self.active(&self.all_indices());
        let current = self.sum(&all, spec_replicas);
        let allowed = if desired > 0 { desired + max_surge(self.d) } else { 0 };
        let to_add = allowed - current;
        let operation = match to_add.cmp(&0) {
            Ordering::Greater => {
                // Larger first; among equals, newer first.
                all.sort_by(|a, b| {
                    let (x, y) = (&self.rses[*a], &self.rses[*b]);
                    spec_replicas(y).cmp(&spec_replicas(x)).then_with(|| by_creation(y, x, self.now))
                });
                "up"
            }
            Ordering::Less => {
                // Larger first; among equals, older first.
                all.sort_by(|a, b| {
                    let (x, y) = (&self.rses[*a], &self.rses[*b]);
                    spec_replicas(y).cmp(&spec_replicas(x)).then_with(|| by_creation(x, y, self.now))
                });
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        for i in &all {
            let rs = &self.rses[*i];
            if to_add != 0 {
                let p = proportion(rs, self.d, to_add, added);
                sizes.push(spec_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(spec_replicas(rs));
            }
        }
        for (n, i) in all.iter().enumerate() {
            if n == 0 && to_add != 0 {
                // Leftovers go to the largest ReplicaSet.
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_rs(*i, sizes[n], operation);
        }
    }

    /// Kubernetes' `FindActiveOrLatest`: the only active ReplicaSet, or the newest when
    /// none is active; None when several are active.
    fn active_or_latest(&self) -> Option<usize> {
        if self.rses.is_empty() {
            return None;
        }
        let active = self.active(&self.all_indices());
        match active.len() {
            0 => self.new.or_else(|| self.old_indices().last().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    /// Kubernetes' `IsSaturated`.
    pub(super) fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.rses[i];
        let desired = desired_replicas(self.d);
        spec_replicas(rs) == desired
            && int_annotation(&rs.metadata, DESIRED_REPLICAS) == Some(desired)
            && status_available(rs) == desired
    }
}
