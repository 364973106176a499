//! The ReplicaSet and Deployment controllers on a 3-server in-process cluster, with a
//! kubelet simulator making pods Running and Ready: create, scale, rolling update with
//! the surge/unavailability bounds checked at every observation, rollback with the real
//! `kubectl rollout undo`, pause/resume, a rollout that never becomes ready (stops at the
//! bound, then ProgressDeadlineExceeded), and a leader killed mid-rollout.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_control::testing::kubelet::{KubeletSim, NEVER_READY};
use berth_control::testing::Cluster;
use berth_testkit::eventually;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "default";
const TIMEOUT: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: i32, image: &str, surge: i32, unavailable: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }))
    .unwrap()
}

fn is_ready(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn hash_of(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")).cloned().unwrap_or_default()
}

fn revision(rs: &ReplicaSet) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get("deployment.kubernetes.io/revision").cloned()
}

fn image_of(rs: &ReplicaSet) -> String {
    let t = rs.spec.as_ref().unwrap().template.as_ref().unwrap();
    t.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

struct Workload {
    name: String,
    deployments: Api<Deployment>,
    replicasets: Api<ReplicaSet>,
    pods: Api<Pod>,
}

/// What one observation saw.
struct Seen {
    pods: Vec<Pod>,
    ready: usize,
}

impl Workload {
    fn new(client: kube::Client, name: &str) -> Workload {
        Workload {
            name: name.into(),
            deployments: Api::namespaced(client.clone(), NS),
            replicasets: Api::namespaced(client.clone(), NS),
            pods: Api::namespaced(client, NS),
        }
    }

    async fn observe(&self) -> Option<Seen> {
        let lp = ListParams::default().labels(&format!("app={}", self.name));
        let pods: Vec<Pod> = self.pods.list(&lp).await.ok()?.items;
        let pods: Vec<Pod> = pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        Some(Seen { pods, ready })
    }

    async fn replica_sets(&self) -> Vec<ReplicaSet> {
        let lp = ListParams::default().labels(&format!("app={}", self.name));
        self.replicasets.list(&lp).await.map(|l| l.items).unwrap_or_default()
    }

    async fn get(&self) -> Option<Deployment> {
        self.deployments.get(&self.name).await.ok()
    }

    async fn patch(&self, patch: serde_json::Value) {
        self.deployments.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    /// Waits until the Deployment is complete at its current generation: `replicas` ready
    /// pods, all of the current template. With `bounds`, asserts at every observation that
    /// pods ≤ replicas + maxSurge and ready ≥ replicas − maxUnavailable.
    async fn rolled_out(&self, replicas: usize, bounds: Option<(usize, usize)>) -> String {
        eventually(TIMEOUT, &format!("{} rolled out to {replicas}", self.name), || async {
            let seen = self.observe().await?;
            if let Some((surge, unavailable)) = bounds {
                assert!(seen.pods.len() <= replicas + surge, "{} pods > {replicas} + {surge}", seen.pods.len());
                assert!(seen.ready + unavailable >= replicas, "{} ready < {replicas} - {unavailable}", seen.ready);
            }
            let d = self.get().await?;
            let status = d.status.as_ref()?;
            let complete = status.observed_generation >= d.metadata.generation
                && status.updated_replicas == Some(replicas as i32)
                && status.replicas == Some(replicas as i32)
                && status.available_replicas == Some(replicas as i32);
            let hashes: BTreeSet<String> = seen.pods.iter().map(hash_of).collect();
            (complete && seen.pods.len() == replicas && seen.ready == replicas && hashes.len() == 1)
                .then(|| hashes.into_iter().next().unwrap())
        })
        .await
    }
}

/// The leader task creates the system namespaces shortly after the cluster starts.
async fn default_namespace(client: &kube::Client) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    eventually(TIMEOUT, "the default namespace", || async { namespaces.get_opt(NS).await.ok().flatten() }).await;
}

fn kubectl(api_url: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, berth_control::testing::kubeconfig(api_url)).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir)
        .output()
        .expect("kubectl on PATH");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_create_scale_roll_back_pause_and_resume() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    default_namespace(&client).await;
    let _kubelet = KubeletSim::start(vec![client.clone()], NS);
    let w = Workload::new(client.clone(), "web");
    w.deployments.create(&PostParams::default(), &deployment("web", 3, "nginx:1", 1, 1)).await.unwrap();

    // Created: three pods owned by one ReplicaSet the Deployment controls.
    let first_hash = w.rolled_out(3, None).await;
    let rses = w.replica_sets().await;
    assert_eq!(rses.len(), 1);
    let rs = &rses[0];
    assert_eq!(rs.metadata.name.as_deref(), Some(format!("web-{first_hash}").as_str()));
    assert_eq!(revision(rs).as_deref(), Some("1"));
    let d = w.get().await.unwrap();
    let rs_owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((rs_owner.kind.as_str(), Some(&rs_owner.uid)), ("Deployment", d.metadata.uid.as_ref()));
    let annotations = d.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "1");
    for pod in w.observe().await.unwrap().pods {
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
            ("ReplicaSet", Some(true), Some(true))
        );
        assert_eq!(Some(&owner.uid), rs.metadata.uid.as_ref());
        assert!(pod.metadata.name.as_deref().unwrap().starts_with(&format!("web-{first_hash}-")));
    }
    let conds = d.status.as_ref().unwrap().conditions.as_ref().unwrap();
    let available = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("True", Some("MinimumReplicasAvailable")));

    // Scale up through the scale subresource, then down.
    let scale = json!({"spec": {"replicas": 5}});
    w.deployments.patch_scale("web", &PatchParams::default(), &Patch::Merge(&scale)).await.unwrap();
    w.rolled_out(5, None).await;
    w.patch(json!({"spec": {"replicas": 4}})).await;
    w.rolled_out(4, None).await;

    // Rolling update, bounds checked at every observation.
    w.patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})).await;
    let second_hash = w.rolled_out(4, Some((1, 1))).await;
    assert_ne!(first_hash, second_hash);
    let rses = w.replica_sets().await;
    assert_eq!(rses.len(), 2);
    let old = rses.iter().find(|rs| image_of(rs) == "nginx:1").unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    let new = rses.iter().find(|rs| image_of(rs) == "nginx:2").unwrap();
    assert_eq!(revision(new).as_deref(), Some("2"));
    let annotations = new.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["deployment.kubernetes.io/desired-replicas"], "4");
    assert_eq!(annotations["deployment.kubernetes.io/max-replicas"], "5");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), NS);
    eventually(TIMEOUT, "ScalingReplicaSet events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let scaled = format!("Scaled up replica set web-{second_hash} from 0 to 1");
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet") && e.message.as_deref() == Some(&scaled))
            .then_some(())
    })
    .await;

    // kubectl rollout undo --to-revision=1: the revision-1 ReplicaSet comes back as revision 3.
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.servers[0].api_url.clone();
    let out = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || kubectl(&url, &path, &["rollout", "undo", "deployment/web", "--to-revision=1", "-n", NS])
    })
    .await
    .unwrap();
    assert!(out.contains("rolled back"), "{out}");
    let back = w.rolled_out(4, Some((1, 1))).await;
    assert_eq!(back, first_hash, "the old ReplicaSet's pods are back");
    let rses = w.replica_sets().await;
    assert_eq!(rses.len(), 2, "no new ReplicaSet for a rollback");
    let reused = rses.iter().find(|rs| image_of(rs) == "nginx:1").unwrap();
    assert_eq!(revision(reused).as_deref(), Some("3"));
    let history = reused.metadata.annotations.as_ref().unwrap().get("deployment.kubernetes.io/revision-history");
    assert_eq!(history.map(String::as_str), Some("1"));

    // Paused: a template change does not roll out, scaling still applies.
    w.patch(json!({"spec": {"paused": true}})).await;
    w.patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:3"}]}}}})).await;
    eventually(TIMEOUT, "the paused change observed", || async {
        let d = w.get().await?;
        let status = d.status.as_ref()?;
        let cond = status.conditions.as_ref()?.iter().find(|c| c.type_ == "Progressing")?.clone();
        (status.observed_generation == d.metadata.generation && cond.reason.as_deref() == Some("DeploymentPaused"))
            .then_some(())
    })
    .await;
    assert_eq!(w.replica_sets().await.len(), 2, "no rollout while paused");
    w.patch(json!({"spec": {"replicas": 6}})).await;
    // The template has no ReplicaSet yet, so nothing counts as updated: wait for the pods.
    eventually(TIMEOUT, "scaled to 6 while paused", || async {
        let seen = w.observe().await?;
        let d = w.get().await?;
        let status = d.status.as_ref()?;
        (seen.ready == 6
            && seen.pods.len() == 6
            && seen.pods.iter().all(|p| hash_of(p) == first_hash)
            && status.available_replicas == Some(6)
            && status.updated_replicas == Some(0))
        .then_some(())
    })
    .await;
    assert_eq!(w.replica_sets().await.len(), 2, "scaled without rolling");

    // Resumed: the rollout to nginx:3 happens.
    w.patch(json!({"spec": {"paused": false}})).await;
    let third = w.rolled_out(6, Some((2, 1))).await;
    assert_ne!(third, first_hash);
    assert_ne!(third, second_hash);
    let rses = w.replica_sets().await;
    let newest = rses.iter().find(|rs| image_of(rs) == "nginx:3").unwrap();
    assert_eq!(revision(newest).as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_that_never_becomes_ready_stops_at_the_bound_and_times_out() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    default_namespace(&client).await;
    let _kubelet = KubeletSim::start(vec![client.clone()], NS);
    let w = Workload::new(client.clone(), "stuck");
    let mut d = deployment("stuck", 4, "nginx:1", 1, 1);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(3);
    w.deployments.create(&PostParams::default(), &d).await.unwrap();
    let first_hash = w.rolled_out(4, None).await;

    w.patch(json!({"spec": {"template": {
        "metadata": {"annotations": {NEVER_READY: "true"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:2"}]},
    }}}))
    .await;
    eventually(TIMEOUT, "ProgressDeadlineExceeded", || async {
        let seen = w.observe().await?;
        assert!(seen.pods.len() <= 5, "{} pods > 4 + 1", seen.pods.len());
        assert!(seen.ready >= 3, "{} ready < 4 - 1", seen.ready);
        let d = w.get().await?;
        let cond = d.status?.conditions?.into_iter().find(|c| c.type_ == "Progressing")?;
        (cond.status == "False" && cond.reason.as_deref() == Some("ProgressDeadlineExceeded")).then_some(())
    })
    .await;
    // Stopped at the bound: 3 old pods serving (4 − maxUnavailable), 2 new never-ready pods
    // (4 + maxSurge in total).
    let seen = eventually(TIMEOUT, "the rollout settled at the bound", || async {
        let seen = w.observe().await?;
        (seen.pods.len() == 5).then_some(seen)
    })
    .await;
    let old: Vec<&Pod> = seen.pods.iter().filter(|p| hash_of(p) == first_hash).collect();
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|p| is_ready(p)));
    assert!(seen.pods.iter().filter(|p| hash_of(p) != first_hash).all(|p| !is_ready(p)));
    let d = w.get().await.unwrap();
    let status = d.status.unwrap();
    assert_eq!((status.available_replicas, status.updated_replicas), (Some(3), Some(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_completes_a_rollout() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let client = cluster.servers[survivors[0]].client();
    default_namespace(&client).await;
    let _kubelet = KubeletSim::start(survivors.iter().map(|i| cluster.servers[*i].client()).collect(), NS);
    let w = Workload::new(client.clone(), "ha");
    w.deployments.create(&PostParams::default(), &deployment("ha", 6, "nginx:1", 1, 1)).await.unwrap();
    let first_hash = w.rolled_out(6, None).await;

    w.patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})).await;
    // Mid-rollout: some new pods ready, some old pods still there.
    eventually(TIMEOUT, "the rollout under way", || async {
        let seen = w.observe().await?;
        let new_ready = seen.pods.iter().filter(|p| hash_of(p) != first_hash && is_ready(p)).count();
        let old = seen.pods.iter().filter(|p| hash_of(p) == first_hash).count();
        (new_ready >= 1 && old >= 2).then_some(())
    })
    .await;
    cluster.servers[leader].stop().await;
    let next = eventually(TIMEOUT, "a new leader", || async {
        survivors.iter().copied().find(|i| {
            let c = cluster.servers[*i].control.as_ref().unwrap();
            c.supervisor.leading.load(std::sync::atomic::Ordering::SeqCst)
        })
    })
    .await;
    assert_ne!(next, leader);
    let hash = w.rolled_out(6, Some((1, 1))).await;
    assert_ne!(hash, first_hash);
    let rses = w.replica_sets().await;
    assert_eq!(rses.len(), 2);
    let old = rses.iter().find(|rs| image_of(rs) == "nginx:1").unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_set_adopts_orphans_releases_strays_and_reports_status() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    default_namespace(&client).await;
    let _kubelet = KubeletSim::start(vec![client.clone()], NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "bare"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "bare"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "bare"}},
            "template": {"metadata": {"labels": {"app": "bare"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
        },
    }))
    .unwrap();
    let rs = replicasets.create(&PostParams::default(), &rs).await.unwrap();
    let rs_uid = rs.metadata.uid.clone().unwrap();
    let owned_by_rs = |p: &Pod| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|rs| rs.iter().any(|r| r.uid == rs_uid && r.controller == Some(true)))
    };
    let lp = ListParams::default().labels("app=bare");
    eventually(TIMEOUT, "the orphan adopted and one pod created, all ready", || async {
        let list = pods.list(&lp).await.ok()?.items;
        let status = replicasets.get("bare").await.ok()?.status?;
        (list.len() == 2
            && list.iter().all(owned_by_rs)
            && list.iter().any(|p| p.metadata.name.as_deref() == Some("orphan"))
            && status.ready_replicas == Some(2)
            && status.available_replicas == Some(2)
            && status.fully_labeled_replicas == Some(2)
            && status.observed_generation == rs.metadata.generation)
            .then_some(())
    })
    .await;

    // A pod relabelled out of the selector is released and replaced.
    pods.patch("orphan", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": {"app": "other"}}})))
        .await
        .unwrap();
    eventually(TIMEOUT, "the stray released and replaced", || async {
        let stray = pods.get("orphan").await.ok()?;
        let list = pods.list(&lp).await.ok()?.items;
        (!owned_by_rs(&stray) && list.len() == 2 && list.iter().all(owned_by_rs)).then_some(())
    })
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), NS);
    eventually(TIMEOUT, "SuccessfulCreate events", || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter()
            .any(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.involved_object.name.as_deref() == Some("bare")
                    && e.message.as_deref().is_some_and(|m| m.starts_with("Created pod: bare-"))
            })
            .then_some(())
    })
    .await;

    // Scaled down: the surplus goes.
    let scale = json!({"spec": {"replicas": 1}});
    replicasets.patch_scale("bare", &PatchParams::default(), &Patch::Merge(&scale)).await.unwrap();
    eventually(TIMEOUT, "scaled down to 1", || async {
        let list = pods.list(&lp).await.ok()?.items;
        let status = replicasets.get("bare").await.ok()?.status?;
        (list.len() == 1 && status.replicas == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_never_runs_old_and_new_pods_together() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    default_namespace(&client).await;
    let _kubelet = KubeletSim::start(vec![client.clone()], NS);
    let w = Workload::new(client.clone(), "recreate");
    let mut d = deployment("recreate", 3, "nginx:1", 1, 0);
    d.spec.as_mut().unwrap().strategy = Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    w.deployments.create(&PostParams::default(), &d).await.unwrap();
    let first_hash = w.rolled_out(3, None).await;

    w.patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})).await;
    // At every observation, terminating pods included, only one template's pods exist.
    eventually(TIMEOUT, "the new template's pods", || async {
        let lp = ListParams::default().labels("app=recreate");
        let all = w.pods.list(&lp).await.ok()?.items;
        let hashes: BTreeSet<String> = all.iter().map(hash_of).collect();
        assert!(hashes.len() <= 1, "old and new pods at once: {hashes:?}");
        (all.len() == 3 && !hashes.contains(&first_hash)).then_some(())
    })
    .await;
    let second_hash = w.rolled_out(3, None).await;
    assert_ne!(second_hash, first_hash);
}
