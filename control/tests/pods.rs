//! The pod-specific API paths and the remaining list/watch semantics through kube-rs:
//! graceful deletion, eviction, the log proxy to a node's agent, the status subresource,
//! deletecollection, `resourceVersionMatch=Exact` and watch `timeoutSeconds`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_control::testing::{self, Cluster};
use berth_testkit::eventually;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::VersionMatch;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;

fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut v = json!({"metadata": {"name": name, "labels": {"app": "logs"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}, {"name": "side", "image": "busybox"}]}});
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_deletion_waits_for_the_agent_and_eviction_starts_it() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    pods.create(&PostParams::default(), &pod("bound", Some("n1"))).await.unwrap();
    pods.create(&PostParams::default(), &pod("unbound", None)).await.unwrap();
    pods.create(&PostParams::default(), &pod("evicted", Some("n1"))).await.unwrap();

    // A pod never bound to a node has no agent to wait for: gone at once.
    pods.delete("unbound", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_none());

    // A bound pod is only marked: deletionTimestamp + grace, until its agent confirms.
    pods.delete("bound", &DeleteParams::default()).await.unwrap();
    let marked = pods.get("bound").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    // A shorter grace may replace a longer one; a second delete does not extend it.
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(5), ..Default::default() }).await.unwrap();
    assert_eq!(pods.get("bound").await.unwrap().metadata.deletion_grace_period_seconds, Some(5));
    // The agent's confirmation (grace 0) removes it.
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    // Eviction is a graceful delete through the subresource.
    let status = pods.evict("evicted", &EvictParams::default()).await.unwrap();
    assert_eq!(status.status, Some(kube::core::response::StatusSummary::Success));
    assert!(pods.get("evicted").await.unwrap().metadata.deletion_timestamp.is_some());
    let missing = pods.evict("nope", &EvictParams::default()).await.unwrap_err();
    assert!(matches!(missing, kube::Error::Api(ref e) if e.code == 404), "{missing}");
}

/// A stand-in for a node agent's log endpoint, served over TLS as agents serve it (their
/// server, with the test CA): answers `/containerLogs/...` with the caller and the path and
/// query it was asked for, and streams three lines when `follow=true`.
async fn fake_agent_log_endpoint() -> (u16, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use axum::extract::{Path, RawQuery, State};
    type Seen = Arc<Mutex<Vec<String>>>;
    async fn logs(
        State(seen): State<Seen>,
        axum::Extension(caller): axum::Extension<berth_agent::endpoint_auth::Caller>,
        Path((ns, pod, container)): Path<(String, String, String)>,
        RawQuery(query): RawQuery,
    ) -> axum::response::Response {
        let query = query.unwrap_or_default();
        let user = caller.0.and_then(Result::ok).map(|u| u.name).unwrap_or_default();
        seen.lock().unwrap().push(format!("{user} {ns}/{pod}/{container}?{query}"));
        if query.contains("follow=true") {
            let lines = futures::stream::iter(0..3).then(|i| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(format!("line {i}\n"))
            });
            return axum::response::Response::new(axum::body::Body::from_stream(lines));
        }
        axum::response::Response::new(axum::body::Body::from(format!("logs of {ns}/{pod}/{container}\n")))
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new().route("/containerLogs/{ns}/{pod}/{container}", axum::routing::get(logs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ca = testing::admin().ca_pem.clone();
    let tls = berth_agent::endpoint_auth::Tls::new(&ca, "n1", &["127.0.0.1".to_string()]).unwrap();
    let server = tokio::spawn({
        let app = app.with_state(seen.clone());
        let cancel = tokio_util::sync::CancellationToken::new();
        let timeout = berth_agent::server::HEADER_READ_TIMEOUT;
        async move { berth_agent::server::serve_router(listener, app, timeout, Some(Arc::new(tls)), cancel).await }
    });
    (port, seen, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_logs_are_proxied_to_the_nodes_agent() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let (port, seen, server) = fake_agent_log_endpoint().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap())
        .await
        .unwrap();
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("web", Some("n1"))).await.unwrap();
    pods.create(&PostParams::default(), &pod("pending", None)).await.unwrap();

    let params =
        LogParams { container: Some("side".into()), tail_lines: Some(5), previous: true, ..Default::default() };
    assert_eq!(pods.logs("web", &params).await.unwrap(), "logs of default/web/side\n");
    let asked = seen.lock().unwrap().last().cloned().unwrap();
    // The API server dialed TLS with its apiserver-kubelet-client certificate.
    assert!(asked.starts_with("kube-apiserver-kubelet-client default/web/side?"), "{asked}");
    assert!(asked.contains("tailLines=5") && asked.contains("previous=true"), "{asked}");

    // follow streams what the agent streams.
    let follow = LogParams { container: Some("main".into()), follow: true, ..Default::default() };
    let mut lines = pods.log_stream("web", &follow).await.unwrap();
    let mut got = Vec::new();
    let mut buf = String::new();
    use futures::AsyncBufReadExt;
    while lines.read_line(&mut buf).await.unwrap() > 0 {
        got.push(std::mem::take(&mut buf));
    }
    assert_eq!(got, ["line 0\n", "line 1\n", "line 2\n"]);

    // Errors read like the kube-apiserver's.
    let no_container = pods.logs("web", &LogParams::default()).await.unwrap_err();
    assert!(
        no_container.to_string().contains("a container name must be specified for pod web, choose one of: [main side]"),
        "{no_container}"
    );
    let main_only = LogParams { container: Some("main".into()), ..Default::default() };
    let unscheduled = pods.logs("pending", &main_only).await;
    assert!(unscheduled.unwrap_err().to_string().contains("is waiting to start"));
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_a_separate_subresource() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    pods.create(&PostParams::default(), &pod("s", None)).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": "10.0.0.9"}, "metadata": {"labels": {"ignored": "x"}}});
    let after = pods.patch_status("s", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(after.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert!(!after.metadata.labels.unwrap_or_default().contains_key("ignored"), "status writes ignore metadata");
    // A main-resource update cannot change status.
    let mut main = pods.get("s").await.unwrap();
    main.status.as_mut().unwrap().phase = Some("Failed".into());
    main.metadata.labels.get_or_insert_with(Default::default).insert("kept".into(), "y".into());
    let replaced = pods.replace("s", &PostParams::default(), &main).await.unwrap();
    assert_eq!(replaced.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(replaced.metadata.labels.unwrap()["kept"], "y");
    let got = pods.get_status("s").await.unwrap();
    assert_eq!(got.status.unwrap().pod_ip.as_deref(), Some("10.0.0.9"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deletecollection_exact_lists_and_watch_timeouts() {
    let cluster = Cluster::start(1).await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
    let cm = |name: &str, tier: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}, "data": {"k": "v1"}}))
            .unwrap()
    };
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        cms.create(&PostParams::default(), &cm(name, tier)).await.unwrap();
    }
    let before = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&json!({"data": {"k": "v2"}}))).await.unwrap();

    // resourceVersionMatch=Exact reads the state as of that revision from the store.
    let exact = ListParams::default().at(&before).matching(VersionMatch::Exact);
    let old = cms.list(&exact).await.unwrap();
    let a = old.items.iter().find(|c| c.metadata.name.as_deref() == Some("a")).unwrap();
    assert_eq!(a.data.as_ref().unwrap()["k"], "v1");
    assert_eq!(old.metadata.resource_version.as_deref(), Some(before.as_str()));
    let newer = cms.list(&ListParams::default().at(&before).matching(VersionMatch::NotOlderThan)).await.unwrap();
    let a = newer.items.iter().find(|c| c.metadata.name.as_deref() == Some("a")).unwrap();
    assert_eq!(a.data.as_ref().unwrap()["k"], "v2");

    // deletecollection honours the label selector.
    cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=web")).await.unwrap();
    let mut left: Vec<String> =
        cms.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    // (the cluster CA's ConfigMap, which every namespace holds, is not the test's)
    left.retain(|n| n != "kube-root-ca.crt");
    assert_eq!(left, ["c"]);

    // A watch with timeoutSeconds ends by itself, cleanly.
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let started = Instant::now();
    let stream = cms.watch(&WatchParams::default().timeout(1), &rv).await.unwrap().boxed();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(10), stream.try_collect::<Vec<_>>())
        .await
        .expect("the watch ended by itself")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "ended after {took:?}");
    assert!(events.iter().all(|e| matches!(e, kube::api::WatchEvent::Bookmark(_))), "{events:?}");

    // Eventually-consistent readers agree: the deleted ones are gone on every path.
    eventually(Duration::from_secs(5), "cache catches up", || async {
        let cached = cms.list(&ListParams::default().at("0")).await.unwrap();
        let ours = cached.items.iter().filter(|c| c.metadata.name.as_deref() != Some("kube-root-ca.crt"));
        (ours.count() == 1).then_some(())
    })
    .await;
}
