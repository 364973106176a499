//! Review resources: create-only objects that are answered, never stored —
//! `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth whoami`: who the server
//! thinks the caller is) and `authorization.k8s.io/v1` SelfSubjectAccessReview (`kubectl
//! auth can-i`), SubjectAccessReview (the same question about someone else, for those
//! RBAC lets ask it) and SelfSubjectRulesReview (`kubectl auth can-i --list`). Questions
//! arrive as JSON or, from kubectl, as protobuf (`super::encoding`); answers are JSON.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use axum::extract::State;

use super::authn::UserInfo;
use super::authz::{self, Attributes};
use super::encoding;
use super::node_authz;
use super::ApiState;
use crate::resource::ApiError;

pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
pub const VERSION: &str = "v1";

/// The group/versions served here, for discovery.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    vec![(AUTHENTICATION_GROUP, VERSION), (AUTHORIZATION_GROUP, VERSION)]
}

/// The `APIResourceList` of a review group/version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources = match (group, version) {
        (AUTHENTICATION_GROUP, VERSION) => vec![json!({
            "name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false,
            "kind": "SelfSubjectReview", "verbs": ["create"],
        })],
        (AUTHORIZATION_GROUP, VERSION) => ["SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview"]
            .iter()
            .map(|kind| {
                let singular = kind.to_lowercase();
                json!({"name": format!("{singular}s"), "singularName": singular, "namespaced": false,
                       "kind": kind, "verbs": ["create"]})
            })
            .collect(),
        _ => return None,
    };
    Some(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"), "resources": resources,
    }))
}

/// The body of a review request: any JSON object of the right kind (its spec, if any, is
/// the question; a SelfSubjectReview has none).
fn parse_review(body: &[u8], kind: &str) -> Result<Value, ApiError> {
    let value: Value =
        if body.is_empty() { json!({}) } else { super::decode::json(body, &format!("the {kind}"))?.value };
    of_kind(value, kind)
}

fn of_kind(value: Value, kind: &str) -> Result<Value, ApiError> {
    match value.get("kind").and_then(Value::as_str) {
        None | Some("") => Ok(value),
        Some(k) if k == kind => Ok(value),
        Some(other) => Err(ApiError::BadRequest(format!("expected a {kind}, got a {other}"))),
    }
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who am I (the request holds no
/// question, but must be a SelfSubjectReview).
pub async fn self_subject_review(Extension(user): Extension<UserInfo>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = spec_of(&headers, &body, "SelfSubjectReview") {
        return e.into_response();
    }
    let review = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": format!("{AUTHENTICATION_GROUP}/{VERSION}"),
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": user.name, "groups": user.groups}},
    });
    super::json_response(StatusCode::CREATED, &review, &[])
}

/// The question of an access review's spec (JSON form), as authorizer attributes.
pub fn question(spec: &Value) -> Result<Attributes, ApiError> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes {
            verb: text(r, "verb"),
            resource_request: true,
            api_group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
            path: String::new(),
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes { verb: text(n, "verb"), path: text(n, "path"), ..Default::default() });
    }
    Err(ApiError::BadRequest("spec: exactly one of resourceAttributes or nonResourceAttributes must be given".into()))
}

/// The spec of a review body of `kind`, sent as JSON or (kubectl) protobuf.
pub(crate) fn spec_of(headers: &HeaderMap, body: &[u8], kind: &str) -> Result<Value, ApiError> {
    let review = if encoding::is_protobuf_body(headers) {
        of_kind(encoding::decode_protobuf(body)?, kind)?
    } else {
        parse_review(body, kind)?
    };
    Ok(review.get("spec").cloned().unwrap_or_else(|| json!({})))
}

fn answered(kind: &str, spec: Value, status: Value) -> Response {
    let review = json!({
        "kind": kind,
        "apiVersion": format!("{AUTHORIZATION_GROUP}/{VERSION}"),
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    });
    super::json_response(StatusCode::CREATED, &review, &[])
}

/// An access review's status: the authorizer's decision on `attrs` for `user`.
fn decide(state: &ApiState, user: &UserInfo, attrs: &Attributes) -> Value {
    let decision = authz::decide(state, user, attrs);
    match decision.reason {
        Some(reason) => json!({"allowed": decision.allowed, "reason": reason}),
        None => json!({"allowed": decision.allowed}),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may I?
pub async fn self_subject_access_review(
    State(state): State<ApiState>,
    Extension(user): Extension<UserInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = || {
        let spec = spec_of(&headers, &body, "SelfSubjectAccessReview")?;
        let status = decide(&state, &user, &question(&spec)?);
        Ok::<_, ApiError>(answered("SelfSubjectAccessReview", spec, status))
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: may they? (RBAC decides who
/// may ask: `create subjectaccessreviews`.)
pub async fn subject_access_review(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = || {
        let spec = spec_of(&headers, &body, "SubjectAccessReview")?;
        let name = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
        let groups: Vec<String> = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(|g| g.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if name.is_empty() && groups.is_empty() {
            return Err(ApiError::BadRequest("spec.user: at least one of user or groups must be given".into()));
        }
        let status = decide(&state, &UserInfo { name, groups }, &question(&spec)?);
        Ok(answered("SubjectAccessReview", spec, status))
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`: what may I do in a
/// namespace (`kubectl auth can-i --list`).
pub async fn self_subject_rules_review(
    State(state): State<ApiState>,
    Extension(user): Extension<UserInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = || {
        let spec = spec_of(&headers, &body, "SelfSubjectRulesReview")?;
        let namespace = spec.get("namespace").and_then(Value::as_str).unwrap_or("").to_string();
        let view = authz::view(&state, &namespace);
        let rules = if user.groups.iter().any(|g| g == super::authn::MASTERS) {
            vec![
                json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
                json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
            ]
        } else {
            let mut rules = authz::rules_for(&view, &user, &namespace);
            if node_authz::node_name(&user).is_some() {
                rules.extend(node_authz::node_rules().iter().cloned());
            }
            rules
        };
        let (resource, non_resource): (Vec<Value>, Vec<Value>) =
            rules.into_iter().partition(|r| r.get("nonResourceURLs").is_none());
        let status = json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false});
        Ok::<_, ApiError>(answered("SelfSubjectRulesReview", spec, status))
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_bodies_of_another_kind_are_refused() {
        assert!(parse_review(b"", "SelfSubjectReview").is_ok());
        let ok = br#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}"#;
        assert!(parse_review(ok, "SelfSubjectReview").is_ok());
        let err = parse_review(br#"{"kind":"Pod"}"#, "SelfSubjectReview").unwrap_err().to_string();
        assert_eq!(err, "expected a SelfSubjectReview, got a Pod");
        assert!(parse_review(b"{not json", "SelfSubjectReview").is_err());
        assert!(resource_list(AUTHENTICATION_GROUP, VERSION).is_some());
        assert!(resource_list(AUTHENTICATION_GROUP, "v2").is_none());
    }
}
