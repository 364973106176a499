//! ControllerRevision history of DaemonSets and StatefulSets, read and rolled back with
//! the real kubectl: after two image changes `kubectl rollout history` lists revisions
//! 1..3 (with the change-cause copied from the object), `--revision=1` shows the first
//! image, `rollout undo` to the current revision is skipped (kubectl recognises the
//! revision's data), and `kubectl rollout undo --to-revision=1` brings the first template back — the
//! old revision becomes revision 4, the pods return to it and, for the StatefulSet,
//! `status.updateRevision` names it again. One server, one Node whose heartbeat the test
//! keeps fresh, and a kubelet simulator making the pods Running and Ready.

use std::time::Duration;

use berth_control::testing::kubelet::KubeletSim;
use berth_control::testing::{self, Server};
use berth_testkit::eventually;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn kubectl(server: &Server, args: &[&str]) -> String {
    let (ok, out, err) = testing::kubectl(&server.kubeconfig_yaml(), args, None).await;
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// A Ready node the scheduler can bind to; its Ready heartbeat is renewed until `stop`, so
/// node lifecycle never finds it unreachable however long the test runs.
async fn ready_node(client: &kube::Client, name: &str, stop: CancellationToken) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}});
    nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    let status = |at: String| {
        let resources = json!({"cpu": "8", "memory": "16Gi", "pods": "110"});
        json!({"status": {"capacity": resources, "allocatable": resources, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": at}]}})
    };
    let now = || Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status(now()))).await.unwrap();
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let _ = nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status(now()))).await;
        }
    });
}

/// The pod template both workloads use: `app=NAME`, one container running `image`,
/// stopped at once (the simulated kubelet confirms no deletions).
fn template(name: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": name}},
           "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": image}]}})
}

fn image_of(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> Option<String> {
    template?.spec.as_ref()?.containers.first()?.image.clone()
}

/// The live (not terminating) pods of `app=name` and their images.
async fn pod_images(pods: &Api<Pod>, name: &str) -> Option<Vec<String>> {
    let list = pods.list(&ListParams::default().labels(&format!("app={name}"))).await.ok()?;
    let live = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
    live.map(|p| p.spec.as_ref()?.containers.first()?.image.clone()).collect()
}

/// `name`'s ControllerRevisions as (number, image, revision), by number.
async fn revisions(api: &Api<ControllerRevision>, name: &str) -> Vec<(i64, String, ControllerRevision)> {
    let list = api.list(&ListParams::default().labels(&format!("app={name}"))).await.unwrap();
    let mut out: Vec<(i64, String, ControllerRevision)> = list
        .items
        .into_iter()
        .map(|r| {
            let image = r.data.as_ref().map(|d| d.0["spec"]["template"]["spec"]["containers"][0]["image"].clone());
            (r.revision, image.and_then(|i| i.as_str().map(String::from)).unwrap_or_default(), r)
        })
        .collect();
    out.sort_by_key(|(n, _, _)| *n);
    out
}

/// The numbers in `kubectl rollout history`'s table, and its CHANGE-CAUSE column.
fn history_table(out: &str) -> Vec<(i64, String)> {
    out.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let number = cols.next()?.parse().ok()?;
            Some((number, cols.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Checks what every history must be after images 1, 2, 3 of `resource/name`, rolls it back
/// to revision 1 with kubectl and returns once the object is back on the first image.
async fn history_and_undo(server: &Server, resource: &str, name: &str) {
    let target = format!("{resource}/{name}");
    let out = kubectl(server, &["rollout", "history", &target, "-n", NS]).await;
    assert_eq!(
        history_table(&out),
        [(1, "<none>".to_string()), (2, "second image".to_string()), (3, "third image".to_string())],
        "{out}"
    );
    let out = kubectl(server, &["rollout", "history", &target, "-n", NS, "--revision=1"]).await;
    assert!(out.contains("busybox:1"), "{out}");
    assert!(!out.contains("busybox:2") && !out.contains("busybox:3"), "{out}");
    let out = kubectl(server, &["rollout", "history", &target, "-n", NS, "--revision=3"]).await;
    assert!(out.contains("busybox:3") && !out.contains("busybox:1"), "{out}");

    // kubectl compares the revision's data byte for byte with its own encoding of the
    // object: it must recognise the current template.
    let out = kubectl(server, &["rollout", "undo", &target, "-n", NS, "--to-revision=3"]).await;
    assert!(out.contains("skipped rollback (current template already matches revision 3)"), "{out}");
    let out = kubectl(server, &["rollout", "undo", &target, "-n", NS, "--to-revision=1"]).await;
    assert!(out.contains("rolled back"), "{out}");
}

/// The revision of `image` is the newest, numbered `number`, and there is one per image.
async fn newest_is(api: &Api<ControllerRevision>, name: &str, image: &str, number: i64) -> Option<ControllerRevision> {
    let list = revisions(api, name).await;
    let (n, newest, rev) = list.last()?;
    let mut images: Vec<&String> = list.iter().map(|(_, i, _)| i).collect();
    images.sort();
    images.dedup();
    (*n == number && newest == image && images.len() == list.len()).then(|| rev.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn daemonset_and_statefulset_history_with_kubectl() {
    let server = Server::start().await;
    let client = server.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    ready_node(&client, "n1", stop.clone()).await;
    let _kubelet = KubeletSim::start(vec![client.clone()], NS);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    let ds = json!({"metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", "busybox:1")}});
    daemonsets.create(&PostParams::default(), &serde_json::from_value(ds).unwrap()).await.unwrap();
    let sts = json!({"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
        "template": template("web", "busybox:1")}});
    statefulsets.create(&PostParams::default(), &serde_json::from_value(sts).unwrap()).await.unwrap();

    // Each rollout completes before the next change, so every revision really ran.
    let rolled_out = |image: &'static str| {
        let (daemonsets, statefulsets, pods) = (&daemonsets, &statefulsets, &pods);
        async move {
            eventually(TIMEOUT, &format!("both rolled out to {image}"), || async {
                let ds = daemonsets.get("agent").await.ok()?;
                let s = ds.status.as_ref()?;
                let ds_done = s.observed_generation == ds.metadata.generation
                    && s.desired_number_scheduled == 1
                    && s.updated_number_scheduled == Some(1)
                    && s.number_available == Some(1);
                let sts = statefulsets.get("web").await.ok()?;
                let s = sts.status.as_ref()?;
                let sts_done = s.observed_generation == sts.metadata.generation
                    && s.updated_replicas == Some(2)
                    && s.ready_replicas == Some(2)
                    && s.current_revision == s.update_revision;
                let images = [pod_images(pods, "agent").await?, pod_images(pods, "web").await?].concat();
                (ds_done && sts_done && images.len() == 3 && images.iter().all(|i| i == image)).then_some(sts)
            })
            .await
        }
    };
    let first = rolled_out("busybox:1").await;
    for (image, cause) in [("busybox:2", "second image"), ("busybox:3", "third image")] {
        for name in ["agent", "web"] {
            let patch = json!({"metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
            let (params, patch) = (PatchParams::default(), Patch::Strategic(&patch));
            if name == "agent" {
                daemonsets.patch(name, &params, &patch).await.unwrap();
            } else {
                statefulsets.patch(name, &params, &patch).await.unwrap();
            }
        }
        rolled_out(image).await;
    }

    // Three revisions each, numbered 1..3, named and labelled by the pods' hash, owned by
    // their workload.
    let ds = daemonsets.get("agent").await.unwrap();
    let sts = statefulsets.get("web").await.unwrap();
    for (name, uid, kind) in [("agent", &ds.metadata.uid, "DaemonSet"), ("web", &sts.metadata.uid, "StatefulSet")] {
        let list = revisions(&revisions_api, name).await;
        let numbered: Vec<(i64, &str)> = list.iter().map(|(n, i, _)| (*n, i.as_str())).collect();
        assert_eq!(numbered, [(1, "busybox:1"), (2, "busybox:2"), (3, "busybox:3")], "{name}");
        for (_, _, r) in &list {
            let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!((owner.kind.as_str(), Some(&owner.uid), owner.controller), (kind, uid.as_ref(), Some(true)));
            let hash = &r.metadata.labels.as_ref().unwrap()["controller-revision-hash"];
            assert_eq!(r.metadata.name.as_deref(), Some(format!("{name}-{hash}").as_str()));
        }
    }
    // DaemonSet pods carry the revision's hash, StatefulSet pods its name.
    let pod_hash = |p: &Pod| p.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    let revision_hash =
        |r: &ControllerRevision| r.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    let agent_pods = pods.list(&ListParams::default().labels("app=agent")).await.unwrap().items;
    let newest = &revisions(&revisions_api, "agent").await[2].2;
    assert!(agent_pods.iter().all(|p| pod_hash(p) == revision_hash(newest)));
    let web_pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    let newest = &revisions(&revisions_api, "web").await[2].2;
    assert!(web_pods.iter().all(|p| Some(pod_hash(p)) == newest.metadata.name));
    assert_eq!(sts.status.as_ref().unwrap().update_revision, newest.metadata.name);
    let first_revision = first.status.as_ref().unwrap().update_revision.clone().unwrap();
    assert_eq!(revisions(&revisions_api, "web").await[0].2.metadata.name.as_deref(), Some(first_revision.as_str()));

    // kubectl reads the history and rolls back.
    history_and_undo(&server, "daemonset", "agent").await;
    history_and_undo(&server, "statefulset", "web").await;
    let ds = daemonsets.get("agent").await.unwrap();
    assert_eq!(image_of(ds.spec.as_ref().map(|s| &s.template)).as_deref(), Some("busybox:1"));
    let sts = statefulsets.get("web").await.unwrap();
    assert_eq!(image_of(sts.spec.as_ref().map(|s| &s.template)).as_deref(), Some("busybox:1"));

    // The first revision is reused as revision 4 (no new one), and everything runs it.
    let back = rolled_out("busybox:1").await;
    let ds_rev = eventually(TIMEOUT, "agent's first revision renumbered 4", || async {
        newest_is(&revisions_api, "agent", "busybox:1", 4).await
    })
    .await;
    let sts_rev = eventually(TIMEOUT, "web's first revision renumbered 4", || async {
        newest_is(&revisions_api, "web", "busybox:1", 4).await
    })
    .await;
    assert_eq!(sts_rev.metadata.name.as_deref(), Some(first_revision.as_str()));
    assert_eq!(back.status.as_ref().unwrap().update_revision.as_deref(), Some(first_revision.as_str()));
    assert_eq!(back.status.as_ref().unwrap().current_revision.as_deref(), Some(first_revision.as_str()));
    let agent_pods = pods.list(&ListParams::default().labels("app=agent")).await.unwrap().items;
    let live = agent_pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
    assert!(live.clone().count() == 1 && live.into_iter().all(|p| pod_hash(p) == revision_hash(&ds_rev)));
    for name in ["daemonset/agent", "statefulset/web"] {
        let out = kubectl(&server, &["rollout", "history", name, "-n", NS]).await;
        let numbers: Vec<i64> = history_table(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [2, 3, 4], "{name}: {out}");
    }
}

/// `name`'s DaemonSet is complete at its generation with one pod, all running `image`.
async fn daemonset_rolled_out(daemonsets: &Api<DaemonSet>, pods: &Api<Pod>, name: &str, image: &str) -> Vec<Pod> {
    eventually(TIMEOUT, &format!("{name} rolled out to {image}"), || async {
        let ds = daemonsets.get(name).await.ok()?;
        let s = ds.status.as_ref()?;
        let done = s.observed_generation == ds.metadata.generation
            && s.updated_number_scheduled == Some(1)
            && s.number_available == Some(1);
        let list = pods.list(&ListParams::default().labels(&format!("app={name}"))).await.ok()?.items;
        let live: Vec<Pod> = list.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let images = pod_images(pods, name).await?;
        (done && live.len() == 1 && images.iter().all(|i| i == image)).then_some(live)
    })
    .await
}

async fn set_image(daemonsets: &Api<DaemonSet>, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    daemonsets.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
}

/// The history limit trims the oldest revisions; a revision name taken by another
/// template's revision raises `status.collisionCount`; revisions orphaned with their
/// DaemonSet are adopted (and reused, pods untouched) by a new one with the same selector;
/// deleting the DaemonSet deletes its revisions.
#[tokio::test(flavor = "multi_thread")]
async fn history_limit_collisions_adoption_and_cascade() {
    let server = Server::start().await;
    let client = server.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    ready_node(&client, "n1", stop.clone()).await;
    let _kubelet = KubeletSim::start(vec![client.clone()], NS);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let spec = |image: &str| {
        json!({"metadata": {"name": "trim"}, "spec": {"revisionHistoryLimit": 1,
            "selector": {"matchLabels": {"app": "trim"}}, "template": template("trim", image)}})
    };
    daemonsets.create(&PostParams::default(), &serde_json::from_value(spec("busybox:1")).unwrap()).await.unwrap();
    daemonset_rolled_out(&daemonsets, &pods, "trim", "busybox:1").await;
    for image in ["busybox:2", "busybox:3"] {
        set_image(&daemonsets, "trim", image).await;
        daemonset_rolled_out(&daemonsets, &pods, "trim", image).await;
    }
    // revisionHistoryLimit 1: the current revision and one old one.
    eventually(TIMEOUT, "the history trimmed to the limit", || async {
        let numbered: Vec<(i64, String)> =
            revisions(&revisions_api, "trim").await.into_iter().map(|(n, i, _)| (n, i)).collect();
        (numbered == [(2, "busybox:2".to_string()), (3, "busybox:3".to_string())]).then_some(())
    })
    .await;

    // Another template's revision holds the name the next template needs (the same hash).
    let mut next = daemonsets.get("trim").await.unwrap();
    next.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("busybox:4".into());
    let taken = format!("trim-{}", berth_control::tasks::daemonset::plan::revision_hash(&next));
    let squatter = json!({"metadata": {"name": taken, "labels": {"app": "elsewhere"}},
        "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1});
    revisions_api.create(&PostParams::default(), &serde_json::from_value(squatter).unwrap()).await.unwrap();
    set_image(&daemonsets, "trim", "busybox:4").await;
    let running = daemonset_rolled_out(&daemonsets, &pods, "trim", "busybox:4").await;
    let ds = daemonsets.get("trim").await.unwrap();
    assert_eq!(ds.status.as_ref().unwrap().collision_count, Some(1));
    let list = revisions(&revisions_api, "trim").await;
    let (number, image, current) = list.last().unwrap();
    assert_eq!((*number, image.as_str()), (4, "busybox:4"));
    assert_ne!(current.metadata.name.as_deref(), Some(taken.as_str()));
    let hash = current.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    assert_eq!(running[0].metadata.labels.as_ref().unwrap()["controller-revision-hash"], hash);
    let squatter = revisions_api.get(&taken).await.unwrap();
    assert!(squatter.metadata.owner_references.is_none() && squatter.revision == 1, "left alone");

    // Orphaned with the DaemonSet, then adopted by a new one: the same revisions, reused
    // as they are (its collision count starts over, but the data matches), pods untouched.
    let before: Vec<String> = revisions(&revisions_api, "trim").await.iter().map(|(_, _, r)| name_of(r)).collect();
    let orphan = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..Default::default()
    };
    daemonsets.delete("trim", &orphan).await.unwrap();
    eventually(TIMEOUT, "the DaemonSet gone, its revisions orphaned", || async {
        let gone = daemonsets.get_opt("trim").await.ok()?.is_none();
        let list = revisions(&revisions_api, "trim").await;
        (gone && list.len() == 2 && list.iter().all(|(_, _, r)| r.metadata.owner_references.is_none())).then_some(())
    })
    .await;
    let created = daemonsets.create(&PostParams::default(), &serde_json::from_value(spec("busybox:4")).unwrap()).await;
    let uid = created.unwrap().metadata.uid;
    eventually(TIMEOUT, "the revisions adopted by the new DaemonSet", || async {
        let list = revisions(&revisions_api, "trim").await;
        let owned = list.iter().all(|(_, _, r)| {
            r.metadata.owner_references.as_ref().is_some_and(|o| o.len() == 1 && Some(&o[0].uid) == uid.as_ref())
        });
        let names: Vec<String> = list.iter().map(|(_, _, r)| name_of(r)).collect();
        (owned && names == before && list.last().is_some_and(|(n, _, _)| *n == 4)).then_some(())
    })
    .await;
    let adopted = daemonset_rolled_out(&daemonsets, &pods, "trim", "busybox:4").await;
    assert_eq!(adopted[0].metadata.uid, running[0].metadata.uid, "the running pod was adopted, not replaced");

    // Deleted: its revisions go with it.
    daemonsets.delete("trim", &Default::default()).await.unwrap();
    eventually(TIMEOUT, "the revisions garbage-collected", || async {
        revisions(&revisions_api, "trim").await.is_empty().then_some(())
    })
    .await;
    assert!(revisions_api.get_opt(&taken).await.unwrap().is_some(), "not the DaemonSet's");
}

fn name_of(r: &ControllerRevision) -> String {
    r.metadata.name.clone().unwrap_or_default()
}
