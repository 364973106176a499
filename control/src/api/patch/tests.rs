//! Table-driven tests for the patch module. Strategic-merge cases marked "upstream" are the
//! strategicpatch test data (patch_test.go) with their MergeItem fields mapped onto real Pod
//! fields of the same strategy: mergingList → spec.containers (merge, name), mergingIntList →
//! metadata.finalizers (merge, primitive), nonMergingList → spec.tolerations (atomic),
//! simpleMap → metadata.labels, retainKeysMergingList → spec.volumes (merge,retainKeys, name),
//! retainKeysMap → Deployment spec.strategy (retainKeys).

use serde_json::{json, Value};

use super::*;
use crate::registry::managed_fields::record_update;
use crate::resource::patch_schema::root;

const NOW: &str = "2024-01-01T00:00:00Z";

struct Case {
    name: &'static str,
    kind: &'static str,
    original: Value,
    patch: Value,
    /// `Err(fragment)`: the patch must fail with a message containing the fragment.
    expected: Result<Value, &'static str>,
}

fn run_smp_cases(cases: Vec<Case>) {
    for c in cases {
        let got = strategic_merge_patch(root(c.kind), &c.original, &c.patch);
        match (&c.expected, got) {
            (Ok(want), Ok(got)) => assert_eq!(&got, want, "case {:?}", c.name),
            (Err(frag), Err(e)) => assert!(e.to_string().contains(frag), "case {:?}: error {e:?}", c.name),
            (want, got) => panic!("case {:?}: want {want:?}, got {got:?}", c.name),
        }
    }
}

/// A Pod-level case where original, patch and expected are all `spec` contents.
fn spec_case(name: &'static str, original: Value, patch: Value, expected: Value) -> Case {
    Case {
        name,
        kind: "Pod",
        original: json!({"spec": original}),
        patch: json!({"spec": patch}),
        expected: Ok(json!({"spec": expected})),
    }
}

fn spec_err(name: &'static str, original: Value, patch: Value, frag: &'static str) -> Case {
    Case { name, kind: "Pod", original: json!({"spec": original}), patch: json!({"spec": patch}), expected: Err(frag) }
}

fn meta_case(name: &'static str, original: Value, patch: Value, expected: Value) -> Case {
    Case {
        name,
        kind: "Pod",
        original: json!({"metadata": original}),
        patch: json!({"metadata": patch}),
        expected: Ok(json!({"metadata": expected})),
    }
}

fn c(name: u64) -> Value {
    json!({"name": name})
}

#[test]
fn strategic_upstream_custom_cases() {
    run_smp_cases(vec![
        meta_case(
            "unique scalars when merging lists",
            json!({"finalizers": [1, 2]}),
            json!({"finalizers": [2, 3]}),
            json!({"finalizers": [1, 2, 3]}),
        ),
        meta_case(
            "delete map from nested map",
            json!({"labels": {"key1": "1", "key2": "1"}}),
            json!({"labels": {"$patch": "delete"}}),
            json!({"labels": {}}),
        ),
        spec_case(
            "delete all items from merging list",
            json!({"containers": [c(1), c(2)]}),
            json!({"containers": [{"$patch": "replace"}]}),
            json!({"containers": []}),
        ),
        spec_case(
            "merge empty merging lists",
            json!({"containers": []}),
            json!({"containers": []}),
            json!({"containers": []}),
        ),
        Case {
            name: "delete all keys from map",
            kind: "Pod",
            original: json!({"name": 1, "value": 1}),
            patch: json!({"$patch": "replace"}),
            expected: Ok(json!({})),
        },
        Case {
            name: "add key and delete all keys from map",
            kind: "Pod",
            original: json!({"name": 1, "value": 1}),
            patch: json!({"other": "a", "$patch": "replace"}),
            expected: Ok(json!({"other": "a"})),
        },
        spec_case(
            "delete all duplicate entries in a merging list",
            json!({"containers": [c(1), c(1), {"name": 2, "value": "a"}, c(3), c(3)]}),
            json!({"containers": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
            json!({"containers": [{"name": 2, "value": "a"}]}),
        ),
        spec_case(
            "retainKeys list can add a field when no retainKeys directive present",
            json!({"volumes": [{"name": "bar"}, {"name": "foo"}]}),
            json!({"volumes": [{"name": "foo", "value": "a"}]}),
            json!({"volumes": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
        ),
        spec_case(
            "retainKeys list can delete a field when no retainKeys directive present",
            json!({"volumes": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            json!({"volumes": [{"name": "foo", "value": null}]}),
            json!({"volumes": [{"name": "bar"}, {"name": "foo"}]}),
        ),
        spec_case(
            "preserve the order from the patch in a merging list",
            json!({"containers": [c(1), {"name": 2, "value": "b"}, c(3)]}),
            json!({"containers": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
            json!({"containers": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b",
                "other": "x"}]}),
        ),
        spec_case(
            "preserve the order from the patch in a merging list 2",
            json!({"containers": [c(1), {"name": 2, "value": "b"}, c(3)]}),
            json!({"containers": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
            json!({"containers": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
        ),
        meta_case(
            "preserve the order from the patch in a merging int list",
            json!({"finalizers": [1, 2, 3]}),
            json!({"finalizers": [3, 1, 2]}),
            json!({"finalizers": [3, 1, 2]}),
        ),
        meta_case(
            "preserve the order from the patch in a merging int list 2",
            json!({"finalizers": [1, 2, 3]}),
            json!({"finalizers": [3, 1]}),
            json!({"finalizers": [2, 3, 1]}),
        ),
        spec_case(
            "$setElementOrder contains item that is not present in the list to be merged",
            json!({"containers": [c(1), c(3)]}),
            json!({"$setElementOrder/containers": [c(3), c(2), c(1)], "containers": [{"name": 3, "value": 3},
                {"name": 1, "value": 1}]}),
            json!({"containers": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
        ),
        meta_case(
            "$setElementOrder contains item that is not present in the int list to be merged",
            json!({"finalizers": [1, 3]}),
            json!({"$setElementOrder/finalizers": [3, 2, 1]}),
            json!({"finalizers": [3, 1]}),
        ),
        spec_err(
            "should check if order in $setElementOrder and patch list match",
            json!({"containers": [c(1), c(3), c(2)]}),
            json!({"$setElementOrder/containers": [c(1), c(2), c(3)], "containers": [{"name": 3, "value": 3},
                {"name": 1, "value": 1}]}),
            "doesn't match",
        ),
        Case {
            name: "int list order mismatch",
            kind: "Pod",
            original: json!({"metadata": {"finalizers": [1, 3, 2]}}),
            patch: json!({"metadata": {"$setElementOrder/finalizers": [1, 2, 3], "finalizers": [3, 1]}}),
            expected: Err("doesn't match"),
        },
        spec_err(
            "missing merge key should error out",
            json!({"containers": [{"name": 1, "value": "a"}]}),
            json!({"containers": [{"value": "b"}]}),
            "does not contain declared merge key",
        ),
        meta_case(
            "$deleteFromPrimitiveList of nonexistent item",
            json!({"finalizers": [1, 2]}),
            json!({"$deleteFromPrimitiveList/finalizers": [3]}),
            json!({"finalizers": [1, 2]}),
        ),
        meta_case(
            "$deleteFromPrimitiveList on empty primitive list",
            json!({"finalizers": null}),
            json!({"$deleteFromPrimitiveList/finalizers": [3]}),
            json!({"finalizers": null}),
        ),
        meta_case(
            "$deleteFromPrimitiveList on nonexistent primitive list",
            json!({"foo": ["bar"]}),
            json!({"$deleteFromPrimitiveList/finalizers": [3]}),
            json!({"foo": ["bar"]}),
        ),
        meta_case(
            "$deleteFromPrimitiveList with merge strategy",
            json!({"finalizers": [1, 2, 3]}),
            json!({"$deleteFromPrimitiveList/finalizers": [2]}),
            json!({"finalizers": [1, 3]}),
        ),
        spec_case(
            "$deleteFromPrimitiveList without merge strategy",
            json!({"nonMergingIntList": [1, 2, 3]}),
            json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
            json!({"nonMergingIntList": [1, 3]}),
        ),
    ]);
}

#[test]
fn strategic_retain_keys_map() {
    let dep = |strategy: Value| json!({"spec": {"strategy": strategy}});
    let cases = vec![
        (
            "add a field, no directive",
            json!({"name": "foo"}),
            json!({"value": "bar"}),
            Ok(json!({"name": "foo", "value": "bar"})),
        ),
        (
            "delete a field, no directive",
            json!({"name": "foo", "value": "a"}),
            json!({"value": null}),
            Ok(json!({"name": "foo"})),
        ),
        (
            "merge an empty map",
            json!({"name": "foo", "value": "a"}),
            json!({}),
            Ok(json!({"name": "foo", "value": "a"})),
        ),
        (
            "retainKeys clears unlisted fields",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}),
            json!({"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}),
            Ok(json!({"type": "Recreate"})),
        ),
        (
            "retainKeys keeps listed live fields",
            json!({"name": "foo", "value": "a", "other": "x"}),
            json!({"$retainKeys": ["name", "value"], "value": "b"}),
            Ok(json!({"name": "foo", "value": "b"})),
        ),
        (
            "patch key missing from retainKeys",
            json!({"name": "foo"}),
            json!({"$retainKeys": ["name"], "value": "b"}),
            Err("retainKeys"),
        ),
        ("retainKeys not a list", json!({"name": "foo"}), json!({"$retainKeys": "name"}), Err("retainKeys")),
    ];
    run_smp_cases(
        cases
            .into_iter()
            .map(|(name, o, p, e)| Case {
                name,
                kind: "Deployment",
                original: dep(o),
                patch: dep(p),
                expected: e.map(dep),
            })
            .collect(),
    );
}

/// Upstream three-way cases: `current` patched with the `threeWay` patch must give `result`.
#[test]
fn strategic_upstream_three_way_cases() {
    run_smp_cases(vec![
        Case {
            name: "nil original",
            kind: "Pod",
            original: json!({"name": 1, "other": "a"}),
            patch: json!({"value": 1}),
            expected: Ok(json!({"name": 1, "value": 1, "other": "a"})),
        },
        Case {
            name: "add field and delete field from map",
            kind: "Pod",
            original: json!({"name": 1, "other": "a"}),
            patch: json!({"name": null, "value": 1}),
            expected: Ok(json!({"value": 1, "other": "a"})),
        },
        Case {
            name: "defined null values should propagate overwrite current fields",
            kind: "Pod",
            original: json!({"name": "a", "other": "a"}),
            patch: json!({"name": 1, "value": 1, "other": null}),
            expected: Ok(json!({"name": 1, "value": 1})),
        },
        meta_case(
            "delete field from nested map",
            json!({"labels": {"key1": "1", "key2": "1", "other": "a"}}),
            json!({"labels": {"key2": null}}),
            json!({"labels": {"key1": "1", "other": "a"}}),
        ),
        spec_case(
            "replace list of scalars (atomic)",
            json!({"tolerations": [1, 4]}),
            json!({"tolerations": [2, 3]}),
            json!({"tolerations": [2, 3]}),
        ),
        spec_case(
            "delete all maps from merging list with conflict",
            json!({"containers": [{"name": 1, "other": "a"}, {"name": 2, "other": "b"}]}),
            json!({"containers": [{"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}]}),
            json!({"containers": []}),
        ),
        spec_case(
            "delete all maps from empty merging list",
            json!({"containers": []}),
            json!({"containers": [{"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}]}),
            json!({"containers": []}),
        ),
        spec_case(
            "nested patch merge with empty list",
            json!({"name": "hi", "containers": [{"name": "hello2"}]}),
            json!({
                "$setElementOrder/containers": [{"name": "hello"}, {"name": "doesntexist"}],
                "containers": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]
            }),
            json!({"name": "hi", "containers": [{"name": "hello"}, {"name": "hello2"}]}),
        ),
        spec_case(
            "nested patch merge with empty list (two-way, list absent)",
            json!({"name": "hi"}),
            json!({"containers": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]}),
            json!({"name": "hi", "containers": [{"name": "hello"}]}),
        ),
        meta_case(
            "delete items in lists of scalars",
            json!({"finalizers": [1, 2, 3, 4]}),
            json!({"$setElementOrder/finalizers": [1, 2], "$deleteFromPrimitiveList/finalizers": [3]}),
            json!({"finalizers": [1, 2, 4]}),
        ),
        meta_case(
            "delete all duplicate items in lists of scalars",
            json!({"finalizers": [1, 2, 3, 3, 4]}),
            json!({"$setElementOrder/finalizers": [1, 2], "$deleteFromPrimitiveList/finalizers": [3]}),
            json!({"finalizers": [1, 2, 4]}),
        ),
        meta_case(
            "add and delete items in lists of scalars",
            json!({"finalizers": [1, 2, 3, 4]}),
            json!({"$setElementOrder/finalizers": [1, 2, 4], "$deleteFromPrimitiveList/finalizers": [3]}),
            json!({"finalizers": [1, 2, 4]}),
        ),
        spec_case(
            "merge lists of maps",
            json!({"containers": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
            json!({"$setElementOrder/containers": [c(4), c(1), c(2), c(3)], "containers": [{"name": 4, "value": 4},
                {"name": 3, "value": 3}]}),
            json!({"containers": [
                {"name": 4, "value": 4}, {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3,
                    "value": 3}
            ]}),
        ),
        spec_case(
            "add field to map in merging list with conflict",
            json!({"containers": [{"name": 1, "other": "a"}, {"name": 3, "value": 2, "other": "b"}]}),
            json!({"$setElementOrder/containers": [c(1), c(2)], "containers": [{"name": 1, "value": 1}, {"name": 2,
                "value": 2}]}),
            json!({"containers": [{"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 3,
                "value": 2, "other": "b"}]}),
        ),
        spec_case(
            "delete map from merging list",
            json!({"containers": [c(1), {"name": 2, "other": "b"}]}),
            json!({"$setElementOrder/containers": [c(2)], "containers": [{"name": 1, "$patch": "delete"}]}),
            json!({"containers": [{"name": 2, "other": "b"}]}),
        ),
        spec_case(
            "delete missing map from merging list with conflict",
            json!({"containers": [{"name": 3, "other": "a"}]}),
            json!({"$setElementOrder/containers": [c(2)], "containers": [c(2), {"name": 1, "$patch": "delete"}]}),
            json!({"containers": [c(2), {"name": 3, "other": "a"}]}),
        ),
        spec_case(
            "add map and delete map from merging list",
            json!({"containers": [c(1), {"name": 2, "other": "b"}, {"name": 4, "other": "c"}]}),
            json!({"$setElementOrder/containers": [c(2), c(3)], "containers": [c(3), {"name": 1, "$patch": "delete"}]}),
            json!({"containers": [{"name": 2, "other": "b"}, {"name": 4, "other": "c"}, c(3)]}),
        ),
        spec_case(
            "add map and delete map from merging list with conflict",
            json!({"containers": [{"name": 1, "other": "a"}, {"name": 4, "other": "c"}]}),
            json!({"$setElementOrder/containers": [c(2), c(3)], "containers": [c(2), c(3), {"name": 1,
                "$patch": "delete"}]}),
            json!({"containers": [{"name": 4, "other": "c"}, c(2), c(3)]}),
        ),
        spec_case(
            "delete missing field from map in merging list with conflict",
            json!({"containers": [{"name": 1, "other": "a"}, {"name": 2, "other": "b"}]}),
            json!({"$setElementOrder/containers": [c(1), c(2)], "containers": [{"name": 1, "value": null}, {"name": 2,
                "value": 2}]}),
            json!({"containers": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
        ),
        spec_case(
            "replace non merging list nested in merging list",
            json!({"containers": [{"name": 1, "other": "a", "tolerations": [c(1), {"name": 2, "value": 2}]},
                {"name": 2, "other": "b"}]}),
            json!({"$setElementOrder/containers": [c(1), c(2)], "containers": [{"name": 1, "tolerations": [{"name": 1,
                "value": 1}]}]}),
            json!({"containers": [{"name": 1, "other": "a", "tolerations": [{"name": 1, "value": 1}]}, {"name": 2,
                "other": "b"}]}),
        ),
        spec_case(
            "retainKeys list of maps changes a field and clear a field",
            json!({"volumes": [{"name": "bar"}, {"name": "foo", "value": "modified", "other": "x"}]}),
            json!({
                "$setElementOrder/volumes": [{"name": "bar"}, {"name": "foo"}],
                "volumes": [{"$retainKeys": ["name", "value"], "name": "foo", "value": "new"}]
            }),
            json!({"volumes": [{"name": "bar"}, {"name": "foo", "value": "new"}]}),
        ),
        spec_case(
            "retainKeys list of maps deletes a field and clear a field",
            json!({"volumes": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
            json!({
                "$setElementOrder/volumes": [{"name": "bar"}, {"name": "foo"}],
                "volumes": [{"$retainKeys": ["name"], "name": "foo", "value": null}]
            }),
            json!({"volumes": [{"name": "bar"}, {"name": "foo"}]}),
        ),
        spec_case(
            "delete and reorder in one list, reorder in another",
            json!({
                "containers": [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}],
                "initContainers": [{"name": "c", "value": "c"}, {"name": "d", "value": "d"}]
            }),
            json!({
                "$setElementOrder/containers": [{"name": "b"}],
                "$setElementOrder/initContainers": [{"name": "d"}, {"name": "c"}],
                "containers": [{"$patch": "delete", "name": "a"}]
            }),
            json!({
                "containers": [{"name": "b", "value": "b"}],
                "initContainers": [{"name": "d", "value": "d"}, {"name": "c", "value": "c"}]
            }),
        ),
    ]);
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers, "tolerations": [{"key": "a", "operator": "Exists"}]}
            }
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing",
            "status": "True"}]}
    })
}

fn containers(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]["containers"]
}

#[test]
fn strategic_kubectl_style_patches() {
    let live = deployment(json!([
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}], "env": [{"name": "A",
            "value": "1"}]},
        {"name": "sidecar", "image": "busybox"}
    ]));

    // kubectl apply (3-way) changing an image, adding an env var, deleting the sidecar.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}],
        "containers": [
            {"name": "nginx", "image": "nginx:1.26", "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                "env": [{"name": "B", "value": "2"}]},
            {"$patch": "delete", "name": "sidecar"}
        ]
    }}}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(
        containers(&out),
        &json!([{"name": "nginx", "image": "nginx:1.26", "ports": [{"containerPort": 80}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
    );

    // kubectl apply switching the strategy to Recreate emits $retainKeys.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

    // Tolerations have no strategy: replaced, not merged.
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "b", "operator": "Exists"}]));

    // Container ports merge on containerPort; new ones come first without $setElementOrder (as Go).
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "ports": [{"containerPort": 443}]}]}}}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(containers(&out)[0]["ports"], json!([{"containerPort": 443}, {"containerPort": 80}]));
    assert_eq!(containers(&out)[1]["name"], "sidecar");

    // Status conditions merge on type (kubectl / controllers patch status this way).
    let patch = json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}])
    );

    // kubectl label / annotate.
    let patch = json!({"metadata": {"labels": {"tier": "front", "app": null}, "annotations": {"a": "b"}}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"tier": "front"}));
    assert_eq!(out["metadata"]["annotations"], json!({"a": "b"}));

    // Whole container list replaced with $patch: replace.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only",
        "image": "x"}]}}}});
    let out = strategic_merge_patch(root("Deployment"), &live, &patch).unwrap();
    assert_eq!(containers(&out), &json!([{"name": "only", "image": "x"}]));
}

#[test]
fn strategic_other_kinds_and_directives() {
    // Finalizers union and targeted removal (kubectl patch --type strategic).
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "finalizers": ["a", "b"]}});
    let out = strategic_merge_patch(root("Namespace"), &ns, &json!({"metadata": {"finalizers": ["c", "a"]}})).unwrap();
    // Go: patch items first, a live-only item goes before them only if it preceded them live.
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let out = strategic_merge_patch(
        root("Namespace"),
        &ns,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));

    // Service ports merge on port; node addresses on type; node taints are atomic.
    let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
    let out =
        strategic_merge_patch(root("Service"), &svc, &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}))
            .unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}])
    );
    let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
                      "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
    let patch = json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]},
                       "status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
    let out = strategic_merge_patch(root("Node"), &node, &patch).unwrap();
    assert_eq!(out["spec"]["taints"], json!([{"key": "b", "effect": "NoSchedule"}]));
    assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);

    // CronJob pod template containers merge by name.
    let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"},
        {"name": "b"}]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a",
        "image": "2"}]}}}}}});
    let out = strategic_merge_patch(root("CronJob"), &cj, &patch).unwrap();
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "2"}, {"name": "b"}])
    );

    // Unknown kinds: lists replace, maps merge, directives still honoured and never stored.
    let w = json!({"spec": {"items": [1, 2], "m": {"a": 1, "b": 2}, "gone": {"x": 1}}});
    let patch = json!({"spec": {"items": [3], "m": {"a": null, "c": 3}, "gone": {"$patch": "delete"},
        "new": {"$patch": "replace", "k": 1}}});
    let out = strategic_merge_patch(root("Widget"), &w, &patch).unwrap();
    assert_eq!(out, json!({"spec": {"items": [3], "m": {"b": 2, "c": 3}, "gone": {}, "new": {"k": 1}}}));

    // `$patch: merge` is accepted on maps and list items.
    let out =
        strategic_merge_patch(root("Pod"), &json!({"spec": {"a": 1}}), &json!({"spec": {"$patch": "merge", "b": 2}}))
            .unwrap();
    assert_eq!(out, json!({"spec": {"a": 1, "b": 2}}));

    // Directives inside values that did not exist yet are applied, not stored.
    let out = strategic_merge_patch(
        root("Pod"),
        &json!({"spec": {}}),
        &json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "b",
            "env": [{"name": "x", "$patch": "delete"}]}, {"name": "a"}]}}),
    )
    .unwrap();
    assert_eq!(out, json!({"spec": {"containers": [{"name": "b", "env": []}, {"name": "a"}]}}));
}

#[test]
fn strategic_malformed_never_panics() {
    let live = deployment(json!([{"name": "nginx"}]));
    let bad = [
        json!([1, 2]),
        json!("x"),
        json!(null),
        json!({"$patch": 5}),
        json!({"$patch": "explode"}),
        json!({"spec": {"$retainKeys": {"a": 1}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "x"}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
            "containers": "x"}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [5],
            "containers": [{"name": "nginx"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx"}, 5]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [[1]]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": 1, "name": "a"}]}}}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}),
        json!({"metadata": {"$deleteFromPrimitiveList": ["x"]}}),
        json!({"metadata": {"$setElementOrder/": []}}),
        json!({"metadata": {"finalizers": [{"a": 1}]}}),
    ];
    for p in bad {
        let res = strategic_merge_patch(root("Deployment"), &live, &p);
        assert!(matches!(res, Err(PatchError::Malformed(_)) | Err(PatchError::Invalid(_))), "patch {p} gave {res:?}");
    }
    // Odd but valid shapes must not panic either.
    for p in [
        json!({"spec": {"template": 5}}),
        json!({"spec": {"replicas": {"a": 1}}}),
        json!({"status": {"conditions": null}}),
    ] {
        strategic_merge_patch(root("Deployment"), &live, &p).unwrap();
    }
}

#[test]
fn json_patch_operations() {
    let doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1, "list": [1, 2]}});
    type Expect = Result<Value, fn(&PatchError) -> bool>;
    let cases: Vec<(&str, Value, Expect)> = vec![
        (
            "add",
            json!([{"op": "add", "path": "/metadata/labels/y", "value": "2"}]),
            Ok(json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"replicas": 1, "list": [1,
                    2]}})),
        ),
        (
            "remove",
            json!([{"op": "remove", "path": "/spec/list/0"}]),
            Ok(json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1, "list": [2]}})),
        ),
        (
            "replace",
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            Ok(json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 3, "list": [1, 2]}})),
        ),
        (
            "move",
            json!([{"op": "move", "from": "/metadata/labels/x", "path": "/metadata/labels/z"}]),
            Ok(json!({"metadata": {"name": "a", "labels": {"z": "1"}}, "spec": {"replicas": 1, "list": [1, 2]}})),
        ),
        (
            "copy",
            json!([{"op": "copy", "from": "/spec/replicas", "path": "/spec/list/-"}]),
            Ok(json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1, "list": [1, 2, 1]}})),
        ),
        (
            "test ok then replace",
            json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas",
                "value": 5}]),
            Ok(json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 5, "list": [1, 2]}})),
        ),
        (
            "test failure is invalid",
            json!([{"op": "test", "path": "/spec/replicas", "value": 9}]),
            Err(|e| matches!(e, PatchError::Invalid(_))),
        ),
        (
            "missing path is invalid",
            json!([{"op": "remove", "path": "/spec/nope"}]),
            Err(|e| matches!(e, PatchError::Invalid(_))),
        ),
        ("not a list is malformed", json!({"op": "add"}), Err(|e| matches!(e, PatchError::Malformed(_)))),
        (
            "unknown op is malformed",
            json!([{"op": "frob", "path": "/a"}]),
            Err(|e| matches!(e, PatchError::Malformed(_))),
        ),
        (
            "missing value is malformed",
            json!([{"op": "add", "path": "/a"}]),
            Err(|e| matches!(e, PatchError::Malformed(_))),
        ),
    ];
    for (name, patch, want) in cases {
        match (json_patch(&doc, &patch), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
            (Err(e), Err(check)) => assert!(check(&e), "{name}: {e:?}"),
            (got, _) => panic!("{name}: unexpected {got:?}"),
        }
    }
}

#[test]
fn merge_patch_semantics() {
    let doc =
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "x"}, {"name": "y"}]}});
    let out = merge_patch(
        &doc,
        &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"containers": [{"name": "z"}]}}),
    )
    .unwrap();
    assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"containers": [{"name": "z"}]}}));
    let out = merge_patch(&doc, &json!({"spec": null})).unwrap();
    assert_eq!(out, json!({"metadata": {"labels": {"a": "1", "b": "2"}}}));
    assert!(matches!(merge_patch(&doc, &json!([1])), Err(PatchError::Malformed(_))));
    assert!(matches!(merge_patch(&doc, &json!("s")), Err(PatchError::Malformed(_))));
}

// ---------------------------------------------------------------------------------------------
// Server-side apply.

fn managed(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default()
}

fn entry_for<'a>(entries: &'a [Value], manager: &str, op: &str) -> Option<&'a Value> {
    entries.iter().find(|e| e["manager"] == manager && e["operation"] == op)
}

fn applied_deploy(replicas: u64, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
        }
    })
}

#[test]
fn ssa_create_records_real_fields_v1() {
    let cfg = applied_deploy(3, json!([{"name": "nginx", "image": "nginx:1.25"}]));
    let mut with_noise = cfg.clone();
    with_noise["metadata"]["resourceVersion"] = json!("99");
    with_noise["metadata"]["managedFields"] = json!([{"manager": "evil"}]);
    let out = server_side_apply(root("Deployment"), None, &with_noise, "kubectl", false, NOW).unwrap();
    let entries = managed(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0],
        json!({
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": NOW, "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                    }
                }
            }
        })
    );
    let mut expected = cfg;
    expected["metadata"]["managedFields"] = Value::Array(entries);
    assert_eq!(out, expected);
    assert!(out["metadata"].get("resourceVersion").is_none());
}

#[test]
fn ssa_update_conflict_force_and_removal() {
    let v1 = applied_deploy(3, json!([{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "fluent"}]));
    let live = server_side_apply(root("Deployment"), None, &v1, "kubectl", false, NOW).unwrap();

    // Re-applying the same config by the same manager is a no-op apart from the timestamp.
    let again =
        server_side_apply(root("Deployment"), Some(&live), &v1, "kubectl", false, "2024-01-02T00:00:00Z").unwrap();
    assert_eq!(again["spec"], live["spec"]);
    assert_eq!(managed(&again)[0]["time"], "2024-01-02T00:00:00Z");

    // Another applier sharing a value it does not change: no conflict, shared ownership.
    let hpa_cfg =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let shared = server_side_apply(root("Deployment"), Some(&live), &hpa_cfg, "hpa", false, NOW).unwrap();
    assert_eq!(managed(&shared).len(), 2);

    // Changing it conflicts with kubectl.
    let hpa_cfg =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let err = server_side_apply(root("Deployment"), Some(&live), &hpa_cfg, "hpa", false, NOW).unwrap_err();
    assert_eq!(err, PatchError::Conflicts(vec![("kubectl".into(), ".spec.replicas".into())]));
    assert_eq!(err.to_string(), "Apply failed with 1 conflict(s)");

    // Forcing takes the field over.
    let forced = server_side_apply(root("Deployment"), Some(&live), &hpa_cfg, "hpa", true, NOW).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    let entries = managed(&forced);
    let kubectl = entry_for(&entries, "kubectl", "Apply").unwrap();
    assert!(kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert_eq!(entry_for(&entries, "hpa", "Apply").unwrap()["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));

    // kubectl now omits replicas and the "log" container: replicas stays (owned by hpa), the
    // container goes (nobody else owns it).
    let v2 = {
        let mut v = applied_deploy(0, json!([{"name": "nginx", "image": "nginx:1.26"}]));
        v["spec"].as_object_mut().unwrap().remove("replicas");
        v
    };
    let out = server_side_apply(root("Deployment"), Some(&forced), &v2, "kubectl", false, NOW).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    assert_eq!(containers(&out), &json!([{"name": "nginx", "image": "nginx:1.26"}]));

    // Dropping a label removes it and the then-empty labels map.
    let mut v3 = v2.clone();
    v3["metadata"].as_object_mut().unwrap().remove("labels");
    let out = server_side_apply(root("Deployment"), Some(&out), &v3, "kubectl", false, NOW).unwrap();
    assert!(out["metadata"].get("labels").is_none());
    assert_eq!(out["metadata"]["name"], "web");
}

#[test]
fn ssa_interacts_with_updates() {
    let v1 = applied_deploy(3, json!([{"name": "nginx", "image": "nginx:1.25"}]));
    let live = server_side_apply(root("Deployment"), None, &v1, "kubectl", false, NOW).unwrap();

    // A PUT by another client changes the image and adds an env var to the container.
    let mut updated = live.clone();
    updated["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:edited");
    updated["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "E", "value": "1"}]);
    record_update(root("Deployment"), Some(&live), &mut updated, "kubectl-edit", NOW);
    let entries = managed(&updated);
    let edit = entry_for(&entries, "kubectl-edit", "Update").unwrap();
    assert_eq!(
        edit["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
            "f:env": {"k:{\"name\":\"E\"}": {".": {}, "f:name": {}, "f:value": {}}},
            "f:image": {}
        }}}}}})
    );
    // The update took the image away from the applier.
    let kubectl = entry_for(&entries, "kubectl", "Apply").unwrap();
    assert_eq!(
        kubectl["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"],
        json!({".": {}, "f:name": {}})
    );

    // Re-applying the old image now conflicts with the editor, with a real-looking path.
    let err = server_side_apply(root("Deployment"), Some(&updated), &v1, "kubectl", false, NOW).unwrap_err();
    assert_eq!(
        err,
        PatchError::Conflicts(vec![(
            "kubectl-edit".into(),
            ".spec.template.spec.containers[name=\"nginx\"].image".into()
        )])
    );

    // Applying without the container keeps it (the editor still owns parts of it) but only with
    // the fields the editor owns plus its key; live order is kept and new items are appended.
    let mut v2 = v1.clone();
    v2["spec"]["template"]["spec"]["containers"] = json!([{"name": "other", "image": "x"}]);
    let out = server_side_apply(root("Deployment"), Some(&updated), &v2, "kubectl", false, NOW).unwrap();
    assert_eq!(
        containers(&out),
        &json!([{"name": "nginx", "image": "nginx:edited", "env": [{"name": "E", "value": "1"}]}, {"name": "other",
            "image": "x"}])
    );

    // record_update on create owns everything except identity/server metadata.
    let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u",
        "resourceVersion": "1"}, "data": {"k": "v"}});
    record_update(root("ConfigMap"), None, &mut created, "kubectl-create", NOW);
    assert_eq!(managed(&created)[0]["fieldsV1"], json!({"f:data": {"f:k": {}}}));
    assert_eq!(managed(&created)[0]["operation"], "Update");

    // Removing a field through an update drops everyone's ownership of it.
    let mut next = created.clone();
    next["data"] = json!({"k2": "v"});
    record_update(root("ConfigMap"), Some(&created), &mut next, "other", NOW);
    let entries = managed(&next);
    assert!(entry_for(&entries, "kubectl-create", "Update").is_none());
    assert_eq!(entry_for(&entries, "other", "Update").unwrap()["fieldsV1"], json!({"f:data": {"f:k2": {}}}));
}

#[test]
fn ssa_lists_and_sets() {
    let cfg = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a"]},
                     "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
                         "tolerations": [{"key": "t"}]}});
    let live = server_side_apply(root("Pod"), None, &cfg, "m1", false, NOW).unwrap();
    let f = &managed(&live)[0]["fieldsV1"];
    assert_eq!(f["f:metadata"], json!({"f:finalizers": {"v:\"a\"": {}}}));
    assert_eq!(f["f:spec"]["f:tolerations"], json!({}));
    assert_eq!(
        f["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:ports"],
        json!({"k:{\"containerPort\":80}": {".": {}, "f:containerPort": {}}})
    );

    // A second manager adds its own finalizer and container; both survive the first re-applying.
    let cfg2 = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["b"]},
                      "spec": {"containers": [{"name": "side", "image": "s"}]}});
    let live = server_side_apply(root("Pod"), Some(&live), &cfg2, "m2", false, NOW).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
    let live = server_side_apply(root("Pod"), Some(&live), &cfg, "m1", false, NOW).unwrap();
    assert_eq!(live["spec"]["containers"].as_array().unwrap().len(), 2);

    // m1 drops its finalizer and toleration list: only its own things disappear.
    let mut cfg3 = cfg.clone();
    cfg3["metadata"].as_object_mut().unwrap().remove("finalizers");
    cfg3["spec"].as_object_mut().unwrap().remove("tolerations");
    let live = server_side_apply(root("Pod"), Some(&live), &cfg3, "m1", false, NOW).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["b"]));
    assert!(live["spec"].get("tolerations").is_none());

    // Atomic list owned by m1 changed by m2 → conflict on the whole list.
    let live = server_side_apply(root("Pod"), Some(&live), &cfg, "m1", false, NOW).unwrap();
    let cfg4 =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"tolerations": [{"key": "u"}]}});
    let err = server_side_apply(root("Pod"), Some(&live), &cfg4, "m2", false, NOW).unwrap_err();
    assert_eq!(err, PatchError::Conflicts(vec![("m1".into(), ".spec.tolerations".into())]));
}

#[test]
fn ssa_rejects_bad_input_without_panicking() {
    let cfg = applied_deploy(1, json!([{"name": "a"}]));
    assert!(matches!(
        server_side_apply(root("Deployment"), None, &json!([1]), "m", false, NOW),
        Err(PatchError::Malformed(_))
    ));
    assert!(matches!(server_side_apply(root("Deployment"), None, &cfg, "", false, NOW), Err(PatchError::Malformed(_))));
    let bad_items = applied_deploy(1, json!([{"image": "no-name"}]));
    let live = server_side_apply(root("Deployment"), None, &cfg, "m", false, NOW).unwrap();
    assert!(server_side_apply(root("Deployment"), Some(&live), &bad_items, "m", false, NOW).is_err());

    // Garbage managedFields in the live object are ignored, not fatal.
    let mut weird = live.clone();
    weird["metadata"]["managedFields"] = json!([1, {"manager": 5}, {"manager": "x", "fieldsV1": "nope"},
        {"manager": "y", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    let err = server_side_apply(
        root("Deployment"),
        Some(&weird),
        &applied_deploy(4, json!([{"name": "a"}])),
        "m",
        false,
        NOW,
    )
    .unwrap_err();
    assert_eq!(err, PatchError::Conflicts(vec![("y".into(), ".spec.replicas".into())]));
    let mut target = json!("not an object");
    record_update(root("Deployment"), Some(&live), &mut target, "m", NOW);
    assert_eq!(target, json!("not an object"));
}

/// Issue 15: 17 doubling `copy` operations (a 1.9 KB patch) grew an object past 400 MB.
#[test]
fn json_patch_copy_amplification_is_bounded() {
    let doc = json!({"metadata": {"name": "bomb"}, "data": {"a": "x".repeat(100)}});
    let mut ops = vec![json!({"op": "add", "path": "/data/b", "value": {"v": "x".repeat(1000)}})];
    for i in 0..40 {
        ops.push(json!({"op": "copy", "from": "/data/b", "path": format!("/data/b/c{i}")}));
    }
    match json_patch(&doc, &Value::Array(ops)) {
        Err(PatchError::Invalid(m)) => {
            assert!(m.contains("accumulated size increase of copy"), "{m}");
            assert!(m.contains(&MAX_ACCUMULATED_COPY_BYTES.to_string()), "{m}");
        }
        other => panic!("want the copy limit, got {:?}", other.map(|v| json_size(&v))),
    }
    // Copies well below the limit still work, and `from` is copied, not moved.
    let small = json!([{"op": "copy", "from": "/data/a", "path": "/data/c"}]);
    let out = json_patch(&doc, &small).unwrap();
    assert_eq!(out["data"]["c"], doc["data"]["a"]);
    assert_eq!(out["data"]["a"], doc["data"]["a"]);
}

#[test]
fn json_patch_operation_count_is_capped_like_kube_apiserver() {
    let doc = json!({"metadata": {"name": "n"}});
    let op = json!({"op": "test", "path": "/metadata/name", "value": "n"});
    let at_limit = Value::Array(vec![op.clone(); MAX_JSON_PATCH_OPERATIONS]);
    assert_eq!(json_patch(&doc, &at_limit).unwrap(), doc);
    let over = Value::Array(vec![op; MAX_JSON_PATCH_OPERATIONS + 1]);
    assert_eq!(
        json_patch(&doc, &over),
        Err(PatchError::TooLarge("The allowed maximum operations in a JSON patch is 10000, got 10001".into()))
    );
}

#[test]
fn a_failing_operation_leaves_the_patch_atomic() {
    let doc = json!({"a": 1});
    let p = json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 9}]);
    assert!(matches!(json_patch(&doc, &p), Err(PatchError::Invalid(_))));
    assert_eq!(json_size(&json!({"a": [1, "xy"]})), r#"{"a":[1,"xy"]}"#.len());
}
