//! Resource types as the server's discovery documents describe them, and how command-line
//! words name them: `pods`, `pod`, `po`, `Pod`, `deployments.apps`, `deploy.v1.apps`,
//! `deploy,rs,po` and `deployment/web` all resolve the way kubectl resolves them.

use kube::core::{ApiResource, DynamicObject};
use kube::Api;

use crate::error::{CtlError, Result};

/// One served resource type (a row of `api-resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name, as in URLs (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`); the lower-cased kind when the server leaves it empty.
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
}

impl ResourceInfo {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` / `pods`: how the server names the resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `deployment.apps` / `pod`: the `-o name` prefix (`deployment.apps/web`).
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() {
            self.singular.clone()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }

    /// kube-rs's description of this type, for dynamic APIs.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// A dynamic API handle: in `namespace` for namespaced types (all namespaces when None),
    /// cluster-wide otherwise.
    pub fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = self.api_resource();
        match (self.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        }
    }

    /// The REST path of the collection (`/apis/apps/v1/namespaces/ns/deployments`) or, with
    /// `name`, of one object.
    pub fn url_path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        let mut path = match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            _ => format!("{prefix}/{}", self.plural),
        };
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// A v1 type for unit tests (singular = lower-cased kind, no verbs or categories).
    #[cfg(test)]
    pub(crate) fn for_test(group: &str, kind: &str, plural: &str, short: &[&str], namespaced: bool) -> ResourceInfo {
        ResourceInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            namespaced,
            verbs: vec![],
            categories: vec![],
        }
    }

    /// True when `word` names this type.
    fn matches(&self, word: &str) -> bool {
        let lower = word.to_ascii_lowercase();
        let (name, rest) = match lower.split_once('.') {
            Some((name, rest)) => (name.to_string(), Some(rest.to_string())),
            None => (lower.clone(), None),
        };
        let names_it = name == self.plural
            || name == self.singular
            || name == self.kind.to_ascii_lowercase()
            || self.short_names.iter().any(|s| s.eq_ignore_ascii_case(&name));
        if !names_it {
            return false;
        }
        match rest {
            None => true,
            // `deployments.apps`, `deployments.v1.apps`
            Some(rest) => rest == self.group || rest == format!("{}.{}", self.version, self.group),
        }
    }
}

/// Every resource type the server serves, in discovery order (core first).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub resources: Vec<ResourceInfo>,
}

impl Resolver {
    /// Reads `/api/v1` and every group's preferred version from the server.
    pub async fn discover(client: &kube::Client) -> std::result::Result<Resolver, kube::Error> {
        let mut resources = Vec::new();
        let core = client.list_core_api_resources("v1").await?;
        push_list(&mut resources, "", "v1", core);
        let groups = client.list_api_groups().await?;
        for group in groups.groups {
            let Some(version) = group.preferred_version.or_else(|| group.versions.first().cloned()) else {
                continue;
            };
            let list = client.list_api_group_resources(&version.group_version).await?;
            push_list(&mut resources, &group.name, &version.version, list);
        }
        Ok(Resolver { resources })
    }

    /// The type a command-line word names; kubectl's error when none does.
    pub fn resolve(&self, word: &str) -> Result<&ResourceInfo> {
        if word.is_empty() {
            return Err(CtlError::usage("resource type must not be empty"));
        }
        self.resources.iter().find(|r| r.matches(word)).ok_or_else(|| CtlError::UnknownResource(word.to_string()))
    }

    /// The type of an object with this `apiVersion` and `kind` (manifests).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Result<&ResourceInfo> {
        self.resources.iter().find(|r| r.api_version() == api_version && r.kind == kind).ok_or_else(|| {
            CtlError::usage(format!(
                "resource mapping not found for kind \"{kind}\" in version \"{api_version}\"; ensure CRDs are installed first"
            ))
        })
    }

    /// Every type in a category (`all` → pods, services, deployments, …).
    pub fn category(&self, name: &str) -> Vec<&ResourceInfo> {
        self.resources.iter().filter(|r| r.categories.iter().any(|c| c == name)).collect()
    }
}

fn push_list(
    out: &mut Vec<ResourceInfo>,
    group: &str,
    version: &str,
    list: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
) {
    for r in list.resources {
        if r.name.contains('/') {
            continue; // subresources (pods/log, deployments/scale)
        }
        let singular = if r.singular_name.is_empty() { r.kind.to_ascii_lowercase() } else { r.singular_name.clone() };
        out.push(ResourceInfo {
            group: r.group.clone().unwrap_or_else(|| group.to_string()),
            version: r.version.clone().unwrap_or_else(|| version.to_string()),
            kind: r.kind,
            plural: r.name,
            singular,
            short_names: r.short_names.unwrap_or_default(),
            namespaced: r.namespaced,
            verbs: r.verbs,
            categories: r.categories.unwrap_or_default(),
        });
    }
}

/// What a command's positional arguments ask for: one or more types, each with the names
/// given (empty = every object of the type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// The type word as typed (`deploy`, `pods`).
    pub type_word: String,
    pub names: Vec<String>,
}

/// Parses kubectl's positional forms: `TYPE[,TYPE…] [NAME…]` or `TYPE/NAME …`.
pub fn parse_targets(args: &[String]) -> Result<Vec<TargetGroup>> {
    let Some(first) = args.first() else {
        return Ok(vec![]);
    };
    if first.contains('/') {
        let mut groups: Vec<TargetGroup> = Vec::new();
        for arg in args {
            let Some((ty, name)) = arg.split_once('/') else {
                return Err(CtlError::usage(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'berthctl get resource/<resource_name>' instead of 'berthctl get resource resource/<resource_name>'"));
            };
            if ty.is_empty() || name.is_empty() {
                return Err(CtlError::usage(format!(
                    "arguments in resource/name form must have a single resource and name: {arg:?}"
                )));
            }
            match groups.iter_mut().find(|g| g.type_word == ty) {
                Some(g) => g.names.push(name.to_string()),
                None => groups.push(TargetGroup { type_word: ty.to_string(), names: vec![name.to_string()] }),
            }
        }
        return Ok(groups);
    }
    if let Some(arg) = args[1..].iter().find(|a| a.contains('/')) {
        return Err(CtlError::usage(format!(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'berthctl get resource/<resource_name>' instead of 'berthctl get resource {arg}')"
        )));
    }
    let types: Vec<&str> = first.split(',').filter(|t| !t.is_empty()).collect();
    if types.is_empty() {
        return Err(CtlError::usage("resource type must not be empty"));
    }
    // kubectl: `get deploy,rs web` looks up "web" of each type.
    let names: Vec<String> = args[1..].to_vec();
    Ok(types.into_iter().map(|t| TargetGroup { type_word: t.to_string(), names: names.clone() }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, kind: &str, plural: &str, short: &[&str]) -> ResourceInfo {
        ResourceInfo::for_test(group, kind, plural, short, true)
    }

    #[test]
    fn words_resolve_like_kubectl() {
        let r = Resolver {
            resources: vec![
                info("", "Pod", "pods", &["po"]),
                info("apps", "Deployment", "deployments", &["deploy"]),
                info("apps", "ReplicaSet", "replicasets", &["rs"]),
            ],
        };
        for word in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(r.resolve(word).unwrap().plural, "pods", "{word}");
        }
        for word in ["deploy", "deployment", "deployments.apps", "deploy.v1.apps", "Deployment"] {
            assert_eq!(r.resolve(word).unwrap().plural, "deployments", "{word}");
        }
        assert!(r.resolve("deployments.batch").is_err());
        assert_eq!(
            r.resolve("nope").unwrap_err().to_string(),
            "error: the server doesn't have a resource type \"nope\""
        );
        assert_eq!(
            r.resolve("deploy").unwrap().url_path(Some("ns"), Some("web")),
            "/apis/apps/v1/namespaces/ns/deployments/web"
        );
        assert_eq!(r.resolve("po").unwrap().url_path(None, None), "/api/v1/pods");
    }

    #[test]
    fn positional_forms() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_targets(&args(&["deploy,rs,po"])).unwrap(),
            vec![
                TargetGroup { type_word: "deploy".into(), names: vec![] },
                TargetGroup { type_word: "rs".into(), names: vec![] },
                TargetGroup { type_word: "po".into(), names: vec![] },
            ]
        );
        assert_eq!(
            parse_targets(&args(&["pods", "a", "b"])).unwrap(),
            vec![TargetGroup { type_word: "pods".into(), names: vec!["a".into(), "b".into()] }]
        );
        assert_eq!(
            parse_targets(&args(&["deploy/web", "pod/x", "deploy/api"])).unwrap(),
            vec![
                TargetGroup { type_word: "deploy".into(), names: vec!["web".into(), "api".into()] },
                TargetGroup { type_word: "pod".into(), names: vec!["x".into()] },
            ]
        );
        assert!(parse_targets(&args(&["pods", "deploy/web"])).is_err());
    }
}
