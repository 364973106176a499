//! The built-in HTTP ingress proxy (as k3s ships Traefik): every node with the service
//! proxy also serves the Ingresses of the `berth` class on its InternalIP, port
//! `--ingress-port` (80). A request's Host and path pick a backend ([`routes`]), one of the
//! backend Service's ready endpoints is picked at random, and the request is forwarded to
//! it (axum for the server, hyper-util's pooled client for the upstream; headers kept,
//! `X-Forwarded-For/-Host/-Proto` added). No matching rule: 404; a backend without ready
//! endpoints: 503; an endpoint that does not answer: 502.

pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use rand::seq::IndexedRandom;
use tokio_util::sync::CancellationToken;

use crate::service_view::ServiceView;

/// How long an upstream may take to answer (headers).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How soon binding the port is tried again.
const BIND_RETRY: Duration = Duration::from_secs(10);

/// Where the proxy listens and which node it is on.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    pub listen: SocketAddr,
    pub node: String,
}

struct Proxy {
    view: ServiceView,
    node: String,
    client: Client<HttpConnector, Body>,
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

impl Proxy {
    /// The endpoint for a request to `host` `path`, or the error answer's status and text.
    fn pick(&self, host: &str, path: &str) -> Result<SocketAddr, (StatusCode, String)> {
        let ingresses = self.view.ingresses.state();
        let classes = self.view.ingress_classes.state();
        let classes: Vec<&IngressClass> = classes.iter().map(|c| c.as_ref()).collect();
        let served: Vec<&Ingress> = ingresses
            .iter()
            .map(|i| i.as_ref())
            .filter(|i| berth_proto::model::ingress::is_served(i, &classes))
            .collect();
        let routes = routes::Routes::of(&served);
        let Some(backend) = routes.choose(host, path) else {
            return Err((StatusCode::NOT_FOUND, "404 page not found".into()));
        };
        let (services, slices) = self.view.snapshot();
        let services: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
        let targets = routes::backend_targets(backend, &services, &slices, &self.node);
        match targets.choose(&mut rand::rng()) {
            Some(t) => Ok(SocketAddr::from((t.ip, t.port))),
            None => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no endpoints available for service \"{}/{}\"", backend.namespace, backend.service),
            )),
        }
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    mut request: Request<Body>,
) -> Response<Body> {
    let host_header = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .or(request.uri().host())
        .unwrap_or_default()
        .to_string();
    let host = host_header.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host_header).to_string();
    let path = request.uri().path().to_string();
    let endpoint = match proxy.pick(&host, &path) {
        Ok(e) => e,
        Err((status, text)) => return plain(status, &text),
    };
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let Ok(uri) = format!("http://{endpoint}{path_and_query}").parse::<Uri>() else {
        return plain(StatusCode::BAD_REQUEST, "400 bad request");
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&host_header) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    match tokio::time::timeout(UPSTREAM_TIMEOUT, proxy.client.request(request)).await {
        Ok(Ok(response)) => response.map(Body::new),
        Ok(Err(e)) => {
            tracing::debug!(%endpoint, error = %e, "ingress upstream failed");
            plain(StatusCode::BAD_GATEWAY, "502 bad gateway")
        }
        Err(_) => plain(StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout"),
    }
}

/// Serves Ingress traffic until `cancel`; a port in use is retried every [`BIND_RETRY`].
pub async fn run_ingress(view: ServiceView, settings: IngressSettings, cancel: CancellationToken) {
    let listener = loop {
        match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::error!(listen = %settings.listen, error = %e, "ingress proxy cannot listen; trying again")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(BIND_RETRY) => {}
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let proxy = Arc::new(Proxy { view, node: settings.node, client });
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    tracing::info!(listen = %settings.listen, "ingress proxy serving");
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { cancel.cancelled().await });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "ingress proxy stopped");
    }
}
