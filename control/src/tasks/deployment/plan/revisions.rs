//! Revisions: the ReplicaSet of the current template (found, or created with the next
//! revision), the Deployment's and ReplicaSets' revision and replica annotations, and the
//! cleanup of old ReplicaSets beyond `revisionHistoryLimit`.

use super::*;

fn annotations_mut(rs: &mut ReplicaSet) -> &mut BTreeMap<String, String> {
    rs.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

fn skipped_annotation(key: &str) -> bool {
    [LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO].contains(&key)
}

/// Kubernetes' `SetReplicasAnnotations`; true when something changed.
pub(super) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = annotations_mut(rs);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

pub(super) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(&rs.metadata, DESIRED_REPLICAS) != Some(desired)
        || int_annotation(&rs.metadata, MAX_REPLICAS) != Some(max)
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises
/// the revision (recording the previous one in the revision history when re-used by a
/// rollback), and on creation sets the replica annotations. True when something changed.
fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    if let Some(da) = d.metadata.annotations.as_ref() {
        let a = annotations_mut(rs);
        for (k, v) in da {
            if !skipped_annotation(k) && a.get(k) != Some(v) {
                a.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    let a = annotations_mut(rs);
    let old = a.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(r) => match r.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_revision < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            let mut total = history.len() + old.len() + 1;
            while total > MAX_REVISION_HISTORY_CHARS && !revisions.is_empty() {
                total -= revisions.remove(0).len() + 1;
            }
            revisions.push(&old);
            let joined = revisions.join(",");
            a.insert(REVISION_HISTORY.into(), joined);
        }
    }
    if !exists {
        let desired = desired_replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
}

impl Sync<'_> {
    fn set_revision(&mut self, revision: &str) {
        if self.annotations.get(REVISION).map(String::as_str) != Some(revision) {
            self.annotations.insert(REVISION.into(), revision.into());
        }
    }

    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: finds the ReplicaSet of the current
    /// template (or creates it when `create`), syncing revisions and annotations.
    pub(super) fn get_all(&mut self, create: bool) {
        let tmpl = template(self.d);
        if self.new.is_none() {
            // The oldest ReplicaSet with this template (Kubernetes' `FindNewReplicaSet`).
            self.new = self.rses.iter().position(|rs| {
                rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &tmpl))
            });
        }
        let max_old = self.old_indices().iter().map(|i| revision(&self.rses[*i])).max().unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new {
            let mut rs = self.rses[i].clone();
            let annotated = set_new_rs_annotations(self.d, &mut rs, new_revision, true);
            let min_ready = min_ready_seconds(self.d);
            let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
            if annotated || min_ready_changed {
                rs.spec.get_or_insert_with(Default::default).min_ready_seconds = min_ready;
                self.rses[i] = rs;
                self.dirty.insert(i);
            }
            let revision = annotation(&self.rses[i].metadata, REVISION).unwrap_or_default().to_string();
            self.set_revision(&revision);
            if progress_deadline(self.d).is_some() && condition(&self.status, PROGRESSING).is_none() {
                let name = self.rses[i].metadata.name.clone().unwrap_or_default();
                let msg = format!("Found new replica set {name:?}");
                set_condition(&mut self.status, new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.now));
            }
            return;
        }
        if !create {
            return;
        }
        let hash = compute_hash(&tmpl, self.status.collision_count);
        let mut rs_template = tmpl.clone();
        rs_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.metadata.name.as_deref().unwrap_or_default());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                labels: rs_template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![ownership::controller_ref("apps/v1", "Deployment", &self.d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready_seconds(self.d),
                selector,
                template: Some(rs_template),
            }),
            status: None,
        };
        set_new_rs_annotations(self.d, &mut rs, new_revision, false);
        self.rses.push(rs);
        let i = self.rses.len() - 1;
        self.new = Some(i);
        self.created = Some(i);
        let count = self.new_rs_new_replicas(i);
        set_spec_replicas(&mut self.rses[i], count);
        if count > 0 {
            self.events.push((
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {count}"),
            ));
        }
        self.set_revision(&new_revision.to_string());
        if progress_deadline(self.d).is_some() {
            let msg = format!("Created new replica set {name:?}");
            set_condition(&mut self.status, new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg, self.now));
        }
    }

    /// Kubernetes' `cleanupDeployment`: old ReplicaSets beyond revisionHistoryLimit,
    /// lowest revision first, only when fully scaled down and observed so.
    pub(super) fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).filter(|l| *l != i32::MAX) else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| Some(*i) != self.created && !ownership::is_deleting(&self.rses[*i].metadata))
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| {
            let (x, y) = (&self.rses[*a], &self.rses[*b]);
            revision(x).cmp(&revision(y)).then_with(|| by_creation(x, y, self.now))
        });
        for &i in cleanable.iter().take(excess as usize) {
            let rs = &self.rses[i];
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || self.dirty.contains(&i)
            {
                continue;
            }
            self.delete.push(Removal {
                name: rs.metadata.name.clone().unwrap_or_default(),
                uid: rs.metadata.uid.clone(),
                resource_version: rs.metadata.resource_version.clone(),
            });
        }
    }
}
