//! The table of resources Berth serves: group, version, names, scope, subresources.
//!
//! Discovery, routing, storage keys and OpenAPI all read this one table, and each entry
//! points at its kind's strategy (`resource::kinds`), so adding a kind is one line here plus
//! its strategy.

use super::custom::CustomVersion;
use super::kinds::{apps, batch, core, other, policy, rbac};
use super::strategy::Strategy;

/// One served resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub has_status: bool,
    pub has_scale: bool,
    /// Serves a pod's `binding`, `eviction` and `log` subresources.
    pub has_pod_subresources: bool,
    /// Serves a CertificateSigningRequest's `approval` (its status conditions).
    pub has_approval: bool,
    /// The kind's rules: defaults, validation, create preparation, patch schema, printer.
    pub strategy: &'static Strategy,
    /// A version of a CustomResourceDefinition (`None` for built-in kinds): its schema,
    /// printer columns and subresources (`resource::custom`).
    pub custom: Option<&'static CustomVersion>,
}

/// A resource is its group, version and plural (unique in the table).
impl PartialEq for ResourceInfo {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceInfo {}

const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    // The kind's name and its strategy, side by side so neither is forgotten.
    (kind, strategy): (&'static str, &'static Strategy),
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories: &[],
        has_status: false,
        has_scale: false,
        has_pod_subresources: false,
        has_approval: false,
        strategy,
        custom: None,
    }
}

impl ResourceInfo {
    const fn status(mut self) -> Self {
        self.has_status = true;
        self
    }
    const fn scale(mut self) -> Self {
        self.has_scale = true;
        self
    }
    const fn approval(mut self) -> Self {
        self.has_approval = true;
        self
    }
    const fn pod_subresources(mut self) -> Self {
        self.has_pod_subresources = true;
        self
    }
    const fn all(mut self) -> Self {
        self.categories = &["all"];
        self
    }

    /// "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// "pods" or "deployments.apps", as Kubernetes names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind qualified by group for "… is invalid" messages: "Pod", "Deployment.apps".
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The resource objects of this type are stored as: legacy aliases share their
    /// canonical resource's storage, a custom resource's other versions its storage version's.
    pub fn storage(&self) -> &'static ResourceInfo {
        if let Some(custom) = self.custom {
            return custom.storage_version();
        }
        if self.group == "extensions" {
            return find("apps", "v1", self.plural).expect("extensions aliases have an apps/v1 twin");
        }
        if self.group == "events.k8s.io" {
            return find("", "v1", "events").expect("core events are served");
        }
        find(self.group, self.version, self.plural).expect("resource is in the table")
    }

    pub fn is_legacy_alias(&self) -> bool {
        self.group == "extensions"
    }

    /// Served in another version than it is stored in (a legacy alias, or a custom
    /// resource's non-storage version): objects change `apiVersion` on the way in and out.
    pub fn is_alias(&self) -> bool {
        self.is_legacy_alias() || self.group == "events.k8s.io" || self.custom.is_some_and(|c| !c.is_storage_version())
    }

    /// The store key root of its objects, after `/registry/`: the plural for built-ins,
    /// `{group}/{plural}` for custom resources (as kube-apiserver lays out etcd, so a
    /// custom `pods` can never share keys with the built-in one).
    pub fn key_root(&self) -> std::borrow::Cow<'static, str> {
        match self.custom {
            Some(_) => format!("{}/{}", self.group, self.plural).into(),
            None => self.plural.into(),
        }
    }
}

/// Every served resource, in discovery order (kubectl prefers earlier groups).
pub static RESOURCES: &[ResourceInfo] = &[
    r("", "v1", "namespaces", "namespace", ("Namespace", &core::NAMESPACE), false, &["ns"]).status(),
    r("", "v1", "nodes", "node", ("Node", &core::NODE), false, &["no"]).status(),
    r("", "v1", "pods", "pod", ("Pod", &core::POD), true, &["po"]).status().pod_subresources().all(),
    r("", "v1", "services", "service", ("Service", &core::SERVICE), true, &["svc"]).status().all(),
    r("", "v1", "endpoints", "endpoints", ("Endpoints", &core::ENDPOINTS), true, &["ep"]),
    r("", "v1", "configmaps", "configmap", ("ConfigMap", &core::CONFIG_MAP), true, &["cm"]),
    r("", "v1", "secrets", "secret", ("Secret", &core::SECRET), true, &[]),
    r("", "v1", "events", "event", ("Event", &core::EVENT), true, &["ev"]),
    r("", "v1", "serviceaccounts", "serviceaccount", ("ServiceAccount", &core::SERVICE_ACCOUNT), true, &["sa"]),
    r("", "v1", "resourcequotas", "resourcequota", ("ResourceQuota", &core::RESOURCE_QUOTA), true, &["quota"]).status(),
    r("", "v1", "limitranges", "limitrange", ("LimitRange", &policy::LIMIT_RANGE), true, &["limits"]),
    r("apps", "v1", "deployments", "deployment", ("Deployment", &apps::DEPLOYMENT), true, &["deploy"])
        .status()
        .scale()
        .all(),
    r("apps", "v1", "replicasets", "replicaset", ("ReplicaSet", &apps::REPLICA_SET), true, &["rs"])
        .status()
        .scale()
        .all(),
    r("apps", "v1", "daemonsets", "daemonset", ("DaemonSet", &apps::DAEMON_SET), true, &["ds"]).status().all(),
    r("apps", "v1", "statefulsets", "statefulset", ("StatefulSet", &apps::STATEFUL_SET), true, &["sts"])
        .status()
        .scale()
        .all(),
    r(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        ("ControllerRevision", &policy::CONTROLLER_REVISION),
        true,
        &[],
    ),
    r("batch", "v1", "jobs", "job", ("Job", &batch::JOB), true, &[]).status().all(),
    r("batch", "v1", "cronjobs", "cronjob", ("CronJob", &batch::CRON_JOB), true, &["cj"]).status().all(),
    r("coordination.k8s.io", "v1", "leases", "lease", ("Lease", &other::LEASE), true, &[]),
    r(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "certificatesigningrequest",
        ("CertificateSigningRequest", &other::CERTIFICATE_SIGNING_REQUEST),
        false,
        &["csr"],
    )
    .status()
    .approval(),
    r(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        ("EndpointSlice", &other::ENDPOINT_SLICE),
        true,
        &[],
    ),
    r("networking.k8s.io", "v1", "ingresses", "ingress", ("Ingress", &other::INGRESS), true, &["ing"]).status(),
    r(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        ("NetworkPolicy", &policy::NETWORK_POLICY),
        true,
        &["netpol"],
    ),
    r(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        ("PodDisruptionBudget", &policy::POD_DISRUPTION_BUDGET),
        true,
        &["pdb"],
    )
    .status(),
    r(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        ("PriorityClass", &policy::PRIORITY_CLASS),
        false,
        &["pc"],
    ),
    r("networking.k8s.io", "v1", "ingressclasses", "ingressclass", ("IngressClass", &other::INGRESS_CLASS), false, &[]),
    r(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ("HorizontalPodAutoscaler", &other::HORIZONTAL_POD_AUTOSCALER),
        true,
        &["hpa"],
    )
    .status()
    .all(),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        ("ClusterRole", &rbac::CLUSTER_ROLE),
        false,
        &[],
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        ("ClusterRoleBinding", &rbac::CLUSTER_ROLE_BINDING),
        false,
        &[],
    ),
    r("rbac.authorization.k8s.io", "v1", "roles", "role", ("Role", &rbac::ROLE), true, &[]),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        ("RoleBinding", &rbac::ROLE_BINDING),
        true,
        &[],
    ),
    // The same objects as core events, in the newer shape (`resource::alias`).
    r("events.k8s.io", "v1", "events", "event", ("Event", &core::EVENT), true, &[]),
    r(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        ("CustomResourceDefinition", &crate::resource::custom::crd::CUSTOM_RESOURCE_DEFINITION),
        false,
        &["crd", "crds"],
    )
    .status(),
    // Old manifests still say extensions/v1beta1; they are stored and served as apps/v1.
    // No short names: `deploy` must mean apps/v1 without kubectl warning about ambiguity.
    r("extensions", "v1beta1", "deployments", "deployment", ("Deployment", &apps::DEPLOYMENT), true, &[])
        .status()
        .scale(),
];

/// The API groups in discovery order, with their one served version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The served resource for a group/version/kind (apiVersion + kind in a body).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.api_version() == api_version && r.kind == kind)
}

pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_names() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(d.qualified(), "deployments.apps");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(find("", "v1", "pods").unwrap().qualified(), "pods");
        let legacy = find("extensions", "v1beta1", "deployments").unwrap();
        assert_eq!(legacy.storage(), d);
        assert_eq!(find_kind("v1", "Pod").unwrap().plural, "pods");
        assert_eq!(groups()[0], ("apps", "v1"));
        // Plurals are unique per storage: keys are /registry/{plural}/...
        let mut plurals: Vec<_> = RESOURCES.iter().filter(|r| !r.is_alias()).map(|r| r.plural).collect();
        plurals.sort();
        plurals.dedup();
        assert_eq!(plurals.len(), RESOURCES.iter().filter(|r| !r.is_alias()).count());
    }
}
