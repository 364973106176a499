//! Who may use an agent's port, as kubelet with `--client-ca-file` and
//! `--authorization-mode=Webhook`: the port serves TLS (a self-signed certificate, which
//! the API server does not verify, as kube-apiserver does not verify kubelets' by default);
//! callers present a client certificate of the cluster CA — the API server presents its
//! `apiserver-kubelet-client` one — and every request but `/healthz` is put to the API as
//! a SubjectAccessReview on the node's subresource (`nodes/proxy` for logs, exec, attach
//! and port-forward; `nodes/stats`; `nodes/log`), answers cached for a while.
//!
//! An agent of an `--insecure` cluster has no CA to check callers against and serves plain
//! HTTP without these checks (the API server then dials plain HTTP too).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_proto::tls::{CertUser, ClientCertCheck};
use serde_json::json;

/// How long an allowed (denied) answer of the API is reused (kubelet's webhook cache TTLs).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The caller of a request on a TLS connection: the verdict on its client certificate,
/// if it sent one (put in every request's extensions by the server).
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Result<CertUser, String>>);

/// The verb and the node subresource a request on the port needs (kubelet's
/// `GetRequestAttributes`); `None` for the public `/healthz`.
pub fn attributes(method: &Method, path: &str) -> Option<(&'static str, &'static str)> {
    if path == "/healthz" {
        return None;
    }
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let subresource = match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        _ => "proxy",
    };
    Some((verb, subresource))
}

type Key = (String, Vec<String>, &'static str, &'static str);

/// Asks the API whether callers may do what they ask of this node, with a cache.
pub struct Authorizer {
    client: kube::Client,
    node: String,
    cache: Mutex<HashMap<Key, (bool, Instant)>>,
}

impl Authorizer {
    pub fn new(client: kube::Client, node: String) -> Authorizer {
        Authorizer { client, node, cache: Mutex::default() }
    }

    /// Whether `user` may `verb` `nodes/<subresource>` of this node.
    pub async fn allowed(
        &self,
        user: &CertUser,
        verb: &'static str,
        subresource: &'static str,
    ) -> Result<bool, String> {
        let key: Key = (user.name.clone(), user.groups.clone(), verb, subresource);
        if let Some((allowed, at)) = self.cache.lock().expect("authorizer cache").get(&key).copied() {
            let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
            if at.elapsed() < ttl {
                return Ok(allowed);
            }
        }
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.name, "groups": user.groups, "resourceAttributes": {
                "verb": verb, "resource": "nodes", "subresource": subresource, "name": self.node,
            }},
        });
        let request = axum::http::Request::post("/apis/authorization.k8s.io/v1/subjectaccessreviews")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&review).expect("JSON"))
            .map_err(|e| e.to_string())?;
        let answer: serde_json::Value = tokio::time::timeout(REVIEW_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "the access review timed out".to_string())?
            .map_err(|e| format!("the access review failed: {e}"))?;
        let allowed = answer.pointer("/status/allowed").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let mut cache = self.cache.lock().expect("authorizer cache");
        // Bounded: a flood of distinct callers cannot grow it without end.
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }
}

/// The check in front of every route: 401 without a certificate of the cluster CA, 403
/// with kubelet's message when the API says no.
pub async fn middleware(State(authorizer): State<Arc<Authorizer>>, req: Request, next: Next) -> Response {
    let Some((verb, subresource)) = attributes(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let user = match req.extensions().get::<Caller>() {
        Some(Caller(Some(Ok(user)))) if user.check_valid_at(std::time::SystemTime::now()).is_ok() => user.clone(),
        Some(Caller(Some(Ok(_)))) => {
            tracing::info!(path = %req.uri().path(), "kubelet endpoint: the connection's certificate has expired");
            return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        }
        Some(Caller(Some(Err(why)))) => {
            tracing::info!(path = %req.uri().path(), reason = %why, "kubelet endpoint: refused a certificate");
            return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        }
        _ => return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    };
    match authorizer.allowed(&user, verb, subresource).await {
        Ok(true) => next.run(req).await,
        Ok(false) => {
            tracing::info!(user = %user.name, verb, subresource, "kubelet endpoint: forbidden");
            let message =
                format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})", user.name);
            (StatusCode::FORBIDDEN, message).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "kubelet endpoint: cannot authorize");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("Authorization error (user={}): {e}", user.name))
                .into_response()
        }
    }
}

/// The TLS side of the port: a self-signed serving certificate for `sans`, callers'
/// certificates checked against `client_ca_pem`.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub clients: Arc<ClientCertCheck>,
}

impl Tls {
    pub fn new(client_ca_pem: &str, node: &str, sans: &[String]) -> Result<Tls, String> {
        let issued = berth_proto::pki::self_signed_serving(node, sans).map_err(|e| e.to_string())?;
        let cert =
            berth_proto::tls::ReloadableCert::new(&issued.cert_pem, &issued.key_pem).map_err(|e| e.to_string())?;
        let config = berth_proto::tls::server_config(
            cert,
            client_ca_pem,
            berth_proto::tls::ClientAuth::Request,
            &berth_proto::tls::HTTP_ALPN,
        )
        .map_err(|e| e.to_string())?;
        let clients = Arc::new(ClientCertCheck::new(client_ca_pem).map_err(|e| e.to_string())?);
        Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), clients })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_kubelets_node_subresources() {
        assert_eq!(attributes(&Method::GET, "/healthz"), None);
        assert_eq!(attributes(&Method::GET, "/containerLogs/ns/p/c"), Some(("get", "proxy")));
        assert_eq!(attributes(&Method::POST, "/exec/ns/p/c"), Some(("create", "proxy")));
        assert_eq!(attributes(&Method::GET, "/portForward/ns/p"), Some(("get", "proxy")));
        assert_eq!(attributes(&Method::GET, "/stats/summary"), Some(("get", "stats")));
        assert_eq!(attributes(&Method::GET, "/healthz/extra"), Some(("get", "proxy")));
    }
}
