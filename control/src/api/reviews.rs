//! Review resources: create-only objects that are answered, never stored —
//! `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth whoami`): who the server
//! thinks the caller is.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::authn::UserInfo;
use crate::resource::ApiError;

pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
pub const VERSION: &str = "v1";

/// The group/versions served here, for discovery.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    vec![(AUTHENTICATION_GROUP, VERSION)]
}

/// The `APIResourceList` of a review group/version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources = match (group, version) {
        (AUTHENTICATION_GROUP, VERSION) => vec![json!({
            "name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false,
            "kind": "SelfSubjectReview", "verbs": ["create"],
        })],
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
    match value.get("kind").and_then(Value::as_str) {
        None | Some("") => Ok(value),
        Some(k) if k == kind => Ok(value),
        Some(other) => Err(ApiError::BadRequest(format!("expected a {kind}, got a {other}"))),
    }
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`. The request has no question
/// in it, so a body Berth cannot decode (kubectl sends protobuf) is not read at all.
pub async fn self_subject_review(Extension(user): Extension<UserInfo>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/json"));
    if json {
        if let Err(e) = parse_review(&body, "SelfSubjectReview") {
            return e.into_response();
        }
    }
    let review = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": format!("{AUTHENTICATION_GROUP}/{VERSION}"),
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": user.name, "groups": user.groups}},
    });
    super::json_response(StatusCode::CREATED, &review, &[])
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
