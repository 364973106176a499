//! The table of resources Berth serves: group, version, names, scope, subresources.
//!
//! Discovery, routing, storage keys and OpenAPI all read this one table, and each entry
//! points at its kind's strategy (`resource::kinds`), so adding a kind is one line here plus
//! its strategy.

use super::kinds::{apps, batch, core, other};
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
    /// The kind's rules: defaults, validation, create preparation, patch schema, printer.
    pub strategy: &'static Strategy,
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
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    strategy: &'static Strategy,
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
        strategy,
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
    /// canonical resource's storage.
    pub fn storage(&self) -> &'static ResourceInfo {
        if self.group == "extensions" {
            return find("apps", "v1", self.plural).expect("extensions aliases have an apps/v1 twin");
        }
        find(self.group, self.version, self.plural).expect("resource is in the table")
    }

    pub fn is_legacy_alias(&self) -> bool {
        self.group == "extensions"
    }
}

/// Every served resource, in discovery order (kubectl prefers earlier groups).
pub static RESOURCES: &[ResourceInfo] = &[
    r("", "v1", "namespaces", "namespace", "Namespace", false, &["ns"], &core::NAMESPACE).status(),
    r("", "v1", "nodes", "node", "Node", false, &["no"], &core::NODE).status(),
    r("", "v1", "pods", "pod", "Pod", true, &["po"], &core::POD).status().pod_subresources().all(),
    r("", "v1", "services", "service", "Service", true, &["svc"], &core::SERVICE).status().all(),
    r("", "v1", "endpoints", "endpoints", "Endpoints", true, &["ep"], &core::ENDPOINTS),
    r("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"], &core::CONFIG_MAP),
    r("", "v1", "secrets", "secret", "Secret", true, &[], &core::SECRET),
    r("", "v1", "events", "event", "Event", true, &["ev"], &core::EVENT),
    r("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], &core::SERVICE_ACCOUNT),
    r("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true, &["quota"], &core::RESOURCE_QUOTA).status(),
    r("apps", "v1", "deployments", "deployment", "Deployment", true, &["deploy"], &apps::DEPLOYMENT)
        .status()
        .scale()
        .all(),
    r("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, &["rs"], &apps::REPLICA_SET)
        .status()
        .scale()
        .all(),
    r("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, &["ds"], &apps::DAEMON_SET).status().all(),
    r("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, &["sts"], &apps::STATEFUL_SET)
        .status()
        .scale()
        .all(),
    r("batch", "v1", "jobs", "job", "Job", true, &[], &batch::JOB).status().all(),
    r("batch", "v1", "cronjobs", "cronjob", "CronJob", true, &["cj"], &batch::CRON_JOB).status().all(),
    r("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, &[], &other::LEASE),
    r(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        &other::HORIZONTAL_POD_AUTOSCALER,
    )
    .status()
    .all(),
    // Old manifests still say extensions/v1beta1; they are stored and served as apps/v1.
    // No short names: `deploy` must mean apps/v1 without kubectl warning about ambiguity.
    r("extensions", "v1beta1", "deployments", "deployment", "Deployment", true, &[], &apps::DEPLOYMENT)
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
        let mut plurals: Vec<_> = RESOURCES.iter().filter(|r| !r.is_legacy_alias()).map(|r| r.plural).collect();
        plurals.sort();
        plurals.dedup();
        assert_eq!(plurals.len(), RESOURCES.len() - 1);
    }
}
