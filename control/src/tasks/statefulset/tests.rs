//! Unit and property tests of the StatefulSet decision.

use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn set(replicas: i32, policy: &str, strategy: serde_json::Value) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 2},
        "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                 "selector": {"matchLabels": {"app": "web"}}, "updateStrategy": strategy,
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}
    }))
    .unwrap()
}

fn rolling(partition: i32) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Ready,
    Terminating,
    Failed,
}

/// Pod `web-<ordinal>` of `s` at `revision` in `state`.
fn member(s: &StatefulSet, ordinal: i32, revision: &str, state: State) -> Pod {
    let mut p = new_pod(s, &template(s), revision, ordinal);
    p.metadata.uid = Some(format!("uid-{ordinal}-{revision}"));
    p.metadata.owner_references.as_mut().unwrap()[0].uid = "sts-uid".into();
    p.metadata.creation_timestamp = Some(Time(t(ordinal.into())));
    if state == State::Terminating {
        p.metadata.deletion_timestamp = Some(Time(t(50)));
    }
    let (phase, ready) = match state {
        State::Pending => ("Pending", false),
        State::Ready | State::Terminating => ("Running", true),
        State::Failed => ("Failed", false),
    };
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(t(0))),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

fn created(plan: &StatefulSetPlan) -> Vec<&str> {
    plan.create.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
}

fn deleted(plan: &StatefulSetPlan) -> Vec<&str> {
    plan.delete.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn ordinals_parse_strictly() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    for bad in ["web-", "web-01", "web-x", "webx-1", "web-1-2", "web--1", "other-1"] {
        assert_eq!(ordinal_of("web", bad), None, "{bad}");
    }
}

#[test]
fn new_pods_carry_their_identity() {
    let s = set(3, "OrderedReady", rolling(0));
    let p = &plan_statefulset(&s, &Revisions::from_status(&s), &[], t(100)).create[0];
    assert_eq!(p.metadata.name.as_deref(), Some("web-0"));
    let spec = p.spec.as_ref().unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-0"), Some("nginx")));
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-0");
    assert_eq!(labels[POD_INDEX_LABEL], "0");
    assert_eq!(labels[CONTROLLER_REVISION_HASH], update_revision(&s));
    assert!(update_revision(&s).starts_with("web-"));
    // The first status write (collisionCount 0) does not change the revision.
    let mut written = s.clone();
    written.status = Some(plan_statefulset(&s, &Revisions::from_status(&s), &[], t(100)).status);
    assert_eq!(written.status.as_ref().unwrap().collision_count, Some(0));
    assert_eq!(update_revision(&written), update_revision(&s));
    assert_eq!(labels["app"], "web");
    assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].kind, "StatefulSet");
}

#[test]
fn ordered_ready_creates_one_at_a_time_and_waits_for_readiness() {
    let s = set(3, "OrderedReady", rolling(0));
    let rev = update_revision(&s);
    assert_eq!(created(&plan_statefulset(&s, &Revisions::from_status(&s), &[], t(100))), vec!["web-0"]);
    let p0 = member(&s, 0, &rev, State::Pending);
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&p0], t(100));
    assert!(plan.create.is_empty(), "web-1 waits for web-0 to be Ready");
    assert_eq!(plan.wait, Some(Wait::NotReady("web-0".into())));
    let p0 = member(&s, 0, &rev, State::Ready);
    assert_eq!(created(&plan_statefulset(&s, &Revisions::from_status(&s), &[&p0], t(100))), vec!["web-1"]);
    // A gap (web-1 missing while web-2 exists) is filled first.
    let p2 = member(&s, 2, &rev, State::Ready);
    assert_eq!(created(&plan_statefulset(&s, &Revisions::from_status(&s), &[&p0, &p2], t(100))), vec!["web-1"]);
    // minReadySeconds: ready is not enough until it has been ready that long.
    let mut s10 = s.clone();
    s10.spec.as_mut().unwrap().min_ready_seconds = Some(10);
    let plan = plan_statefulset(&s10, &Revisions::from_status(&s10), &[&p0], t(5));
    assert!(plan.create.is_empty());
    assert!(plan.requeue_after.is_some());
}

#[test]
fn parallel_creates_all_at_once() {
    let s = set(3, "Parallel", rolling(0));
    assert_eq!(
        created(&plan_statefulset(&s, &Revisions::from_status(&s), &[], t(100))),
        vec!["web-0", "web-1", "web-2"]
    );
    let p1 = member(&s, 1, &update_revision(&s), State::Pending);
    assert_eq!(created(&plan_statefulset(&s, &Revisions::from_status(&s), &[&p1], t(100))), vec!["web-0", "web-2"]);
}

#[test]
fn a_terminating_pod_is_never_replaced_while_it_exists() {
    for policy in ["OrderedReady", "Parallel"] {
        let s = set(2, policy, rolling(0));
        let rev = update_revision(&s);
        let p0 = member(&s, 0, &rev, State::Ready);
        let p1 = member(&s, 1, &rev, State::Terminating);
        let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&p0, &p1], t(100));
        assert!(plan.create.is_empty() && plan.delete.is_empty(), "{policy}");
        assert_eq!(plan.status.replicas, 1, "a terminating pod is not counted");
        // Once it is gone, it comes back under the same name.
        assert_eq!(
            created(&plan_statefulset(&s, &Revisions::from_status(&s), &[&p0], t(100))),
            vec!["web-1"],
            "{policy}"
        );
    }
}

#[test]
fn failed_pods_are_deleted_then_recreated() {
    let s = set(2, "OrderedReady", rolling(0));
    let rev = update_revision(&s);
    let p0 = member(&s, 0, &rev, State::Failed);
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&p0], t(100));
    assert_eq!(deleted(&plan), vec!["web-0"]);
    assert_eq!(plan.recreate, vec!["web-0".to_string()]);
    assert!(plan.create.is_empty(), "not while the failed pod still exists");
}

#[test]
fn scale_down_removes_the_highest_ordinal_first() {
    let s = set(1, "OrderedReady", rolling(0));
    let rev = update_revision(&s);
    let pods: Vec<Pod> = (0..3).map(|o| member(&s, o, &rev, State::Ready)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    assert_eq!(deleted(&plan_statefulset(&s, &Revisions::from_status(&s), &refs, t(100))), vec!["web-2"]);
    // web-2 terminating: web-1 waits.
    let p2 = member(&s, 2, &rev, State::Terminating);
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&pods[0], &pods[1], &p2], t(100));
    assert!(plan.delete.is_empty());
    assert_eq!(plan.wait, Some(Wait::Terminating("web-2".into())));
    assert_eq!(
        deleted(&plan_statefulset(&s, &Revisions::from_status(&s), &[&pods[0], &pods[1]], t(100))),
        vec!["web-1"]
    );
    // Parallel: all condemned at once.
    let s = set(1, "Parallel", rolling(0));
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &refs, t(100));
    let mut all = deleted(&plan);
    all.sort();
    assert_eq!(all, vec!["web-1", "web-2"]);
}

#[test]
fn rolling_update_goes_down_to_the_partition_one_at_a_time() {
    let old = set(4, "OrderedReady", rolling(2));
    let old_rev = update_revision(&old);
    let mut s = old.clone();
    s.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
    s.status = Some(StatefulSetStatus { current_revision: Some(old_rev.clone()), ..Default::default() });
    let new_rev = update_revision(&s);
    assert_ne!(old_rev, new_rev);
    let mut pods: Vec<Pod> = (0..4).map(|o| member(&old, o, &old_rev, State::Ready)).collect();
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &pods.iter().collect::<Vec<_>>(), t(100));
    assert_eq!(deleted(&plan), vec!["web-3"], "highest ordinal first");
    assert_eq!(plan.status.current_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(plan.status.update_revision.as_deref(), Some(new_rev.as_str()));
    // web-3 gone: recreated at the new revision.
    pods.pop();
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &pods.iter().collect::<Vec<_>>(), t(100));
    assert_eq!(created(&plan), vec!["web-3"]);
    assert_eq!(pod_revision(&plan.create[0]), Some(new_rev.as_str()));
    assert_eq!(plan.create[0].spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:2"));
    // web-3 new but not ready: web-2 waits.
    pods.push(member(&s, 3, &new_rev, State::Pending));
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &pods.iter().collect::<Vec<_>>(), t(100));
    assert!(plan.delete.is_empty() && plan.create.is_empty());
    pods[3] = member(&s, 3, &new_rev, State::Ready);
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &pods.iter().collect::<Vec<_>>(), t(100));
    assert_eq!(deleted(&plan), vec!["web-2"]);
    pods[2] = member(&s, 2, &new_rev, State::Ready);
    // Below the partition nothing changes.
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &pods.iter().collect::<Vec<_>>(), t(100));
    assert!(plan.delete.is_empty() && plan.create.is_empty());
    assert_eq!((plan.status.current_replicas, plan.status.updated_replicas), (Some(2), Some(2)));
    assert_eq!(plan.status.current_revision.as_deref(), Some(old_rev.as_str()));
    // A deleted pod below the partition comes back at the current (old) revision.
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&pods[1], &pods[2], &pods[3]], t(100));
    assert_eq!(created(&plan), vec!["web-0"]);
    assert_eq!(pod_revision(&plan.create[0]), Some(old_rev.as_str()));
    assert_eq!(plan.create[0].spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:1"));
    assert!(plan.create[0].spec.as_ref().unwrap().node_name.is_none());
    // Partition 0: the rest follows, and the rollout completes.
    s.spec.as_mut().unwrap().update_strategy = serde_json::from_value(rolling(0)).unwrap();
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &pods.iter().collect::<Vec<_>>(), t(100));
    assert_eq!(deleted(&plan), vec!["web-1"]);
    let all: Vec<Pod> = (0..4).map(|o| member(&s, o, &new_rev, State::Ready)).collect();
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &all.iter().collect::<Vec<_>>(), t(100));
    assert_eq!(plan.status.current_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!((plan.status.replicas, plan.status.ready_replicas, plan.status.current_replicas), (4, Some(4), Some(4)));
}

#[test]
fn the_current_revision_comes_from_its_controller_revision() {
    let old = set(3, "OrderedReady", rolling(2));
    let mut s = old.clone();
    s.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
    let new_rev = update_revision(&s);
    let p2 = member(&s, 2, &new_rev, State::Ready);
    // No live pod of the current revision is left: its template comes from the revision.
    let revisions =
        Revisions { update: new_rev.clone(), current: "web-old".into(), current_template: Some(template(&old)) };
    let plan = plan_statefulset(&s, &revisions, &[&p2], t(100));
    assert_eq!(created(&plan), vec!["web-0"]);
    assert_eq!(pod_revision(&plan.create[0]), Some("web-old"));
    assert_eq!(plan.create[0].spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:1"));
    assert_eq!(plan.status.update_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!(plan.live_revisions, BTreeSet::from([new_rev.clone()]));
    // Without one (a revision recorded before Berth kept ControllerRevisions), a live pod
    // of that revision stands in.
    let mut p1 = member(&old, 1, "web-old", State::Ready);
    p1.spec.as_mut().unwrap().containers[0].image = Some("nginx:0".into());
    let revisions = Revisions { current_template: None, ..revisions };
    let plan = plan_statefulset(&s, &revisions, &[&p1, &p2], t(100));
    assert_eq!(plan.create[0].spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:0"));
    assert_eq!(plan.live_revisions, BTreeSet::from([new_rev, "web-old".to_string()]));
    // Neither: the update revision.
    let plan = plan_statefulset(&s, &revisions, &[&p2], t(100));
    assert_eq!(plan.create[0].spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:2"));
}

#[test]
fn pods_carry_the_update_revision_the_history_names() {
    // A rollback reused an old revision whose name is not the template's hash (e.g. it was
    // adopted): pods are created at, and counted as, that revision.
    let s = set(1, "OrderedReady", rolling(0));
    let revisions = Revisions { update: "web-adopted".into(), current: "web-adopted".into(), current_template: None };
    let plan = plan_statefulset(&s, &revisions, &[], t(100));
    assert_eq!(pod_revision(&plan.create[0]), Some("web-adopted"));
    let p0 = member(&s, 0, "web-adopted", State::Ready);
    let plan = plan_statefulset(&s, &revisions, &[&p0], t(100));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.update_revision.as_deref(), Some("web-adopted"));
    assert_eq!(plan.status.updated_replicas, Some(1));
    // While the set is deleted, the status keeps naming the revisions it named.
    let mut deleting = s.clone();
    deleting.metadata.deletion_timestamp = Some(Time(t(90)));
    deleting.status = Some(plan.status.clone());
    let plan = plan_statefulset(&deleting, &Revisions::from_status(&deleting), &[&p0], t(100));
    assert_eq!(plan.status.update_revision.as_deref(), Some("web-adopted"));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
}

#[test]
fn on_delete_only_replaces_deleted_pods() {
    let old = set(2, "OrderedReady", json!({"type": "OnDelete"}));
    let old_rev = update_revision(&old);
    let mut s = old.clone();
    s.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
    s.status = Some(StatefulSetStatus { current_revision: Some(old_rev.clone()), ..Default::default() });
    let p0 = member(&old, 0, &old_rev, State::Ready);
    let p1 = member(&old, 1, &old_rev, State::Ready);
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&p0, &p1], t(100));
    assert!(plan.delete.is_empty() && plan.create.is_empty());
    let plan = plan_statefulset(&s, &Revisions::from_status(&s), &[&p1], t(100));
    assert_eq!(created(&plan), vec!["web-0"]);
    assert_eq!(pod_revision(&plan.create[0]), Some(update_revision(&s).as_str()));
}

/// A pod state for the property test.
fn arb_state() -> impl Strategy<Value = Option<State>> {
    prop_oneof![
        Just(None),
        Just(Some(State::Pending)),
        Just(Some(State::Ready)),
        Just(Some(State::Terminating)),
        Just(Some(State::Failed)),
    ]
}

proptest! {
    /// Whatever pods exist: never create a name that exists; OrderedReady creates at most one
    /// pod, only when every lower ordinal is Ready, and never deletes while creating; all
    /// creations are within the desired ordinals.
    #[test]
    fn never_two_pods_per_identity(
        states in proptest::collection::vec(arb_state(), 0..7),
        replicas in 0i32..6,
        parallel in any::<bool>(),
    ) {
        let s = set(replicas, if parallel { "Parallel" } else { "OrderedReady" }, rolling(0));
        let rev = update_revision(&s);
        let pods: Vec<Pod> = states.iter().enumerate()
            .filter_map(|(o, st)| st.map(|st| member(&s, o as i32, &rev, st))).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan_statefulset(&s, &Revisions::from_status(&s), &refs, t(100));
        let existing: Vec<&str> = pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        for name in created(&plan) {
            prop_assert!(!existing.contains(&name), "created {} which exists", name);
            let ordinal = ordinal_of("web", name).unwrap();
            prop_assert!(ordinal < replicas);
        }
        if !parallel {
            prop_assert!(plan.create.len() <= 1);
            prop_assert!(plan.create.is_empty() || plan.delete.is_empty());
            prop_assert!(plan.delete.len() <= 1);
            if let Some(p) = plan.create.first() {
                let ordinal = ordinal_of("web", p.metadata.name.as_deref().unwrap()).unwrap();
                for lower in 0..ordinal {
                    let pod = pods.iter().find(|p| ordinal_of("web", p.metadata.name.as_deref().unwrap()) == Some(lower));
                    prop_assert!(pod.is_some_and(|p| running_and_ready(p) && !is_terminating(p)),
                        "web-{} created before web-{} was Ready", ordinal, lower);
                }
            }
        }
    }
}
