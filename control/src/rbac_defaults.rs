//! Kubernetes' default RBAC policy (its `bootstrappolicy`), as objects: the ClusterRoles
//! `cluster-admin`, `admin`, `edit`, `view`, the `system:*` roles for discovery, public
//! information, basic users and nodes, and the ClusterRoleBindings that give them to
//! `system:masters`, `system:authenticated` and `system:unauthenticated`.
//! The leader writes any that are missing (labelled `kubernetes.io/bootstrapping:
//! rbac-defaults` as kube-apiserver does); the authorizer falls back to them while they are
//! not stored. Pure data.
//!
//! `system:node` is bound to nobody, as in Kubernetes since 1.8: agents are authorized by
//! the Node authorizer (`crate::api::node_authz`).

use serde_json::{json, Value};

const GROUP: &str = "rbac.authorization.k8s.io";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole", "metadata": meta(name), "rules": rules})
}

/// The label that aggregates a ClusterRole into `admin`, `edit` or `view`.
pub fn aggregate_label(to: &str) -> String {
    format!("rbac.authorization.k8s.io/aggregate-to-{to}")
}

/// `role` with the label that aggregates it into `to`.
fn labelled(mut role: Value, to: &str) -> Value {
    role["metadata"]["labels"][aggregate_label(to)] = json!("true");
    role
}

/// `role` as the aggregation of every ClusterRole labelled for `of`.
fn aggregation(mut role: Value, of: &str) -> Value {
    role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {aggregate_label(of): "true"}}]});
    role
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups.iter().map(|g| json!({"kind": "Group", "apiGroup": GROUP, "name": g})).collect();
    let mut binding = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding", "metadata": meta(name),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
    });
    if !subjects.is_empty() {
        binding["subjects"] = Value::Array(subjects);
    }
    binding
}

/// Resources a namespace's users read (`view`); Secrets are left out of it, as Kubernetes does.
fn viewable() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "persistentvolumeclaims",
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "resourcequotas",
                "resourcequotas/status",
                "serviceaccounts",
                "services",
                "services/status",
                "namespaces",
                "namespaces/status",
            ],
        ),
        rule(
            READ,
            &["apps"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(READ, &["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        rule(READ, &["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(READ, &["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"]),
        rule(READ, &["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ, &["apps"], &["controllerrevisions"]),
        rule(READ, &["metrics.k8s.io"], &["pods", "nodes"]),
    ]
}

/// What `edit` adds to `view`: writing a namespace's workloads, Services, ConfigMaps and
/// Secrets, and exec/attach/port-forward.
fn editable() -> Vec<Value> {
    vec![
        rule(READ, &[""], &["secrets"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "persistentvolumeclaims",
                "pods",
                "replicationcontrollers",
                "secrets",
                "serviceaccounts",
                "services",
            ],
        ),
        rule(&["create", "get"], &[""], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
        rule(&["create"], &[""], &["pods/eviction", "serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let view = viewable();
    // In the order aggregation writes them: the sources' rules by source name.
    let mut edit = editable();
    edit.extend(view.clone());
    let admin_only = vec![
        rule(
            &["get", "list", "watch", "create", "delete", "deletecollection", "patch", "update"],
            &[GROUP],
            &["roles", "rolebindings"],
        ),
        rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
    ];
    let mut admin = edit.clone();
    admin.extend(admin_only.clone());
    // As in Kubernetes: `admin`, `edit` and `view` are aggregations (the leader's
    // clusterrole-aggregation task keeps their rules the union of the ClusterRoles labelled
    // `aggregate-to-…`), their own rules live in `system:aggregate-to-*`, view aggregates into
    // edit and edit into admin; the defaults carry the union already, for a fresh cluster.
    vec![
        cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]),
        aggregation(cluster_role("admin", admin), "admin"),
        labelled(aggregation(cluster_role("edit", edit), "edit"), "admin"),
        labelled(aggregation(cluster_role("view", view.clone()), "view"), "edit"),
        labelled(cluster_role("system:aggregate-to-admin", admin_only), "admin"),
        labelled(cluster_role("system:aggregate-to-edit", editable()), "edit"),
        labelled(cluster_role("system:aggregate-to-view", view), "view"),
        cluster_role(
            "system:discovery",
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![url_rule(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![url_rule(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role("system:node", {
            // The Node authorizer's fixed rules and the object-bound reads it decides per
            // object: what Kubernetes' role holds, for whoever an operator binds it to.
            let mut rules = crate::api::node_authz::node_rules().to_vec();
            rules.push(rule(&["get"], &[""], &["secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts"]));
            rules.push(rule(&["create"], &[""], &["serviceaccounts/token"]));
            rules
        }),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding("system:discovery", "system:discovery", &["system:authenticated"]),
        binding("system:basic-user", "system:basic-user", &["system:authenticated"]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
        // kubeadm's `kubeadm:kubelet-bootstrap`: bootstrap tokens may ask for certificates.
        binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", &["system:bootstrappers"]),
        // Bound to nobody, as in Kubernetes since 1.8: nodes are the Node authorizer's.
        binding("system:node", "system:node", &[]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::validate::{validate_create, FieldError};

    #[test]
    fn the_defaults_are_valid_objects_and_every_binding_names_a_default_role() {
        let roles = cluster_roles();
        let crs = crate::resource::find(GROUP, "v1", "clusterroles").unwrap();
        for role in &roles {
            let errs: Vec<FieldError> = validate_create(crs, role);
            assert!(
                errs.is_empty(),
                "{}: {:?}",
                role["metadata"]["name"],
                errs.iter().map(|e| e.message()).collect::<Vec<_>>()
            );
        }
        let crbs = crate::resource::find(GROUP, "v1", "clusterrolebindings").unwrap();
        for b in cluster_role_bindings() {
            assert!(validate_create(crbs, &b).is_empty(), "{}", b["metadata"]["name"]);
            assert!(roles.iter().any(|r| r["metadata"]["name"] == b["roleRef"]["name"]));
        }
    }
}
