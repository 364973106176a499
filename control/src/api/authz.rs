//! May they? kube-apiserver's authorization after authentication: `system:masters` may do
//! anything (the superuser group, decided before RBAC as kube-apiserver does), everyone
//! else gets what RBAC grants.
//!
//! * [`attributes`] reads a request as kube-apiserver's `RequestInfo`: verb, API group,
//!   resource, subresource, namespace, name — or a non-resource path;
//! * [`RbacView`] holds the Roles, ClusterRoles and bindings that apply: the stored objects,
//!   and for every default ([`crate::rbac_defaults`]) not stored, the default — so a fresh
//!   cluster is usable before the leader has written them, and an operator's edit to a
//!   default object takes effect;
//! * [`authorize`] is the pure decision, [`forbidden_message`] kube-apiserver's 403 text;
//! * [`check_escalation`] keeps RBAC writes from granting what their writer lacks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::authn::{UserInfo, MASTERS};
use super::{node_authz, ApiState};
use crate::resource::ApiError;

/// What a request asks to do (kube-apiserver's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub verb: String,
    /// A resource request (else `path` is a non-resource URL).
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

/// Reads a request's attributes (pure; kube-apiserver's `RequestInfoFactory`).
pub fn attributes(method: &Method, path: &str, query: Option<&str>) -> Attributes {
    let non_resource = || Attributes { verb: http_verb(method), path: path.to_string(), ..Default::default() };
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (api_group, mut rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return non_resource(),
    };
    if rest.is_empty() {
        return non_resource();
    }
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    if rest[0] == "watch" {
        verb = "watch".into();
        rest = &rest[1..];
    }
    let mut namespace = "";
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = rest[1];
        // `namespaces/NAME/status` and `/finalize` are the Namespace's own subresources.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let resource = rest.first().copied().unwrap_or("");
    let name = rest.get(1).copied().unwrap_or("");
    let subresource = rest.get(2).copied().unwrap_or("");
    let watch = query.is_some_and(|q| {
        q.split('&').any(|kv| matches!(kv.split_once('=').unwrap_or((kv, "")), ("watch", "1" | "true")))
    });
    if verb == "get" && name.is_empty() {
        verb = if watch { "watch" } else { "list" }.into();
    } else if verb == "get" && watch {
        verb = "watch".into();
    } else if verb == "delete" && name.is_empty() {
        verb = "deletecollection".into();
    }
    Attributes {
        verb,
        resource_request: true,
        api_group: api_group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        path: path.to_string(),
    }
}

fn http_verb(method: &Method) -> String {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string()
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    v.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// Whether one PolicyRule grants `attrs` (kube's `RuleAllows`).
pub fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    if !strings(rule, "verbs").any(|v| v == "*" || v == attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return strings(rule, "nonResourceURLs").any(|u| {
            u == "*" || u == attrs.path || u.strip_suffix('*').is_some_and(|prefix| attrs.path.starts_with(prefix))
        });
    }
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    strings(rule, "apiGroups").any(|g| g == "*" || g == attrs.api_group)
        && strings(rule, "resources").any(|r| {
            r == "*"
                || r == combined
                || (!attrs.subresource.is_empty() && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
        })
        && {
            let mut names = strings(rule, "resourceNames").peekable();
            names.peek().is_none() || names.any(|n| n == attrs.name)
        }
}

type Objects = Vec<Arc<Value>>;

/// The RBAC objects a decision reads. The cluster-scoped half is shared between requests
/// (see [`ClusterRbacMemo`]).
#[derive(Debug, Default, Clone)]
pub struct RbacView {
    pub cluster_roles: Arc<HashMap<String, Arc<Value>>>,
    pub cluster_role_bindings: Arc<Vec<Arc<Value>>>,
    /// The ClusterRoles the ClusterRoleBindings grant, by subject (built by
    /// [`RbacView::with_defaults`]): a request looks its user and groups up instead of
    /// reading every binding.
    pub cluster_grants: Arc<HashMap<Subject, Vec<Arc<Value>>>>,
    /// Roles and RoleBindings of the request's namespace.
    pub roles: HashMap<String, Arc<Value>>,
    pub role_bindings: Vec<Arc<Value>>,
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string()
}

impl RbacView {
    /// The stored objects, plus each default not stored under its name.
    pub fn with_defaults(mut self) -> RbacView {
        // Built once: every request's view starts from them.
        static DEFAULTS: std::sync::OnceLock<(Objects, Objects)> = std::sync::OnceLock::new();
        let (roles, bindings) = DEFAULTS.get_or_init(|| {
            let arc = |v: Vec<Value>| v.into_iter().map(Arc::new).collect();
            (arc(crate::rbac_defaults::cluster_roles()), arc(crate::rbac_defaults::cluster_role_bindings()))
        });
        let cluster_roles = Arc::make_mut(&mut self.cluster_roles);
        for role in roles {
            cluster_roles.entry(name_of(role)).or_insert_with(|| role.clone());
        }
        let stored: std::collections::HashSet<String> = self.cluster_role_bindings.iter().map(|b| name_of(b)).collect();
        let cluster_role_bindings = Arc::make_mut(&mut self.cluster_role_bindings);
        for binding in bindings {
            if !stored.contains(&name_of(binding)) {
                cluster_role_bindings.push(binding.clone());
            }
        }
        let mut grants: HashMap<Subject, Vec<Arc<Value>>> = HashMap::new();
        for binding in self.cluster_role_bindings.iter() {
            let Some(role) = self.cluster_roles.get(role_name(binding)) else { continue };
            for subject in subjects(binding).filter_map(|s| subject_key(s, "")) {
                grants.entry(subject).or_default().push(role.clone());
            }
        }
        self.cluster_grants = Arc::new(grants);
        self
    }
}

/// Who a binding's subject is, as a request's user is matched against it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    User(String),
    Group(String),
}

fn subjects(binding: &Value) -> impl Iterator<Item = &Value> {
    binding.get("subjects").and_then(Value::as_array).into_iter().flatten()
}

fn role_name(binding: &Value) -> &str {
    binding.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("")
}

/// A binding subject as a [`Subject`] (`namespace`: the binding's, the default of a
/// ServiceAccount subject's); None for kinds that match nobody.
fn subject_key(subject: &Value, namespace: &str) -> Option<Subject> {
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    match subject.get("kind").and_then(Value::as_str) {
        Some("User") => Some(Subject::User(name)),
        Some("Group") => Some(Subject::Group(name)),
        Some("ServiceAccount") => {
            let ns = subject.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(namespace);
            Some(Subject::User(format!("system:serviceaccount:{ns}:{name}")))
        }
        _ => None,
    }
}

/// The cluster-scoped half of every request's [`RbacView`] (the ClusterRoles with the
/// defaults, the ClusterRoleBindings), rebuilt only when the watch cache's ClusterRoles or
/// ClusterRoleBindings change. Building it for each request (hashing every role's name,
/// merging ~50 defaults) was most of what authorization cost a request.
#[derive(Debug, Default)]
pub struct ClusterRbacMemo {
    built: std::sync::Mutex<Option<((u64, u64), RbacView)>>,
}

impl ClusterRbacMemo {
    /// The view for cache generations `key`, from `build` when they moved.
    fn get_or_build(&self, key: (u64, u64), build: impl FnOnce() -> RbacView) -> RbacView {
        if let Some((built_for, view)) = &*self.built.lock().unwrap_or_else(|e| e.into_inner()) {
            if *built_for == key {
                return view.clone();
            }
        }
        let view = build();
        *self.built.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, view.clone()));
        view
    }
}

/// Whether a binding's subject is `user` (`namespace`: the binding's, for service accounts).
fn subject_matches(subject: &Value, user: &UserInfo, namespace: &str) -> bool {
    match subject_key(subject, namespace) {
        Some(Subject::User(name)) => name == user.name,
        Some(Subject::Group(name)) => user.groups.contains(&name),
        None => false,
    }
}

/// The roles bound to `user` in `namespace` ("" for cluster scope only).
fn bound_roles<'v>(view: &'v RbacView, user: &UserInfo, namespace: &str) -> Vec<&'v Arc<Value>> {
    let bound = |binding: &Value, ns: &str| subjects(binding).any(|s| subject_matches(s, user, ns));
    let mut roles = Vec::new();
    let mut grants_to = |subject: Subject| roles.extend(view.cluster_grants.get(&subject).into_iter().flatten());
    grants_to(Subject::User(user.name.clone()));
    for group in &user.groups {
        grants_to(Subject::Group(group.clone()));
    }
    if !namespace.is_empty() {
        for binding in view.role_bindings.iter().filter(|b| bound(b, namespace)) {
            let role = match binding.pointer("/roleRef/kind").and_then(Value::as_str) {
                Some("ClusterRole") => view.cluster_roles.get(role_name(binding)),
                _ => view.roles.get(role_name(binding)),
            };
            roles.extend(role);
        }
    }
    roles
}

fn rules_of(role: &Value) -> &[Value] {
    role.get("rules").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The rules that apply to `user` in `namespace` ("" for cluster scope only).
pub fn rules_for(view: &RbacView, user: &UserInfo, namespace: &str) -> Vec<Value> {
    bound_roles(view, user, namespace).into_iter().flat_map(|r| rules_of(r).iter().cloned()).collect()
}

/// Whether `user` may do `attrs` (pure).
pub fn authorize(view: &RbacView, user: &UserInfo, attrs: &Attributes) -> bool {
    if user.groups.iter().any(|g| g == MASTERS) {
        return true;
    }
    bound_roles(view, user, &attrs.namespace)
        .into_iter()
        .any(|role| rules_of(role).iter().any(|r| rule_allows(r, attrs)))
}

/// kube-apiserver's 403 message for a denied request: `pods "web" is forbidden: User "x"
/// cannot get resource "pods" in API group "" in the namespace "default"`.
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes) -> String {
    if !attrs.resource_request {
        return format!("forbidden: User \"{}\" cannot {} path \"{}\"", user.name, attrs.verb, attrs.path);
    }
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let qualified =
        if attrs.api_group.is_empty() { resource.clone() } else { format!("{resource}.{}", attrs.api_group) };
    let object = if attrs.name.is_empty() { qualified } else { format!("{qualified} \"{}\"", attrs.name) };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", attrs.namespace)
    };
    format!(
        "{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, attrs.verb, attrs.api_group
    )
}

/// Reads the RBAC objects a request in `namespace` needs from the watch cache, as it is
/// now (see `Cacher::current`: a request never waits on the cache to authorize).
pub fn view(state: &ApiState, namespace: &str) -> RbacView {
    let cacher = |plural: &'static str| {
        state.cache.get(crate::resource::find("rbac.authorization.k8s.io", "v1", plural).expect("RBAC is served"))
    };
    let list = |plural: &'static str, ns: Option<&str>| {
        let filter = crate::cache::Filter { resource: plural, namespace: ns.map(str::to_string), ..Default::default() };
        cacher(plural).current(&filter)
    };
    let by_name = |items: Vec<Arc<Value>>| items.into_iter().map(|o| (name_of(&o), o)).collect();
    let generations = (cacher("clusterroles").generation(), cacher("clusterrolebindings").generation());
    let mut view = state.cluster_rbac.get_or_build(generations, || {
        RbacView {
            cluster_roles: Arc::new(by_name(list("clusterroles", None))),
            cluster_role_bindings: Arc::new(list("clusterrolebindings", None)),
            ..Default::default()
        }
        .with_defaults()
    });
    if !namespace.is_empty() {
        view.roles = by_name(list("roles", Some(namespace)));
        view.role_bindings = list("rolebindings", Some(namespace));
    }
    view
}

/// The pods the Node authorizer reads, from the watch cache as it is now.
struct CachedPods<'a>(&'a ApiState);

impl CachedPods<'_> {
    fn in_namespace(&self, namespace: &str, keep: impl Fn(&Value) -> bool) -> Vec<Arc<Value>> {
        let info = crate::resource::find("", "v1", "pods").expect("pods are served");
        let filter =
            crate::cache::Filter { resource: "pods", namespace: Some(namespace.to_string()), ..Default::default() };
        self.0.cache.get(info).current(&filter).into_iter().filter(|p| keep(p)).collect()
    }
}

impl node_authz::PodLookup for CachedPods<'_> {
    fn pods_on_node(&self, namespace: &str, node: &str) -> Vec<Arc<Value>> {
        self.in_namespace(namespace, |p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.0.cached("", "pods", Some(namespace), name)
    }
}

/// The authorizers' decision (kube-apiserver's `--authorization-mode=Node,RBAC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why not, when an authorizer said (appended to the 403 message).
    pub reason: Option<String>,
}

/// Whether `user` may do `attrs`: `system:masters`, then the Node authorizer for node
/// identities, then RBAC.
pub fn decide(state: &ApiState, user: &UserInfo, attrs: &Attributes) -> Decision {
    let mut reason = None;
    if let Some(node) = node_authz::node_name(user) {
        match node_authz::authorize(node, attrs, &CachedPods(state)) {
            node_authz::Verdict::Allow => return Decision { allowed: true, reason: None },
            node_authz::Verdict::NoOpinion(why) => reason = why,
        }
    }
    let allowed = authorize(&view(state, &attrs.namespace), user, attrs);
    Decision { allowed, reason: if allowed { None } else { reason } }
}

/// NodeRestriction admission for a node's write (`Ok` for everyone else).
fn admit(state: &ApiState, user: &UserInfo, attrs: &Attributes, object: Option<&Value>) -> Result<(), String> {
    match node_authz::node_name(user) {
        Some(node) => node_authz::admit(node, attrs, object, &CachedPods(state)),
        None => Ok(()),
    }
}

/// The atomic requests a rule stands for (each verb × group × resource × name, or verb ×
/// URL); wildcards stay wildcards, so only a wildcard covers them.
fn atoms(rule: &Value) -> Vec<Attributes> {
    let list = |k: &str| strings(rule, k).map(str::to_string).collect::<Vec<_>>();
    let mut out = Vec::new();
    for verb in list("verbs") {
        for url in list("nonResourceURLs") {
            out.push(Attributes { verb: verb.clone(), path: url, ..Default::default() });
        }
        let names = list("resourceNames");
        let names = if names.is_empty() { vec![String::new()] } else { names };
        for group in list("apiGroups") {
            for resource in list("resources") {
                let (resource, subresource) = match resource.split_once('/') {
                    Some((r, s)) => (r.to_string(), s.to_string()),
                    None => (resource.clone(), String::new()),
                };
                for name in &names {
                    out.push(Attributes {
                        verb: verb.clone(),
                        resource_request: true,
                        api_group: group.clone(),
                        resource: resource.clone(),
                        subresource: subresource.clone(),
                        name: name.clone(),
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

/// The rules of `wanted` that `held` does not cover (kube's `validation.Covers`): granting
/// them would be an escalation.
pub fn uncovered(held: &[Value], wanted: &[Value]) -> Vec<Value> {
    wanted
        .iter()
        .filter(|rule| atoms(rule).iter().any(|atom| !held.iter().any(|h| rule_allows(h, atom))))
        .cloned()
        .collect()
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Escalation prevention for a write of an RBAC object by someone not in `system:masters`
/// (kube-apiserver's RBAC storage): a Role may only hold rules its writer holds (or the
/// writer may `escalate`), a binding may only grant a role whose rules its writer holds (or
/// the writer may `bind` it). `Err` is the 403 message.
pub fn check_escalation(view: &RbacView, user: &UserInfo, attrs: &Attributes, object: &Value) -> Result<(), String> {
    let scope = if attrs.namespace.is_empty() { "" } else { attrs.namespace.as_str() };
    let held = rules_for(view, user, scope);
    let may = |verb: &str, resource: &str, name: &str| {
        let a = Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: RBAC_GROUP.into(),
            resource: resource.into(),
            name: name.into(),
            namespace: attrs.namespace.clone(),
            ..Default::default()
        };
        held.iter().any(|r| rule_allows(r, &a))
    };
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(&attrs.name);
    let (wanted, exempt) = match attrs.resource.as_str() {
        "roles" | "clusterroles" => {
            let rules = object.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
            (rules, may("escalate", &attrs.resource, name))
        }
        _ => {
            let role = object.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
            let (resource, found) = match object.pointer("/roleRef/kind").and_then(Value::as_str) {
                Some("Role") => ("roles", view.roles.get(role)),
                _ => ("clusterroles", view.cluster_roles.get(role)),
            };
            let rules = found.and_then(|r| r.get("rules")).and_then(Value::as_array).cloned().unwrap_or_default();
            (rules, may("bind", resource, role))
        }
    };
    if exempt {
        return Ok(());
    }
    let missing = uncovered(&held, &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing.iter().map(|r| r.to_string()).collect();
    Err(format!(
        "{}.{RBAC_GROUP} \"{name}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
        attrs.resource,
        user.name,
        user.groups,
        shown.join("\n")
    ))
}

/// Whether a request writes an RBAC object (and so needs [`check_escalation`]).
fn writes_rbac(attrs: &Attributes) -> bool {
    attrs.resource_request
        && attrs.api_group == RBAC_GROUP
        && attrs.subresource.is_empty()
        && matches!(attrs.resource.as_str(), "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings")
        && matches!(attrs.verb.as_str(), "create" | "update" | "patch")
}

/// The authorization middleware (after [`super::authn::middleware`]): 403 unless allowed,
/// then the admission checks that need the request's object (escalation, NodeRestriction).
pub async fn middleware(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
        return ApiError::Unauthorized.into_response();
    };
    if user.groups.iter().any(|g| g == MASTERS) {
        return next.run(req).await;
    }
    let attrs = attributes(req.method(), req.uri().path(), req.uri().query());
    let decision = decide(&state, &user, &attrs);
    if !decision.allowed {
        let mut message = forbidden_message(&user, &attrs);
        if let Some(reason) = decision.reason {
            message = format!("{message}: {reason}");
        }
        tracing::info!(
            user = %user.name, verb = %attrs.verb, resource = %attrs.resource, namespace = %attrs.namespace,
            path = %attrs.path, "forbidden"
        );
        return ApiError::Forbidden(message).into_response();
    }
    let rbac_write = writes_rbac(&attrs);
    let node_create = node_authz::node_name(&user).is_some() && node_authz::needs_body(&attrs);
    if !rbac_write && !node_create {
        if let Err(message) = admit(&state, &user, &attrs, None) {
            tracing::info!(user = %user.name, verb = %attrs.verb, path = %attrs.path, "refused by NodeRestriction");
            return ApiError::Forbidden(message).into_response();
        }
        return next.run(req).await;
    }
    // An RBAC write (checked for escalation) or a node's create (checked for its name):
    // read the object.
    if rbac_write && attrs.verb == "patch" {
        return ApiError::Forbidden(format!(
            "{}.{RBAC_GROUP} \"{}\" is forbidden: patching RBAC objects needs system:masters in Berth (create or \
             update them, which are checked for escalation)",
            attrs.resource, attrs.name
        ))
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match super::read_body(state.body_limits, &parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let object: Value = match serde_yaml::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return ApiError::BadRequest(format!("decoding the {}: {e}", attrs.resource)).into_response(),
    };
    let checked = if rbac_write {
        check_escalation(&view(&state, &attrs.namespace), &user, &attrs, &object)
    } else {
        admit(&state, &user, &attrs, Some(&object))
    };
    if let Err(message) = checked {
        tracing::info!(user = %user.name, resource = %attrs.resource, "write refused by admission");
        return ApiError::Forbidden(message).into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(method: Method, path_and_query: &str) -> Attributes {
        let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
        attributes(&method, path, query)
    }

    #[test]
    fn requests_read_as_kube_apiserver_reads_them() {
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!((a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()), ("list", "pods", "default"));
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods?watch=true&resourceVersion=5");
        assert_eq!(a.verb, "watch");
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods/web/log");
        assert_eq!((a.verb.as_str(), a.name.as_str(), a.subresource.as_str()), ("get", "web", "log"));
        let a = attrs(Method::DELETE, "/apis/apps/v1/namespaces/ns/deployments");
        assert_eq!((a.verb.as_str(), a.api_group.as_str()), ("deletecollection", "apps"));
        let a = attrs(Method::PATCH, "/api/v1/nodes/n1/status");
        assert_eq!((a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()), ("patch", "nodes", ""));
        let a = attrs(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "kube-system", "kube-system")
        );
        let a = attrs(Method::PUT, "/api/v1/namespaces/gone/finalize");
        assert_eq!((a.resource.as_str(), a.subresource.as_str()), ("namespaces", "finalize"));
        let a = attrs(Method::GET, "/api/v1/watch/namespaces/default/pods");
        assert_eq!(a.verb, "watch");
        for path in ["/api", "/api/v1", "/apis/apps/v1", "/healthz", "/openapi/v3"] {
            let a = attrs(Method::GET, path);
            assert!(!a.resource_request && a.verb == "get", "{path}");
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_names_and_urls() {
        let get_pods = attrs(Method::GET, "/api/v1/namespaces/d/pods/web");
        let logs = attrs(Method::GET, "/api/v1/namespaces/d/pods/web/log");
        let rule = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        assert!(rule_allows(&rule, &get_pods));
        assert!(!rule_allows(&rule, &logs), "a subresource is its own resource");
        assert!(rule_allows(&json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/log"]}), &logs));
        assert!(rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]}),
            &get_pods
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["db"]}),
            &get_pods
        ));
        assert!(!rule_allows(&json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"]}), &get_pods));
        let healthz = attrs(Method::GET, "/healthz/etcd");
        assert!(rule_allows(&json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/healthz/*"]}), &healthz));
        assert!(!rule_allows(&json!({"verbs": ["get"], "nonResourceURLs": ["/version"]}), &healthz));
    }

    #[test]
    fn bindings_grant_their_roles_to_their_subjects_only() {
        let alice = UserInfo::authenticated("alice", &[]);
        let sa = UserInfo::authenticated("system:serviceaccount:d:robot", &["system:serviceaccounts".into()]);
        let reader = json!({"metadata": {"name": "pod-reader", "namespace": "d"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        let binding = json!({"metadata": {"name": "read", "namespace": "d"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
                         {"kind": "ServiceAccount", "name": "robot"}]});
        let view = RbacView {
            roles: [("pod-reader".to_string(), Arc::new(reader))].into(),
            role_bindings: vec![Arc::new(binding)],
            ..Default::default()
        }
        .with_defaults();
        let list = attrs(Method::GET, "/api/v1/namespaces/d/pods");
        assert!(authorize(&view, &alice, &list));
        assert!(authorize(&view, &sa, &list));
        assert!(!authorize(&view, &alice, &attrs(Method::DELETE, "/api/v1/namespaces/d/pods/web")));
        let elsewhere = attrs(Method::GET, "/api/v1/namespaces/other/pods");
        let other_view = RbacView::default().with_defaults();
        assert!(!authorize(&other_view, &alice, &elsewhere));
        assert_eq!(
            forbidden_message(&alice, &elsewhere),
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "other""#
        );
        let node = attrs(Method::GET, "/api/v1/nodes/n1");
        assert_eq!(
            forbidden_message(&alice, &node),
            r#"nodes "n1" is forbidden: User "alice" cannot get resource "nodes" in API group "" at the cluster scope"#
        );
        // The defaults: discovery for everyone authenticated, everything for system:masters.
        assert!(authorize(&other_view, &alice, &attrs(Method::GET, "/apis")));
        let admin = UserInfo::authenticated("root", &[MASTERS.into()]);
        assert!(authorize(&other_view, &admin, &attrs(Method::DELETE, "/api/v1/nodes/n1")));
    }

    #[test]
    fn rbac_writes_cannot_grant_what_their_writer_lacks() {
        let held = vec![json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "configmaps"]})];
        assert!(uncovered(&held, &[json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})]).is_empty());
        for wanted in [
            json!({"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}),
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
            json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}),
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
            json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}),
        ] {
            assert_eq!(uncovered(&held, std::slice::from_ref(&wanted)), vec![wanted.clone()], "{wanted}");
        }
        // A namespace admin (may write roles and bindings, read pods) in "d".
        let manager = UserInfo::authenticated("manager", &[]);
        let role = json!({"metadata": {"name": "mgr", "namespace": "d"}, "rules": [
            {"verbs": ["get", "list", "create", "update", "delete"], "apiGroups": ["rbac.authorization.k8s.io"],
             "resources": ["roles", "rolebindings"]},
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        let binding = json!({"metadata": {"name": "mgr", "namespace": "d"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mgr"},
            "subjects": [{"kind": "User", "name": "manager", "apiGroup": "rbac.authorization.k8s.io"}]});
        let view = RbacView {
            roles: [("mgr".to_string(), Arc::new(role))].into(),
            role_bindings: vec![Arc::new(binding)],
            ..Default::default()
        }
        .with_defaults();
        let create_role = attrs(Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/d/roles");
        let reader =
            json!({"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(check_escalation(&view, &manager, &create_role, &reader).is_ok());
        let secrets = json!({"metadata": {"name": "s"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]});
        let err = check_escalation(&view, &manager, &create_role, &secrets).unwrap_err();
        assert!(err.starts_with(r#"roles.rbac.authorization.k8s.io "s" is forbidden: user "manager""#), "{err}");
        assert!(err.contains("attempting to grant RBAC permissions not currently held"), "{err}");
        // Binding cluster-admin (which the manager does not hold) is refused; binding a role
        // the manager holds is not.
        let create_binding = attrs(Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/d/rolebindings");
        let to_admin = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": []});
        assert!(check_escalation(&view, &manager, &create_binding, &to_admin).is_err());
        let to_mgr = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mgr"}, "subjects": []});
        assert!(check_escalation(&view, &manager, &create_binding, &to_mgr).is_ok());
        // "*" on roles includes `escalate`: such a writer is exempt, as in Kubernetes.
        let mut wild = view.clone();
        let star = json!({"metadata": {"name": "mgr", "namespace": "d"}, "rules": [
            {"verbs": ["*"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]}]});
        wild.roles.insert("mgr".into(), Arc::new(star));
        assert!(check_escalation(&wild, &manager, &create_role, &secrets).is_ok());
    }
}
