//! `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: kube-apiserver's TokenRequest
//! subresource. `kubectl create token NAME` asks it; so does every agent for the projected
//! token of a pod, bound to that pod. The answer is never stored.
//!
//! [`plan`] is the pure part: the request's spec and the objects it names → the claims (or
//! kube-apiserver's error); [`create`] reads the objects and signs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::token::{self, Claims, KubernetesClaims, ObjectRef};
use crate::api::{reviews, ApiState};
use crate::resource::error::{Cause, Subject};
use crate::resource::ApiError;

/// The shortest token lifetime kube-apiserver issues.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// What a request without `expirationSeconds` gets.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// The objects a request names, as found (`None`: missing).
pub struct Named {
    pub service_account: Option<Arc<Value>>,
    /// The bound object (Pod, Secret or Node) when the request names one.
    pub bound: Option<Arc<Value>>,
}

fn uid(object: &Value) -> String {
    object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string()
}

fn subject(plural: &str, name: &str) -> Subject {
    Subject { group: String::new(), kind: plural.to_string(), name: name.to_string() }
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        qualified_kind: "TokenRequest.authentication.k8s.io".into(),
        name: name.into(),
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        causes: vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("{field}: {message}"),
            field: field.into(),
        }],
    }
}

/// What the request's `boundObjectRef` names: (kind, name, uid), checked for a kind
/// tokens bind to.
pub fn bound_ref(spec: &Value, account: &str) -> Result<Option<(String, String, String)>, ApiError> {
    let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()) else { return Ok(None) };
    let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = text("kind");
    if !matches!(kind.as_str(), "Pod" | "Secret" | "Node") {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount \"{account}\" to object of kind {kind:?}: supported kinds are Pod, Secret, Node"
        )));
    }
    Ok(Some((kind, text("name"), text("uid"))))
}

/// The claims of the token to issue for service account `account` in `namespace` (pure).
pub fn plan(
    issuer: &token::Issuer,
    namespace: &str,
    account: &str,
    spec: &Value,
    named: &Named,
    now: i64,
    jti: String,
) -> Result<Claims, ApiError> {
    let Some(sa) = &named.service_account else {
        return Err(ApiError::NotFound(subject("serviceaccounts", account)));
    };
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(account, "spec.expirationSeconds", format!("Invalid value: {v}: must be an integer"))
        })?,
    };
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            account,
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            account,
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"),
        ));
    }
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| issuer.api_audiences.clone());
    let mut claims = KubernetesClaims {
        namespace: namespace.to_string(),
        serviceaccount: ObjectRef { name: account.to_string(), uid: uid(sa) },
        pod: None,
        secret: None,
        node: None,
    };
    if let Some((kind, name, wanted_uid)) = bound_ref(spec, account)? {
        let Some(object) = &named.bound else {
            return Err(ApiError::NotFound(subject(&format!("{}s", kind.to_lowercase()), &name)));
        };
        let found = uid(object);
        if !wanted_uid.is_empty() && wanted_uid != found {
            return Err(ApiError::Conflict {
                subject: subject(&format!("{}s", kind.to_lowercase()), &name),
                message: format!(
                    "the UID in the bound object reference ({wanted_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        if kind == "Pod" {
            let pod_account = object.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default");
            if pod_account != account {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount \"{account}\" to pod running with different serviceaccount name \"{pod_account}\""
                )));
            }
        }
        let r = Some(ObjectRef { name, uid: found });
        match kind.as_str() {
            "Pod" => claims.pod = r,
            "Secret" => claims.secret = r,
            _ => claims.node = r,
        }
    }
    Ok(Claims {
        iss: issuer.issuer.clone(),
        sub: token::username(namespace, account),
        aud: audiences,
        exp: now + seconds,
        iat: now,
        nbf: now,
        jti,
        kubernetes: claims,
    })
}

/// The handler.
pub async fn create(
    State(state): State<ApiState>,
    Path((namespace, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(issuer) = state.service_accounts.clone() else {
        return ApiError::NotFound(Subject::default()).into_response();
    };
    let answer = async {
        let spec = reviews::spec_of(&headers, &body, "TokenRequest")?;
        let sa_info = crate::resource::find("", "v1", "serviceaccounts").expect("served");
        let service_account = state.registry.get(sa_info, Some(&namespace), &account, false).await.ok().map(Arc::new);
        let bound = match bound_ref(&spec, &account)? {
            Some((kind, name, _)) => {
                let (plural, ns) = match kind.as_str() {
                    "Pod" => ("pods", Some(namespace.as_str())),
                    "Secret" => ("secrets", Some(namespace.as_str())),
                    _ => ("nodes", None),
                };
                let info = crate::resource::find("", "v1", plural).expect("served");
                state.registry.get(info, ns, &name, false).await.ok().map(Arc::new)
            }
            None => None,
        };
        let now = chrono::Utc::now().timestamp();
        let claims = plan(
            &issuer,
            &namespace,
            &account,
            &spec,
            &Named { service_account, bound },
            now,
            crate::registry::object::new_uid(),
        )?;
        let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        tracing::info!(
            %namespace, %account, audiences = ?claims.aud, exp = claims.exp, pod = ?claims.kubernetes.pod.as_ref().map(|p| &p.name),
            "issued a service-account token"
        );
        let response = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": account, "namespace": namespace, "creationTimestamp": null},
            "spec": spec,
            "status": {
                "token": issuer.sign(&claims),
                "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
        });
        Ok::<_, ApiError>(crate::api::json_response(StatusCode::CREATED, &response, &[]))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> token::Issuer {
        token::Issuer::from_pem(&berth_proto::pki::new_service_account_key().unwrap(), token::DEFAULT_ISSUER).unwrap()
    }

    fn named(bound: Option<Value>) -> Named {
        Named { service_account: Some(Arc::new(json!({"metadata": {"uid": "sa-1"}}))), bound: bound.map(Arc::new) }
    }

    #[test]
    fn a_request_becomes_claims_with_kube_apiservers_defaults_and_limits() {
        let issuer = issuer();
        let claims = plan(&issuer, "shop", "builder", &json!({}), &named(None), 100, "j".into()).unwrap();
        assert_eq!(claims.exp, 100 + DEFAULT_EXPIRATION_SECONDS);
        assert_eq!(claims.aud, vec![token::DEFAULT_ISSUER.to_string()]);
        assert_eq!(claims.sub, "system:serviceaccount:shop:builder");
        let short = plan(&issuer, "shop", "builder", &json!({"expirationSeconds": 599}), &named(None), 0, "j".into());
        assert!(short.unwrap_err().to_string().contains("may not specify a duration less than 10 minutes"));
        let missing = Named { service_account: None, bound: None };
        let err = plan(&issuer, "shop", "ghost", &json!({}), &missing, 0, "j".into()).unwrap_err();
        assert_eq!(err.to_string(), "serviceaccounts \"ghost\" not found");
    }

    #[test]
    fn a_token_binds_only_to_a_live_pod_of_the_same_account() {
        let issuer = issuer();
        let spec = json!({"boundObjectRef": {"kind": "Pod", "name": "web", "uid": "pod-1"}, "audiences": ["vault"]});
        let pod = json!({"metadata": {"uid": "pod-1"}, "spec": {"serviceAccountName": "builder"}});
        let claims = plan(&issuer, "shop", "builder", &spec, &named(Some(pod.clone())), 0, "j".into()).unwrap();
        assert_eq!(claims.kubernetes.pod, Some(ObjectRef { name: "web".into(), uid: "pod-1".into() }));
        assert_eq!(claims.aud, vec!["vault".to_string()]);
        assert!(plan(&issuer, "shop", "other", &spec, &named(Some(pod)), 0, "j".into()).is_err());
        let recreated = json!({"metadata": {"uid": "pod-2"}, "spec": {"serviceAccountName": "builder"}});
        let err = plan(&issuer, "shop", "builder", &spec, &named(Some(recreated)), 0, "j".into()).unwrap_err();
        assert!(err.to_string().contains("does not match the UID in record"), "{err}");
        let err = plan(&issuer, "shop", "builder", &spec, &named(None), 0, "j".into()).unwrap_err();
        assert_eq!(err.to_string(), "pods \"web\" not found");
        let deployment = json!({"boundObjectRef": {"kind": "Deployment", "name": "web"}});
        assert!(plan(&issuer, "shop", "builder", &deployment, &named(None), 0, "j".into()).is_err());
    }
}
