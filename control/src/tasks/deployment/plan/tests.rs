//! Unit tests of the Deployment plan, and property tests that drive whole rollouts through
//! a small simulator (planner, ReplicaSet controllers, pods turning ready, with the
//! ReplicaSet controllers lagging arbitrarily) and check the bounds at every step.

use super::hash::SAFE_ALPHABET;
use super::*;
use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod_template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "web")])), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
            ..Default::default()
        }),
    }
}

fn ios(s: &str) -> IntOrString {
    match s.parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(s.into()),
    }
}

fn deployment(replicas: i32, image: &str, surge: &str, unavailable: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            resource_version: Some("10".into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() },
            template: pod_template(image),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(ios(surge)),
                    max_unavailable: Some(ios(unavailable)),
                }),
            }),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

fn recreate(mut d: Deployment) -> Deployment {
    d.spec.as_mut().unwrap().strategy =
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    d
}

/// A ReplicaSet as this Deployment's controller would have made it for `image`.
fn owned_rs(d: &Deployment, image: &str, replicas: i32, available: i32, revision: i64, created: i64) -> ReplicaSet {
    let mut copy = d.clone();
    copy.spec.as_mut().unwrap().template = pod_template(image);
    let mut sync = Sync::new(&copy, vec![], &EMPTY_PODS, t(created));
    sync.get_all(true);
    let mut rs = sync.rses.pop().unwrap();
    rs.metadata.uid = Some(format!("uid-{image}"));
    rs.metadata.resource_version = Some("5".into());
    rs.metadata.generation = Some(1);
    rs.metadata.creation_timestamp = Some(Time(t(created)));
    rs.metadata.annotations.as_mut().unwrap().insert(REVISION.into(), revision.to_string());
    set_spec_replicas(&mut rs, replicas);
    rs.status = Some(ReplicaSetStatus {
        replicas,
        ready_replicas: Some(available),
        available_replicas: Some(available),
        observed_generation: Some(1),
        ..Default::default()
    });
    rs
}

static EMPTY_PODS: std::sync::LazyLock<HashMap<String, usize>> = std::sync::LazyLock::new(HashMap::new);

fn plan(d: &Deployment, rses: &[ReplicaSet], now: Timestamp) -> DeploymentPlan {
    let refs: Vec<&ReplicaSet> = rses.iter().collect();
    plan_deployment(d, &refs, &EMPTY_PODS, now)
}

#[test]
fn hash_is_stable_safe_and_changes_with_collisions() {
    let a = compute_hash(&pod_template("nginx:1"), None);
    assert_eq!(a, compute_hash(&pod_template("nginx:1"), None));
    assert_ne!(a, compute_hash(&pod_template("nginx:2"), None));
    assert_ne!(a, compute_hash(&pod_template("nginx:1"), Some(1)));
    assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
    // Go renders FNV's u32 in decimal: at most ten characters.
    assert!(!a.is_empty() && a.len() <= 10);
    let mut hashed = pod_template("nginx:1");
    hashed.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), a);
    assert!(equal_ignore_hash(&hashed, &pod_template("nginx:1")));
    assert!(!equal_ignore_hash(&hashed, &pod_template("nginx:2")));
}

#[test]
fn fenceposts_round_surge_up_and_unavailability_down() {
    let cases = [
        (("25%", "25%", 10), (3, 2)),
        (("25%", "25%", 1), (1, 0)),
        (("0", "0", 5), (0, 1)),
        (("0%", "0%", 5), (0, 1)),
        (("1", "0", 3), (1, 0)),
        (("100%", "100%", 3), (3, 3)),
        (("50%", "33%", 7), (4, 2)),
    ];
    for ((surge, unavailable, desired), want) in cases {
        let got = resolve_fenceposts(Some(&ios(surge)), Some(&ios(unavailable)), desired);
        assert_eq!(got, want, "{surge} {unavailable} of {desired}");
    }
    assert_eq!(max_unavailable(&deployment(2, "x", "0", "5")), 2, "never more than desired");
    assert_eq!(max_surge(&recreate(deployment(2, "x", "0", "1"))), 0);
}

#[test]
fn a_new_deployment_creates_its_replica_set() {
    let d = deployment(3, "nginx:1", "25%", "25%");
    let p = plan(&d, &[], t(0));
    let rs = p.create.expect("a new replica set");
    let hash = compute_hash(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(rs.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH], hash);
    let tmpl_labels = spec.template.as_ref().unwrap().metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(tmpl_labels[POD_TEMPLATE_HASH], hash);
    assert_eq!(rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH], hash);
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!((a[REVISION].as_str(), a[DESIRED_REPLICAS].as_str(), a[MAX_REPLICAS].as_str()), ("1", "3", "4"));
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Deployment", Some(true)));
    assert_eq!(p.annotations.unwrap()[REVISION], "1");
    assert!(p
        .events
        .iter()
        .any(|(_, r, m)| *r == "ScalingReplicaSet" && *m == format!("Scaled up replica set web-{hash} from 0 to 3")));
    let status = p.status.unwrap();
    let progressing = condition(&status, PROGRESSING).unwrap();
    assert_eq!(progressing.reason.as_deref(), Some(NEW_RS_CREATED));
    assert_eq!(condition(&status, AVAILABLE).unwrap().reason.as_deref(), Some(MIN_UNAVAILABLE));
}

#[test]
fn a_template_change_starts_a_rolling_update_within_bounds() {
    // 4 replicas, surge 1, unavailable 1: new gets 1, old goes to 3.
    let d = deployment(4, "nginx:2", "1", "1");
    let old = owned_rs(&d, "nginx:1", 4, 4, 1, 0);
    let p = plan(&d, &[old], t(10));
    assert_eq!(p.create.as_ref().unwrap().spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(p.create.as_ref().unwrap().metadata.annotations.as_ref().unwrap()[REVISION], "2");
    assert_eq!(p.update.len(), 1);
    assert_eq!(p.update[0].spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(p.update[0].metadata.resource_version.as_deref(), Some("5"), "pinned to the read version");
}

#[test]
fn rollback_reuses_the_old_replica_set_and_bumps_its_revision() {
    // Revision 1 ran nginx:1, revision 2 runs nginx:2; the template goes back to nginx:1.
    let d = deployment(2, "nginx:1", "25%", "25%");
    let first = owned_rs(&d, "nginx:1", 0, 0, 1, 0);
    let second = owned_rs(&d, "nginx:2", 2, 2, 2, 5);
    let p = plan(&d, &[first.clone(), second], t(10));
    assert!(p.create.is_none(), "no new replica set");
    let reused = p.update.iter().find(|rs| rs.metadata.name == first.metadata.name).expect("the old one updated");
    let a = reused.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[REVISION], "3");
    assert_eq!(a[REVISION_HISTORY], "1");
    assert_eq!(reused.spec.as_ref().unwrap().replicas, Some(1), "scaled up within maxSurge");
    assert_eq!(p.annotations.unwrap()[REVISION], "3");
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // Mid-rollout at 10 replicas (maxSurge 3): new 8, old 5, both sized for max 13.
    let mut d = deployment(20, "nginx:2", "3", "2");
    d.spec.as_mut().unwrap().strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().max_surge =
        Some(IntOrString::String("25%".into()));
    let mut old = owned_rs(&d, "nginx:1", 5, 5, 1, 0);
    let mut new = owned_rs(&d, "nginx:2", 8, 3, 2, 5);
    for rs in [&mut old, &mut new] {
        set_replicas_annotations(rs, 10, 13);
    }
    let p = plan(&d, &[old.clone(), new.clone()], t(10));
    let size = |name: &Option<String>| {
        p.update.iter().find(|r| &r.metadata.name == name).unwrap().spec.as_ref().unwrap().replicas.unwrap()
    };
    // allowed 20 + 5 = 25, 12 to add: new round(8*25/13)=15, old round(5*25/13)=10.
    assert_eq!(size(&new.metadata.name), 15);
    assert_eq!(size(&old.metadata.name), 10);
    assert!(p.events.iter().any(|(_, _, m)| m.starts_with("Scaled up replica set")));
}

#[test]
fn paused_deployments_scale_but_do_not_roll() {
    let mut d = deployment(6, "nginx:2", "1", "1");
    d.spec.as_mut().unwrap().paused = Some(true);
    let mut old = owned_rs(&d, "nginx:1", 3, 3, 1, 0);
    set_replicas_annotations(&mut old, 3, 4);
    let p = plan(&d, &[old], t(10));
    assert!(p.create.is_none(), "no rollout while paused");
    assert_eq!(p.update[0].spec.as_ref().unwrap().replicas, Some(6));
    let status = p.status.unwrap();
    assert_eq!(condition(&status, PROGRESSING).unwrap().reason.as_deref(), Some(PAUSED));
}

#[test]
fn no_progress_past_the_deadline_is_reported() {
    let mut d = deployment(2, "nginx:2", "1", "0");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(5);
    let old = owned_rs(&d, "nginx:1", 2, 2, 1, 0);
    let new = owned_rs(&d, "nginx:2", 1, 0, 2, 1);
    let mut status = DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(3),
        updated_replicas: Some(1),
        ready_replicas: Some(2),
        available_replicas: Some(2),
        unavailable_replicas: Some(1),
        ..Default::default()
    };
    set_condition(&mut status, new_condition(PROGRESSING, "True", RS_UPDATED, "x".into(), t(1)));
    set_condition(&mut status, new_condition(AVAILABLE, "True", MIN_AVAILABLE, "y".into(), t(1)));
    d.status = Some(status);
    let before = plan(&d, &[old.clone(), new.clone()], t(3));
    assert!(before.status.is_none(), "nothing changed yet");
    let after = before.requeue_after.expect("requeued for the deadline");
    assert!(after > Duration::from_secs(2) && after < Duration::from_secs(5), "{after:?}");
    let late = plan(&d, &[old, new], t(7));
    let status = late.status.expect("timed out");
    let cond = condition(&status, PROGRESSING).unwrap();
    assert_eq!((cond.status.as_str(), cond.reason.as_deref()), ("False", Some(TIMED_OUT)));
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_revision_first() {
    let mut d = deployment(1, "nginx:9", "1", "0");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let current = owned_rs(&d, "nginx:9", 1, 1, 9, 50);
    let olds: Vec<ReplicaSet> = (1..=3).map(|i| owned_rs(&d, &format!("nginx:{i}"), 0, 0, i, i)).collect();
    let mut all = olds.clone();
    all.push(current);
    let mut status = DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        updated_replicas: Some(1),
        available_replicas: Some(1),
        ..Default::default()
    };
    set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "x".into(), t(1)));
    d.status = Some(status);
    let p = plan(&d, &all, t(60));
    let deleted: Vec<&str> = p.delete.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(deleted, [olds[0].metadata.name.as_deref().unwrap(), olds[1].metadata.name.as_deref().unwrap()]);
}

#[test]
fn recreate_waits_for_old_pods_before_creating() {
    let d = recreate(deployment(3, "nginx:2", "0", "1"));
    let old = owned_rs(&d, "nginx:1", 3, 3, 1, 0);
    let p = plan(&d, std::slice::from_ref(&old), t(5));
    assert!(p.create.is_none());
    assert_eq!(p.update[0].spec.as_ref().unwrap().replicas, Some(0));
    // Scaled to zero, status caught up, but a pod is still there.
    let mut drained = old.clone();
    set_spec_replicas(&mut drained, 0);
    drained.status = Some(ReplicaSetStatus { replicas: 0, observed_generation: Some(1), ..Default::default() });
    let live: HashMap<String, usize> = [("uid-nginx:1".to_string(), 1)].into();
    let p = plan_deployment(&d, &[&drained], &live, t(6));
    assert!(p.create.is_none(), "an old pod still runs");
    let p = plan_deployment(&d, &[&drained], &HashMap::new(), t(7));
    assert_eq!(p.create.unwrap().spec.unwrap().replicas, Some(3));
}

// ---------------------------------------------------------------------------------------
// The rollout simulator.

#[derive(Debug, Clone)]
struct SimPod {
    ready: bool,
    id: u64,
}

#[derive(Debug)]
struct Sim {
    d: Deployment,
    rses: Vec<(ReplicaSet, Vec<SimPod>)>,
    clock: i64,
    next_id: u64,
    surge: i32,
    unavailable: i32,
    /// Pods of this image never become ready.
    broken_image: Option<String>,
}

fn image_of(rs: &ReplicaSet) -> String {
    let t = rs.spec.as_ref().unwrap().template.as_ref().unwrap();
    t.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

impl Sim {
    fn new(replicas: i32, surge: &str, unavailable: &str, rolling: bool, broken_new: bool) -> Sim {
        let mut d = deployment(replicas, "v2", surge, unavailable);
        if !rolling {
            d = recreate(d);
        }
        d.metadata.generation = Some(2);
        let mut old = owned_rs(&d, "v1", replicas, replicas, 1, 0);
        set_replicas_annotations(&mut old, replicas, replicas + max_surge(&d));
        let pods = (0..replicas).map(|i| SimPod { ready: true, id: i as u64 }).collect();
        let (surge, unavailable) = (max_surge(&d), max_unavailable(&d));
        Sim {
            d,
            rses: vec![(old, pods)],
            clock: 10,
            next_id: 1000,
            surge,
            unavailable,
            broken_image: broken_new.then(|| "v2".to_string()),
        }
    }

    fn replicas(&self) -> i32 {
        desired_replicas(&self.d)
    }

    fn planner(&mut self) {
        self.clock += 1;
        let refs: Vec<&ReplicaSet> = self.rses.iter().map(|(rs, _)| rs).collect();
        let live: HashMap<String, usize> =
            self.rses.iter().map(|(rs, pods)| (rs.metadata.uid.clone().unwrap(), pods.len())).collect();
        let p = plan_deployment(&self.d, &refs, &live, t(self.clock));
        assert!(p.adopt.is_empty() && p.release.is_empty());
        if let Some(mut rs) = p.create {
            rs.metadata.uid = Some(format!("uid-{}", self.clock));
            rs.metadata.creation_timestamp = Some(Time(t(self.clock)));
            rs.metadata.generation = Some(1);
            self.rses.push((rs, vec![]));
        }
        for updated in p.update {
            let (rs, _) = self.rses.iter_mut().find(|(rs, _)| rs.metadata.name == updated.metadata.name).unwrap();
            if rs.spec != updated.spec {
                rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
            }
            rs.spec = updated.spec;
            rs.metadata.annotations = updated.metadata.annotations;
        }
        for removal in p.delete {
            let i = self.rses.iter().position(|(rs, _)| rs.metadata.name.as_ref() == Some(&removal.name)).unwrap();
            assert!(self.rses[i].1.is_empty(), "deleted a replica set with pods");
            self.rses.remove(i);
        }
        if let Some(a) = p.annotations {
            self.d.metadata.annotations = Some(a);
        }
        if let Some(s) = p.status {
            self.d.status = Some(s);
        }
        self.check();
    }

    /// One ReplicaSet controller sync: converge pods to spec, then write status.
    fn rs_controller(&mut self, i: usize) {
        let Some((rs, pods)) = self.rses.get_mut(i) else { return };
        let want = spec_replicas(rs) as usize;
        while pods.len() < want {
            pods.push(SimPod { ready: false, id: self.next_id });
            self.next_id += 1;
        }
        if pods.len() > want {
            // ActivePods order: not-ready first, then newer first.
            pods.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.id)));
            pods.drain(..pods.len() - want);
        }
        let ready = pods.iter().filter(|p| p.ready).count() as i32;
        rs.status = Some(ReplicaSetStatus {
            replicas: pods.len() as i32,
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            observed_generation: rs.metadata.generation,
            ..Default::default()
        });
        self.check();
    }

    fn make_ready(&mut self, mask: u32) {
        let mut bit = 0;
        for (rs, pods) in &mut self.rses {
            let broken = self.broken_image.as_deref() == Some(image_of(rs).as_str());
            for p in pods.iter_mut() {
                if !broken && mask & (1 << (bit % 32)) != 0 {
                    p.ready = true;
                }
                bit += 1;
            }
        }
        self.check();
    }

    fn check(&self) {
        let total: i32 = self.rses.iter().map(|(_, p)| p.len() as i32).sum();
        let ready: i32 = self.rses.iter().map(|(_, p)| p.iter().filter(|p| p.ready).count() as i32).sum();
        let r = self.replicas();
        if is_rolling(&self.d) {
            assert!(total <= r + self.surge, "{total} pods > {r} + surge {}: {:#?}", self.surge, self.rses);
            assert!(ready >= r - self.unavailable, "{ready} ready < {r} - {}: {:#?}", self.unavailable, self.rses);
        } else {
            let images: BTreeSet<String> =
                self.rses.iter().filter(|(_, p)| !p.is_empty()).map(|(rs, _)| image_of(rs)).collect();
            assert!(images.len() <= 1, "Recreate ran old and new pods together: {images:?}");
            assert!(total <= r);
        }
    }

    fn pods_of(&self, image: &str) -> (usize, usize) {
        self.rses
            .iter()
            .filter(|(rs, _)| image_of(rs) == image)
            .fold((0, 0), |(n, ready), (_, pods)| (n + pods.len(), ready + pods.iter().filter(|p| p.ready).count()))
    }
}

fn fenceposts_strategy() -> impl Strategy<Value = (String, String)> {
    let value = prop_oneof![(0..4i32).prop_map(|n| n.to_string()), (0..=4i32).prop_map(|q| format!("{}%", q * 25))];
    (value.clone(), value)
}

/// One step of an unfair schedule: which parts run, and which pods turn ready.
fn step_strategy() -> impl Strategy<Value = (bool, bool, bool, u32)> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<u32>())
}

fn run_sim(sim: &mut Sim, schedule: &[(bool, bool, bool, u32)]) {
    for &(plan, old_rs, new_rs, ready) in schedule {
        if plan {
            sim.planner();
        }
        if old_rs {
            sim.rs_controller(0);
        }
        if new_rs {
            for i in 1..sim.rses.len() {
                sim.rs_controller(i);
            }
        }
        sim.make_ready(ready);
    }
    // Then a fair schedule: everything runs, every pod that can turn ready does.
    for _ in 0..200 {
        sim.planner();
        for i in 0..sim.rses.len() {
            sim.rs_controller(i);
        }
        sim.make_ready(u32::MAX);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// RollingUpdate: at every step, pods ≤ replicas + maxSurge and ready pods ≥ replicas −
    /// maxUnavailable; the rollout ends with every pod updated and the Deployment complete.
    #[test]
    fn rolling_update_keeps_bounds_and_completes(
        replicas in 1..8i32,
        (surge, unavailable) in fenceposts_strategy(),
        schedule in proptest::collection::vec(step_strategy(), 0..40),
    ) {
        let mut sim = Sim::new(replicas, &surge, &unavailable, true, false);
        run_sim(&mut sim, &schedule);
        prop_assert_eq!(sim.pods_of("v2"), (replicas as usize, replicas as usize));
        prop_assert_eq!(sim.pods_of("v1").0, 0);
        let status = sim.d.status.clone().unwrap();
        prop_assert!(deployment_complete(&sim.d, &status));
        prop_assert_eq!(condition(&status, PROGRESSING).unwrap().reason.as_deref(), Some(NEW_RS_AVAILABLE));
        prop_assert_eq!(sim.d.metadata.annotations.as_ref().unwrap()[REVISION].as_str(), "2");
    }

    /// A rollout whose new pods never become ready stops at the bounds and keeps enough old
    /// pods serving.
    #[test]
    fn a_broken_rollout_stops_at_the_bounds(
        replicas in 1..8i32,
        (surge, unavailable) in fenceposts_strategy(),
        schedule in proptest::collection::vec(step_strategy(), 0..30),
    ) {
        let mut sim = Sim::new(replicas, &surge, &unavailable, true, true);
        run_sim(&mut sim, &schedule);
        let (old, old_ready) = sim.pods_of("v1");
        prop_assert!(old_ready as i32 >= replicas - sim.unavailable);
        prop_assert_eq!(old, old_ready);
        prop_assert_eq!(sim.pods_of("v2").1, 0);
    }

    /// Recreate: never old and new pods at once, and it completes.
    #[test]
    fn recreate_never_overlaps_and_completes(
        replicas in 1..8i32,
        schedule in proptest::collection::vec(step_strategy(), 0..30),
    ) {
        let mut sim = Sim::new(replicas, "0", "1", false, false);
        run_sim(&mut sim, &schedule);
        prop_assert_eq!(sim.pods_of("v2"), (replicas as usize, replicas as usize));
        prop_assert_eq!(sim.pods_of("v1").0, 0);
    }
}
