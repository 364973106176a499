//! Unit and property tests of the ReplicaSet decision.

use super::*;
use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::SignedDuration;
use proptest::prelude::*;
use std::collections::HashSet;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
    let labels: std::collections::BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(min_ready),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec::default()),
            }),
        }),
        status: None,
    }
}

#[derive(Debug, Clone)]
struct P {
    name: String,
    owned: bool,
    node: bool,
    phase: &'static str,
    ready_at: Option<i64>,
    restarts: i32,
    created: i64,
    deleting: bool,
}

fn pod(p: &P) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{}", p.name)),
            resource_version: Some("7".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            creation_timestamp: Some(Time(t(p.created))),
            deletion_timestamp: p.deleting.then(|| Time(t(0))),
            owner_references: p.owned.then(|| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web".into(),
                    uid: "rs-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        },
        spec: Some(PodSpec { node_name: p.node.then(|| "n1".to_string()), ..Default::default() }),
        status: Some(PodStatus {
            phase: Some(p.phase.into()),
            conditions: p.ready_at.map(|at| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t(at))),
                    ..Default::default()
                }]
            }),
            container_statuses: Some(vec![ContainerStatus { restart_count: p.restarts, ..Default::default() }]),
            ..Default::default()
        }),
    }
}

fn running(name: &str, created: i64) -> P {
    P {
        name: name.into(),
        owned: true,
        node: true,
        phase: "Running",
        ready_at: Some(created + 1),
        restarts: 0,
        created,
        deleting: false,
    }
}

#[test]
fn creates_missing_pods_and_computes_status() {
    let pods = [pod(&running("a", 0))];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = reconcile_replicaset(&rs(3, 0), &refs, true, t(100));
    assert_eq!(plan.create, 2);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.status.replicas, 1);
    assert_eq!(plan.status.ready_replicas, Some(1));
    assert_eq!(plan.status.available_replicas, Some(1));
    assert_eq!(plan.status.fully_labeled_replicas, Some(1));
    assert_eq!(plan.status.observed_generation, Some(2));
}

#[test]
fn does_not_manage_while_expectations_are_pending() {
    let plan = reconcile_replicaset(&rs(3, 0), &[], false, t(0));
    assert_eq!(plan.create, 0);
}

#[test]
fn creation_is_bounded_by_the_burst() {
    let plan = reconcile_replicaset(&rs(2000, 0), &[], true, t(0));
    assert_eq!(plan.create, BURST_REPLICAS);
}

#[test]
fn deletes_the_least_valuable_pods_first() {
    let mut unassigned = running("unassigned", 0);
    unassigned.node = false;
    let mut pending = running("pending", 0);
    pending.phase = "Pending";
    pending.ready_at = None;
    let mut not_ready = running("not-ready", 0);
    not_ready.ready_at = None;
    let mut restarting = running("restarting", 0);
    restarting.restarts = 5;
    let newer = running("newer", 50);
    let oldest = running("oldest", 0);
    let ps = [oldest, newer, restarting, not_ready, pending, unassigned];
    let pods: Vec<Pod> = ps.iter().map(pod).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = reconcile_replicaset(&rs(1, 0), &refs, true, t(100));
    let names: Vec<&str> = plan.delete.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["unassigned", "pending", "not-ready", "newer", "restarting"]);
}

#[test]
fn deleting_pods_are_replaced_and_not_available() {
    let mut going = running("going", 0);
    going.deleting = true;
    let pods = [pod(&going), pod(&running("b", 0))];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = reconcile_replicaset(&rs(2, 0), &refs, true, t(100));
    assert_eq!(plan.create, 1);
    assert_eq!(plan.status.replicas, 1);
    assert_eq!(plan.status.available_replicas, Some(1));
}

#[test]
fn adopts_orphans_and_releases_mismatches() {
    let mut orphan = running("orphan", 0);
    orphan.owned = false;
    let mut stray = pod(&running("stray", 0));
    stray.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let pods = [pod(&orphan), stray];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = reconcile_replicaset(&rs(1, 0), &refs, true, t(100));
    assert_eq!(plan.adopt.len(), 1);
    assert_eq!(plan.adopt[0].name, "orphan");
    assert_eq!(plan.adopt[0].resource_version.as_deref(), Some("7"));
    assert_eq!(plan.adopt[0].owner_references[0].uid, "rs-uid");
    assert_eq!(plan.release.len(), 1);
    assert!(plan.release[0].owner_references.is_empty());
    assert_eq!(plan.create, 0, "the adopted pod counts");
    assert_eq!(plan.status.replicas, 1);
}

#[test]
fn min_ready_seconds_delays_availability_and_requeues() {
    let pods = [pod(&running("a", 95))]; // ready at 96
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = reconcile_replicaset(&rs(1, 10), &refs, true, t(100));
    assert_eq!(plan.status.ready_replicas, Some(1));
    assert_eq!(plan.status.available_replicas, Some(0));
    let after = plan.requeue_after.expect("requeued for availability");
    assert!(after >= Duration::from_secs(6) && after <= Duration::from_secs(7), "{after:?}");
    let later = reconcile_replicaset(&rs(1, 10), &refs, true, t(100) + SignedDuration::from_secs(7));
    assert_eq!(later.status.available_replicas, Some(1));
}

#[test]
fn new_pods_carry_the_template_and_a_controller_reference() {
    let p = new_pod(&rs(1, 0));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("ReplicaSet", Some(true), Some(true))
    );
}

fn arb_pod(i: usize) -> impl Strategy<Value = P> {
    (
        any::<bool>(),
        any::<bool>(),
        0..3usize,
        proptest::option::of(0..100i64),
        0..4i32,
        0..100i64,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(owned, node, phase, ready_at, restarts, created, deleting, finished)| P {
            name: format!("p{i}"),
            owned,
            node,
            phase: if finished { "Succeeded" } else { ["Pending", "Unknown", "Running"][phase] },
            ready_at,
            restarts,
            created,
            deleting,
        })
}

fn arb_pods() -> impl Strategy<Value = Vec<P>> {
    (0..12usize).prop_flat_map(|n| (0..n).map(arb_pod).collect::<Vec<_>>())
}

proptest! {
    /// After the plan is carried out, exactly `replicas` active pods are owned; deleted pods
    /// are never "better" (by ActivePods order) than kept ones; status counts are consistent.
    #[test]
    fn converges_in_one_step(pods in arb_pods(), replicas in 0..10i32) {
        let objs: Vec<Pod> = pods.iter().map(pod).collect();
        let refs: Vec<&Pod> = objs.iter().collect();
        let now = t(200);
        let plan = reconcile_replicaset(&rs(replicas, 0), &refs, true, now);
        let active: Vec<&Pod> = refs.iter().copied().filter(|p| ownership::pod_is_active(p)).collect();
        let deleted: HashSet<&str> = plan.delete.iter().map(|p| p.name.as_str()).collect();
        let after = active.len() + plan.create - deleted.len();
        prop_assert_eq!(after, replicas as usize);
        prop_assert!(plan.create == 0 || deleted.is_empty());
        for d in &deleted {
            let dp = active.iter().find(|p| p.metadata.name.as_deref() == Some(*d)).expect("deletes only active pods");
            for kept in active.iter().filter(|p| !deleted.contains(p.metadata.name.as_deref().unwrap())) {
                prop_assert_ne!(deletion_order(dp, kept), Ordering::Greater);
            }
        }
        let s = &plan.status;
        prop_assert_eq!(s.replicas as usize, active.len());
        prop_assert!(s.available_replicas <= s.ready_replicas);
        prop_assert!(s.ready_replicas.unwrap() <= s.replicas);
    }

    /// The deletion order is a total preorder (sorting never panics and is consistent).
    #[test]
    fn deletion_order_is_antisymmetric(a in arb_pod(0), b in arb_pod(1)) {
        let (pa, pb) = (pod(&a), pod(&b));
        prop_assert_eq!(deletion_order(&pa, &pb), deletion_order(&pb, &pa).reverse());
    }
}
