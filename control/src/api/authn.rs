//! Who is asking: kube-apiserver's authenticators in front of every route.
//!
//! A request's user comes from, in order:
//! 1. the in-process clients of this server ([`Loopback`], as kube-apiserver's loopback
//!    client: the leader tasks and the server's own bookkeeping);
//! 2. the connection: its TLS client certificate, checked against the cluster CA when the
//!    connection was accepted ([`Connection::Tls`]; CN → user, O → groups), or the
//!    `--insecure` port, whose callers are all administrators ([`Connection::Insecure`],
//!    as kube-apiserver's old insecure port);
//! 3. a bearer token: a bootstrap token (`crate::bootstrap`) or a service-account token
//!    (`crate::serviceaccount`);
//! 4. nobody: `system:anonymous`, admitted only to the health and version endpoints
//!    (kube-apiserver's `system:public-info-viewer` paths); elsewhere 401.
//!
//! Credentials that are presented but wrong (a certificate from another CA, expired, an
//! unknown token) are 401 wherever they are sent, and logged.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_proto::tls::CertUser;

use super::ApiState;
use crate::resource::ApiError;

/// What the server's token authenticators read: the watch cache, as it is now.
impl crate::serviceaccount::Objects for ApiState {
    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<std::sync::Arc<serde_json::Value>> {
        let plural = match kind {
            "ServiceAccount" => "serviceaccounts",
            "Pod" => "pods",
            "Secret" => "secrets",
            "Node" => "nodes",
            _ => return None,
        };
        self.cached("", plural, (!namespace.is_empty()).then_some(namespace), name)
    }
}

impl Tokens for ApiState {
    fn authenticate_token(&self, token: &str) -> Result<UserInfo, String> {
        use berth_proto::bootstrap_token as bt;
        if let Some(bootstrap) = bt::Token::parse(token) {
            let secret = self.cached("", "secrets", Some(bt::NAMESPACE), &bootstrap.secret_name());
            return crate::bootstrap::authenticate(&bootstrap, secret.as_deref(), chrono::Utc::now());
        }
        match &self.service_accounts {
            Some(issuer) => crate::serviceaccount::authenticate(issuer, token, chrono::Utc::now().timestamp(), self),
            None => Err("invalid bearer token".into()),
        }
    }
}

/// Every authenticated user is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Anonymous requests are in this group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group RBAC lets do anything (kube-apiserver's superuser group).
pub const MASTERS: &str = "system:masters";

/// A request's authenticated user, put in its extensions for authorization and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// `name` in `groups`, plus `system:authenticated` (every authenticator adds it).
    pub fn authenticated(name: &str, groups: &[String]) -> UserInfo {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        UserInfo { name: name.into(), groups }
    }

    pub fn anonymous() -> UserInfo {
        UserInfo { name: "system:anonymous".into(), groups: vec![UNAUTHENTICATED.into()] }
    }

    /// The server itself (its in-process clients): kube-apiserver's loopback identity.
    pub fn loopback() -> UserInfo {
        UserInfo::authenticated("system:apiserver", &[MASTERS.into()])
    }
}

/// What the connection a request came on says about its caller; the server puts it in
/// every request's extensions.
#[derive(Debug, Clone)]
pub enum Connection {
    /// The `--insecure` plain-HTTP port: everyone is an administrator.
    Insecure,
    /// A TLS connection with the verdict on its client certificate, if it sent one.
    Tls { cert: Option<Result<CertUser, String>> },
}

/// Marks requests of this server's in-process clients.
#[derive(Debug, Clone)]
pub struct Loopback;

/// The discovery document joining nodes read before they have any credential (kubeadm's
/// `cluster-info`); RBAC (a Role for `system:anonymous`) still decides.
const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// Paths anonymous callers may reach: kube-apiserver's `system:public-info-viewer` ones
/// and the cluster's discovery document (as kube-apiserver's anonymous authenticator
/// restricted to those paths by an `AuthenticationConfiguration` would).
fn public_path(path: &str) -> bool {
    path == CLUSTER_INFO_PATH
        || ["/healthz", "/livez", "/readyz", "/version"]
            .iter()
            .any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

/// The bearer-token authenticators (service-account tokens, bootstrap tokens).
pub trait Tokens {
    /// The user `token` is, or why it is refused.
    fn authenticate_token(&self, token: &str) -> Result<UserInfo, String>;
}

/// Why a request is refused with 401 (logged, never sent: kube-apiserver's body is bare).
#[derive(Debug, PartialEq, Eq)]
pub struct Unauthenticated(pub String);

/// The user of a request (pure: the inputs are what the request carries).
pub fn authenticate(
    loopback: bool,
    connection: Option<&Connection>,
    authorization: Option<&str>,
    path: &str,
    tokens: &dyn Tokens,
    now: std::time::SystemTime,
) -> Result<UserInfo, Unauthenticated> {
    if loopback {
        return Ok(UserInfo::loopback());
    }
    match connection {
        Some(Connection::Insecure) => {
            return Ok(UserInfo::authenticated("system:unsecured", &[MASTERS.into()]));
        }
        Some(Connection::Tls { cert: Some(Ok(user)) }) => {
            user.check_valid_at(now).map_err(Unauthenticated)?;
            return Ok(UserInfo::authenticated(&user.name, &user.groups));
        }
        Some(Connection::Tls { cert: Some(Err(why)) }) => return Err(Unauthenticated(why.clone())),
        Some(Connection::Tls { cert: None }) | None => {}
    }
    if let Some(value) = authorization {
        return match value.strip_prefix("Bearer ").map(str::trim) {
            Some(token) if !token.is_empty() => tokens.authenticate_token(token).map_err(Unauthenticated),
            _ => Err(Unauthenticated("unsupported Authorization header".into())),
        };
    }
    if public_path(path) {
        return Ok(UserInfo::anonymous());
    }
    Err(Unauthenticated("anonymous requests are not allowed on this path".into()))
}

/// The authentication middleware: puts the [`UserInfo`] in the request, or answers 401.
pub async fn middleware(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let authorization = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let verdict = authenticate(
        req.extensions().get::<Loopback>().is_some(),
        req.extensions().get::<Connection>(),
        authorization,
        req.uri().path(),
        &state,
        std::time::SystemTime::now(),
    );
    match verdict {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(Unauthenticated(why)) => {
            tracing::info!(path = %req.uri().path(), method = %req.method(), reason = %why, "unauthorized request");
            ApiError::Unauthorized.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn tls(cert: Option<Result<CertUser, String>>) -> Connection {
        Connection::Tls { cert }
    }

    struct NoTokens;
    impl Tokens for NoTokens {
        fn authenticate_token(&self, _: &str) -> Result<UserInfo, String> {
            Err("invalid bearer token".into())
        }
    }

    #[test]
    fn certificates_name_the_user_and_anonymous_callers_reach_only_public_paths() {
        let not_after = SystemTime::now() + Duration::from_secs(3600);
        let admin = CertUser { name: "kubernetes-admin".into(), groups: vec![MASTERS.into()], not_after };
        let on_admins = tls(Some(Ok(admin)));
        let user = authenticate(false, Some(&on_admins), None, "/api/v1/pods", &NoTokens, SystemTime::now()).unwrap();
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, [MASTERS, AUTHENTICATED]);
        // The same connection once its certificate expired: refused.
        let later = not_after + Duration::from_secs(1);
        let err = authenticate(false, Some(&on_admins), None, "/api/v1/pods", &NoTokens, later).unwrap_err();
        assert!(err.0.contains("certificate has expired"), "{err:?}");
        let anonymous = tls(None);
        for path in ["/healthz", "/livez", "/readyz", "/readyz/ping", "/version"] {
            assert_eq!(
                authenticate(false, Some(&anonymous), None, path, &NoTokens, SystemTime::now()),
                Ok(UserInfo::anonymous()),
                "{path}"
            );
        }
        for path in ["/api/v1/secrets", "/versions", "/", "/metrics", "/apis"] {
            assert!(authenticate(false, Some(&anonymous), None, path, &NoTokens, SystemTime::now()).is_err(), "{path}");
        }
        assert!(
            authenticate(false, None, None, "/api", &NoTokens, SystemTime::now()).is_err(),
            "no connection facts: anonymous"
        );
    }

    #[test]
    fn presented_but_wrong_credentials_are_refused_even_on_public_paths() {
        let forged = tls(Some(Err("x509: certificate signed by unknown authority".into())));
        let err = authenticate(false, Some(&forged), None, "/healthz", &NoTokens, SystemTime::now()).unwrap_err();
        assert!(err.0.contains("unknown authority"));
        assert!(authenticate(
            false,
            Some(&tls(None)),
            Some("Bearer abc.def"),
            "/healthz",
            &NoTokens,
            SystemTime::now()
        )
        .is_err());
        assert!(
            authenticate(false, Some(&tls(None)), Some("Basic YTpi"), "/api", &NoTokens, SystemTime::now()).is_err()
        );
    }

    #[test]
    fn loopback_and_the_insecure_port_are_administrators() {
        assert!(authenticate(true, None, None, "/api", &NoTokens, SystemTime::now())
            .unwrap()
            .groups
            .contains(&MASTERS.to_string()));
        let insecure =
            authenticate(false, Some(&Connection::Insecure), None, "/api", &NoTokens, SystemTime::now()).unwrap();
        assert_eq!(insecure.name, "system:unsecured");
        assert!(insecure.groups.contains(&MASTERS.to_string()));
    }
}
