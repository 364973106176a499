//! Round trips through the codec, and cross-checks against k8s-pb's independently
//! generated message types: what Berth writes, typed Kubernetes code reads, and what a Go
//! client writes (every non-pointer field, zero or not), Berth reads as Go's JSON.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::*;

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web", "empty": ""},
            "creationTimestamp": "2026-12-06T10:00:00Z",
            "generation": 3,
            "managedFields": [{"manager": "kubectl", "operation": "Update", "time": "2026-12-06T10:00:00Z",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "registry.local/web:1",
                        "args": ["--port", ""],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"memory": "512Mi", "cpu": "250m"}},
                        "stdin": false,
                        "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}
                    }],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "terminationGracePeriodSeconds": 0
                }
            }
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
            "lastUpdateTime": "2026-12-06T10:00:01Z", "lastTransitionTime": "2026-12-06T10:00:01Z"}]}
    })
}

fn raw_of(enveloped: &[u8]) -> Vec<u8> {
    let unknown = DynamicMessage::decode(schema::unknown(), &enveloped[MAGIC.len()..]).unwrap();
    unknown.get_field_by_name("raw").unwrap().as_bytes().unwrap().to_vec()
}

#[test]
fn an_object_round_trips_through_protobuf_unchanged() {
    let original = deployment();
    let bytes = encode_object(&original).unwrap();
    assert!(bytes.starts_with(MAGIC));
    assert_eq!(decode_object(&bytes).unwrap(), original);
}

#[test]
fn typed_kubernetes_code_reads_what_berth_writes() {
    let bytes = encode_object(&deployment()).unwrap();
    let typed = apps::Deployment::decode(raw_of(&bytes).as_slice()).unwrap();
    let metadata = typed.metadata.unwrap();
    assert_eq!(metadata.name.as_deref(), Some("web"));
    assert_eq!(metadata.creation_timestamp.unwrap().seconds, Some(1_796_551_200));
    assert_eq!(metadata.labels.get("empty").map(String::as_str), Some(""));
    let spec = typed.spec.unwrap();
    assert_eq!(spec.replicas, Some(0), "a pointer's zero is kept");
    let rolling = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(rolling.max_surge.unwrap().str_val.as_deref(), Some("25%"));
    assert_eq!(rolling.max_unavailable.unwrap().int_val, Some(1));
    let pod_spec = spec.template.unwrap().spec.unwrap();
    assert!(pod_spec.volumes[0].volume_source.as_ref().unwrap().empty_dir.is_some());
    let container = &pod_spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.local/web:1"));
    let limits = &container.resources.as_ref().unwrap().limits;
    assert_eq!(limits["memory"].string.as_deref(), Some("512Mi"));
    // Embedded Go structs (`json:",inline"`) are fields of their own in protobuf.
    let config_map = container.env[0].value_from.as_ref().unwrap().config_map_key_ref.as_ref().unwrap();
    assert_eq!(config_map.local_object_reference.as_ref().unwrap().name.as_deref(), Some("settings"));
    let probe = container.readiness_probe.as_ref().unwrap();
    assert_eq!(probe.handler.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
}

#[test]
fn what_a_go_client_writes_reads_as_go_json() {
    // kubectl's typed objects write every non-pointer field, empty or not.
    let empty = || Some(String::new());
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            generate_name: empty(),
            namespace: empty(),
            resource_version: empty(),
            generation: Some(0),
            creation_timestamp: Some(meta::Time { seconds: None, nanos: None }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                image_pull_policy: empty(),
                resources: Some(core::ResourceRequirements {
                    requests: [("cpu".to_string(), Quantity { string: Some("100m".into()) })].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            restart_policy: empty(),
            ..Default::default()
        }),
        status: Some(core::PodStatus { phase: empty(), ..Default::default() }),
    };
    let mut body = MAGIC.to_vec();
    k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        }),
        raw: Some(pod.encode_to_vec()),
        content_encoding: empty(),
        content_type: empty(),
    }
    .encode(&mut body)
    .unwrap();
    assert_eq!(
        decode_object(&body).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "generation": 0},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {}
        })
    );
}

#[test]
fn int_or_string_and_bytes_travel_as_go_writes_them() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "type": "Opaque", "data": {"password": "c2VjcmV0"}});
    let bytes = encode_object(&secret).unwrap();
    let typed = core::Secret::decode(raw_of(&bytes).as_slice()).unwrap();
    assert_eq!(typed.data["password"], b"secret");
    assert_eq!(decode_object(&bytes).unwrap(), secret);
    let probe = IntOrString { r#type: Some(0), int_val: Some(8080), str_val: None };
    let message = DynamicMessage::decode(
        schema::pool().get_message_by_name("apimachinery.pkg.util.intstr.IntOrString").unwrap(),
        probe.encode_to_vec().as_slice(),
    )
    .unwrap();
    assert_eq!(to_json::message(&message).unwrap(), json!(8080));
}

#[test]
fn a_custom_resource_definition_keeps_its_schema_keywords() {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "size": {"x-kubernetes-int-or-string": true, "default": 3},
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "extra": {"type": "object", "additionalProperties": {"type": "string"}},
                    "open": {"type": "object", "additionalProperties": true},
                    "ref": {"$ref": "#/definitions/x"}
                },
                "required": ["size"]
            }}}]}
    });
    let bytes = encode_object(&crd).unwrap();
    assert_eq!(decode_object(&bytes).unwrap(), crd);
}

#[test]
fn a_watch_stream_frames_each_event() {
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}});
    let mut stream = watch_frame("ADDED", &first).unwrap();
    stream.extend(watch_frame("DELETED", &second).unwrap());
    let (kind, object, used) = read_watch_frame(&stream).unwrap().unwrap();
    assert_eq!((kind.as_str(), &object), ("ADDED", &first));
    let (kind, object, rest) = read_watch_frame(&stream[used..]).unwrap().unwrap();
    assert_eq!((kind.as_str(), &object), ("DELETED", &second));
    assert_eq!(used + rest, stream.len());
    assert_eq!(read_watch_frame(&stream[..used - 1]).unwrap(), None, "an incomplete frame waits");
}

#[test]
fn lists_and_meta_kinds_have_messages() {
    for (api_version, kind) in [
        ("v1", "PodList"),
        ("v1", "Status"),
        ("apps/v1", "DeleteOptions"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("meta.k8s.io/v1", "PartialObjectMetadataList"),
        ("extensions/v1beta1", "Deployment"),
    ] {
        assert!(schema::message_for(api_version, kind).is_some(), "{api_version} {kind}");
    }
    // Table is `+protobuf=false` in apimachinery: kube-apiserver serves it as JSON only.
    for (api_version, kind) in
        [("example.com/v1", "Widget"), ("v1", "v1.Pod"), ("v1", ""), ("", "Pod"), ("meta.k8s.io/v1", "Table")]
    {
        assert!(schema::message_for(api_version, kind).is_none(), "{api_version} {kind}");
    }
    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]});
    let typed = core::PodList::decode(raw_of(&encode_object(&list).unwrap()).as_slice()).unwrap();
    assert_eq!(typed.items.len(), 2);
    assert_eq!(typed.metadata.unwrap().resource_version.as_deref(), Some("7"));
}

#[test]
fn bad_bodies_are_refused_with_the_reason() {
    let good = encode_object(&deployment()).unwrap();
    assert_eq!(decode_object(b"{\"kind\":\"Pod\"}"), Err(ProtobufError::NoMagic));
    assert!(matches!(decode_object(&good[..good.len() - 7]), Err(ProtobufError::Decode { .. })));
    let mut wrong_kind = MAGIC.to_vec();
    k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("example.com/v1".into()),
            kind: Some("Widget".into()),
        }),
        raw: Some(vec![]),
        ..Default::default()
    }
    .encode(&mut wrong_kind)
    .unwrap();
    assert_eq!(
        decode_object(&wrong_kind).unwrap_err().to_string(),
        "no kind \"Widget\" is registered for version \"example.com/v1\""
    );
    // A pod's bytes sent as a Deployment: wire types disagree, or fields land elsewhere; either
    // way nothing panics.
    let _ = decode_object(&[MAGIC, &[0x0a, 0x02, 0x08, 0x01, 0x12, 0x03, 0xff, 0xff, 0xff]].concat());
    let mistyped = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "three"}});
    assert_eq!(encode_object(&mistyped).unwrap_err().to_string(), "spec.replicas: expected an integer, got a string");
    let mistyped = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": 1}]}});
    assert_eq!(
        encode_object(&mistyped).unwrap_err().to_string(),
        "spec.containers[0].name: expected a string, got a number"
    );
    assert_eq!(encode_object(&json!({"metadata": {}})), Err(ProtobufError::NoTypeMeta));
}

#[test]
fn durations_read_and_print_as_go_does() {
    for (nanos, text) in [
        (0, "0s"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (150_000_000, "150ms"),
        (-2_000, "-2µs"),
    ] {
        assert_eq!(to_json::go_duration(nanos), text);
        assert_eq!(from_json::parse_go_duration(text), Some(nanos), "{text}");
    }
    assert_eq!(from_json::parse_go_duration("1h30m"), Some(5_400_000_000_000));
    assert_eq!(from_json::parse_go_duration("5 parsecs"), None);
    assert_eq!(from_json::parse_go_duration(""), None);
}

#[test]
fn the_direct_encoder_writes_what_the_dynamic_message_holds() {
    for object in
        [deployment(), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "YQ=="}})]
    {
        let descriptor =
            schema::message_for(object["apiVersion"].as_str().unwrap(), object["kind"].as_str().unwrap()).unwrap();
        let mut direct = Vec::new();
        from_json::encode(&descriptor, &object, &mut direct).unwrap();
        let decoded = DynamicMessage::decode(descriptor.clone(), direct.as_slice()).unwrap();
        assert_eq!(decoded, from_json::message(&descriptor, &object).unwrap());
    }
}
