//! The official Kubernetes Python client (PyPI `kubernetes`, which scripts/prereqs
//! installs) against a real server (issue 21): `/version/`, typed CRUD with label
//! selectors, a watch from a LIST's resourceVersion, the scale subresource, and the dynamic
//! client's server-side apply; a CRD and its objects through `CustomObjectsApi` and the
//! dynamic client. The script prints one line per step; the test checks them.

use berth_control::testing::Server;

const SCRIPT: &str = r#"
import sys
import time
from kubernetes import client, config, watch, dynamic

config.load_kube_config(config_file=sys.argv[1])
api = client.ApiClient()
print("version", client.VersionApi(api).get_code().git_version.startswith("v1."))

core = client.CoreV1Api(api)
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
for name, tier in [("a", "web"), ("b", "web"), ("c", "db")]:
    core.create_namespaced_config_map("py", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels={"tier": tier}), data={"k": name}))
listed = core.list_namespaced_config_map("py", label_selector="tier=web")
print("list", ",".join(sorted(cm.metadata.name for cm in listed.items)))
core.patch_namespaced_config_map("a", "py", {"data": {"k": "patched"}})
print("read", core.read_namespaced_config_map("a", "py").data["k"])

events = []
w = watch.Watch()
core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="d")))
for event in w.stream(core.list_namespaced_config_map, "py", resource_version=listed.metadata.resource_version,
                      timeout_seconds=10):
    events.append((event["type"], event["object"].metadata.name))
    if event["object"].metadata.name == "d":
        w.stop()
print("watch", events[-1][0], events[-1][1])
core.delete_namespaced_config_map("c", "py")
try:
    core.read_namespaced_config_map("c", "py")
except client.exceptions.ApiException as e:
    print("deleted", e.status)

apps = client.AppsV1Api(api)
apps.create_namespaced_deployment("py", {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]}}}})
apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 3}})
print("scale", apps.read_namespaced_deployment_scale("web", "py").spec.replicas)

dyn = dynamic.DynamicClient(api)
config_maps = dyn.resources.get(api_version="v1", kind="ConfigMap")
applied = config_maps.server_side_apply(
    body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": "py"},
          "data": {"owner": "python"}},
    field_manager="py-test", namespace="py")
managers = [m.manager for m in applied.metadata.managedFields]
print("apply", applied.data.owner, "py-test" in managers)

ext = client.ApiextensionsV1Api(api)
ext.create_custom_resource_definition({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "cronSpec": {"type": "string"}, "replicas": {"type": "integer", "default": 1}}}}}}}]}})
custom = client.CustomObjectsApi(api)
for attempt in range(50):
    try:
        custom.list_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs")
        break
    except client.exceptions.ApiException:
        time.sleep(0.1)
custom.create_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs", {
    "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "tab"},
    "spec": {"cronSpec": "* * * * */5"}})
got = custom.get_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs", "tab")
print("custom", got["spec"]["cronSpec"], got["spec"]["replicas"])
custom.patch_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs", "tab", {"spec": {"replicas": 4}})
tabs = dyn.resources.get(api_version="stable.example.com/v1", kind="CronTab")
print("dynamic", [t.spec.replicas for t in tabs.get(namespace="py").items])
try:
    custom.create_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs", {
        "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "bad"},
        "spec": {"replicas": "many"}})
except client.exceptions.ApiException as e:
    print("invalid", e.status)
custom.delete_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs", "tab")
print("left", len(custom.list_namespaced_custom_object("stable.example.com", "v1", "py", "crontabs")["items"]))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_client_works() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg("-c").arg(SCRIPT).arg(&kubeconfig).output()
    })
    .await
    .unwrap()
    .expect("python3 (scripts/prereqs installs the kubernetes package)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the script failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "version True",
            "list a,b",
            "read patched",
            "watch ADDED d",
            "deleted 404",
            "scale 3",
            "apply python True",
            "custom * * * * */5 1",
            "dynamic [4]",
            "invalid 422",
            "left 0"
        ],
        "{stderr}"
    );
}
