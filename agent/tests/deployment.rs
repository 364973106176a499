//! End to end on one machine: a Deployment of `python3 -m http.server` with a Service,
//! through the leader's scheduler, ReplicaSet/Deployment and Endpoints controllers, to a
//! real agent (process runtime) — the pod becomes Running and Ready, the Deployment
//! available, the Service's Endpoints list it, and it answers HTTP.

use std::time::Duration;

use berth_agent::{Agent, AgentConfig, Heartbeat, NodeTemplate, RuntimeKind};
use berth_control::testing::Server;
use berth_testkit::{eventually, free_port};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// The Python interpreter behind `python3` (a pyenv shim is not on the containers' PATH).
fn python() -> String {
    let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output();
    out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).filter(|p| !p.is_empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_of_an_http_server_becomes_ready_and_serves() {
    let cp = Server::start().await;
    let client = cp.client();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("index.html"), "hello from berth\n").unwrap();
    let cancel = CancellationToken::new();
    let config = AgentConfig {
        node_name: "worker-1".into(),
        template: NodeTemplate { heartbeat: Heartbeat::with_renew(Duration::from_secs(1)), ..Default::default() },
        runtime: RuntimeKind::Process,
        data_dir: data.path().to_path_buf(),
        listen_port: 0,
        fake_start_delay: None,
        stop_containers_on_exit: true,
        client_ca_pem: berth_control::testing::agent_client_ca(),
    };
    let agent = Agent::start(client.clone(), config, cancel.clone()).await.unwrap();

    let port = free_port();
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                                  "name": "http", "image": "python:3", "workingDir": work.path(),
                                  "command": [python(), "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
                                  "ports": [{"name": "http", "containerPort": port}],
                                  "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}]}}}});
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &serde_json::from_value(deployment).unwrap()).await.unwrap();
    let service = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}});
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &serde_json::from_value(service).unwrap()).await.unwrap();

    eventually(WAIT, "the Deployment available", || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.available_replicas == Some(1)).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.remove(0);
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("worker-1"), "bound by the scheduler");
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.conditions.unwrap().iter().any(|c| c.type_ == "Ready" && c.status == "True"));

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eventually(WAIT, "the Service's endpoints", || async {
        let e = endpoints.get_opt("web").await.ok()??;
        let subset = e.subsets?.into_iter().next()?;
        let ready = subset.addresses?.into_iter().next()?;
        (ready.ip == "127.0.0.1" && subset.ports?.first()?.port == i32::from(port)).then_some(())
    })
    .await;

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    assert!(reply.ends_with("hello from berth\n"), "{reply}");

    cancel.cancel();
    agent.stopped().await;
}
