//! kubectl's Deployment and ReplicaSet describers.

use serde_json::Value;

use super::pod::{controlled_by, describe_pod_template, int_or_string};
use super::writer::{arr, format_label_selector, i, s, Prefix, LEVEL_0, LEVEL_1};
use super::{describe_events, Related};
use crate::cmd::rollout::deployutil;

/// `describeDeployment`. `related.replica_sets` are the Deployment's own ReplicaSets.
pub fn describe_deployment(w: &mut Prefix, d: &Value, related: &Related) {
    let meta = &d["metadata"];
    let spec = &d["spec"];
    let status = &d["status"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    let created = w.clock.time_field(&meta["creationTimestamp"]);
    w.write(LEVEL_0, &format!("CreationTimestamp:\t{created}\n"));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    w.write(LEVEL_0, &format!("Selector:\t{}\n", format_label_selector(&spec["selector"])));
    w.write(
        LEVEL_0,
        &format!(
            "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable\n",
            spec["replicas"].as_i64().unwrap_or(1),
            i(&status["updatedReplicas"]),
            i(&status["replicas"]),
            i(&status["availableReplicas"]),
            i(&status["unavailableReplicas"])
        ),
    );
    w.write(LEVEL_0, &format!("StrategyType:\t{}\n", s(&spec["strategy"]["type"])));
    w.write(LEVEL_0, &format!("MinReadySeconds:\t{}\n", i(&spec["minReadySeconds"])));
    let ru = &spec["strategy"]["rollingUpdate"];
    if !ru.is_null() {
        w.write(
            LEVEL_0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
                int_or_string(&ru["maxUnavailable"]),
                int_or_string(&ru["maxSurge"])
            ),
        );
    }
    describe_pod_template(w, &spec["template"]);
    let conditions = arr(&status["conditions"]);
    if !conditions.is_empty() {
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(LEVEL_1, "----\t------\t------\n");
        for c in conditions {
            w.write(LEVEL_1, &format!("{} \t{}\t{}\n", s(&c["type"]), s(&c["status"]), s(&c["reason"])));
        }
    }
    let (old, new) = deployutil::split_replica_sets(d, &related.replica_sets);
    if !old.is_empty() || new.is_some() {
        w.write(LEVEL_0, &format!("OldReplicaSets:\t{}\n", replica_sets_by_labels(&old)));
        w.write(
            LEVEL_0,
            &format!("NewReplicaSet:\t{}\n", replica_sets_by_labels(&new.into_iter().collect::<Vec<_>>())),
        );
    }
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// `printReplicaSetsByLabels`: `name (current/desired replicas created), …` or `<none>`.
fn replica_sets_by_labels(list: &[&Value]) -> String {
    if list.is_empty() {
        return "<none>".into();
    }
    list.iter()
        .map(|rs| {
            format!(
                "{} ({}/{} replicas created)",
                s(&rs["metadata"]["name"]),
                i(&rs["status"]["replicas"]),
                rs["spec"]["replicas"].as_i64().unwrap_or(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `describeReplicaSet`. `related.pods` are the pods its selector matches.
pub fn describe_replica_set(w: &mut Prefix, rs: &Value, related: &Related) {
    let meta = &rs["metadata"];
    let spec = &rs["spec"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    w.write(LEVEL_0, &format!("Selector:\t{}\n", format_label_selector(&spec["selector"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    if let Some(controller) = controlled_by(meta) {
        w.write(LEVEL_0, &format!("Controlled By:\t{controller}\n"));
    }
    w.write(
        LEVEL_0,
        &format!(
            "Replicas:\t{} current / {} desired\n",
            i(&rs["status"]["replicas"]),
            spec["replicas"].as_i64().unwrap_or(1)
        ),
    );
    let (running, waiting, succeeded, failed) = pod_phase_counts(s(&meta["uid"]), &related.pods);
    w.write(LEVEL_0, "Pods Status:\t");
    w.write(LEVEL_0, &format!("{running} Running / {waiting} Waiting / {succeeded} Succeeded / {failed} Failed\n"));
    describe_pod_template(w, &spec["template"]);
    let conditions = arr(&rs["status"]["conditions"]);
    if !conditions.is_empty() {
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(LEVEL_1, "----\t------\t------\n");
        for c in conditions {
            w.write(LEVEL_1, &format!("{} \t{}\t{}\n", s(&c["type"]), s(&c["status"]), s(&c["reason"])));
        }
    }
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// `getPodStatusForController`: phases of the pods whose controller is `uid`.
fn pod_phase_counts(uid: &str, pods: &[Value]) -> (usize, usize, usize, usize) {
    let mut counts = (0, 0, 0, 0);
    for pod in pods {
        let owned = arr(&pod["metadata"]["ownerReferences"])
            .iter()
            .any(|r| r["controller"].as_bool() == Some(true) && s(&r["uid"]) == uid);
        if !owned {
            continue;
        }
        match s(&pod["status"]["phase"]) {
            "Running" => counts.0 += 1,
            "Pending" => counts.1 += 1,
            "Succeeded" => counts.2 += 1,
            "Failed" => counts.3 += 1,
            _ => {}
        }
    }
    counts
}
