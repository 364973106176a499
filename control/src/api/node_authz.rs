//! What an agent may do: kube-apiserver's Node authorizer and NodeRestriction admission.
//!
//! An agent authenticates as `system:node:<name>` in `system:nodes`. Kubernetes does not
//! give nodes a role through RBAC (its `system:node` ClusterRoleBinding has no subjects);
//! the Node authorizer decides for them instead:
//!
//! * Secrets, ConfigMaps, PersistentVolumeClaims and ServiceAccounts (and their tokens) only
//!   when a pod bound to the node references the object — so a compromised node cannot read
//!   another node's pods' Secrets ([`authorize`]);
//! * its own Lease in `kube-node-lease` and nothing else there;
//! * everything else a kubelet needs from a fixed rule list ([`node_rules`], the rules of
//!   Kubernetes' `system:node` role without the object-bound reads above).
//!
//! [`admit`] is NodeRestriction: whatever RBAC says, a node writes only its own Node and
//! Lease, the status of pods bound to it, and deletes only pods bound to it.
//!
//! The decisions are pure; the pods they look at are handed in by the caller ([`PodLookup`]).

use std::sync::Arc;

use serde_json::{json, Value};

use super::authn::UserInfo;
use super::authz::{rule_allows, Attributes};

/// The group every node identity is in.
pub const NODES_GROUP: &str = "system:nodes";
const NODE_USER_PREFIX: &str = "system:node:";
/// Where node Leases live.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node `user` speaks for, if it is a node identity (`system:node:<name>` in
/// `system:nodes`, as kube-apiserver's `NodeIdentifier` reads it).
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name.strip_prefix(NODE_USER_PREFIX).filter(|n| !n.is_empty())
}

/// The pods a decision about node `node` reads.
pub trait PodLookup {
    /// The pods in `namespace` whose `spec.nodeName` is `node`.
    fn pods_on_node(&self, namespace: &str, node: &str) -> Vec<Arc<Value>>;
    /// The pod `namespace/name`, if it exists.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// The Node authorizer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not allowed by the Node authorizer; RBAC may still allow it. The reason is appended
    /// to the 403 message if RBAC does not.
    NoOpinion(Option<String>),
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

/// What any node may do, whatever it references (Kubernetes' `system:node` role rules,
/// minus the reads the object graph decides).
pub fn node_rules() -> &'static [Value] {
    static RULES: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    const READ: &[&str] = &["get", "list", "watch"];
    RULES.get_or_init(|| {
        vec![
            rule(&["create", "get", "list", "watch", "delete", "patch", "update"], &[""], &["nodes"]),
            rule(&["patch", "update"], &[""], &["nodes/status"]),
            rule(&["get", "list", "watch", "create", "delete"], &[""], &["pods"]),
            // `get` too: kubectl reads the subresource before patching it.
            rule(&["get", "patch", "update"], &[""], &["pods/status"]),
            rule(&["create"], &[""], &["pods/eviction"]),
            rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
            rule(READ, &[""], &["services", "endpoints", "namespaces"]),
            rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
            rule(READ, &["networking.k8s.io"], &["ingresses", "ingressclasses"]),
            rule(&["patch", "update"], &["networking.k8s.io"], &["ingresses/status"]),
            // The API servers' identity Leases (`berth_proto::identity`), which agents read to
            // find every server; their own node Lease is decided in [`authorize`].
            rule(READ, &["coordination.k8s.io"], &["leases"]),
            rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"]),
            rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews", "localsubjectaccessreviews"]),
        ]
    })
}

/// The names of the objects of `resource` a pod references (kube's node graph edges:
/// volumes, projected sources, env and envFrom, image pull secrets, its service account).
pub fn references(pod: &Value, resource: &str) -> Vec<String> {
    let mut out = Vec::new();
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut push = |v: Option<&Value>| {
        if let Some(name) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            out.push(name.to_string());
        }
    };
    let volumes = spec.get("volumes").and_then(Value::as_array).into_iter().flatten();
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).into_iter().flatten());
    let projected =
        |v: &Value| v.pointer("/projected/sources").and_then(Value::as_array).cloned().unwrap_or_default().into_iter();
    match resource {
        "secrets" => {
            for s in spec.get("imagePullSecrets").and_then(Value::as_array).into_iter().flatten() {
                push(s.get("name"));
            }
            for v in volumes {
                push(v.pointer("/secret/secretName"));
                push(v.pointer("/csi/nodePublishSecretRef/name"));
                for source in projected(v) {
                    push(source.pointer("/secret/name"));
                }
            }
            for c in containers {
                for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                    push(e.pointer("/valueFrom/secretKeyRef/name"));
                }
                for e in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
                    push(e.pointer("/secretRef/name"));
                }
            }
        }
        "configmaps" => {
            for v in volumes {
                push(v.pointer("/configMap/name"));
                for source in projected(v) {
                    push(source.pointer("/configMap/name"));
                }
            }
            for c in containers {
                for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                    push(e.pointer("/valueFrom/configMapKeyRef/name"));
                }
                for e in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
                    push(e.pointer("/configMapRef/name"));
                }
            }
        }
        "persistentvolumeclaims" => {
            let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            for v in volumes {
                push(v.pointer("/persistentVolumeClaim/claimName"));
                if v.get("ephemeral").is_some() {
                    let volume = v.get("name").and_then(Value::as_str).unwrap_or("");
                    push(Some(&Value::String(format!("{pod_name}-{volume}"))));
                }
            }
        }
        "serviceaccounts" => {
            let account = spec.get("serviceAccountName").and_then(Value::as_str).filter(|n| !n.is_empty());
            push(Some(&Value::String(account.unwrap_or("default").to_string())));
        }
        _ => {}
    }
    out
}

fn no_relationship(node: &str) -> Verdict {
    Verdict::NoOpinion(Some(format!("no relationship found between node '{node}' and this object")))
}

/// The Node authorizer's decision on `attrs` for node `node` (kube's `NodeAuthorizer`).
pub fn authorize(node: &str, attrs: &Attributes, pods: &dyn PodLookup) -> Verdict {
    if !attrs.resource_request {
        return Verdict::NoOpinion(None);
    }
    let core = attrs.api_group.is_empty();
    let graph_read = core
        && matches!(attrs.resource.as_str(), "secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts");
    if graph_read {
        let token_request = attrs.resource == "serviceaccounts" && attrs.subresource == "token";
        let allowed_verb =
            if token_request { attrs.verb == "create" } else { attrs.verb == "get" && attrs.subresource.is_empty() };
        if !allowed_verb || attrs.name.is_empty() {
            return Verdict::NoOpinion(Some(format!(
                "can only {} individual {} referenced by pods bound to the node",
                if token_request { "create tokens for" } else { "get" },
                attrs.resource
            )));
        }
        let referenced = pods
            .pods_on_node(&attrs.namespace, node)
            .iter()
            .any(|pod| references(pod, &attrs.resource).contains(&attrs.name));
        return if referenced { Verdict::Allow } else { no_relationship(node) };
    }
    if attrs.api_group == "coordination.k8s.io" && attrs.resource == "leases" && attrs.namespace == NODE_LEASE_NAMESPACE
    {
        // Creates name the Lease in their body: NodeRestriction ([`admit`]) checks it.
        let own = attrs.name == node || (attrs.verb == "create" && attrs.name.is_empty());
        return if own && matches!(attrs.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
            Verdict::Allow
        } else {
            Verdict::NoOpinion(Some("can only access node lease with the same name as the requesting node".into()))
        };
    }
    if node_rules().iter().any(|r| rule_allows(r, attrs)) {
        Verdict::Allow
    } else {
        Verdict::NoOpinion(None)
    }
}

/// Whether NodeRestriction must see a request's body: a create names its object there.
pub fn needs_body(attrs: &Attributes) -> bool {
    attrs.resource_request
        && attrs.verb == "create"
        && attrs.subresource.is_empty()
        && ((attrs.api_group.is_empty() && attrs.resource == "nodes")
            || (attrs.api_group == "coordination.k8s.io" && attrs.resource == "leases"))
}

/// NodeRestriction admission for a request node `node` is authorized to make: `Err` is the
/// 403 message. `object` is the request's body for the requests [`needs_body`] names.
pub fn admit(node: &str, attrs: &Attributes, object: Option<&Value>, pods: &dyn PodLookup) -> Result<(), String> {
    if !attrs.resource_request || !matches!(attrs.verb.as_str(), "create" | "update" | "patch" | "delete") {
        return Ok(());
    }
    let body_name = || object.and_then(|o| o.pointer("/metadata/name")).and_then(Value::as_str).unwrap_or("");
    let target = if attrs.name.is_empty() { body_name() } else { attrs.name.as_str() };
    match (attrs.api_group.as_str(), attrs.resource.as_str()) {
        ("", "nodes") if target != node => Err(format!("node \"{node}\" is not allowed to modify node \"{target}\"")),
        ("coordination.k8s.io", "leases") if attrs.namespace == NODE_LEASE_NAMESPACE && target != node => {
            Err("can only access node lease with the same name as the requesting node".to_string())
        }
        ("", "pods") if attrs.verb == "create" && attrs.subresource.is_empty() => {
            Err(format!("node \"{node}\" can only create mirror pods, which Berth does not have"))
        }
        ("", "pods") => {
            let Some(pod) = pods.pod(&attrs.namespace, &attrs.name) else {
                return Ok(()); // the write itself answers 404
            };
            let bound = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if bound == node {
                return Ok(());
            }
            let what = match (attrs.verb.as_str(), attrs.subresource.as_str()) {
                ("delete", _) => "delete pods",
                (_, "eviction") => "evict pods",
                _ => "update pod status for pods",
            };
            Err(format!("node \"{node}\" can only {what} with spec.nodeName set to itself"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    struct Pods(Vec<Value>);
    impl PodLookup for Pods {
        fn pods_on_node(&self, namespace: &str, node: &str) -> Vec<Arc<Value>> {
            self.0
                .iter()
                .filter(|p| p["metadata"]["namespace"] == namespace && p["spec"]["nodeName"] == node)
                .map(|p| Arc::new(p.clone()))
                .collect()
        }
        fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
            self.0
                .iter()
                .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
                .map(|p| Arc::new(p.clone()))
        }
    }

    fn pods() -> Pods {
        Pods(vec![
            json!({"metadata": {"namespace": "ns", "name": "on-a"}, "spec": {"nodeName": "a",
                "volumes": [{"name": "v", "secret": {"secretName": "a-secret"}},
                            {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "a-config"}}],
                                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "a-env", "key": "k"}}}]}]}}),
            json!({"metadata": {"namespace": "ns", "name": "on-b"}, "spec": {"nodeName": "b",
                "serviceAccountName": "builder",
                "volumes": [{"name": "v", "secret": {"secretName": "b-secret"}}], "containers": [{"name": "c"}]}}),
        ])
    }

    fn attrs(method: Method, path: &str) -> Attributes {
        super::super::authz::attributes(&method, path, None)
    }

    #[test]
    fn only_node_identities_are_nodes() {
        let node = UserInfo::authenticated("system:node:a", &[NODES_GROUP.into()]);
        assert_eq!(node_name(&node), Some("a"));
        assert_eq!(node_name(&UserInfo::authenticated("system:node:a", &[])), None);
        assert_eq!(node_name(&UserInfo::authenticated("alice", &[NODES_GROUP.into()])), None);
    }

    #[test]
    fn a_node_reads_only_what_its_pods_reference() {
        let get = |path: &str| authorize("a", &attrs(Method::GET, path), &pods());
        assert_eq!(get("/api/v1/namespaces/ns/secrets/a-secret"), Verdict::Allow);
        assert_eq!(get("/api/v1/namespaces/ns/secrets/a-env"), Verdict::Allow);
        assert_eq!(get("/api/v1/namespaces/ns/configmaps/a-config"), Verdict::Allow);
        assert_eq!(get("/api/v1/namespaces/ns/configmaps/kube-root-ca.crt"), Verdict::Allow);
        assert_eq!(get("/api/v1/namespaces/ns/serviceaccounts/default"), Verdict::Allow);
        assert_eq!(get("/api/v1/namespaces/ns/secrets/b-secret"), no_relationship("a"));
        assert_eq!(get("/api/v1/namespaces/other/secrets/a-secret"), no_relationship("a"));
        assert!(matches!(get("/api/v1/namespaces/ns/secrets"), Verdict::NoOpinion(Some(_))));
        let token = attrs(Method::POST, "/api/v1/namespaces/ns/serviceaccounts/builder/token");
        assert_eq!(authorize("b", &token, &pods()), Verdict::Allow);
        assert_eq!(authorize("a", &token, &pods()), no_relationship("a"));
        // What every kubelet needs comes from the fixed rules; the rest is RBAC's to say.
        assert_eq!(get("/api/v1/pods"), Verdict::Allow);
        assert_eq!(get("/apis/discovery.k8s.io/v1/endpointslices"), Verdict::Allow);
        assert_eq!(get("/apis/apps/v1/deployments"), Verdict::NoOpinion(None));
        assert_eq!(
            authorize("a", &attrs(Method::PUT, "/api/v1/namespaces/ns/pods/on-a"), &pods()),
            Verdict::NoOpinion(None)
        );
    }

    #[test]
    fn a_node_touches_only_its_own_lease() {
        let lease = |m: Method, path: &str| authorize("a", &attrs(m, path), &pods());
        assert_eq!(
            lease(Method::PATCH, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/a"),
            Verdict::Allow
        );
        assert!(matches!(
            lease(Method::PATCH, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/b"),
            Verdict::NoOpinion(Some(_))
        ));
        assert!(matches!(
            lease(Method::GET, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"),
            Verdict::NoOpinion(Some(_))
        ));
        let create = attrs(Method::POST, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
        assert_eq!(authorize("a", &create, &pods()), Verdict::Allow);
        assert!(needs_body(&create));
        assert!(admit("a", &create, Some(&json!({"metadata": {"name": "b"}})), &pods()).is_err());
        assert!(admit("a", &create, Some(&json!({"metadata": {"name": "a"}})), &pods()).is_ok());
    }

    #[test]
    fn node_restriction_keeps_a_node_to_its_own_objects() {
        let admit_a = |m: Method, path: &str, body: Option<Value>| admit("a", &attrs(m, path), body.as_ref(), &pods());
        assert_eq!(
            admit_a(Method::PATCH, "/api/v1/nodes/b/status", None).unwrap_err(),
            "node \"a\" is not allowed to modify node \"b\""
        );
        assert!(admit_a(Method::PATCH, "/api/v1/nodes/a/status", None).is_ok());
        assert!(admit_a(Method::DELETE, "/api/v1/nodes/b", None).is_err());
        assert!(admit_a(Method::POST, "/api/v1/nodes", Some(json!({"metadata": {"name": "b"}}))).is_err());
        assert!(admit_a(Method::POST, "/api/v1/nodes", Some(json!({"metadata": {"name": "a"}}))).is_ok());
        assert!(admit_a(Method::PATCH, "/api/v1/namespaces/ns/pods/on-a/status", None).is_ok());
        assert_eq!(
            admit_a(Method::PATCH, "/api/v1/namespaces/ns/pods/on-b/status", None).unwrap_err(),
            "node \"a\" can only update pod status for pods with spec.nodeName set to itself"
        );
        assert!(admit_a(Method::DELETE, "/api/v1/namespaces/ns/pods/on-b", None).is_err());
        assert!(admit_a(Method::DELETE, "/api/v1/namespaces/ns/pods/gone", None).is_ok());
        assert!(admit_a(Method::POST, "/api/v1/namespaces/ns/pods", Some(json!({}))).is_err());
        assert!(admit_a(Method::GET, "/api/v1/nodes/b", None).is_ok());
    }
}
