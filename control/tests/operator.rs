//! A real operator framework against Berth (issue 21): a kube-rs `Controller` — the
//! crates.io operator runtime — registers its CustomResourceDefinition, reconciles each
//! `WebApp` into a Deployment it owns (server-side apply), and writes the WebApp's status;
//! the test checks the outcome, a change, and the garbage collector's cascade when the
//! WebApp goes.

use std::sync::Arc;
use std::time::Duration;

use berth_control::testing::Server;
use berth_testkit::eventually;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

const MANAGER: &str = "webapp-operator";

fn webapp_resource() -> ApiResource {
    ApiResource {
        group: "apps.example.com".into(),
        version: "v1".into(),
        api_version: "apps.example.com/v1".into(),
        kind: "WebApp".into(),
        plural: "webapps".into(),
    }
}

fn definition() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "webapps.apps.example.com"},
        "spec": {
            "group": "apps.example.com", "scope": "Namespaced",
            "names": {"plural": "webapps", "singular": "webapp", "kind": "WebApp"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    }},
                    "status": {"type": "object", "properties": {
                        "deployment": {"type": "string"},
                        "replicas": {"type": "integer"},
                        "observedGeneration": {"type": "integer"},
                    }},
                }}},
            }],
        },
    }))
    .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

struct Context {
    client: Client,
}

/// The operator's reconcile: the WebApp's Deployment, then its status.
async fn reconcile(app: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = app.namespace().unwrap_or_else(|| "default".into());
    let name = app.name_any();
    let image = app.data["spec"]["image"].as_str().unwrap_or_default();
    let replicas = app.data["spec"]["replicas"].as_i64().unwrap_or(1);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [{
            "apiVersion": "apps.example.com/v1", "kind": "WebApp", "name": name,
            "uid": app.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true,
        }]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"webapp": name}},
            "template": {"metadata": {"labels": {"webapp": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}},
        },
    });
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
    deployments.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&deployment)).await?;
    let apps = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, &webapp_resource());
    let status = json!({"status": {"deployment": name, "replicas": replicas,
        "observedGeneration": app.metadata.generation}});
    apps.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn on_error(_app: Arc<DynamicObject>, _e: &ReconcileError, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(1))
}

/// Registers the CRD and runs the controller until the returned task is aborted.
async fn start_operator(client: Client) -> tokio::task::JoinHandle<()> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &definition()).await.unwrap();
    eventually(Duration::from_secs(10), "the CRD established", async || {
        let crd = crds.get("webapps.apps.example.com").await.ok()?;
        let conditions = crd.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
    let apps = Api::<DynamicObject>::all_with(client.clone(), &webapp_resource());
    let owned = Api::<Deployment>::all(client.clone());
    let controller = Controller::new_with(apps, watcher::Config::default(), webapp_resource())
        .owns(owned, watcher::Config::default())
        .run(reconcile, on_error, Arc::new(Context { client }))
        .for_each(|_| async {});
    tokio::spawn(controller)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kube_rs_controller_reconciles_a_custom_resource_into_a_deployment() {
    let server = Server::start().await;
    let client = server.client();
    let operator = start_operator(client.clone()).await;

    let apps = Api::<DynamicObject>::namespaced_with(client.clone(), "default", &webapp_resource());
    let app: DynamicObject = serde_json::from_value(json!({"apiVersion": "apps.example.com/v1", "kind": "WebApp",
        "metadata": {"name": "shop"}, "spec": {"image": "registry.local/shop:1"}}))
    .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();

    let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
    let deployment = eventually(Duration::from_secs(20), "the WebApp's Deployment", async || {
        deployments.get_opt("shop").await.ok().flatten()
    })
    .await;
    let spec = deployment.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(1), "the CRD's default replicas");
    assert_eq!(spec.template.spec.unwrap().containers[0].image.as_deref(), Some("registry.local/shop:1"));
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("WebApp", "shop"));
    let status = eventually(Duration::from_secs(20), "the WebApp's status", async || {
        let app = apps.get("shop").await.ok()?;
        app.data["status"]["deployment"].is_string().then_some(app.data["status"].clone())
    })
    .await;
    assert_eq!(status, json!({"deployment": "shop", "replicas": 1, "observedGeneration": 1}));
    let stored = apps.get("shop").await.unwrap();
    assert_eq!(stored.data["spec"]["replicas"], 1, "defaulted by the CRD's schema when stored");

    // A change of the custom resource reaches the Deployment.
    apps.patch("shop", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}}))).await.unwrap();
    eventually(Duration::from_secs(20), "the Deployment scaled", async || {
        let d = deployments.get("shop").await.ok()?;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "the status follows", async || {
        let app = apps.get("shop").await.ok()?;
        (app.data["status"]["observedGeneration"] == 2 && app.data["status"]["replicas"] == 3).then_some(())
    })
    .await;

    // The WebApp goes: the garbage collector deletes the Deployment it owned.
    operator.abort();
    apps.delete("shop", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(30), "the owned Deployment collected", async || {
        deployments.get_opt("shop").await.ok()?.is_none().then_some(())
    })
    .await;
}
