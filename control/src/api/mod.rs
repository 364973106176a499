//! The Kubernetes REST API: routing, content negotiation, and the response envelope.
//!
//! * [`request`] — URL and query parsing (what is served is `crate::resource`);
//! * [`decode`] — JSON and YAML bodies, with their nesting and size limits;
//! * [`encoding`] — content negotiation (JSON or protobuf; object, table or metadata);
//! * [`body`] — request and patch bodies, `DeleteOptions`; [`render`] — object, metadata or table;
//! * [`handlers`] — get/list/create/update/patch/delete/deletecollection;
//! * [`watch`] — streaming watches from the watch cache;
//! * [`subresources`] — scale, binding, log; [`eviction`] — evictions within disruption budgets;
//! * [`authn`] — who is asking (client certificates, tokens, anonymous), in front of all;
//!   [`authz`] — may they (system:masters, then RBAC), right behind it;
//! * [`discovery`] — discovery, `/version`; [`openapi`] — the OpenAPI v2/v3 documents;
//! * [`metrics`] — request metrics;
//! * [`resource_metrics`] — `metrics.k8s.io` (NodeMetrics, PodMetrics) for `kubectl top`;
//! * [`reviews`] — answered-not-stored reviews (SelfSubjectReview for `kubectl auth whoami`);
//! * [`patch`] — JSON, merge, strategic merge patches and server-side apply;
//! * server-side printing (`kubectl get` columns) is `crate::resource::printers`, `Status`
//!   errors are `crate::resource::error`.
//!
//! Within this module requests flow one way: `mod` → `handlers` → `watch` / `subresources`
//! → `body` / `render`.

pub mod agent_dial;
pub mod authn;
pub mod authz;
pub mod body;
pub mod decode;
pub mod discovery;
pub mod encoding;
pub mod eviction;
pub mod failpoints;
pub mod handlers;
pub mod metrics;
pub mod node_authz;
pub mod openapi;
pub mod patch;
pub mod render;
pub mod request;
pub mod resource_metrics;
pub mod reviews;
pub mod streaming;
pub mod subresources;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use berth_store::Store;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use crate::cache::WatchCache;
use crate::registry::storage::Storage;
use crate::registry::Registry;
use crate::resource::error::Subject;
use crate::resource::ApiError;
use metrics::ApiMetrics;
use request::{Query, Target};

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Registry,
    pub cache: Arc<WatchCache>,
    pub metrics: Arc<ApiMetrics>,
    pub store: Store,
    /// Node and pod usage scraped from the agents (`metrics.k8s.io`).
    pub usage: Arc<crate::usage::UsageCache>,
    /// Ends open watches when the server stops.
    pub shutdown: CancellationToken,
    pub body_limits: BodyLimits,
    /// Signs and checks service-account tokens (`None`: `--insecure`, none are issued).
    pub service_accounts: Option<Arc<crate::serviceaccount::token::Issuer>>,
    /// How agents' ports are dialed (logs, exec, usage).
    pub agents: agent_dial::AgentDialer,
    /// Where requests are audited (`--audit-policy-file`).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// The cluster-scoped RBAC objects every authorization reads, kept between requests.
    pub cluster_rbac: Arc<authz::ClusterRbacMemo>,
}

/// How much of a request body the API reads, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// kube-apiserver's `MaxRequestBodyBytes`.
    pub max_bytes: usize,
    /// From the handler's first read to the body's end: a client announcing a large
    /// body and sending it a byte at a time must not hold the request open forever.
    pub read_timeout: std::time::Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits { max_bytes: 3 * 1024 * 1024, read_timeout: std::time::Duration::from_secs(60) }
    }
}

/// Reads a request body within `limits`. A declared `Content-Length` over the limit is
/// refused before any of the body is read, so the client gets its 413 at once.
pub async fn read_body(limits: BodyLimits, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || ApiError::TooLarge(format!("limit is {}", limits.max_bytes));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limits.max_bytes);
    match tokio::time::timeout(limits.read_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("error reading the request body: {e}"))),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body was not received within {}s",
            limits.read_timeout.as_secs()
        ))),
    }
}

impl ApiState {
    pub fn new(storage: Storage, cache: Arc<WatchCache>, shutdown: CancellationToken) -> ApiState {
        ApiState {
            store: storage.store().clone(),
            registry: Registry::new(storage),
            cache,
            metrics: Arc::new(ApiMetrics::new()),
            usage: Arc::new(crate::usage::UsageCache::new(crate::usage::DEFAULT_METRIC_RESOLUTION)),
            shutdown,
            body_limits: BodyLimits::default(),
            service_accounts: None,
            agents: agent_dial::AgentDialer::default(),
            audit: None,
            cluster_rbac: Default::default(),
        }
    }

    /// Issues and accepts service-account tokens signed by `issuer`, and mounts them into
    /// new pods.
    pub fn with_service_accounts(mut self, issuer: Arc<crate::serviceaccount::token::Issuer>) -> ApiState {
        self.service_accounts = Some(issuer);
        self.registry.mount_service_account_tokens();
        self
    }
}

impl ApiState {
    /// The object `namespace/name` of `group`/v1 `plural` as the watch cache holds it now,
    /// without waiting (what authentication and authorization read).
    pub fn cached(&self, group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let info = crate::resource::find(group, "v1", plural)?;
        let key = crate::registry::storage::object_key(info, namespace, name);
        self.cache.get(info).current_object(&key)
    }
}

/// The API router (also usable in-process as a `tower::Service`).
pub fn router(state: ApiState) -> Router {
    // Only builds with the store's failpoints serve `/debug/failpoints` (test builds).
    let router =
        if berth_store::failpoints::ENABLED { Router::new().merge(failpoints::routes()) } else { Router::new() };
    router
        .route("/version", get(|| async { json_ok(discovery::version()) }))
        // The official Python client asks for `/version/`, `/api/` and `/apis/`, which
        // kube-apiserver serves as their slashless forms.
        .route("/version/", get(|| async { json_ok(discovery::version()) }))
        .route("/api/", get(core_discovery))
        .route("/apis/", get(group_list))
        .route("/healthz", get(health))
        .route("/livez", get(liveness))
        .route("/readyz", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api", get(core_discovery))
        .route("/apis", get(group_list))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_root))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .route("/api/v1/namespaces/{ns}/pods/{name}/exec", any(streaming::exec))
        .route("/api/v1/namespaces/{ns}/pods/{name}/attach", any(streaming::attach))
        .route("/api/v1/namespaces/{ns}/pods/{name}/portforward", any(streaming::port_forward))
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            axum::routing::post(crate::serviceaccount::token_request::create),
        )
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/openid/v1/jwks", get(openid_jwks))
        .route("/apis/authentication.k8s.io/v1/selfsubjectreviews", axum::routing::post(reviews::self_subject_review))
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            axum::routing::post(reviews::self_subject_access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            axum::routing::post(reviews::self_subject_rules_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            axum::routing::post(reviews::subject_access_review),
        )
        .route("/api/{*rest}", any(core_api))
        .route("/apis/{*rest}", any(group_api))
        .fallback(|| async { ApiError::NotFound(Subject::default()).into_response() })
        .layer(axum::middleware::from_fn(fenced))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authz::middleware))
        .layer(axum::middleware::from_fn_with_state(state.audit.clone(), crate::audit::middleware))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authn::middleware))
        .with_state(state)
}

/// `GET /.well-known/openid-configuration`: the service-account issuer's OIDC discovery.
async fn openid_configuration(State(state): State<ApiState>) -> Response {
    match &state.service_accounts {
        Some(issuer) => json_ok(issuer.openid_configuration()),
        None => ApiError::NotFound(Subject::default()).into_response(),
    }
}

/// `GET /openid/v1/jwks`: the key that verifies service-account tokens.
async fn openid_jwks(State(state): State<ApiState>) -> Response {
    match &state.service_accounts {
        Some(issuer) => {
            let mut response = json_ok(issuer.jwks());
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
            response
        }
        None => ApiError::NotFound(Subject::default()).into_response(),
    }
}

/// An in-process API client over `router`, authenticated as the server itself.
pub fn loopback_client(router: Router) -> kube::Client {
    use tower::ServiceExt;
    let service = router.map_request(|mut req: http::Request<kube::client::Body>| {
        req.extensions_mut().insert(authn::Loopback);
        req
    });
    kube::Client::new(service, "default")
}

/// An in-process API client (over `router`) whose every request declares leader `term`:
/// the client of the leader tasks of that term, whose writes are fenced to it.
pub fn term_client(router: Router, term: u64) -> kube::Client {
    use tower::ServiceExt;
    let value = HeaderValue::from(term);
    let service = router.map_request(move |mut req: http::Request<kube::client::Body>| {
        req.headers_mut().insert(crate::registry::fence::HEADER, value.clone());
        req.extensions_mut().insert(authn::Loopback);
        req
    });
    kube::Client::new(service, "default")
}

/// Runs a request whose client declared a leader term (the leader tasks' in-process client
/// does, see `registry::fence`) with its store writes fenced to that term.
async fn fenced(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let term = req
        .headers()
        .get(crate::registry::fence::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    crate::registry::fence::scope(term, next.run(req)).await
}

fn json_ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v, &[])
}

/// A JSON response with Kubernetes' `Warning` headers.
pub fn json_response(code: StatusCode, v: &Value, warnings: &[String]) -> Response {
    bytes_response(code, "application/json", v.to_string().into(), warnings)
}

/// A response of `content_type` with Kubernetes' `Warning` headers.
pub fn bytes_response(code: StatusCode, content_type: &'static str, body: Bytes, warnings: &[String]) -> Response {
    let mut resp = (code, [(header::CONTENT_TYPE, content_type)], body).into_response();
    for w in warnings {
        add_warning(&mut resp, w);
    }
    resp
}

/// Appends Kubernetes' `Warning: 299 - "text"` header, which kubectl prints.
fn add_warning(response: &mut Response, text: &str) {
    let value = format!("299 - {}", serde_json::to_string(text).unwrap_or_default());
    if let Ok(h) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::WARNING, h);
    }
}

/// `/livez`: alive unless the store member stopped for good (a lost leader is `/readyz`'s
/// business, as in kube-apiserver, where livez does not follow etcd's leader).
async fn liveness(State(state): State<ApiState>) -> Response {
    match state.store.stopped_reason() {
        None => "ok".into_response(),
        Some(reason) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: raft stopped: {reason}\nlivez check failed"))
                .into_response()
        }
    }
}

async fn health(State(state): State<ApiState>) -> Response {
    match state.store.health() {
        Ok(()) => "ok".into_response(),
        Err(reason) => (StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: {reason}\nhealthz check failed"))
            .into_response(),
    }
}

async fn core_discovery(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    discovery_response(&state, &headers, true)
}

async fn group_list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    discovery_response(&state, &headers, false)
}

/// `/api` or `/apis`: aggregated discovery when the client asks for it (kubectl 1.30+),
/// with an ETag so a client with a cached copy gets 304; the legacy documents otherwise.
fn discovery_response(state: &ApiState, headers: &HeaderMap, core: bool) -> Response {
    let custom = state.cache.custom_resources();
    if !discovery::wants_aggregated(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("")) {
        return json_ok(if core { discovery::core_versions() } else { discovery::group_list(&custom) });
    }
    let body = discovery::aggregated(core, &custom).to_string();
    let etag = discovery::etag(body.as_bytes());
    let cached = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    let mut resp = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        bytes_response(StatusCode::OK, discovery::AGGREGATED_CONTENT_TYPE, body.into(), &[])
    };
    let headers = resp.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    state.metrics.watchers.set(state.cache.watcher_count() as i64);
    let mut text = state.metrics.encode();
    text.push_str(&state.store.metrics().encode());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi_v3_root(State(state): State<ApiState>) -> Response {
    json_ok(openapi::v3_root(&state.cache.custom_resources()))
}

async fn openapi_v3(State(state): State<ApiState>, Path(path): Path<String>) -> Response {
    match openapi::v3(path.trim_end_matches('/'), &state.cache.custom_resources()) {
        Some(doc) => json_response(StatusCode::OK, &doc, &[]),
        None => ApiError::NotFound(Subject::default()).into_response(),
    }
}

/// Swagger 2.0 as JSON. client-go asks for it as gnostic protobuf, which is not served:
/// it gets 406, as from a server without that form, and kubectl uses v3.
async fn openapi_v2(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json_ok_here = accept.is_empty() || accept.contains("json") || accept.contains("*/*");
    if !json_ok_here {
        return ApiError::NotAcceptable("only application/json is served for /openapi/v2".into()).into_response();
    }
    json_ok(openapi::v2(&state.cache.custom_resources()))
}

/// What the client asked to receive (negotiated by [`encoding::negotiate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    Object,
    Table,
    Metadata,
}

/// One parsed API request.
pub struct ApiRequest {
    pub method: Method,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub rendering: Rendering,
    /// How the response body is written.
    pub encoding: encoding::Encoding,
    /// Who asks (None only for requests built inside the server).
    pub user: Option<authn::UserInfo>,
}

impl ApiRequest {
    /// The verb for metrics and logs.
    fn verb(&self) -> &'static str {
        let collection = self.target.name.is_none();
        match self.method {
            Method::GET if self.query.is_watch() || self.target.watch_path => "WATCH",
            Method::GET if collection => "LIST",
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => {
                let ct = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                if ct.starts_with("application/apply-patch") {
                    "APPLY"
                } else {
                    "PATCH"
                }
            }
            Method::DELETE if collection => "DELETECOLLECTION",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        }
    }
}

/// A request under `/api` (`groups` false: the core group) or `/apis`: its body read
/// within the limits and its path split, then answered from discovery or sent on to the
/// resource it names.
type Caller = Option<axum::Extension<authn::UserInfo>>;

async fn core_api(
    s: State<ApiState>,
    u: Caller,
    m: Method,
    p: Path<String>,
    q: RawQuery,
    h: HeaderMap,
    b: Body,
) -> Response {
    api_root(false, s, u, m, p, q, h, b).await
}

async fn group_api(
    s: State<ApiState>,
    u: Caller,
    m: Method,
    p: Path<String>,
    q: RawQuery,
    h: HeaderMap,
    b: Body,
) -> Response {
    api_root(true, s, u, m, p, q, h, b).await
}

#[allow(clippy::too_many_arguments)]
async fn api_root(
    groups: bool,
    State(state): State<ApiState>,
    user: Caller,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(state.body_limits, &headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, tail) = match (groups, segments.as_slice()) {
        (false, []) if method == Method::GET => return json_ok(discovery::core_versions()),
        (false, ["v1"]) if method == Method::GET => {
            return json_ok(discovery::resource_list("", "v1", &[]).expect("core is served"));
        }
        (false, ["v1", tail @ ..]) => ("", "v1", tail),
        // metrics.k8s.io is computed, not stored: its objects come from the usage cache.
        (true, [resource_metrics::GROUP, version, tail @ ..]) if !tail.is_empty() => {
            let (rendering, _) = encoding::negotiate(&headers);
            return resource_metrics::handle(&state, &method, version, tail, parse_query(query), rendering).await;
        }
        (true, [group]) if method == Method::GET => {
            return match discovery::group(group, &state.cache.custom_resources()) {
                Some(doc) => json_ok(doc),
                None => ApiError::NotFound(Subject::default()).into_response(),
            };
        }
        (true, [group, version]) if method == Method::GET => {
            return match discovery::resource_list(group, version, &state.cache.custom_resources()) {
                Some(doc) => json_ok(doc),
                None => ApiError::NotFound(Subject::default()).into_response(),
            };
        }
        (true, [group, version, tail @ ..]) if !tail.is_empty() => (*group, *version, tail),
        _ => return ApiError::NotFound(Subject::default()).into_response(),
    };
    let user = user.map(|axum::Extension(u)| u);
    resource_request(state, user, method, group, version, tail, query, headers, body).await
}

fn parse_query(raw: Option<String>) -> Query {
    let pairs = raw.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    Query(pairs)
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    state: ApiState,
    user: Option<authn::UserInfo>,
    method: Method,
    group: &str,
    version: &str,
    segments: &[&str],
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let target = match request::parse_target_in(segments, |plural| state.cache.find(group, version, plural)) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let (rendering, encoding) = encoding::negotiate(&headers);
    let req = ApiRequest { method, target, query: parse_query(query), headers, body, rendering, encoding, user };
    let verb = req.verb();
    let resource = match &req.target.subresource {
        Some(sub) => format!("{}/{sub}", req.target.info.plural),
        None => req.target.info.plural.to_string(),
    };
    let span =
        tracing::debug_span!("api", verb, resource = %resource, ns = ?req.target.namespace, name = ?req.target.name);
    let legacy = match req.target.info.custom {
        Some(custom) => custom.deprecation.clone(),
        None => req.target.info.is_legacy_alias().then(|| deprecation_warning(req.target.info)),
    };
    let mut response = match handlers::dispatch(&state, req).instrument(span).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(warning) = legacy {
        add_warning(&mut response, &warning);
    }
    state.metrics.observe(verb, &resource, response.status().as_u16(), started.elapsed().as_secs_f64());
    tracing::debug!(verb, resource = %resource, code = response.status().as_u16(), "request");
    response
}

/// kube-apiserver's warning for a removed API version, on every request to a legacy alias
/// (kubectl prints it): Berth still serves `extensions/v1beta1` Deployments, as `apps/v1`
/// ones, so old manifests apply, but never silently.
fn deprecation_warning(info: &crate::resource::ResourceInfo) -> String {
    let storage = info.storage();
    let current = format!("{} {}", storage.api_version(), storage.kind);
    format!(
        "{} {} is deprecated in v1.9+, unavailable in v1.16+; use {current} (Berth stores it as {current})",
        info.api_version(),
        info.kind
    )
}

/// A stored object in the form the request's resource serves it (`resource::alias`).
pub fn present(target: &Target, obj: Value) -> Value {
    crate::resource::alias::from_storage(target.info, obj)
}

/// An empty body response, for handlers that stream.
pub fn body_response(code: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
