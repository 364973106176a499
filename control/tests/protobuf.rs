//! Kubernetes protobuf on the API (issue 21): the real kubectl's imperative commands, which
//! send their objects as `application/vnd.kubernetes.protobuf`, create what they say; and
//! GET, LIST and WATCH answered in protobuf are read back with k8s-pb's independently
//! generated message types, as a Go client would read them.

use std::time::Duration;

use berth_control::testing::{self, Server};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use kube::api::{Api, PostParams};
use prost::Message;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// kubectl as the administrator; panics on failure or on a warning.
async fn kubectl(server: &Server, args: &[&str]) -> String {
    let (ok, out, err) = testing::kubectl(&server.kubeconfig_yaml(), args, None).await;
    assert!(ok, "kubectl {args:?} failed: {err}");
    assert!(!err.to_lowercase().contains("warning"), "kubectl {args:?} warned: {err}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectls_imperative_commands_create_what_they_say() {
    let server = Server::start().await;
    let created = [
        (vec!["create", "namespace", "shop"], "namespace/shop created"),
        (
            vec![
                "create",
                "deployment",
                "web",
                "--image=registry.local/web:1",
                "--replicas=2",
                "--port=8080",
                "-n",
                "shop",
            ],
            "deployment.apps/web created",
        ),
        (
            vec!["create", "configmap", "settings", "--from-literal=mode=fast", "--from-literal=level=3", "-n", "shop"],
            "configmap/settings created",
        ),
        (
            vec!["create", "secret", "generic", "creds", "--from-literal=password=s3cret", "-n", "shop"],
            "secret/creds created",
        ),
        (vec!["create", "service", "clusterip", "cache", "--tcp=6379:6379", "-n", "shop"], "service/cache created"),
        (vec!["create", "serviceaccount", "robot", "-n", "shop"], "serviceaccount/robot created"),
        (
            vec!["create", "role", "reader", "--verb=get", "--verb=list", "--resource=pods", "-n", "shop"],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec!["create", "rolebinding", "robot-reads", "--role=reader", "--serviceaccount=shop:robot", "-n", "shop"],
            "rolebinding.rbac.authorization.k8s.io/robot-reads created",
        ),
        (
            vec!["create", "clusterrole", "node-reader", "--verb=get", "--resource=nodes"],
            "clusterrole.rbac.authorization.k8s.io/node-reader created",
        ),
        (
            vec!["create", "clusterrolebinding", "ops-reads-nodes", "--clusterrole=node-reader", "--group=ops"],
            "clusterrolebinding.rbac.authorization.k8s.io/ops-reads-nodes created",
        ),
        (
            vec!["create", "job", "once", "--image=registry.local/tool:1", "-n", "shop", "--", "true"],
            "job.batch/once created",
        ),
        (
            vec!["create", "cronjob", "nightly", "--image=registry.local/tool:1", "--schedule=0 3 * * *", "-n", "shop"],
            "cronjob.batch/nightly created",
        ),
        (vec!["create", "quota", "small", "--hard=pods=10,services=5", "-n", "shop"], "resourcequota/small created"),
        (
            vec!["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80", "-n", "shop"],
            "horizontalpodautoscaler.autoscaling/web autoscaled",
        ),
        (vec!["expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", "shop"], "service/web exposed"),
        (vec!["run", "debug", "--image=registry.local/tool:1", "--restart=Never", "-n", "shop"], "pod/debug created"),
    ];
    for (args, expected) in &created {
        let out = kubectl(&server, args).await;
        assert_eq!(out.trim(), *expected, "kubectl {args:?}");
    }

    let client = server.client();
    let deployment = Api::<Deployment>::namespaced(client.clone(), "shop").get("web").await.unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.local/web:1"));
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8080);
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"), "defaulted, not left empty");
    let settings = Api::<ConfigMap>::namespaced(client.clone(), "shop").get("settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["level"], "3");
    let creds = Api::<Secret>::namespaced(client.clone(), "shop").get("creds").await.unwrap();
    assert_eq!(creds.data.unwrap()["password"].0, b"s3cret");
    let cache = Api::<Service>::namespaced(client.clone(), "shop").get("cache").await.unwrap();
    let port = &cache.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (6379, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(6379)))
    );
    let exposed = Api::<Service>::namespaced(client.clone(), "shop").get("web").await.unwrap().spec.unwrap();
    assert_eq!(exposed.selector.unwrap()["app"], "web");
    let role = Api::<Role>::namespaced(client.clone(), "shop").get("reader").await.unwrap();
    assert_eq!(role.rules.unwrap()[0].verbs, vec!["get", "list"]);
    let binding = Api::<RoleBinding>::namespaced(client.clone(), "shop").get("robot-reads").await.unwrap();
    assert_eq!(binding.subjects.unwrap()[0].name, "robot");
    let job = Api::<Job>::namespaced(client.clone(), "shop").get("once").await.unwrap();
    assert_eq!(job.spec.unwrap().template.spec.unwrap().containers[0].command, Some(vec!["true".to_string()]));
    let cron = Api::<CronJob>::namespaced(client.clone(), "shop").get("nightly").await.unwrap();
    assert_eq!(cron.spec.unwrap().schedule, "0 3 * * *");
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), "shop").get("web").await.unwrap();
    let hpa = hpa.spec.unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 5));
    let metrics = hpa.metrics.unwrap();
    let target = &metrics[0].resource.as_ref().unwrap().target;
    assert_eq!(target.average_utilization, Some(80));
    let pod = Api::<Pod>::namespaced(client.clone(), "shop").get("debug").await.unwrap();
    assert_eq!(pod.spec.unwrap().restart_policy.as_deref(), Some("Never"));
    // Server-side dry run and kubectl's own reads also go through protobuf.
    let out = kubectl(&server, &["create", "namespace", "ghost", "--dry-run=server", "-o", "name"]).await;
    assert_eq!(out.trim(), "namespace/ghost");
    let out = kubectl(&server, &["get", "deployment", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"]).await;
    assert_eq!(out, "2");
}

/// A raw request through the admin client: (status, content type, body).
async fn raw(
    server: &Server,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, String, Vec<u8>) {
    let mut request = http::Request::builder().method(method).uri(path).header("accept", accept);
    if let Some((content_type, _)) = &body {
        request = request.header("content-type", *content_type);
    }
    let request = request.body(kube::client::Body::from(body.map(|(_, b)| b).unwrap_or_default())).unwrap();
    let response = server.client().send(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, content_type, bytes)
}

/// The type and object bytes of an enveloped protobuf body.
fn unwrap_envelope(body: &[u8]) -> (String, String, Vec<u8>) {
    let rest = body.strip_prefix(b"k8s\0").expect("the k8s\\0 magic");
    let unknown = Unknown::decode(rest).unwrap();
    let type_meta = unknown.type_meta.unwrap();
    (type_meta.api_version.unwrap(), type_meta.kind.unwrap(), unknown.raw.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn get_list_and_watch_answer_in_protobuf_that_typed_clients_read() {
    use k8s_pb::api::core::v1 as pb;
    let server = Server::start().await;
    let pods = Api::<Pod>::namespaced(server.client(), "default");
    for name in ["a", "b"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "c", "image": "registry.local/tool:1",
                "resources": {"requests": {"memory": "64Mi"}}}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let typed_client = "application/vnd.kubernetes.protobuf, */*";

    let (status, content_type, body) =
        raw(&server, "GET", "/api/v1/namespaces/default/pods/a", typed_client, None).await;
    assert_eq!((status, content_type.as_str()), (200, PROTOBUF));
    let (api_version, kind, raw_pod) = unwrap_envelope(&body);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "Pod"));
    let pod = pb::Pod::decode(raw_pod.as_slice()).unwrap();
    let metadata = pod.metadata.unwrap();
    assert_eq!(metadata.name.as_deref(), Some("a"));
    assert!(metadata.creation_timestamp.unwrap().seconds.unwrap() > 1_700_000_000);
    let container = &pod.spec.unwrap().containers[0];
    assert_eq!(container.resources.as_ref().unwrap().requests["memory"].string.as_deref(), Some("64Mi"));

    let (status, _, body) =
        raw(&server, "GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Ddemo", typed_client, None).await;
    assert_eq!(status, 200);
    let (_, kind, raw_list) = unwrap_envelope(&body);
    assert_eq!(kind, "PodList");
    let list = pb::PodList::decode(raw_list.as_slice()).unwrap();
    let names: Vec<_> = list.items.iter().map(|p| p.metadata.as_ref().unwrap().name.clone().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    let list_revision = list.metadata.unwrap().resource_version.unwrap();

    // A JSON client is unaffected.
    let (status, content_type, body) =
        raw(&server, "GET", "/api/v1/namespaces/default/pods/a", "application/json", None).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["metadata"]["name"], "a");

    // A watch: length-prefixed WatchEvents, each object enveloped.
    let request = http::Request::builder()
        .uri(format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={list_revision}&timeoutSeconds=10"))
        .header("accept", typed_client)
        .body(kube::client::Body::empty())
        .unwrap();
    let response = server.client().send(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/vnd.kubernetes.protobuf;stream=watch");
    pods.delete("b", &Default::default()).await.unwrap();
    let mut body = response.into_body();
    let mut stream = Vec::new();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(e) = event_in(&stream) {
                break e;
            }
            let frame = body.frame().await.expect("the stream stays open").unwrap();
            stream.extend_from_slice(&frame.into_data().unwrap());
        }
    })
    .await
    .expect("a watch event within 10s");
    assert_eq!(event.r#type.as_deref(), Some("DELETED"));
    let (_, kind, raw_pod) = unwrap_envelope(&event.object.unwrap().raw.unwrap());
    assert_eq!(kind, "Pod");
    assert_eq!(pb::Pod::decode(raw_pod.as_slice()).unwrap().metadata.unwrap().name.as_deref(), Some("b"));
}

fn event_in(stream: &[u8]) -> Option<WatchEvent> {
    let len = u32::from_be_bytes(stream.get(..4)?.try_into().unwrap()) as usize;
    Some(WatchEvent::decode(stream.get(4..4 + len)?).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_protobuf_bodies_are_refused_and_nothing_is_written() {
    let server = Server::start().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let config_map = k8s_pb::api::core::v1::ConfigMap {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("cm".into()),
            ..Default::default()
        }),
        data: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    let envelope = |kind: &str, raw: Vec<u8>| {
        let mut body = b"k8s\0".to_vec();
        Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            ..Default::default()
        }
        .encode(&mut body)
        .unwrap();
        body
    };
    let good = envelope("ConfigMap", config_map.encode_to_vec());
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("truncated", good[..good.len() - 3].to_vec(), 400, "could not be decoded"),
        ("no magic", config_map.encode_to_vec(), 400, "does not start with"),
        ("unknown kind", envelope("Gadget", vec![]), 400, "no kind \\\"Gadget\\\" is registered"),
        ("garbage", b"k8s\0\xff\xff\xff\xff".to_vec(), 400, "could not be decoded"),
        ("another kind", envelope("Secret", vec![]), 400, "Secret"),
    ];
    for (what, body, code, text) in cases {
        let (status, _, answer) = raw(&server, "POST", path, "application/json", Some((PROTOBUF, body))).await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, code, "{what}: {answer}");
        assert!(answer.contains(text), "{what}: {answer}");
    }
    let config_maps = Api::<ConfigMap>::namespaced(server.client(), "default");
    assert!(config_maps.get_opt("cm").await.unwrap().is_none(), "nothing was written");
    let (status, content_type, answer) =
        raw(&server, "POST", path, "application/vnd.kubernetes.protobuf, */*", Some((PROTOBUF, good))).await;
    assert_eq!((status, content_type.as_str()), (201, PROTOBUF), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(config_maps.get("cm").await.unwrap().data.unwrap()["k"], "v");
}
