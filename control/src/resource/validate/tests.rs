//! Table-driven tests across kinds: real manifests from the Kubernetes docs must default
//! and validate cleanly; broken variants must yield Kubernetes' exact field paths and
//! messages; updates enforce immutability; arbitrary JSON never panics.

use serde_json::{json, Value};

use super::*;

/// The served resource of `kind` (its first entry: apps/v1 rather than the legacy alias).
fn info(kind: &str) -> &'static ResourceInfo {
    crate::resource::RESOURCES.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("{kind} is not served"))
}

fn default_object(kind: &str, obj: &mut Value) {
    super::default_object(info(kind), obj)
}

fn validate_create(kind: &str, obj: &Value) -> Vec<FieldError> {
    super::validate_create(info(kind), obj)
}

fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    super::validate_update(info(kind), old, new)
}

/// What kube-apiserver does on create: fill namespace (namespaced kinds) and uid, default,
/// validate.
fn prepare(kind: &str, mut obj: Value) -> Value {
    let cluster_scoped = matches!(kind, "Namespace" | "Node");
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if !cluster_scoped {
            meta.entry("namespace").or_insert(json!("default"));
        }
        meta.entry("uid").or_insert(json!("7f1c5a1e-0000-4000-8000-000000000001"));
    }
    default_object(kind, &mut obj);
    obj
}

fn create_msgs(kind: &str, obj: Value) -> Vec<String> {
    validate_create(kind, &prepare(kind, obj)).iter().map(FieldError::message).collect()
}

fn update_msgs(kind: &str, old: Value, new: Value) -> Vec<String> {
    let old = prepare(kind, old);
    let new = prepare(kind, new);
    validate_update(kind, &old, &new).iter().map(FieldError::message).collect()
}

fn nginx_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn my_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "my-service"},
        "spec": {"selector": {"app.kubernetes.io/name": "MyApp"},
                 "ports": [{"protocol": "TCP", "port": 80, "targetPort": 9376}]}
    })
}

fn pi_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {
            "template": {"spec": {
                "containers": [{"name": "pi", "image": "perl:5.34.0",
                                "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]}],
                "restartPolicy": "Never"}},
            "backoffLimit": 4
        }
    })
}

fn hello_cronjob() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "hello"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "hello", "image": "busybox:1.28", "imagePullPolicy": "IfNotPresent",
                                "command": ["/bin/sh", "-c", "date; echo Hello from the Kubernetes cluster"]}],
                "restartPolicy": "OnFailure"}}}}
        }
    })
}

fn fluentd_daemonset() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "fluentd-elasticsearch", "namespace": "kube-system",
                     "labels": {"k8s-app": "fluentd-logging"}},
        "spec": {
            "selector": {"matchLabels": {"name": "fluentd-elasticsearch"}},
            "template": {
                "metadata": {"labels": {"name": "fluentd-elasticsearch"}},
                "spec": {
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [{
                        "name": "fluentd-elasticsearch",
                        "image": "quay.io/fluentd_elasticsearch/fluentd:v2.5.2",
                        "resources": {"limits": {"memory": "200Mi"}, "requests": {"cpu": "100m", "memory": "200Mi"}},
                        "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}]
                    }],
                    "terminationGracePeriodSeconds": 30,
                    "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}]
                }
            }
        }
    })
}

fn web_statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "serviceName": "nginx",
            "replicas": 3,
            "minReadySeconds": 10,
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "nginx", "image": "registry.k8s.io/nginx-slim:0.24",
                        "ports": [{"containerPort": 80, "name": "web"}],
                        "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]
                    }],
                    "volumes": [{"name": "www", "emptyDir": {}}]
                }
            }
        }
    })
}

/// Kubernetes' documentation example: storage from a claim template instead of a volume.
fn web_statefulset_with_claims() -> Value {
    let mut sts = edit(web_statefulset(), "/spec/template/spec/volumes", None);
    sts["spec"]["volumeClaimTemplates"] = json!([{
        "metadata": {"name": "www"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "my-storage-class",
                 "resources": {"requests": {"storage": "1Gi"}}}
    }]);
    sts
}

#[test]
fn statefulset_volume_claim_templates_are_refused() {
    assert_eq!(
        create_msgs("StatefulSet", web_statefulset_with_claims()),
        vec![
            "spec.volumeClaimTemplates: Forbidden: persistent volume claims are not supported by Berth yet".to_string()
        ]
    );
    // An empty list is no claim at all.
    let mut sts = web_statefulset();
    sts["spec"]["volumeClaimTemplates"] = json!([]);
    assert!(create_msgs("StatefulSet", sts).is_empty());
}

fn headless_nginx_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {"ports": [{"port": 80, "name": "web"}], "clusterIP": "None", "selector": {"app": "nginx"}}
    })
}

fn nginx_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nginx"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}
    })
}

fn good_objects() -> Vec<(&'static str, Value)> {
    vec![
        ("Deployment", nginx_deployment()),
        ("Service", my_service()),
        ("Service", headless_nginx_service()),
        ("Job", pi_job()),
        ("CronJob", hello_cronjob()),
        ("DaemonSet", fluentd_daemonset()),
        ("StatefulSet", web_statefulset()),
        ("Pod", nginx_pod()),
        (
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busybox-sleep", "labels": {"app": "demo"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
                "containers": [{
                    "name": "app", "image": "busybox:1.36",
                    "env": [{"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            {"name": "GREETING", "value": "hi"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                  "limits": {"cpu": 1, "memory": "128Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "readinessProbe": {"tcpSocket": {"port": "http"}},
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"},
                                     {"name": "scratch", "mountPath": "/tmp"}]
                }],
                "volumes": [{"name": "cfg", "configMap": {"name": "game-demo"}}, {"name": "scratch"}],
                "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute",
                                 "tolerationSeconds": 60}]
            }}),
        ),
        (
            "ReplicaSet",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "frontend", "labels": {"app": "guestbook", "tier": "frontend"}},
                   "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "frontend"}},
                            "template": {"metadata": {"labels": {"tier": "frontend"}},
                                         "spec": {"containers": [{"name": "php-redis",
                                                                  "image": "us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5"}]}}}}),
        ),
        (
            "ConfigMap",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "game-demo"},
                   "data": {"player_initial_lives": "3", "ui_properties_file_name": "user-interface.properties",
                            "game.properties": "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"}}),
        ),
        (
            "Secret",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mysecret"}, "type": "Opaque",
                   "data": {"username": "YWRtaW4=", "password": "MWYyZDFlMmU2N2Rm"}}),
        ),
        (
            "Secret",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secret-basic-auth"},
                   "type": "kubernetes.io/basic-auth", "stringData": {"username": "admin", "password": "t0p-Secret"}}),
        ),
        ("Namespace", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "development"}})),
        (
            "Node",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "10.240.79.157", "labels": {"name": "my-first-k8s-node"}},
                   "spec": {"podCIDRs": ["10.244.0.0/24"],
                            "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
                   "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}),
        ),
        (
            "Event",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "nginx.17a2b3c4d5e6f7a8"},
                   "involvedObject": {"kind": "Pod", "namespace": "default", "name": "nginx"},
                   "reason": "Scheduled", "message": "Successfully assigned default/nginx to node1",
                   "source": {"component": "default-scheduler"}, "type": "Normal", "count": 1}),
        ),
        ("ServiceAccount", json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "build-robot"}})),
        (
            "Lease",
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node1"},
                   "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 40,
                            "renewTime": "2024-01-01T00:00:00.000000Z"}}),
        ),
        (
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "php-apache"},
                   "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
                            "minReplicas": 1, "maxReplicas": 10,
                            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                         "target": {"type": "Utilization", "averageUtilization": 50}}}]}}),
        ),
        (
            "ResourceQuota",
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute-resources"},
                   "spec": {"hard": {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2",
                                     "limits.memory": "2Gi", "requests.nvidia.com/gpu": 4, "pods": "10",
                                     "count/deployments.apps": "5"}}}),
        ),
        (
            "Service",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-database"},
                   "spec": {"type": "ExternalName", "externalName": "my.database.example.com"}}),
        ),
        (
            "Service",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
                   "spec": {"type": "NodePort", "selector": {"app": "x"},
                            "ports": [{"port": 80, "targetPort": "http", "nodePort": 30007}]}}),
        ),
        (
            "Endpoints",
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "my-service"},
                   "subsets": [{"addresses": [{"ip": "192.0.2.42"}], "ports": [{"port": 9376}]}]}),
        ),
        (
            // The example-abc slice of the Kubernetes docs.
            "EndpointSlice",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "example-abc", "labels": {"kubernetes.io/service-name": "example"}},
                   "addressType": "IPv4",
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
                   "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": true},
                                  "hostname": "pod-1", "nodeName": "node-1", "zone": "us-west2-a"}]}),
        ),
    ]
}

#[test]
fn good_manifests_pass() {
    for (kind, obj) in good_objects() {
        let errs = create_msgs(kind, obj.clone());
        assert!(errs.is_empty(), "{kind} {}: {errs:#?}", obj["metadata"]["name"]);
        // An unchanged update is always valid too.
        let errs = update_msgs(kind, obj.clone(), obj.clone());
        assert!(errs.is_empty(), "update {kind} {}: {errs:#?}", obj["metadata"]["name"]);
    }
}

/// Applies a JSON-pointer edit: `Some(v)` sets, `None` removes.
fn edit(mut obj: Value, pointer: &str, v: Option<Value>) -> Value {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer");
    let target = obj.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match (target, v) {
        (Value::Object(m), Some(v)) => {
            m.insert(last.to_string(), v);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(v)) => {
            let i = last.parse::<usize>().expect("index");
            if i == a.len() {
                a.push(v);
            } else {
                a[i] = v;
            }
        }
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().expect("index"));
        }
        _ => panic!("bad edit target {pointer}"),
    }
    obj
}

const TPL: &str = "/spec/template/spec";

#[test]
fn bad_objects_report_kubernetes_messages() {
    let dns_label_err = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    let subdomain_err = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "Deployment",
            edit(nginx_deployment(), "/metadata/name", Some(json!("Foo"))),
            vec![format!("metadata.name: Invalid value: \"Foo\": {subdomain_err}")],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/selector", None),
            vec!["spec.selector: Required value".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/selector/matchLabels/app", Some(json!("web"))),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"nginx\"}: `selector` does not match template `labels`".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/image", None),
            vec!["spec.template.spec.containers[0].image: Required value".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers", Some(json!([]))),
            vec!["spec.template.spec.containers: Required value".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/replicas", Some(json!(-1))),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/strategy", Some(json!({"type": "BlueGreen"}))),
            vec!["spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\"".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/strategy", Some(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}))),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/restartPolicy", Some(json!("Never"))),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".into()],
        ),
        (
            "Deployment",
            edit(
                nginx_deployment(),
                "/spec/template/spec/containers/1",
                Some(json!({"name": "nginx", "image": "nginx"})),
            ),
            vec!["spec.template.spec.containers[1].name: Duplicate value: \"nginx\"".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/name", Some(json!("Nginx_1"))),
            vec![format!("spec.template.spec.containers[0].name: Invalid value: \"Nginx_1\": {dns_label_err}")],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/ports/0/containerPort", Some(json!(70000))),
            vec!["spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/ports/0/protocol", Some(json!("XTP"))),
            vec!["spec.template.spec.containers[0].ports[0].protocol: Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/imagePullPolicy", Some(json!("Sometimes"))),
            vec!["spec.template.spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/dnsPolicy", Some(json!("Cluster"))),
            vec!["spec.template.spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"".into()],
        ),
        (
            "Deployment",
            edit(
                nginx_deployment(),
                "/spec/template/spec/containers/0/resources",
                Some(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}})),
            ),
            vec!["spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 500m".into()],
        ),
        (
            "Deployment",
            edit(
                nginx_deployment(),
                "/spec/template/spec/containers/0/resources",
                Some(json!({"requests": {"memory": "1.5.3", "cpu": "-1"}})),
            ),
            vec![
                "spec.template.spec.containers[0].resources.requests[memory]: Invalid value: \"1.5.3\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into(),
                "spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0".into(),
            ],
        ),
        (
            "Deployment",
            edit(
                nginx_deployment(),
                "/spec/template/spec/containers/0/volumeMounts",
                Some(json!([{"name": "data", "mountPath": "/data"}])),
            ),
            vec!["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\"".into()],
        ),
        (
            "Deployment",
            edit(
                nginx_deployment(),
                "/spec/template/spec/volumes",
                Some(json!([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}])),
            ),
            vec!["spec.template.spec.volumes[1].name: Duplicate value: \"a\"".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/env", Some(json!([{"name": "A=B", "value": "x"}]))),
            vec!["spec.template.spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='".into()],
        ),
        (
            "Deployment",
            edit(
                nginx_deployment(),
                "/spec/selector",
                Some(json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["nginx"]}]})),
            ),
            vec!["spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/metadata/labels", Some(json!({"-bad": "ok"}))),
            vec!["metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/metadata/annotations", Some(json!({"big": "x".repeat(256 * 1024)}))),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes".into()],
        ),
        (
            "Deployment",
            edit(nginx_deployment(), "/spec/template/spec/containers/0/image", Some(json!(42))),
            vec![
                "spec.template.spec.containers[0].image: Invalid value: 42: must be of type string".into(),
                "spec.template.spec.containers[0].image: Required value".into(),
            ],
        ),
        (
            "Pod",
            edit(nginx_pod(), "/spec/restartPolicy", Some(json!("Sometimes"))),
            vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into()],
        ),
        (
            "Pod",
            edit(nginx_pod(), "/metadata/name", None),
            vec!["metadata.name: Required value: name or generateName is required".into()],
        ),
        (
            "Pod",
            edit(nginx_pod(), "/spec/tolerations", Some(json!([{"operator": "Equal", "value": "x"}]))),
            vec!["spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"".into()],
        ),
        (
            "Pod",
            edit(nginx_pod(), "/spec/containers/0/livenessProbe", Some(json!({"periodSeconds": 5}))),
            vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/ports/0/protocol", Some(json!("XTP"))),
            vec!["spec.ports[0].protocol: Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/type", Some(json!("Internal"))),
            vec!["spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into()],
        ),
        (
            "Service",
            edit(my_service(), "/metadata/name", Some(json!("1-service"))),
            vec!["metadata.name: Invalid value: \"1-service\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/ports/0/targetPort", Some(json!("Http_Port"))),
            vec![
                "spec.ports[0].targetPort: Invalid value: \"Http_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
            ],
        ),
        (
            "Service",
            edit(my_service(), "/spec/ports/0/port", Some(json!(0))),
            vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/ports/0/nodePort", Some(json!(30080))),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into()],
        ),
        (
            "Service",
            edit(edit(my_service(), "/spec/type", Some(json!("NodePort"))), "/spec/ports/0/nodePort", Some(json!(80))),
            vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/ports", Some(json!([]))),
            vec!["spec.ports: Required value".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/sessionAffinity", Some(json!("Sticky"))),
            vec!["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"".into()],
        ),
        (
            "Job",
            edit(pi_job(), "/spec/template/spec/restartPolicy", None),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into()],
        ),
        (
            "Job",
            edit(pi_job(), "/spec/template/spec/restartPolicy", Some(json!("Sometimes"))),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into(),
                "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"OnFailure\", \"Never\"".into(),
            ],
        ),
        (
            "Job",
            edit(pi_job(), "/spec/backoffLimit", Some(json!(-2))),
            vec!["spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0".into()],
        ),
        (
            "CronJob",
            edit(hello_cronjob(), "/spec/schedule", Some(json!("* * * *"))),
            vec!["spec.schedule: Invalid value: \"* * * *\": expected exactly 5 fields, found 4: [* * * *]".into()],
        ),
        (
            "CronJob",
            edit(hello_cronjob(), "/spec/schedule", Some(json!("61 * * * *"))),
            vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61".into()],
        ),
        (
            "CronJob",
            edit(hello_cronjob(), "/spec/concurrencyPolicy", Some(json!("Sometimes"))),
            vec!["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"".into()],
        ),
        (
            "CronJob",
            edit(hello_cronjob(), "/spec/jobTemplate/spec/template/spec/restartPolicy", Some(json!("Always"))),
            vec![
                "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
                    .into(),
            ],
        ),
        (
            "DaemonSet",
            edit(fluentd_daemonset(), "/spec/selector", Some(json!({}))),
            vec!["spec.selector: Invalid value: {}: empty selector is invalid for daemonset".into()],
        ),
        (
            "DaemonSet",
            edit(fluentd_daemonset(), "/spec/template/spec/tolerations/0/effect", Some(json!("NoRun"))),
            vec!["spec.template.spec.tolerations[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into()],
        ),
        (
            "StatefulSet",
            edit(web_statefulset(), "/spec/podManagementPolicy", Some(json!("Random"))),
            vec!["spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'".into()],
        ),
        (
            "StatefulSet",
            edit(web_statefulset(), "/spec/template/spec/containers/0/volumeMounts/0/name", Some(json!("data"))),
            vec!["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\"".into()],
        ),
        (
            "ConfigMap",
            json!({"metadata": {"name": "cm"}, "data": {"bad key": "v", "..x": "y"}}),
            vec![
                "data[..x]: Invalid value: \"..x\": must not start with '..'".into(),
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into(),
            ],
        ),
        (
            "Secret",
            json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
            vec!["data[tls.key]: Required value".into()],
        ),
        (
            "Namespace",
            json!({"metadata": {"name": "my.ns"}}),
            vec!["metadata.name: Invalid value: \"my.ns\": must not contain dots".into()],
        ),
        (
            "Namespace",
            json!({"metadata": {"name": "ns", "namespace": "default"}}),
            vec!["metadata.namespace: Forbidden: not allowed on this type".into()],
        ),
        (
            "Node",
            json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}),
            vec!["metadata.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into()],
        ),
        (
            "Lease",
            json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0".into(),
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0".into(),
            ],
        ),
        (
            "HorizontalPodAutoscaler",
            json!({"metadata": {"name": "h"}, "spec": {"minReplicas": 5, "maxReplicas": 2,
                   "scaleTargetRef": {"kind": "Deployment"}}}),
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`".into(),
                "spec.scaleTargetRef.name: Required value".into(),
            ],
        ),
        (
            "ResourceQuota",
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1.5", "cpu": "-1", "widgets": "3"}}}),
            vec![
                "spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0".into(),
                "spec.hard[pods]: Invalid value: 1500m: must be an integer".into(),
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified".into(),
            ],
        ),
        (
            "Endpoints",
            json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "169.254.1.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)".into()],
        ),
        (
            "EndpointSlice",
            json!({"metadata": {"name": "s"}, "addressType": "IPv5",
                   "endpoints": [{"addresses": []}, {"addresses": ["10.0.0.300"]}],
                   "ports": [{"name": "http", "port": 70000}, {"name": "http", "port": 80}]}),
            vec![
                "addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"".into(),
                "endpoints[0].addresses: Required value: must contain at least 1 address".into(),
                "ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
                "ports[1].name: Duplicate value: \"http\"".into(),
            ],
        ),
        (
            "EndpointSlice",
            json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]}),
            vec!["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address".into()],
        ),
        (
            "Event",
            json!({"metadata": {"name": "ev"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}}),
            vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace".into()],
        ),
        (
            "Event",
            json!({"apiVersion": "v1", "metadata": {"name": "a/b"}, "involvedObject": {"kind": "Pod", "name": "p"}}),
            vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'".into()],
        ),
        (
            "Event",
            json!({"apiVersion": "events.k8s.io/v1", "metadata": {"name": "ev"}, "regarding": {"kind": "Pod", "name": "p"},
                   "reportingController": "kubelet", "reportingInstance": "node1", "action": "Pulling",
                   "reason": "Pulling", "type": "Info", "deprecatedCount": 3}),
            vec![
                "eventTime: Required value".into(),
                "type: Invalid value: \"\": has invalid value: Info".into(),
                "count: Invalid value: \"\": needs to be unset".into(),
            ],
        ),
        (
            "Event",
            json!({"apiVersion": "events.k8s.io/v1", "metadata": {"name": "ev"}, "regarding": {"kind": "Pod", "name": "p"},
                   "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "kubelet",
                   "reportingInstance": "node1", "action": "Pulling", "reason": "Pulling", "type": "Normal"}),
            vec![],
        ),
    ];
    for (kind, obj, expected) in cases {
        let got = create_msgs(kind, obj.clone());
        assert_eq!(got, expected, "{kind}: {obj}");
    }
}

#[test]
fn update_rules() {
    let tpl_image = |img: &str| edit(nginx_deployment(), &format!("{TPL}/containers/0/image"), Some(json!(img)));
    let cases: Vec<(&str, Value, Value, Vec<String>)> = vec![
        // Template changes are fine for a Deployment, selector changes are not.
        ("Deployment", nginx_deployment(), tpl_image("nginx:1.16.1"), vec![]),
        (
            "Deployment",
            nginx_deployment(),
            edit(
                edit(nginx_deployment(), "/spec/selector/matchLabels/tier", Some(json!("web"))),
                "/spec/template/metadata/labels/tier",
                Some(json!("web")),
            ),
            vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"nginx\",\"tier\":\"web\"}}: field is immutable".into()],
        ),
        (
            "Deployment",
            nginx_deployment(),
            edit(nginx_deployment(), "/metadata/name", Some(json!("other"))),
            vec!["metadata.name: Invalid value: \"other\": field is immutable".into()],
        ),
        ("Pod", nginx_pod(), edit(nginx_pod(), "/spec/containers/0/image", Some(json!("nginx:1.16"))), vec![]),
        ("Pod", nginx_pod(), edit(nginx_pod(), "/spec/activeDeadlineSeconds", Some(json!(60))), vec![]),
        (
            "Pod",
            nginx_pod(),
            edit(nginx_pod(), "/spec/tolerations", Some(json!([{"key": "a", "operator": "Exists"}]))),
            vec![],
        ),
        (
            "Pod",
            edit(nginx_pod(), "/spec/tolerations", Some(json!([{"key": "a", "operator": "Exists"}]))),
            nginx_pod(),
            vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".into()],
        ),
        (
            "Pod",
            edit(nginx_pod(), "/spec/activeDeadlineSeconds", Some(json!(60))),
            edit(nginx_pod(), "/spec/activeDeadlineSeconds", Some(json!(120))),
            vec!["spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value".into()],
        ),
        (
            "Service",
            edit(my_service(), "/spec/clusterIP", Some(json!("10.96.0.10"))),
            edit(my_service(), "/spec/clusterIP", Some(json!("10.96.0.11"))),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set".into(),
            ],
        ),
        (
            "Service",
            edit(my_service(), "/spec/clusterIP", Some(json!("10.96.0.10"))),
            my_service(),
            vec![],
        ),
        (
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": true}),
            json!({"metadata": {"name": "c"}, "data": {"a": "2"}, "immutable": true}),
            vec!["data: Forbidden: field is immutable when `immutable` is set".into()],
        ),
        (
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            json!({"metadata": {"name": "c"}, "data": {"a": "2"}}),
            vec![],
        ),
        (
            "Secret",
            json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "immutable": true}),
            json!({"metadata": {"name": "s"}, "data": {"a": "Yg=="}, "immutable": false}),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set".into(),
                "data: Forbidden: field is immutable when `immutable` is set".into(),
            ],
        ),
        ("Job", pi_job(), edit(pi_job(), "/spec/backoffLimit", Some(json!(2))), vec![]),
        (
            "Job",
            edit(pi_job(), "/spec/completions", Some(json!(1))),
            edit(edit(pi_job(), "/spec/completions", Some(json!(1))), "/spec/parallelism", Some(json!(3))),
            vec![],
        ),
        (
            "Job",
            edit(pi_job(), "/spec/completions", Some(json!(1))),
            edit(pi_job(), "/spec/completions", Some(json!(2))),
            vec!["spec.completions: Invalid value: 2: field is immutable".into()],
        ),
        (
            "StatefulSet",
            web_statefulset(),
            edit(web_statefulset(), "/spec/serviceName", Some(json!("other"))),
            vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into()],
        ),
        ("StatefulSet", web_statefulset(), edit(web_statefulset(), "/spec/replicas", Some(json!(5))), vec![]),
        (
            "Node",
            json!({"metadata": {"name": "n"}, "spec": {"providerID": "aws:///i-1"}}),
            json!({"metadata": {"name": "n"}, "spec": {"providerID": "aws:///i-2"}}),
            vec!["spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid".into()],
        ),
    ];
    for (kind, old, new, expected) in cases {
        assert_eq!(update_msgs(kind, old.clone(), new.clone()), expected, "{kind}: {old} -> {new}");
    }
}

#[test]
fn pod_spec_change_is_forbidden_with_kubernetes_prefix() {
    let old = nginx_pod();
    let new = edit(nginx_pod(), "/spec/containers/0/ports/0/containerPort", Some(json!(8080)));
    let errs = update_msgs("Pod", old, new);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{}", errs[0]);
    assert!(errs[0].contains("spec.containers[0].ports[0].containerPort: 80 -> 8080"), "{}", errs[0]);
}

#[test]
fn job_template_is_immutable() {
    let old = prepare("Job", pi_job());
    let mut new = old.clone();
    *new.pointer_mut("/spec/template/spec/containers/0/image").unwrap() = json!("perl:5.36");
    let errs: Vec<String> = validate_update("Job", &old, &new).iter().map(FieldError::message).collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec.template: Invalid value: {"), "{}", errs[0]);
    assert!(errs[0].ends_with(": field is immutable"), "{}", errs[0]);
}

#[test]
fn pod_defaults() {
    let pod = prepare(
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
             "resources": {"limits": {"cpu": "1"}},
             "readinessProbe": {"httpGet": {"port": 80}}},
            {"name": "b", "image": "nginx:1.25"}],
            "volumes": [{"name": "v"}, {"name": "c", "configMap": {"name": "x"}}]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["securityContext"], json!({}));
    let a = &spec["containers"][0];
    assert_eq!(a["imagePullPolicy"], "Always");
    assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(a["terminationMessagePolicy"], "File");
    assert_eq!(a["ports"][0]["protocol"], "TCP");
    assert_eq!(a["resources"]["requests"]["cpu"], "1");
    assert_eq!(
        a["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
               "successThreshold": 1, "failureThreshold": 3})
    );
    let b = &spec["containers"][1];
    assert_eq!(b["imagePullPolicy"], "IfNotPresent");
    assert_eq!(b["resources"], json!({}));
    assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
}

#[test]
fn workload_defaults() {
    let d = prepare("Deployment", nginx_deployment());
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert!(d["spec"]["template"]["spec"].get("serviceAccountName").is_none());
    assert!(d["spec"]["template"]["spec"].get("enableServiceLinks").is_none());

    let ds = prepare("DaemonSet", fluentd_daemonset());
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

    let ss = prepare("StatefulSet", web_statefulset());
    assert_eq!(ss["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(ss["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
    assert_eq!(
        ss["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );

    let rs = prepare("ReplicaSet", json!({"metadata": {"name": "r"}, "spec": {}}));
    assert_eq!(rs["spec"]["replicas"], 1);

    let job = prepare("Job", pi_job());
    let uid = "7f1c5a1e-0000-4000-8000-000000000001";
    let s = &job["spec"];
    assert_eq!((s["completions"].clone(), s["parallelism"].clone()), (json!(1), json!(1)));
    assert_eq!(s["backoffLimit"], 4);
    assert_eq!(s["completionMode"], "NonIndexed");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["manualSelector"], false);
    assert_eq!(s["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    assert_eq!(
        s["template"]["metadata"]["labels"],
        json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
               "controller-uid": uid, "job-name": "pi"})
    );
    assert_eq!(job["metadata"]["labels"], s["template"]["metadata"]["labels"]);
    assert_eq!(prepare("Job", json!({"metadata": {"name": "j"}, "spec": {}}))["spec"]["backoffLimit"], 6);

    let cj = prepare("CronJob", hello_cronjob());
    let s = &cj["spec"];
    assert_eq!(s["concurrencyPolicy"], "Allow");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["successfulJobsHistoryLimit"], 3);
    assert_eq!(s["failedJobsHistoryLimit"], 1);
    assert_eq!(s["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
}

#[test]
fn other_defaults() {
    let svc = prepare("Service", my_service());
    let s = &svc["spec"];
    assert_eq!(s["type"], "ClusterIP");
    assert_eq!(s["sessionAffinity"], "None");
    assert_eq!(s["ipFamilies"], json!(["IPv4"]));
    assert_eq!(s["ipFamilyPolicy"], "SingleStack");
    assert_eq!(s["internalTrafficPolicy"], "Cluster");
    assert!(s.get("clusterIP").is_none(), "allocation is the caller's job");
    let headless = prepare("Service", headless_nginx_service());
    assert_eq!(headless["spec"]["ports"][0], json!({"port": 80, "name": "web", "protocol": "TCP", "targetPort": 80}));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    let np = prepare(
        "Service",
        json!({"metadata": {"name": "n"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 1}]}}),
    );
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(np["spec"]["allocateLoadBalancerNodePorts"], true);

    let secret = prepare(
        "Secret",
        json!({"metadata": {"name": "s"}, "stringData": {"username": "admin"}, "data": {"x": "eQ=="}}),
    );
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"], json!({"username": "YWRtaW4=", "x": "eQ=="}));
    assert!(secret.get("stringData").is_none());

    let ns = prepare("Namespace", json!({"metadata": {"name": "dev"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "dev");

    let hpa = prepare(
        "HorizontalPodAutoscaler",
        json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
}

#[test]
fn field_error_rendering() {
    let e = FieldError::required("spec.selector", "");
    assert_eq!(e.message(), "spec.selector: Required value");
    assert_eq!(e.reason(), "FieldValueRequired");
    let e = FieldError::not_supported("spec.ports[0].protocol", json::q("XTP"), pod::PROTOCOLS);
    assert_eq!(
        e.message(),
        "spec.ports[0].protocol: Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
    );
    assert_eq!(e.reason(), "FieldValueNotSupported");
    let e = FieldError {
        error_type: ErrorType::TooMany,
        field: "spec.x".into(),
        value: Some("5".into()),
        detail: "must have at most 3 items".into(),
    };
    assert_eq!(e.message(), "spec.x: Too many: 5: must have at most 3 items");
    assert_eq!(e.reason(), "FieldValueTooMany");
    // Forbidden never prints a value even if one was recorded.
    let e = FieldError {
        error_type: ErrorType::Forbidden,
        field: "f".into(),
        value: Some("\"x\"".into()),
        detail: "no".into(),
    };
    assert_eq!(e.message(), "f: Forbidden: no");
    assert_eq!(json::q("a\"b\n"), "\"a\\\"b\\n\"");
}

#[test]
fn generate_name_is_validated_as_prefix() {
    let pod = edit(edit(nginx_pod(), "/metadata/name", None), "/metadata/generateName", Some(json!("nginx-")));
    assert!(create_msgs("Pod", pod).is_empty());
    let pod = edit(edit(nginx_pod(), "/metadata/name", None), "/metadata/generateName", Some(json!("Nginx-")));
    assert_eq!(create_msgs("Pod", pod).len(), 1);
}

/// Replaces every node of every good manifest with values of every JSON type and checks
/// that defaulting and validation never panic.
#[test]
fn arbitrary_json_never_panics() {
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{k}"), out)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
            _ => {}
        }
    }
    let replacements =
        [json!(null), json!(-1), json!(1.5), json!("x"), json!(""), json!(true), json!([]), json!({}), json!([1, {}])];
    let mut runs = 0;
    for (kind, obj) in good_objects() {
        let mut ptrs = Vec::new();
        pointers(&obj, String::new(), &mut ptrs);
        for p in ptrs {
            for r in &replacements {
                let mut broken = obj.clone();
                match broken.pointer_mut(&p) {
                    Some(slot) => *slot = r.clone(),
                    None => continue,
                }
                let mut defaulted = broken.clone();
                default_object(kind, &mut defaulted);
                let _ = validate_create(kind, &defaulted);
                let _ = validate_update(kind, &obj, &defaulted);
                let _ = validate_update(kind, &defaulted, &broken);
                runs += 1;
            }
        }
    }
    assert!(runs > 1000);
}
