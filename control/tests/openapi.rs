//! OpenAPI with real schemas (issue 21): `kubectl explain` of built-in kinds and of a
//! custom resource, kubectl's client-side apply (which reads the strategic-merge
//! extensions from the documents), and the Swagger 2.0 document.

use berth_control::testing::{self, Server};

async fn ok(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = testing::kubectl(&server.kubeconfig_yaml(), args, stdin).await;
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A CronTab runs an image on a schedule.
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string, description: The schedule in cron format.}
              replicas: {type: integer}
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: registry.local/web:1}
      - {name: sidecar, image: registry.local/side:1}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_explain_reads_the_served_schemas() {
    let server = Server::start().await;
    let out = ok(&server, &["explain", "deployment.spec.strategy"], None).await;
    assert!(out.contains("GROUP:      apps") && out.contains("KIND:       Deployment"), "{out}");
    assert!(out.contains("FIELD: strategy <DeploymentStrategy>"), "{out}");
    assert!(out.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{out}");
    let out = ok(&server, &["explain", "pods.spec.containers.resources", "--recursive"], None).await;
    assert!(out.contains("limits\t<map[string]Quantity>"), "{out}");

    ok(&server, &["apply", "-f", "-"], Some(CRD)).await;
    let out = berth_testkit::eventually(std::time::Duration::from_secs(10), "crontab in explain", async || {
        let (done, out, _) = testing::kubectl(&server.kubeconfig_yaml(), &["explain", "crontab.spec"], None).await;
        done.then_some(out)
    })
    .await;
    assert!(out.contains("KIND:       CronTab") && out.contains("cronSpec\t<string>"), "{out}");
    assert!(out.contains("The schedule in cron format."), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_side_apply_removes_a_container_by_its_merge_key() {
    let server = Server::start().await;
    ok(&server, &["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    let one_container = DEPLOYMENT.replace("      - {name: sidecar, image: registry.local/side:1}\n", "");
    ok(&server, &["apply", "-f", "-"], Some(&one_container)).await;
    let names =
        ok(&server, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].name}"], None).await;
    assert_eq!(names, "web");
    // A new object's struct status is there, empty, as kube-apiserver returns it.
    let created =
        ok(&server, &["create", "deployment", "fresh", "--image=registry.local/web:1", "-o", "yaml"], None).await;
    assert!(created.lines().any(|l| l == "status: {}"), "{created}");
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_2_is_served_as_json() {
    let server = Server::start().await;
    let doc: serde_json::Value =
        serde_json::from_str(&ok(&server, &["get", "--raw", "/openapi/v2"], None).await).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
}
