//! CustomResourceDefinitions (issue 21) with the real kubectl and kube-rs: the CronTab
//! example from the Kubernetes docs applies unchanged, appears in discovery at once, and
//! its objects are served like built-ins (tables with the printer columns, short names,
//! schema validation with field paths, pruning, defaulting, watch, patches, the status and
//! scale subresources, several versions); deleting the definition takes its objects and
//! its discovery entries with it.

use std::time::{Duration, Instant};

use berth_control::testing::{self, Server};
use berth_testkit::eventually;
use futures::TryStreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

async fn kubectl(server: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    testing::kubectl(&server.kubeconfig_yaml(), args, stdin).await
}

async fn ok(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(server, args, stdin).await;
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// "Create a CustomResourceDefinition" and "Additional printer columns" from the
/// Kubernetes docs, unchanged.
const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames:
    - ct
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec:
                type: string
              image:
                type: string
              replicas:
                type: integer
    additionalPrinterColumns:
    - name: Spec
      type: string
      description: The cron spec defining the interval a CronJob is run
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      description: The number of jobs launched by the CronJob
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

const MY_CRONTAB: &str = r#"
apiVersion: "stable.example.com/v1"
kind: CronTab
metadata:
  name: my-new-cron-object
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"#;

/// Two versions (v1beta1 served, v1 stored), status and scale subresources, defaults,
/// an enum, a pattern, bounds, a list-map and a CEL rule.
const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    deprecationWarning: example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - rule: "self.size == 'large' || self.replicas <= 5"
              message: small widgets have at most 5 replicas
            properties:
              size: {type: string, enum: [small, large]}
              replicas: {type: integer, minimum: 0, maximum: 10, default: 1}
              color: {type: string, pattern: '^[a-z]+$', default: blue}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

fn widgets(server: &Server, version: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "example.com".into(),
        version: version.into(),
        api_version: format!("example.com/{version}"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(server.client(), "default", &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec}))
    .unwrap()
}

fn status_of(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crd_from_the_docs_is_served_like_a_built_in() {
    let server = Server::start().await;
    let started = Instant::now();
    let out = ok(&server, &["apply", "-f", "-"], Some(CRONTAB_CRD)).await;
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"), "{out}");
    // In discovery within a second of the create.
    let discovered = eventually(Duration::from_secs(5), "crontabs in discovery", async || {
        let d = Discovery::new(server.client()).filter(&["stable.example.com"]).run().await.ok()?;
        let found = d.groups().next().is_some();
        found.then(Instant::now)
    })
    .await;
    let latency = discovered - started;
    eprintln!("CRD to discovery: {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    let resources = ok(&server, &["api-resources", "--api-group=stable.example.com"], None).await;
    assert!(
        resources.contains("crontabs") && resources.contains("ct ") && resources.contains("CronTab"),
        "{resources}"
    );
    let crds = ok(&server, &["get", "crd"], None).await;
    assert!(
        crds.starts_with("NAME") && crds.contains("CREATED AT") && crds.contains("crontabs.stable.example.com"),
        "{crds}"
    );
    let crd = ok(&server, &["get", "crd", "crontabs.stable.example.com", "-o", "json"], None).await;
    let crd: Value = serde_json::from_str(&crd).unwrap();
    assert!(crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True"));
    ok(&server, &["wait", "--for=condition=established", "--timeout=10s", "crd/crontabs.stable.example.com"], None)
        .await;

    // The docs' object, through its kind, plural, singular and short name.
    let out = ok(&server, &["apply", "-f", "-"], Some(MY_CRONTAB)).await;
    assert!(out.contains("crontab.stable.example.com/my-new-cron-object created"), "{out}");
    for name in ["crontabs", "crontab", "ct", "crontabs.stable.example.com"] {
        let table = ok(&server, &["get", name], None).await;
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[..6], ["my-new-cron-object", "*", "*", "*", "*", "*/5"], "{table}");
    }
    let yaml = ok(&server, &["get", "ct", "my-new-cron-object", "-o", "yaml"], None).await;
    assert!(yaml.contains("image: my-awesome-cron-image") && yaml.contains("uid:"), "{yaml}");

    // Unknown fields: refused under kubectl's default strict validation, pruned with
    // kube-apiserver's warning under `--validate=warn`; a wrong type is a 422 naming the
    // field.
    let bogus =
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: pruned}\nspec: {image: x, bogus: 1}\n";
    let (done, _, err) = kubectl(&server, &["apply", "-f", "-"], Some(bogus)).await;
    assert!(!done && err.contains(r#"strict decoding error: unknown field "spec.bogus""#), "{err}");
    let (done, _, err) = kubectl(&server, &["apply", "--validate=warn", "-f", "-"], Some(bogus)).await;
    assert!(done && err.contains(r#"unknown field "spec.bogus""#), "{err}");
    let pruned = ok(&server, &["get", "ct", "pruned", "-o", "jsonpath={.spec}"], None).await;
    assert_eq!(serde_json::from_str::<Value>(&pruned).unwrap(), json!({"image": "x"}));
    let (done, _, err) = kubectl(
        &server,
        &["apply", "-f", "-"],
        Some("apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: wrong}\nspec: {replicas: three}\n"),
    )
    .await;
    assert!(!done && err.contains("spec.replicas") && err.contains("must be of type integer"), "{err}");

    // Strategic merge patches are refused, as for any custom resource; merge patches work.
    let (done, _, err) = kubectl(
        &server,
        &["patch", "ct", "my-new-cron-object", "--type=strategic", "-p", r#"{"spec":{"replicas":2}}"#],
        None,
    )
    .await;
    assert!(!done && err.contains("application/strategic-merge-patch+json"), "{err}");
    ok(&server, &["patch", "ct", "my-new-cron-object", "--type=merge", "-p", r#"{"spec":{"replicas":2}}"#], None).await;

    // Deleting the definition deletes its objects and its discovery entry.
    ok(&server, &["delete", "crd", "crontabs.stable.example.com", "--timeout=30s"], None).await;
    eventually(Duration::from_secs(10), "crontabs out of discovery", async || {
        let (done, _, err) = kubectl(&server, &["get", "crontabs"], None).await;
        (!done && err.contains("the server doesn't have a resource type \"crontabs\"")).then_some(())
    })
    .await;
    // Created again, the resource starts empty: nothing of the old objects is left.
    ok(&server, &["apply", "-f", "-"], Some(CRONTAB_CRD)).await;
    let listed = eventually(Duration::from_secs(10), "crontabs served again", async || {
        let (done, out, err) = kubectl(&server, &["get", "crontabs", "-A"], None).await;
        done.then_some(format!("{out}{err}"))
    })
    .await;
    assert!(listed.contains("No resources found"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_objects_validate_default_watch_and_scale() {
    let server = Server::start().await;
    ok(&server, &["apply", "-f", "-"], Some(WIDGET_CRD)).await;
    let v1 = widgets(&server, "v1");
    eventually(Duration::from_secs(5), "widgets served", async || v1.list(&ListParams::default()).await.ok()).await;

    // A watch from now on sees the creates.
    let stream = watcher(v1.clone(), watcher::Config::default()).applied_objects();
    let mut stream = Box::pin(stream);

    // Defaults fill absent fields; status sent on create is dropped (status subresource).
    let mut w = widget("w1", json!({"size": "small"}));
    w.data["status"] = json!({"replicas": 7});
    let created = v1.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["spec"], json!({"size": "small", "replicas": 1, "color": "blue"}));
    assert!(created.data.get("status").is_none_or(|s| s.get("replicas").is_none()), "{:?}", created.data);
    assert_eq!(created.metadata.generation, Some(1));
    let seen = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("w1"));

    // Schema violations: 422 with every field path, as kube-apiserver reports them.
    let bad = widget(
        "bad",
        json!({"size": "huge", "replicas": 11, "color": "Red",
        "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}),
    );
    let (code, message) = status_of(v1.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422, "{message}");
    for part in [
        r#"Widget.example.com "bad" is invalid"#,
        r#"spec.size: Unsupported value: "huge": supported values: "small", "large""#,
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        "spec.color: Invalid value: \"Red\": spec.color in body should match '^[a-z]+$'",
        "spec.ports[1]: Duplicate value",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    // The CRD's CEL rule, with its message.
    let (code, message) = status_of(
        v1.create(&PostParams::default(), &widget("many", json!({"size": "small", "replicas": 7}))).await.unwrap_err(),
    );
    assert!(
        code == 422 && message.contains(r#"spec: Invalid value: "object": small widgets have at most 5 replicas"#),
        "{message}"
    );
    let (code, message) = status_of(v1.create(&PostParams::default(), &widget("nosize", json!({}))).await.unwrap_err());
    assert!(code == 422 && message.contains("spec.size: Required value"), "{message}");

    // The status subresource: the main resource ignores status, /status writes only it.
    let status = json!({"status": {"replicas": 1, "selector": "app=w1"}, "spec": {"size": "large"}});
    let after = v1.patch_status("w1", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(after.data["status"]["replicas"], 1);
    assert_eq!(after.data["spec"]["size"], "small", "/status must not change the spec");
    // The scale subresource reads and writes the CRD's paths; kubectl scale uses it.
    ok(&server, &["scale", "widget", "w1", "--replicas=3"], None).await;
    let scaled = v1.get("w1").await.unwrap();
    assert_eq!(scaled.data["spec"]["replicas"], 3);
    assert_eq!(scaled.metadata.generation, Some(2));
    let scale: Value = serde_json::from_str(
        &ok(&server, &["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets/w1/scale"], None).await,
    )
    .unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=w1");

    // The other version serves the same objects under its own apiVersion (conversion None).
    let beta = widgets(&server, "v1beta1");
    let via_beta = beta.get("w1").await.unwrap();
    assert_eq!(via_beta.types.as_ref().unwrap().api_version, "example.com/v1beta1");
    let mut w2: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": "large"}}))
    .unwrap();
    w2.data["spec"]["extra"] = json!(true);
    beta.create(&PostParams::default(), &w2).await.unwrap();
    let stored = v1.get("w2").await.unwrap();
    assert_eq!(stored.types.as_ref().unwrap().api_version, "example.com/v1");
    // A deprecated version warns on every request, as kube-apiserver does; kubectl prints it.
    let (done, _, err) = kubectl(&server, &["get", "widgets.v1beta1.example.com", "w2"], None).await;
    assert!(
        done && err.contains("Warning: example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget"),
        "{err}"
    );

    // Lists page and select by label like built-ins; `kubectl get all` includes widgets.
    for i in 0..5 {
        let mut w = widget(&format!("page-{i}"), json!({"size": "small"}));
        w.metadata.labels = Some([("batch".to_string(), "p".to_string())].into());
        v1.create(&PostParams::default(), &w).await.unwrap();
    }
    let first = v1.list(&ListParams::default().labels("batch=p").limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    let rest = v1.list(&ListParams::default().labels("batch=p").limit(10).continue_token(&token)).await.unwrap();
    assert_eq!(rest.items.len(), 3);
    let all = ok(&server, &["get", "all"], None).await;
    assert!(all.contains("widget.example.com/w1"), "{all}");

    // Server-side apply works on custom resources.
    let applied = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "ssa"},
        "spec": {"size": "large", "replicas": 2}});
    let out = v1.patch("ssa", &PatchParams::apply("tester"), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(out.data["spec"]["replicas"], 2);

    v1.delete("w1", &DeleteParams::default()).await.unwrap();
    assert!(v1.get_opt("w1").await.unwrap().is_none());
    drop(stream);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_definitions_are_refused_with_the_field() {
    let server = Server::start().await;
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: things.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, kind: Widget}\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n",
            "metadata.name: Invalid value: \"things.example.com\": must be spec.names.plural+\".\"+spec.group",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, kind: Widget}\n  versions: [{name: v1, served: true, storage: true}]\n",
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, kind: Widget}\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, properties: {spec: {properties: {a: {type: string}}}}}}}]\n",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Sideways\n  names: {plural: widgets, kind: Widget}\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n",
            "spec.scope: Unsupported value: \"Sideways\"",
        ),
    ];
    for (manifest, expected) in cases {
        let (done, _, err) = kubectl(&server, &["apply", "-f", "-"], Some(manifest)).await;
        assert!(!done && err.contains(expected), "expected {expected:?} in {err}");
    }
    let crds = ok(&server, &["get", "crd"], None).await;
    assert!(!crds.contains("example.com"), "nothing half-written: {crds}");
}

/// Aggregated discovery (what kubectl 1.30+ asks for first) as a raw client sees it.
async fn aggregated_discovery(server: &Server, etag: Option<&str>) -> (u16, String, Value) {
    let mut req = http::Request::get("/apis")
        .header("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json");
    if let Some(tag) = etag {
        req = req.header("If-None-Match", tag);
    }
    let resp = server.client().send(req.body(kube::client::Body::empty()).unwrap()).await.unwrap();
    let code = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let tag = resp.headers().get("etag").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    let doc = if code == 200 { serde_json::from_slice(&body).unwrap() } else { Value::Null };
    assert!(code == 304 || content_type.contains("as=APIGroupDiscoveryList"), "{content_type}");
    (code, tag, doc)
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregated_discovery_is_tagged_and_follows_definitions() {
    let server = Server::start().await;
    let (code, tag, doc) = aggregated_discovery(&server, None).await;
    assert_eq!(code, 200);
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    let (code, same, _) = aggregated_discovery(&server, Some(&tag)).await;
    assert_eq!((code, same.as_str()), (304, tag.as_str()), "unchanged discovery is not sent again");
    ok(&server, &["apply", "-f", "-"], Some(WIDGET_CRD)).await;
    let doc = eventually(Duration::from_secs(5), "example.com in aggregated discovery", async || {
        let (code, new_tag, doc) = aggregated_discovery(&server, Some(&tag)).await;
        (code == 200 && new_tag != tag).then_some(doc)
    })
    .await;
    let group = doc["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "example.com").unwrap();
    let versions: Vec<&str> =
        group["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["v1", "v1beta1"], "the preferred (storage, GA) version first");
    let widgets = &group["versions"][0]["resources"][0];
    assert_eq!(widgets["resource"], "widgets");
    let subresources: Vec<&str> =
        widgets["subresources"].as_array().unwrap().iter().map(|s| s["subresource"].as_str().unwrap()).collect();
    assert_eq!(subresources, ["status", "scale"]);
    // kubectl itself, which asks for aggregated discovery first.
    let resources = ok(&server, &["api-resources", "--api-group=example.com"], None).await;
    assert!(resources.contains("widgets") && resources.contains("wd"), "{resources}");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_objects_are_json_whatever_protobuf_clients_ask() {
    let server = Server::start().await;
    ok(&server, &["apply", "-f", "-"], Some(WIDGET_CRD)).await;
    let v1 = widgets(&server, "v1");
    eventually(Duration::from_secs(5), "widgets served", async || v1.list(&ListParams::default()).await.ok()).await;
    v1.create(&PostParams::default(), &widget("w1", json!({"size": "small"}))).await.unwrap();
    let get = |accept: &'static str| {
        let client = server.client();
        async move {
            let req = http::Request::get("/apis/example.com/v1/namespaces/default/widgets/w1")
                .header("Accept", accept)
                .body(kube::client::Body::empty())
                .unwrap();
            let resp = client.send(req).await.unwrap();
            let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            (resp.status().as_u16(), ct)
        }
    };
    // kube-apiserver answers custom resources in JSON when the client also takes JSON (as
    // client-go's protobuf clients do), and 406 when it takes protobuf only.
    let (code, ct) = get("application/vnd.kubernetes.protobuf, application/json").await;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    let (code, _) = get("application/vnd.kubernetes.protobuf").await;
    assert_eq!(code, 406);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_of_a_cluster_serves_a_new_definition_and_drops_a_deleted_one() {
    let cluster = berth_control::testing::Cluster::start(3).await;
    let crds =
        kube::Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
            cluster.servers[0].client(),
        );
    let crd = serde_yaml::from_str(WIDGET_CRD).unwrap();
    let started = Instant::now();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    // Each server follows the CRDs in its own watch cache.
    for (i, server) in cluster.servers.iter().enumerate() {
        let api = widgets(server, "v1");
        eventually(Duration::from_secs(5), "widgets served", async || api.list(&ListParams::default()).await.ok())
            .await;
        eprintln!("server {i} serves widgets {:?} after the create", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    widgets(&cluster.servers[1], "v1")
        .create(&PostParams::default(), &widget("w", json!({"size": "small"})))
        .await
        .unwrap();
    let got = widgets(&cluster.servers[2], "v1").get("w").await.unwrap();
    assert_eq!(got.data["spec"]["replicas"], 1);
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    for server in &cluster.servers {
        let api = widgets(server, "v1");
        eventually(Duration::from_secs(20), "widgets gone", async || {
            matches!(api.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
        })
        .await;
    }
}
