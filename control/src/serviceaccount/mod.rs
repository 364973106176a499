//! Service accounts, as kube-apiserver and kube-controller-manager do them:
//!
//! * [`token`]: bound tokens — ES256 JWTs under the cluster's `pki/sa.key`, JWKS and OIDC
//!   discovery;
//! * [`authenticate`]: a presented token is a service account's only while the account
//!   (and the pod or Secret it is bound to) still exists with the UID it names;
//! * [`token_request`]: `POST …/serviceaccounts/NAME/token` (`kubectl create token`, and
//!   the agents' projected tokens);
//! * [`admission`]: pods get `spec.serviceAccountName` and the `kube-api-access-*`
//!   projected volume (token, `ca.crt`, namespace) mounted at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`;
//! * the leader task `crate::tasks::service_accounts` keeps a `default` ServiceAccount and
//!   the `kube-root-ca.crt` ConfigMap in every namespace.

pub mod admission;
pub mod token;
pub mod token_request;

use std::sync::Arc;

use serde_json::Value;

use crate::api::authn::UserInfo;

/// The object lookups [`authenticate`] makes (the watch cache, in the server).
pub trait Objects {
    /// `kind` ("ServiceAccount", "Pod", "Secret", "Node") `namespace/name`, if it exists.
    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

fn uid_of(object: &Value) -> &str {
    object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
}

/// The service account `token` authenticates at `now`, if the issuer signed it and
/// everything it names still exists (kube-apiserver's `validator.Validate`). `Err` says
/// why not, for the log.
pub fn authenticate(issuer: &token::Issuer, raw: &str, now: i64, objects: &dyn Objects) -> Result<UserInfo, String> {
    let claims = issuer.verify(raw, now).map_err(|e| format!("service-account token: {e}"))?;
    let k = &claims.kubernetes;
    let ns = k.namespace.as_str();
    let live = |kind: &str, namespace: &str, r: &token::ObjectRef| match objects.object(kind, namespace, &r.name) {
        None => Err(format!("service-account token: {kind} {namespace}/{} no longer exists", r.name)),
        Some(o) if uid_of(&o) != r.uid => Err(format!(
            "service-account token: the UID of {kind} {namespace}/{} ({}) does not match the token's ({})",
            r.name,
            uid_of(&o),
            r.uid
        )),
        Some(o) if o.pointer("/metadata/deletionTimestamp").is_some() && kind != "Pod" => {
            Err(format!("service-account token: {kind} {namespace}/{} is being deleted", r.name))
        }
        Some(_) => Ok(()),
    };
    live("ServiceAccount", ns, &k.serviceaccount)?;
    if let Some(pod) = &k.pod {
        live("Pod", ns, pod)?;
    }
    if let Some(secret) = &k.secret {
        live("Secret", ns, secret)?;
    }
    if let Some(node) = &k.node {
        live("Node", "", node)?;
    }
    if claims.sub != token::username(ns, &k.serviceaccount.name) {
        return Err("service-account token: its subject is not its service account".into());
    }
    Ok(UserInfo::authenticated(&claims.sub, &token::groups(ns)))
}

#[cfg(test)]
mod tests {
    use super::token::*;
    use super::*;
    use serde_json::json;

    struct Live(Vec<(&'static str, &'static str, &'static str, &'static str)>);
    impl Objects for Live {
        fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
            self.0
                .iter()
                .find(|(k, ns, n, _)| *k == kind && *ns == namespace && *n == name)
                .map(|(_, _, _, uid)| Arc::new(json!({"metadata": {"uid": uid}})))
        }
    }

    #[test]
    fn a_token_is_its_accounts_only_while_the_account_and_pod_live() {
        let issuer = Issuer::from_pem(&berth_proto::pki::new_service_account_key().unwrap(), DEFAULT_ISSUER).unwrap();
        let now = 1_700_000_000;
        let claims = Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: username("shop", "builder"),
            aud: vec![DEFAULT_ISSUER.into()],
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "shop".into(),
                serviceaccount: ObjectRef { name: "builder".into(), uid: "sa-1".into() },
                pod: Some(ObjectRef { name: "web".into(), uid: "pod-1".into() }),
                secret: None,
                node: None,
            },
        };
        let token = issuer.sign(&claims);
        let both = Live(vec![("ServiceAccount", "shop", "builder", "sa-1"), ("Pod", "shop", "web", "pod-1")]);
        let user = authenticate(&issuer, &token, now, &both).unwrap();
        assert_eq!(user.name, "system:serviceaccount:shop:builder");
        assert!(user.groups.contains(&"system:serviceaccounts:shop".to_string()));
        let pod_gone = Live(vec![("ServiceAccount", "shop", "builder", "sa-1")]);
        assert!(authenticate(&issuer, &token, now, &pod_gone).unwrap_err().contains("Pod shop/web no longer exists"));
        let recreated = Live(vec![("ServiceAccount", "shop", "builder", "sa-2"), ("Pod", "shop", "web", "pod-1")]);
        assert!(authenticate(&issuer, &token, now, &recreated).unwrap_err().contains("does not match"));
        assert!(authenticate(&issuer, &token, now + 3600, &both).unwrap_err().contains("expired"));
    }
}
