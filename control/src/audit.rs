//! Audit logging with kube-apiserver's formats: a `audit.k8s.io/v1` Policy
//! (`--audit-policy-file`) says per request how much to record — `None`, `Metadata`,
//! `Request` (plus the request's object) or `RequestResponse` (plus the response's) — by
//! the first rule matching its user, groups, verb, resources, namespaces or non-resource
//! URL; each recorded request is one `audit.k8s.io/v1` Event line (stage
//! `ResponseComplete`) in `--audit-log-path`.
//!
//! [`Policy::level`] is the pure decision; the middleware sits after authentication (so
//! the user is known) and before authorization (so refusals are recorded too), and hands
//! lines to a writer task through a bounded queue — a slow disk drops events (counted in
//! the log) rather than stalling requests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::api::authn::UserInfo;
use crate::api::authz::{attributes, Attributes};

/// How much of a request is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
pub enum Level {
    #[default]
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
}

/// An audit policy.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    #[serde(default)]
    rules: Vec<Rule>,
}

impl Policy {
    /// Reads a Policy document (YAML or JSON); `Err` names what is wrong.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        match (doc.get("apiVersion").and_then(Value::as_str), doc.get("kind").and_then(Value::as_str)) {
            (Some("audit.k8s.io/v1"), Some("Policy")) => {}
            (v, k) => return Err(format!("expected apiVersion audit.k8s.io/v1, kind Policy; got {v:?}, {k:?}")),
        }
        serde_json::from_value(doc).map_err(|e| format!("rules: {e}"))
    }

    /// The level of a request (pure): the first matching rule's, else `None`.
    pub fn level(&self, user: &UserInfo, attrs: &Attributes) -> Level {
        self.rules.iter().find(|r| r.matches(user, attrs)).map_or(Level::None, |r| r.level)
    }
}

fn any_or(list: &[String], matches: impl Fn(&str) -> bool) -> bool {
    list.is_empty() || list.iter().any(|x| matches(x))
}

impl Rule {
    fn matches(&self, user: &UserInfo, a: &Attributes) -> bool {
        if !any_or(&self.users, |u| u == user.name)
            || !any_or(&self.user_groups, |g| user.groups.iter().any(|ug| ug == g))
        {
            return false;
        }
        if !any_or(&self.verbs, |v| v == a.verb) {
            return false;
        }
        if !a.resource_request {
            // A rule naming resources or namespaces is about resources only.
            return self.resources.is_empty()
                && self.namespaces.is_empty()
                && any_or(&self.non_resource_urls, |u| {
                    u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
                });
        }
        if !self.non_resource_urls.is_empty() {
            return false;
        }
        if !any_or(&self.namespaces, |n| n == a.namespace) {
            return false;
        }
        let combined =
            if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        self.resources.is_empty()
            || self.resources.iter().any(|gr| {
                gr.group == a.api_group
                    && any_or(&gr.resources, |r| {
                        // "pods" is pods only; "pods/log", "*/scale" and "pods/*" name subresources.
                        r == "*"
                            || r == combined
                            || (!a.subresource.is_empty()
                                && (r.strip_prefix("*/") == Some(&a.subresource)
                                    || r.strip_suffix("/*") == Some(&a.resource)))
                    })
                    && any_or(&gr.resource_names, |n| n == a.name)
            })
    }
}

/// The Event of one request (pure).
#[allow(clippy::too_many_arguments)]
pub fn event(
    level: Level,
    id: &str,
    uri: &str,
    user: &UserInfo,
    attrs: &Attributes,
    source_ip: Option<&str>,
    user_agent: Option<&str>,
    code: u16,
    received: &str,
    completed: &str,
) -> Value {
    let mut e = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": format!("{level:?}"), "auditID": id,
        "stage": "ResponseComplete", "requestURI": uri, "verb": attrs.verb,
        "user": {"username": user.name, "groups": user.groups},
        "sourceIPs": source_ip.into_iter().collect::<Vec<_>>(),
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": received, "stageTimestamp": completed,
    });
    if let Some(agent) = user_agent {
        e["userAgent"] = json!(agent);
    }
    if attrs.resource_request {
        let mut object = json!({"resource": attrs.resource, "apiVersion": api_version(&attrs.path)});
        for (key, value) in [
            ("namespace", &attrs.namespace),
            ("name", &attrs.name),
            ("apiGroup", &attrs.api_group),
            ("subresource", &attrs.subresource),
        ] {
            if !value.is_empty() {
                object[key] = json!(value);
            }
        }
        e["objectRef"] = object;
    }
    e
}

/// The version segment of an API path (`/apis/apps/v1/...` → `v1`).
fn api_version(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", v, ..] => v.to_string(),
        ["apis", _, v, ..] => v.to_string(),
        _ => String::new(),
    }
}

/// Where events go, and the policy that chooses them.
pub struct AuditLog {
    policy: Policy,
    lines: mpsc::Sender<String>,
    dropped: AtomicU64,
}

/// Events queued for the writer at most.
const QUEUE: usize = 4096;
/// Request and response bodies recorded at most (larger ones are left out).
const MAX_RECORDED_BODY: usize = 256 * 1024;

impl AuditLog {
    /// Starts the writer appending to `path` (`-`: standard output).
    pub async fn start(policy: Policy, path: &Path) -> Result<Arc<AuditLog>, String> {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if path == Path::new("-") {
            Box::new(tokio::io::stdout())
        } else {
            Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            )
        };
        let shown = PathBuf::from(path);
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if let Err(e) = out.write_all(line.as_bytes()).await {
                    tracing::warn!(path = %shown.display(), error = %e, "writing the audit log");
                }
                if rx.is_empty() {
                    let _ = out.flush().await;
                }
            }
        });
        Ok(Arc::new(AuditLog { policy, lines: tx, dropped: AtomicU64::new(0) }))
    }

    fn record(&self, event: &Value) {
        if self.lines.try_send(format!("{event}\n")).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "the audit log cannot keep up: events dropped");
            }
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The middleware (with the audit log as its state).
pub async fn middleware(State(log): State<Option<Arc<AuditLog>>>, req: Request, next: Next) -> Response {
    let Some(log) = log else { return next.run(req).await };
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else { return next.run(req).await };
    let attrs = attributes(req.method(), req.uri().path(), req.uri().query());
    let level = log.policy.level(&user, &attrs);
    if level == Level::None {
        return next.run(req).await;
    }
    let received = now();
    let id = crate::registry::object::new_uid();
    let uri = req.uri().to_string();
    let (user_agent, source_ip) = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let connected =
            req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
        (header("user-agent"), header("x-forwarded-for").or(connected))
    };
    let watch = attrs.verb == "watch";
    // Request level: the request's object, when it is a JSON body of bounded size.
    let (req, request_object) = if level >= Level::Request && !watch {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, MAX_RECORDED_BODY).await {
            Ok(bytes) => {
                // JSON, or YAML (server-side apply), or nothing recordable (protobuf).
                let object = serde_yaml::from_slice::<Value>(&bytes).ok().filter(|v| v.is_object());
                (Request::from_parts(parts, axum::body::Body::from(bytes)), object)
            }
            Err(_) => {
                let mut response = Response::new(axum::body::Body::from("request body too large to audit"));
                *response.status_mut() = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
                return response;
            }
        }
    } else {
        (req, None)
    };
    let response = next.run(req).await;
    let code = response.status().as_u16();
    let mut e =
        event(level, &id, &uri, &user, &attrs, source_ip.as_deref(), user_agent.as_deref(), code, &received, &now());
    if let Some(object) = request_object {
        e["requestObject"] = object;
    }
    let json_response = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if level == Level::RequestResponse && !watch && json_response {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_RECORDED_BODY * 16).await.unwrap_or_default();
        if bytes.len() <= MAX_RECORDED_BODY {
            if let Ok(object) = serde_json::from_slice::<Value>(&bytes) {
                e["responseObject"] = object;
            }
        }
        log.record(&e);
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    log.record(&e);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  # The Kubernetes docs' example, abridged.
  - level: RequestResponse
    resources:
    - group: ""
      resources: ["pods"]
  - level: Metadata
    resources:
    - group: ""
      resources: ["pods/log", "pods/status"]
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources:
    - group: ""
      resources: ["endpoints", "services"]
  - level: None
    userGroups: ["system:authenticated"]
    nonResourceURLs:
    - "/api*"
    - "/version"
  - level: Request
    resources:
    - group: ""
      resources: ["configmaps"]
    namespaces: ["kube-system"]
  - level: Metadata
    resources:
    - group: ""
      resources: ["secrets", "configmaps"]
  - level: Metadata
    omitStages:
      - "RequestReceived"
"#;

    fn attrs(method: Method, path: &str) -> Attributes {
        attributes(&method, path, None)
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = Policy::parse(POLICY).unwrap();
        let alice = UserInfo::authenticated("alice", &[]);
        let level = |a: Attributes| policy.level(&alice, &a);
        assert_eq!(level(attrs(Method::GET, "/api/v1/namespaces/d/pods/web")), Level::RequestResponse);
        assert_eq!(level(attrs(Method::GET, "/api/v1/namespaces/d/pods/web/log")), Level::Metadata);
        assert_eq!(level(attrs(Method::GET, "/api/v1/namespaces/kube-system/configmaps/x")), Level::Request);
        assert_eq!(level(attrs(Method::GET, "/api/v1/namespaces/d/configmaps/x")), Level::Metadata);
        assert_eq!(level(attrs(Method::GET, "/apis")), Level::None);
        assert_eq!(level(attrs(Method::GET, "/healthz")), Level::Metadata);
        let proxy = UserInfo::authenticated("system:kube-proxy", &[]);
        let watch = attributes(&Method::GET, "/api/v1/services", Some("watch=true"));
        assert_eq!(policy.level(&proxy, &watch), Level::None);
        assert!(Policy::parse("kind: Policy").is_err());
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]").is_err());
    }

    #[test]
    fn events_carry_kube_apiservers_fields() {
        let user = UserInfo::authenticated("alice", &["devs".into()]);
        let a = attrs(Method::DELETE, "/apis/apps/v1/namespaces/shop/deployments/web");
        let e = event(
            Level::Metadata,
            "id",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            &user,
            &a,
            Some("10.0.0.9"),
            None,
            200,
            "t0",
            "t1",
        );
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["verb"], "delete");
        assert_eq!(
            e["objectRef"],
            json!({"resource": "deployments", "namespace": "shop", "name": "web", "apiGroup": "apps", "apiVersion": "v1"})
        );
        assert_eq!(e["user"]["groups"], json!(["devs", "system:authenticated"]));
        assert_eq!(e["responseStatus"]["code"], 200);
    }
}
