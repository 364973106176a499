//! API errors and their `Status` objects.
//!
//! Clients branch on the HTTP code and on `Status.reason` (kubectl prints `message`; kube-rs
//! and client-go test `reason`), so each variant maps to exactly the code, reason and
//! message wording kube-apiserver uses. Client mistakes are never 500s.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_store::StoreError;
use serde_json::{json, Value};

/// One `details.causes` entry of a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// Names the object an error is about, for `details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The resource plural ("pods"), as Kubernetes fills `details.kind` for most errors.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// `pods "x" not found`; with no subject (no route, unknown resource), kube-apiserver's
    /// generic "the server could not find the requested resource".
    #[error("{}", not_found_message(.0))]
    NotFound(Subject),
    #[error("{} \"{}\" already exists", qualified(&.0.kind, &.0.group), .0.name)]
    AlreadyExists(Subject),
    #[error("Operation cannot be fulfilled on {} \"{}\": {message}", qualified(&subject.kind, &subject.group), subject.name)]
    Conflict { subject: Subject, message: String },
    /// A server-side apply that would take fields other managers own (kube-apiserver's
    /// `NewApplyConflict`: the message alone, one cause per conflicting field).
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    /// `Deployment.apps "web" is invalid: [spec.selector: Required value, …]`; without a
    /// kind (a patch that cannot apply) the causes alone, as kube-apiserver's generic 422.
    #[error("{}", invalid_message(qualified_kind, name, causes))]
    Invalid { qualified_kind: String, name: String, group: String, kind: String, causes: Vec<Cause> },
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Expired(String),
    #[error("Request entity too large: {0}")]
    TooLarge(String),
    /// No valid credentials (kube-apiserver's body is the bare "Unauthorized").
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: a rule of the cluster says not now (an eviction a PodDisruptionBudget forbids);
    /// the client may retry.
    #[error("{message}")]
    TooManyRequests { message: String, causes: Vec<Cause> },
    /// No media type the client accepts can carry the answer (406).
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Timeout(String),
    /// The client did not send its request body in time (408).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn qualified(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

fn not_found_message(s: &Subject) -> String {
    if s.kind.is_empty() && s.name.is_empty() {
        return "the server could not find the requested resource".into();
    }
    format!("{} \"{}\" not found", qualified(&s.kind, &s.group), s.name)
}

fn invalid_message(qualified_kind: &str, name: &str, causes: &[Cause]) -> String {
    if qualified_kind.is_empty() {
        return invalid_summary(causes);
    }
    format!("{qualified_kind} \"{name}\" is invalid: {}", invalid_summary(causes))
}

fn invalid_summary(causes: &[Cause]) -> String {
    match causes {
        [one] => one.message.clone(),
        many => format!("[{}]", many.iter().map(|c| c.message.as_str()).collect::<Vec<_>>().join(", ")),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Timeout => ApiError::Timeout(format!("the server was unable to complete the request: {e}")),
            StoreError::NoLeader | StoreError::NotLeader | StoreError::Stopped => {
                ApiError::Unavailable(format!("the store is unavailable: {e}"))
            }
            StoreError::Compacted { .. } => ApiError::Gone(format!("{e}")),
            StoreError::RequestTooLarge => ApiError::TooLarge("limit is 1572864".into()),
            StoreError::FutureRevision => ApiError::Timeout("Too large resource version".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) | ApiError::Expired(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Gone(_) => "Gone",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Timeout(_) | ApiError::RequestTimeout(_) => "Timeout",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object clients decode.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound(s) if s.kind.is_empty() && s.name.is_empty() => Some(json!({})),
            ApiError::NotFound(s) | ApiError::AlreadyExists(s) | ApiError::Conflict { subject: s, .. } => {
                Some(json!({"name": s.name, "group": s.group, "kind": s.kind}))
            }
            ApiError::ApplyConflict { causes, .. } | ApiError::TooManyRequests { causes, .. } => Some(json!({
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            })),
            ApiError::Invalid { name, group, kind, causes, .. } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::warn!(code = code.as_u16(), error = %self, "request failed");
        }
        (code, [(axum::http::header::CONTENT_TYPE, "application/json")], self.status().to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kube_apiserver() {
        let s = Subject { group: "apps".into(), kind: "deployments".into(), name: "web".into() };
        assert_eq!(ApiError::NotFound(s.clone()).to_string(), r#"deployments.apps "web" not found"#);
        let pods = Subject { group: "".into(), kind: "pods".into(), name: "p".into() };
        assert_eq!(ApiError::AlreadyExists(pods.clone()).to_string(), r#"pods "p" already exists"#);
        let c = ApiError::Conflict { subject: pods, message: "the object has been modified".into() };
        assert_eq!(c.to_string(), r#"Operation cannot be fulfilled on pods "p": the object has been modified"#);
        assert_eq!(c.status()["code"], 409);
        let cause = |m: &str| Cause { reason: "FieldValueRequired".into(), message: m.into(), field: "spec".into() };
        let inv = ApiError::Invalid {
            qualified_kind: "Deployment.apps".into(),
            name: "web".into(),
            group: "apps".into(),
            kind: "Deployment".into(),
            causes: vec![cause("a: Required value"), cause("b: Required value")],
        };
        assert_eq!(inv.to_string(), r#"Deployment.apps "web" is invalid: [a: Required value, b: Required value]"#);
        assert_eq!(inv.status()["details"]["causes"][1]["message"], "b: Required value");
        assert_eq!(ApiError::from(StoreError::Timeout).code(), StatusCode::GATEWAY_TIMEOUT);
        // No subject: no empty quotes.
        assert_eq!(
            ApiError::NotFound(Subject::default()).to_string(),
            "the server could not find the requested resource"
        );
        let generic = ApiError::Invalid {
            qualified_kind: String::new(),
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            causes: vec![cause("test failed")],
        };
        assert_eq!(generic.to_string(), "test failed");
    }
}
