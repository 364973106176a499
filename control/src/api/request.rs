//! Turning a request path and query into what it addresses: resource, namespace, name,
//! subresource, and the list/watch/write options. Pure, so every URL shape clients use is
//! unit-tested.

use std::collections::HashMap;

use berth_proto::selectors::{FieldSelector, LabelSelector};

use crate::cache::Filter;
use crate::registry::{object, FieldValidation, WriteOptions};
use crate::resource::ApiError;
use crate::resource::{self, ResourceInfo};

/// What a resource URL addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// `/api/v1/watch/...` (the old watch URL form).
    pub watch_path: bool,
}

impl Target {
    /// The resource whose selectable fields apply: a custom resource has only
    /// `metadata.name` and `metadata.namespace` (whatever its plural).
    fn selectable_as(&self) -> &'static str {
        if self.info.custom.is_some() {
            ""
        } else {
            self.info.storage().plural
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound(crate::resource::Subject::default())
}

/// Parses the segments after `/api/v1` or `/apis/{group}/{version}` among the built-in
/// resources.
pub fn parse_target(group: &str, version: &str, segments: &[&str]) -> Result<Target, ApiError> {
    parse_target_in(segments, |plural| resource::find(group, version, plural))
}

/// Parses the segments after `/api/v1` or `/apis/{group}/{version}`; `find` resolves a
/// plural of that group/version to what the server serves (custom resources included).
pub fn parse_target_in(
    segments: &[&str],
    find: impl Fn(&str) -> Option<&'static ResourceInfo>,
) -> Result<Target, ApiError> {
    let (watch_path, segments) = match segments.first() {
        Some(&"watch") => (true, &segments[1..]),
        _ => (false, segments),
    };
    // namespaces/{ns}/{resource}[/{name}[/{sub}]] when {resource} is a namespaced resource.
    if segments.len() >= 3 && segments[0] == "namespaces" {
        if let Some(info) = find(segments[2]).filter(|i| i.namespaced) {
            if segments.len() > 5 {
                return Err(not_found());
            }
            return Ok(Target {
                info,
                namespace: Some(segments[1].to_string()),
                name: segments.get(3).map(|s| s.to_string()),
                subresource: segments.get(4).map(|s| s.to_string()),
                watch_path,
            });
        }
    }
    let info = segments.first().and_then(|p| find(p)).ok_or_else(not_found)?;
    if segments.len() > 3 {
        return Err(not_found());
    }
    Ok(Target {
        info,
        namespace: None,
        name: segments.get(1).map(|s| s.to_string()),
        subresource: segments.get(2).map(|s| s.to_string()),
        watch_path,
    })
}

/// Query parameters, decoded once.
#[derive(Debug, Clone, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True" | ""))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("invalid value for {k}: {v:?} is not an integer"))),
        }
    }

    /// `resourceVersion`: None when absent or empty, else an unsigned integer as
    /// kube-apiserver's `ParseResourceVersion` (strconv.ParseUint) accepts; anything else
    /// (negative, garbage) is a 400 with its message.
    pub fn resource_version(&self) -> Result<Option<i64>, ApiError> {
        let Some(rv) = self.get("resourceVersion").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let why = if !rv.bytes().all(|b| b.is_ascii_digit()) {
            "invalid syntax"
        } else {
            match rv.parse::<i64>() {
                Ok(n) => return Ok(Some(n)),
                Err(_) => "value out of range",
            }
        };
        Err(ApiError::BadRequest(format!(
            "resourceVersion: Invalid value: {rv:?}: invalid resource version: strconv.ParseUint: parsing {rv:?}: {why}"
        )))
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn write_options(&self) -> Result<WriteOptions, ApiError> {
        let dry_run = match self.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )))
            }
        };
        let field_validation = match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )))
            }
        };
        if let Some(m) = self.get("fieldManager") {
            if m.len() > 128 {
                return Err(ApiError::BadRequest("fieldManager: Too long: must have at most 128 bytes".into()));
            }
        }
        Ok(WriteOptions {
            dry_run,
            field_manager: self.get("fieldManager").map(String::from),
            field_validation,
            skip_update_rules: false,
            trusted: false,
        })
    }

    /// The list/watch filter: namespace of the URL plus both selectors.
    pub fn filter(&self, target: &Target) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("unable to parse labelSelector: {e}")))?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("unable to parse fieldSelector: {e}")))?;
        let resource = target.selectable_as();
        if let Some(r) = fields.requirements.iter().find(|r| !object::is_selectable(resource, &r.field)) {
            return Err(ApiError::BadRequest(format!(
                "Unable to find \"{}\" that match label selector \"\", field selector \"{}\": field label not supported: {}",
                target.info.qualified(),
                self.get("fieldSelector").unwrap_or(""),
                r.field
            )));
        }
        let mut fields = fields;
        // The old watch URL names the object in the path.
        if let Some(name) = &target.name {
            fields.requirements.push(berth_proto::selectors::FieldRequirement {
                field: "metadata.name".into(),
                value: name.clone(),
                negated: false,
            });
        }
        Ok(Filter { resource: target.selectable_as(), namespace: target.namespace.clone(), labels, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_shapes() {
        let t = parse_target("", "v1", &["namespaces", "default", "pods", "web", "log"]).unwrap();
        assert_eq!(t.info.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource.as_deref(), Some("log"));
        let ns = parse_target("", "v1", &["namespaces", "default"]).unwrap();
        assert_eq!((ns.info.plural, ns.name.as_deref()), ("namespaces", Some("default")));
        let ns_status = parse_target("", "v1", &["namespaces", "default", "status"]).unwrap();
        assert_eq!(ns_status.subresource.as_deref(), Some("status"));
        let all = parse_target("apps", "v1", &["deployments"]).unwrap();
        assert_eq!(all.namespace, None);
        let w = parse_target("", "v1", &["watch", "namespaces", "a", "pods"]).unwrap();
        assert!(w.watch_path);
        assert!(parse_target("", "v1", &["widgets"]).is_err());
        assert!(parse_target("", "v1", &["namespaces", "a", "pods", "p", "log", "extra"]).is_err());
        assert!(parse_target("apps", "v1", &["pods"]).is_err());
    }

    #[test]
    fn options_and_filters() {
        let q = Query(
            [("fieldSelector", "spec.nodeName=n1"), ("labelSelector", "app in (a,b)")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let t = parse_target("", "v1", &["pods"]).unwrap();
        let f = q.filter(&t).unwrap();
        assert_eq!(f.fields.required_value("spec.nodeName"), Some("n1"));
        let bad = Query([("fieldSelector".to_string(), "spec.bogus=1".to_string())].into_iter().collect());
        assert!(bad.filter(&t).is_err());
        let dry = Query([("dryRun".to_string(), "All".to_string())].into_iter().collect());
        assert!(dry.write_options().unwrap().dry_run);
        let wrong = Query([("fieldValidation".to_string(), "Loud".to_string())].into_iter().collect());
        assert!(wrong.write_options().is_err());
    }
}
