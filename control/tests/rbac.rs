//! RBAC on a real server with real kubectl (issue 20): a user with no bindings is refused
//! with kube-apiserver's 403 message, a Role and RoleBinding grant exactly what they say in
//! their namespace, `kubectl auth can-i` (also `--list`) answers from the same decision, the
//! default roles are written by the leader, and bad RBAC objects are refused.

use std::time::Duration;

use berth_control::testing::{self, Server};
use berth_testkit::eventually;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, Patch, PatchParams};

/// kubectl as `user` in `groups` against `server`: (success, stdout, stderr).
async fn kubectl_as(
    server: &Server,
    user: &str,
    groups: &[&str],
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let kubeconfig = testing::kubeconfig_as(&server.api_url, &testing::credentials(user, groups));
    testing::kubectl(&kubeconfig, args, stdin).await
}

const POD_READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  namespace: team-a
  name: pod-reader
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "watch", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
  namespace: team-a
subjects:
- kind: User
  name: alice
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
"#;

#[tokio::test(flavor = "multi_thread")]
async fn roles_grant_what_they_say_and_nothing_else() {
    let server = Server::start().await;
    let admin = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let server = &server;
        async move {
            let (ok, out, err) = kubectl_as(server, "kubernetes-admin", &["system:masters"], args, stdin).await;
            assert!(ok, "kubectl {args:?}: {err}");
            out
        }
    };
    admin(&["create", "namespace", "team-a"], None).await;
    admin(&["create", "namespace", "team-b"], None).await;

    // No bindings: refused, with kube-apiserver's message.
    let (ok, _, err) = kubectl_as(&server, "alice", &[], &["get", "pods", "-n", "team-a"], None).await;
    assert!(!ok);
    assert!(
        err.contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-a""#
        ),
        "{err}"
    );
    let (_, out, _) = kubectl_as(&server, "alice", &[], &["auth", "can-i", "list", "pods", "-n", "team-a"], None).await;
    assert_eq!(out.trim(), "no");

    // The Kubernetes docs' pod-reader Role and its RoleBinding, applied unchanged.
    admin(&["apply", "-f", "-"], Some(POD_READER)).await;
    let (ok, out, err) = kubectl_as(&server, "alice", &[], &["get", "pods", "-n", "team-a"], None).await;
    assert!(ok, "{err}");
    assert!(out.is_empty() || out.contains("No resources"), "{out}");
    for (args, want) in [
        (&["auth", "can-i", "list", "pods", "-n", "team-a"][..], "yes"),
        (&["auth", "can-i", "delete", "pods", "-n", "team-a"][..], "no"),
        (&["auth", "can-i", "list", "pods", "-n", "team-b"][..], "no"),
        (&["auth", "can-i", "list", "secrets", "-n", "team-a"][..], "no"),
    ] {
        let (_, out, err) = kubectl_as(&server, "alice", &[], args, None).await;
        assert_eq!(out.trim(), want, "{args:?}: {err}");
    }
    let (ok, _, err) = kubectl_as(&server, "alice", &[], &["get", "pods", "-n", "team-b"], None).await;
    assert!(!ok && err.contains("in the namespace \"team-b\""), "{err}");
    let (ok, out, err) = kubectl_as(&server, "alice", &[], &["auth", "can-i", "--list", "-n", "team-a"], None).await;
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.starts_with("pods ") && l.contains("[get watch list]")), "{out}");
    // Administrators may do anything; can-i says so.
    assert_eq!(admin(&["auth", "can-i", "delete", "nodes"], None).await.trim(), "yes");
    // A SubjectAccessReview: the administrator asks about alice.
    let ask = |verb: &str, ns: &str| {
        let body = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "alice", "resourceAttributes": {"verb": verb, "resource": "pods", "namespace": ns}},
        });
        http::Request::post("/apis/authorization.k8s.io/v1/subjectaccessreviews")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let review: serde_json::Value = server.client().request(ask("list", "team-a")).await.unwrap();
    assert_eq!(review["status"]["allowed"], true);
    let review: serde_json::Value = server.client().request(ask("list", "team-b")).await.unwrap();
    assert_eq!(review["status"]["allowed"], false);
    // ... which alice herself may not ask.
    let alice = server.client_as(&testing::credentials("alice", &[]));
    let err = alice.request::<serde_json::Value>(ask("list", "team-a")).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 403), "{err}");

    // The leader writes the default roles; the defaults grant discovery to everyone.
    let roles: Api<ClusterRole> = Api::all(server.client());
    eventually(Duration::from_secs(40), "the default ClusterRoles", || async {
        let names: Vec<String> =
            roles.list(&Default::default()).await.ok()?.items.into_iter().filter_map(|r| r.metadata.name).collect();
        ["cluster-admin", "admin", "edit", "view", "system:node", "system:discovery"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
            .then_some(())
    })
    .await;
    let (ok, _, err) = kubectl_as(&server, "alice", &[], &["api-resources", "--api-group=apps"], None).await;
    assert!(ok, "discovery for every authenticated user: {err}");

    // Escalation: bob, admin of team-a, may write Roles there, but not grant what he lacks.
    let bob_admin = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: bob-admin, namespace: team-a}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}\nsubjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]\n";
    admin(&["apply", "-f", "-"], Some(bob_admin)).await;
    let reader = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: cm-reader, namespace: team-a}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]\n";
    let (ok, _, err) = kubectl_as(&server, "bob", &[], &["apply", "-f", "-"], Some(reader)).await;
    assert!(ok, "a Role within bob's own rights: {err}");
    let nodes = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: node-reader, namespace: team-a}\nrules: [{apiGroups: [''], resources: [nodes], verbs: [get]}]\n";
    let (ok, _, err) = kubectl_as(&server, "bob", &[], &["apply", "-f", "-"], Some(nodes)).await;
    assert!(!ok && err.contains("is attempting to grant RBAC permissions not currently held"), "{err}");
    let to_cluster_admin = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: bob-root, namespace: team-a}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]\n";
    let (ok, _, err) = kubectl_as(&server, "bob", &[], &["apply", "-f", "-"], Some(to_cluster_admin)).await;
    assert!(!ok && err.contains("not currently held"), "{err}");
    let (_, out, _) = kubectl_as(&server, "bob", &[], &["auth", "can-i", "delete", "nodes"], None).await;
    assert_eq!(out.trim(), "no", "nothing was written");

    // A binding's roleRef cannot change; a rule without verbs is invalid.
    let bindings: Api<RoleBinding> = Api::namespaced(server.client(), "team-a");
    let patch = serde_json::json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}});
    let err = bindings.patch("read-pods", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("cannot change roleRef")),
        "{err}"
    );
    let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: empty}\nrules:\n- apiGroups: ['']\n  resources: [pods]\n";
    let (ok, _, err) =
        kubectl_as(&server, "kubernetes-admin", &["system:masters"], &["apply", "-f", "-"], Some(bad)).await;
    assert!(!ok && err.contains("rules[0].verbs: Required value"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_and_anonymous_callers_get_the_default_grants() {
    let server = Server::start().await;
    // Nodes (system:nodes) may register themselves and read pods.
    let (ok, _, err) = kubectl_as(&server, "system:node:n1", &["system:nodes"], &["get", "pods", "-A"], None).await;
    assert!(ok, "{err}");
    let (_, out, _) =
        kubectl_as(&server, "system:node:n1", &["system:nodes"], &["auth", "can-i", "create", "clusterroles"], None)
            .await;
    assert_eq!(out.trim(), "no");
    // Anonymous: /readyz and /version, nothing else.
    let mut s = testing::connect_as(&server.api_url, None).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
}

const TWO_NODES_PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
---
apiVersion: v1
kind: Secret
metadata: {name: b-secret, namespace: shop}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: on-b, namespace: shop}
spec:
  nodeName: node-b
  containers:
  - name: app
    image: busybox
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: b-secret, key: password}}
"#;

/// The Node authorizer and NodeRestriction: node A cannot read the Secret of node B's pod,
/// cannot modify node B or node B's pods; node B can read it and touch its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_reaches_only_its_own_objects_and_its_pods_secrets() {
    let server = Server::start().await;
    let (ok, _, err) =
        kubectl_as(&server, "kubernetes-admin", &["system:masters"], &["apply", "-f", "-"], Some(TWO_NODES_PODS)).await;
    assert!(ok, "{err}");
    let as_node = |node: &'static str, args: &'static [&'static str]| {
        let server = &server;
        async move { kubectl_as(server, &format!("system:node:{node}"), &["system:nodes"], args, None).await }
    };
    let read_secret: &[&str] = &["get", "secret", "b-secret", "-n", "shop", "-o", "jsonpath={.data.password}"];
    // The cache the authorizer reads catches up with the pod within moments.
    let out = eventually(Duration::from_secs(10), "node-b reads its pod's Secret", async || {
        let (ok, out, _) = as_node("node-b", read_secret).await;
        ok.then_some(out)
    })
    .await;
    assert_eq!(out, "aHVudGVyMg==");

    let (ok, _, err) = as_node("node-a", read_secret).await;
    assert!(!ok);
    assert!(
        err.contains(
            r#"secrets "b-secret" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "shop": no relationship found between node 'node-a' and this object"#
        ),
        "{err}"
    );
    let (ok, _, err) = as_node("node-b", &["get", "secrets", "-n", "shop"]).await;
    assert!(!ok && err.contains("cannot list resource \"secrets\""), "{err}");
    // kubectl prints the authorizer's reason after the answer, as with kube-apiserver.
    let can_i: &[&str] = &["auth", "can-i", "get", "secret/b-secret", "-n", "shop"];
    assert_eq!(as_node("node-b", can_i).await.1.trim(), "yes");
    assert_eq!(
        as_node("node-a", can_i).await.1.trim(),
        "no - no relationship found between node 'node-a' and this object"
    );

    // NodeRestriction: its own Node only.
    let (ok, _, err) = as_node("node-a", &["label", "node", "node-b", "owned=yes"]).await;
    assert!(!ok && err.contains(r#"node "node-a" is not allowed to modify node "node-b""#), "{err}");
    let (ok, _, err) = as_node("node-a", &["label", "node", "node-a", "owned=yes"]).await;
    assert!(ok, "{err}");
    // Another node's pod: no deleting it, no writing its status.
    let (ok, _, err) = as_node("node-a", &["delete", "pod", "on-b", "-n", "shop", "--wait=false"]).await;
    assert!(!ok && err.contains("can only delete pods with spec.nodeName set to itself"), "{err}");
    let (ok, _, err) = as_node(
        "node-a",
        &["patch", "pod", "on-b", "-n", "shop", "--subresource=status", "-p", r#"{"status":{"phase":"Failed"}}"#],
    )
    .await;
    assert!(!ok && err.contains("can only update pod status for pods with spec.nodeName set to itself"), "{err}");
    let (ok, _, err) = as_node(
        "node-b",
        &["patch", "pod", "on-b", "-n", "shop", "--subresource=status", "-p", r#"{"status":{"phase":"Running"}}"#],
    )
    .await;
    assert!(ok, "{err}");
    // Nothing RBAC-only: no Deployments, no writing Secrets.
    let (ok, _, _) = as_node("node-b", &["get", "deployments", "-A"]).await;
    assert!(!ok);
}

/// ClusterRole aggregation with the Kubernetes docs' example, and `view` growing by a role
/// labelled `aggregate-to-view` (as charts extend the default roles).
#[tokio::test(flavor = "multi_thread")]
async fn aggregated_cluster_roles_hold_the_rules_of_the_roles_they_select() {
    let server = Server::start().await;
    let manifests = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring
aggregationRule:
  clusterRoleSelectors:
  - matchLabels:
      rbac.example.com/aggregate-to-monitoring: "true"
rules: [] # The control plane automatically fills in the rules
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring-endpoints
  labels:
    rbac.example.com/aggregate-to-monitoring: "true"
rules:
- apiGroups: [""]
  resources: ["services", "endpointslices", "pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: read-leases
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch"]
"#;
    let admin = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let server = &server;
        async move { kubectl_as(server, "kubernetes-admin", &["system:masters"], args, stdin).await }
    };
    let (ok, _, err) = admin(&["apply", "-f", "-"], Some(manifests)).await;
    assert!(ok, "{err}");
    let roles: Api<ClusterRole> = Api::all(server.client());
    let monitoring = eventually(Duration::from_secs(10), "monitoring aggregated", async || {
        roles.get("monitoring").await.ok().filter(|r| r.rules.as_ref().is_some_and(|r| !r.is_empty()))
    })
    .await;
    let rules = monitoring.rules.unwrap();
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["services".to_string(), "endpointslices".into(), "pods".into()][..])
    );
    // view (and so edit and admin, which aggregate it) now read leases.
    for name in ["view", "edit", "admin"] {
        eventually(Duration::from_secs(10), &format!("{name} reads leases"), async || {
            let role = roles.get(name).await.ok()?;
            role.rules?
                .iter()
                .any(|r| r.resources.as_ref().is_some_and(|res| res.contains(&"leases".to_string())))
                .then_some(())
        })
        .await;
    }
    // Unlabelled, the role leaves them again.
    roles
        .patch(
            "read-leases",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({"metadata": {"labels": {"rbac.authorization.k8s.io/aggregate-to-view": null}}}),
            ),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "view without leases", async || {
        let role = roles.get("view").await.ok()?;
        (!role.rules?.iter().any(|r| r.resources.as_ref().is_some_and(|res| res.contains(&"leases".to_string()))))
            .then_some(())
    })
    .await;
}
