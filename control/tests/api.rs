//! The Kubernetes API through a real client (kube-rs), on an in-process server: typed
//! CRUD, watch and patch for every served resource, errors as `Status`, pagination,
//! and the watch cache's fan-out.

use std::time::Duration;

use berth_control::testing::Cluster;
use berth_testkit::eventually;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{apps, autoscaling, batch, coordination, core};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

fn from_json<K: DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// create → get → list → watch sees a patch → delete, for one kind.
async fn crud<K>(api: Api<K>, obj: serde_json::Value)
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let what = format!("{} {name}", K::kind(&Default::default()));
    let created =
        api.create(&PostParams::default(), &from_json::<K>(obj)).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let rv = created.meta().resource_version.clone().expect("resourceVersion set");
    assert!(created.meta().uid.is_some(), "{what}: uid");
    assert!(created.meta().creation_timestamp.is_some(), "{what}: creationTimestamp");
    let got = api.get(&name).await.unwrap();
    // Not necessarily equal: a controller may already have written (a Deployment's status).
    let version = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    assert!(version(got.meta().resource_version.as_deref()) >= version(Some(&rv)), "{what}");
    let list = api.list(&ListParams::default()).await.unwrap();
    assert!(list.items.iter().any(|o| o.meta().name.as_deref() == Some(&name)), "{what}: listed");
    let mut watch =
        api.watch(&WatchParams::default().fields(&format!("metadata.name={name}")), &rv).await.unwrap().boxed();
    let patch = json!({"metadata": {"labels": {"patched": "yes"}}});
    let patched = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(patched.meta().labels.as_ref().unwrap()["patched"], "yes", "{what}");
    // Controllers may write too (e.g. a Deployment's status): wait for the patch's event.
    let saw_patch = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.try_next().await.unwrap() {
                Some(WatchEvent::Modified(o))
                    if o.meta()
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.get("patched").map(String::as_str) == Some("yes")) =>
                {
                    return;
                }
                Some(WatchEvent::Modified(_) | WatchEvent::Bookmark(_)) => continue,
                other => panic!("{what}: expected MODIFIED, got {other:?}"),
            }
        }
    });
    saw_patch.await.expect("the patch's MODIFIED event");
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}])).unwrap();
    api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap_or_else(|e| panic!("{what}: json patch: {e}"));
    let ssa = json!({"apiVersion": K::api_version(&Default::default()), "kind": K::kind(&Default::default()),
        "metadata": {"name": name, "labels": {"applied": "1"}}});
    api.patch(&name, &PatchParams::apply("test-manager"), &Patch::Apply(&ssa))
        .await
        .unwrap_or_else(|e| panic!("{what}: apply: {e}"));
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(10), &format!("{what} gone"), || async {
        api.get_opt(&name).await.unwrap().is_none().then_some(())
    })
    .await;
}

fn pod_spec() -> serde_json::Value {
    json!({"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]})
}

/// A pod spec naming a scheduler nobody runs: the leader's scheduler leaves such pods
/// alone (no binding, no PodScheduled condition), so the test is their only writer.
fn unscheduled_pod_spec() -> serde_json::Value {
    let mut spec = pod_spec();
    spec["schedulerName"] = json!("none");
    spec
}

fn template() -> serde_json::Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()})
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_crud_watch_patch_delete_for_every_resource() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let ns = "default";
    let selector = json!({"matchLabels": {"app": "web"}});
    crud::<core::v1::Namespace>(Api::all(c.clone()), json!({"metadata": {"name": "crud-ns"}})).await;
    crud::<core::v1::Node>(Api::all(c.clone()), json!({"metadata": {"name": "node-1"}})).await;
    crud::<core::v1::Pod>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "p"}, "spec": unscheduled_pod_spec()}),
    )
    .await;
    crud::<core::v1::Service>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "svc"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    crud::<core::v1::Endpoints>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "manual"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
    )
    .await;
    crud::<core::v1::ConfigMap>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}),
    )
    .await;
    crud::<core::v1::Secret>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
    )
    .await;
    crud::<core::v1::Event>(Api::namespaced(c.clone(), ns), json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns}, "reason": "Test", "message": "m"})).await;
    crud::<core::v1::ServiceAccount>(Api::namespaced(c.clone(), ns), json!({"metadata": {"name": "sa"}})).await;
    crud::<core::v1::ResourceQuota>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10"}}}),
    )
    .await;
    crud::<apps::v1::Deployment>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "d"}, "spec": {"selector": selector, "template": template()}}),
    )
    .await;
    crud::<apps::v1::ReplicaSet>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "rs"}, "spec": {"selector": selector, "template": template()}}),
    )
    .await;
    crud::<apps::v1::DaemonSet>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "ds"}, "spec": {"selector": selector, "template": template()}}),
    )
    .await;
    crud::<apps::v1::StatefulSet>(Api::namespaced(c.clone(), ns), json!({"metadata": {"name": "sts"}, "spec": {"serviceName": "svc", "selector": selector, "template": template()}})).await;
    let job_template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    crud::<batch::v1::Job>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "j"}, "spec": {"template": job_template}}),
    )
    .await;
    crud::<batch::v1::CronJob>(Api::namespaced(c.clone(), ns), json!({"metadata": {"name": "cj"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}})).await;
    crud::<coordination::v1::Lease>(
        Api::namespaced(c.clone(), ns),
        json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
    )
    .await;
    crud::<autoscaling::v2::HorizontalPodAutoscaler>(Api::namespaced(c.clone(), ns), json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "maxReplicas": 3}})).await;
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API Status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_status_objects_with_kubernetes_codes() {
    let cluster = Cluster::start(1).await;
    let deploys: Api<apps::v1::Deployment> = Api::namespaced(cluster.client(), "default");
    let e = status_of(deploys.get("missing").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, r#"deployments.apps "missing" not found"#);
    let good: apps::v1::Deployment = from_json(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}),
    );
    let created = deploys.create(&PostParams::default(), &good).await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1), "defaulted");
    let e = status_of(deploys.create(&PostParams::default(), &good).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    // Stale resourceVersion → 409 Conflict.
    let mut stale = created.clone();
    deploys.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    stale.spec.as_mut().unwrap().replicas = Some(5);
    let e = status_of(deploys.replace("web", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    // Selector not matching the template → 422 with the field path.
    let bad: apps::v1::Deployment = from_json(
        json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchLabels": {"app": "other"}}, "template": template()}}),
    );
    let e = status_of(deploys.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.contains("spec.template.metadata.labels"), "{}", e.message);
    let bad_name: apps::v1::Deployment = from_json(
        json!({"metadata": {"name": "Bad_Name"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}),
    );
    let e = status_of(deploys.create(&PostParams::default(), &bad_name).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(e.message.contains("metadata.name"), "{}", e.message);
    // A NodePort or ClusterIP another Service holds → 422 naming the field.
    let services: Api<core::v1::Service> = Api::namespaced(cluster.client(), "default");
    let svc = |name: &str| -> core::v1::Service {
        from_json(json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "clusterIP": "10.96.7.7",
                         "ports": [{"port": 80, "nodePort": 30777}]}}))
    };
    services.create(&PostParams::default(), &svc("first")).await.unwrap();
    let e = status_of(services.create(&PostParams::default(), &svc("second")).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{}", e.message);
    assert!(e.message.contains("already allocated") && e.message.contains("spec."), "{}", e.message);
    let mut other_ip = svc("third");
    other_ip.spec.as_mut().unwrap().cluster_ip = Some("10.96.7.8".into());
    let e = status_of(services.create(&PostParams::default(), &other_ip).await.unwrap_err());
    assert!(
        e.message.contains("spec.ports[0].nodePort") && e.message.contains("provided port is already allocated"),
        "{}",
        e.message
    );
    // Over 1.5 MiB → 413.
    // (ConfigMaps and Secrets stop at 1 MiB of data with a 422, as in Kubernetes.)
    let events: Api<core::v1::Event> = Api::namespaced(cluster.client(), "default");
    let big: core::v1::Event = from_json(
        json!({"metadata": {"name": "big"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "message": "x".repeat(1600 * 1024)}),
    );
    let e = status_of(events.create(&PostParams::default(), &big).await.unwrap_err());
    assert_eq!(e.code, 413);
    let cms: Api<core::v1::ConfigMap> = Api::namespaced(cluster.client(), "default");
    let too_much: core::v1::ConfigMap =
        from_json(json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(1100 * 1024)}}));
    assert_eq!(status_of(cms.create(&PostParams::default(), &too_much).await.unwrap_err()).code, 422);
    // Unknown namespace → 404 for the namespace.
    let elsewhere: Api<core::v1::ConfigMap> = Api::namespaced(cluster.client(), "nowhere");
    let e = status_of(
        elsewhere.create(&PostParams::default(), &from_json(json!({"metadata": {"name": "c"}}))).await.unwrap_err(),
    );
    assert_eq!((e.code, e.message.as_str()), (404, r#"namespaces "nowhere" not found"#));
    // Malformed bodies → 400, wrong types → 400, never 500.
    let http = reqwest_like(&cluster.servers[0].api_url, "/api/v1/namespaces/default/configmaps", "{not json").await;
    assert_eq!(http, 400);
    let http = reqwest_like(
        &cluster.servers[0].api_url,
        "/api/v1/namespaces/default/configmaps",
        r#"{"metadata": {"name": 5}}"#,
    )
    .await;
    assert_eq!(http, 400);
    // Strict field validation names the unknown field.
    let e = status_of(
        deploys
            .patch(
                "web",
                &PatchParams { field_validation: Some(kube::api::ValidationDirective::Strict), ..Default::default() },
                &Patch::Merge(json!({"spec": {"bogus": 1}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(e.message.contains(r#"unknown field "spec.bogus""#), "{}", e.message);
}

/// POSTs `body` and returns the HTTP status code.
async fn reqwest_like(base: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("https://");
    let mut s = berth_control::testing::connect(base).await;
    let req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // The server may close without a TLS close_notify: the answer is complete anyway.
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_one_consistent_snapshot() {
    let cluster = Cluster::start(1).await;
    let cms: Api<core::v1::ConfigMap> = Api::namespaced(cluster.client(), "default");
    for i in 0..25 {
        cms.create(&PostParams::default(), &from_json(json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"parity": if i % 2 == 0 { "even" } else { "odd" }}}}))).await.unwrap();
    }
    let first = cms.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    let token = first.metadata.continue_.clone().expect("a continue token");
    // Writes after the first page must not show up in later pages.
    cms.create(&PostParams::default(), &from_json(json!({"metadata": {"name": "cm-zz"}}))).await.unwrap();
    cms.delete("cm-20", &DeleteParams::default()).await.unwrap();
    let mut names: Vec<String> = first.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    let mut next = Some(token);
    while let Some(t) = next {
        let page = cms.list(&ListParams::default().limit(10).continue_token(&t)).await.unwrap();
        assert_eq!(page.metadata.resource_version, first.metadata.resource_version);
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        next = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    // Every namespace also holds the cluster CA's ConfigMap (see service_accounts).
    names.retain(|n| n != "kube-root-ca.crt");
    let want: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(names, want);
    let odd = cms.list(&ListParams::default().labels("parity=odd").limit(5)).await.unwrap();
    assert!(odd.items.iter().all(|c| c.metadata.labels.as_ref().unwrap()["parity"] == "odd"));
    assert_eq!(odd.items.len(), 5);
    let notin = cms.list(&ListParams::default().labels("parity notin (odd),!missing")).await.unwrap();
    assert!(notin.items.iter().all(|c| c
        .metadata
        .labels
        .as_ref()
        .is_none_or(|l| l.get("parity").map(String::as_str) != Some("odd"))));
    let bad = status_of(cms.list(&ListParams::default().labels("parity in odd")).await.unwrap_err());
    assert_eq!(bad.code, 400);
}

/// POSTs a Binding of pod `name` to `node` through the raw client.
async fn bind(client: &kube::Client, name: &str, node: serde_json::Value) -> Result<String, kube::Error> {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": node});
    let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).unwrap())
        .unwrap();
    client.request_text(req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_is_checked_then_written_once() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let pods: Api<core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let pod = json!({"metadata": {"name": "b"}, "spec": unscheduled_pod_spec()});
    pods.create(&PostParams::default(), &from_json(pod)).await.unwrap();

    // The pod is written without being validated again, so the node name is checked here.
    let bad = status_of(bind(&client, "b", json!({"kind": "Node", "name": "Not_A_Node"})).await.unwrap_err());
    assert_eq!(bad.code, 422, "{bad:?}");
    let cause = &bad.details.as_ref().unwrap().causes[0];
    assert_eq!(cause.field, "target.name");
    assert!(cause.message.starts_with("target.name: Invalid value: \"Not_A_Node\": a lowercase RFC 1123 subdomain"));
    let missing = status_of(bind(&client, "b", json!({"kind": "Node"})).await.unwrap_err());
    assert_eq!(
        (missing.code, missing.details.unwrap().causes[0].message.as_str()),
        (422, "target.name: Required value")
    );
    assert!(pods.get("b").await.unwrap().spec.unwrap().node_name.is_none(), "refused bindings write nothing");

    bind(&client, "b", json!({"kind": "Node", "name": "node-1"})).await.unwrap();
    let bound = pods.get("b").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = bound.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "PodScheduled").unwrap();
    assert_eq!(scheduled.status, "True");

    let again = status_of(bind(&client, "b", json!({"kind": "Node", "name": "node-2"})).await.unwrap_err());
    assert_eq!(again.code, 409);
    assert!(again.message.contains("pod b is already assigned to node \"node-1\""), "{}", again.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_node_watches_share_one_store_watch_and_each_sees_only_its_pod() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let store = cluster.servers[0].store.clone();
    let pods: Api<core::v1::Pod> = Api::namespaced(client.clone(), "default");
    // Wait until every resource's cache holds its one store watch, then count them.
    let cached = berth_control::resource::RESOURCES.iter().filter(|r| !r.is_alias()).count();
    let store_watchers_before = eventually(Duration::from_secs(10), "one store watch per cache", || async {
        Some(store.hub().watcher_count()).filter(|(all, unsynced)| *all == cached && *unsynced == 0)
    })
    .await;
    let api = cluster.servers[0].control.as_ref().unwrap().api.clone();
    let n = 1000;
    let mut watches = Vec::new();
    for i in 0..n {
        let stream = pods
            .watch(&WatchParams::default().fields(&format!("spec.nodeName=node-{i}")).timeout(120), "0")
            .await
            .unwrap();
        watches.push(stream.boxed());
    }
    assert_eq!(store.hub().watcher_count(), store_watchers_before, "API watches must not become store watchers");
    assert!(api.cache.watcher_count() >= n, "{} cache watchers", api.cache.watcher_count());
    // One pod per node, created unbound and then bound through pods/binding.
    for i in (0..n).step_by(100) {
        let name = format!("pod-{i}");
        pods.create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": name}, "spec": unscheduled_pod_spec()})),
        )
        .await
        .unwrap();
        bind(&client, &name, json!({"kind": "Node", "name": format!("node-{i}")})).await.unwrap();
    }
    // Bound pods arrive as ADDED to exactly their node's watcher; nobody else sees anything.
    for (i, w) in watches.iter_mut().enumerate() {
        if i % 100 == 0 {
            // Bookmarks (every few seconds on a slow machine) carry no object: skip them.
            let mut next =
                tokio::time::timeout(Duration::from_secs(10), w.try_next()).await.expect("an event").unwrap();
            while let Some(WatchEvent::Bookmark(_)) = next {
                next = tokio::time::timeout(Duration::from_secs(10), w.try_next()).await.expect("an event").unwrap();
            }
            match next {
                Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some(format!("pod-{i}").as_str())),
                other => panic!("node-{i}: expected ADDED, got {other:?}"),
            }
        }
    }
    for (i, w) in watches.iter_mut().enumerate() {
        let limit = Duration::from_millis(if i % 100 == 0 { 200 } else { 2 });
        let mut got = tokio::time::timeout(limit, w.try_next()).await;
        while let Ok(Ok(Some(WatchEvent::Bookmark(_)))) = got {
            got = tokio::time::timeout(limit, w.try_next()).await;
        }
        assert!(got.is_err(), "node-{i} saw an extra event: {got:?}");
    }
    drop(watches);
    eventually(Duration::from_secs(10), "watchers released", || async {
        // The leader's controllers keep a dozen or so of their own.
        (api.cache.watcher_count() < 50).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_resume_replay_bookmark_and_are_gone_before_the_cache_window() {
    let cluster = Cluster::start(1).await;
    let cms: Api<core::v1::ConfigMap> = Api::namespaced(cluster.client(), "default");
    let created = cms.create(&PostParams::default(), &from_json(json!({"metadata": {"name": "a"}}))).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}}))).await.unwrap();
    // Resuming from the create's revision replays the patch, then bookmarks arrive.
    let mut w = cms.watch(&WatchParams { bookmarks: true, ..Default::default() }, &rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(5), w.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Modified(cm)) => assert_eq!(cm.data.unwrap()["k"], "v"),
        other => panic!("expected the replayed MODIFIED, got {other:?}"),
    }
    match tokio::time::timeout(Duration::from_secs(15), w.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert!(b.metadata.resource_version.parse::<i64>().unwrap() > rv.parse::<i64>().unwrap())
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    // A second API server on the same store starts its cache now: the old revision is
    // outside its window, so the watch is 410 Gone (an ERROR event, as kube-apiserver).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pki_dir = tempfile::tempdir().unwrap();
    let _second = berth_control::ControlPlane::start_configured(
        berth_control::registry::storage::Storage::new(
            cluster.servers[0].store.clone(),
            berth_control::testing::process_encryption(),
        ),
        listener,
        "second",
        Default::default(),
        berth_control::testing::TestPki::in_dir(pki_dir.path()).http(),
        shutdown.clone(),
    );
    let config = berth_control::testing::admin().kube_config(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cms2: Api<core::v1::ConfigMap> = Api::namespaced(client, "default");
    eventually(Duration::from_secs(10), "second cache ready", || async {
        cms2.list(&ListParams::default().match_any()).await.ok()
    })
    .await;
    let mut gone = cms2.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(5), gone.try_next()).await.unwrap() {
        Ok(Some(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    shutdown.cancel();
}

/// Merge patches that pin no resourceVersion apply however contended the object is, as
/// kube-apiserver's GuaranteedUpdate retries them (the Jepsen `deploy` workload got 409s
/// when a fixed 8 attempts ran out).
#[tokio::test(flavor = "multi_thread")]
async fn contended_merge_patches_all_apply() {
    let cluster = Cluster::start(1).await;
    let cms: Api<core::v1::ConfigMap> = Api::namespaced(cluster.client(), "default");
    cms.create(&PostParams::default(), &from_json(json!({"metadata": {"name": "hot"}}))).await.unwrap();
    let writers: Vec<_> = (0..24)
        .map(|w| {
            let cms = cms.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    let patch = json!({"data": {format!("w{w}-{i}"): "x"}});
                    cms.patch("hot", &PatchParams::default(), &Patch::Merge(&patch)).await?;
                }
                Ok::<_, kube::Error>(())
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().expect("every patch applies");
    }
    let data = cms.get("hot").await.unwrap().data.unwrap_or_default();
    assert_eq!(data.len(), 24 * 5);
}
