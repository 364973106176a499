//! `pods/{name}/exec`, `pods/{name}/attach` and `pods/{name}/portforward`: the request is
//! checked here (the pod exists and is scheduled, the container is one of its own), then
//! proxied as an HTTP upgrade to the agent running the pod, on the kubelet's paths
//! (`/exec/{ns}/{pod}/{container}`, `/attach/…`, `/portForward/{ns}/{pod}`), and once both
//! sides have switched protocols the bytes flow both ways untouched — WebSocket or SPDY,
//! whatever the client and the agent agreed (as the kube-apiserver's upgrade-aware proxy).

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use super::subresources::{pod_agent, pod_container};
use super::ApiState;
use crate::resource::{self, ApiError};

/// Request headers passed to the agent: what an upgrade needs (WebSocket extensions are
/// left out: the agent offers none).
const FORWARDED: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];
/// How long the agent may take to answer the upgrade (it opens the runtime's side first).
const AGENT_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which session a request opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    Exec,
    Attach,
    PortForward,
}

/// The container named by `container=` in a raw query (pure).
fn container_param(raw: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.into_owned())
}

/// The agent path for `session` of `ns/pod` (pure).
pub fn agent_path(session: Session, ns: &str, pod: &str, container: &str, raw_query: Option<&str>) -> String {
    let path = match session {
        Session::Exec => format!("/exec/{ns}/{pod}/{container}"),
        Session::Attach => format!("/attach/{ns}/{pod}/{container}"),
        Session::PortForward => format!("/portForward/{ns}/{pod}"),
    };
    match raw_query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// `pods/{name}/exec`.
pub async fn exec(s: State<ApiState>, p: Path<(String, String)>, q: RawQuery, r: Request) -> Response {
    handle(Session::Exec, s, p, q, r).await
}

/// `pods/{name}/attach`.
pub async fn attach(s: State<ApiState>, p: Path<(String, String)>, q: RawQuery, r: Request) -> Response {
    handle(Session::Attach, s, p, q, r).await
}

/// `pods/{name}/portforward`.
pub async fn port_forward(s: State<ApiState>, p: Path<(String, String)>, q: RawQuery, r: Request) -> Response {
    handle(Session::PortForward, s, p, q, r).await
}

/// GET or POST `/api/v1/namespaces/{ns}/pods/{name}/{exec|attach|portforward}`.
async fn handle(
    session: Session,
    State(state): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    if req.method() != Method::GET && req.method() != Method::POST {
        return ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method()
        ))
        .into_response();
    }
    let span = tracing::info_span!("stream", session = ?session, ns = %ns, pod = %name);
    let _guard = span.enter();
    match proxy(&state, session, &ns, &name, raw.as_deref(), req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn proxy(
    state: &ApiState,
    session: Session,
    ns: &str,
    name: &str,
    raw: Option<&str>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let pods = resource::find("", "v1", "pods").expect("served");
    let pod = state.registry.get(pods.storage(), Some(ns), name, true).await?;
    let container = match session {
        Session::PortForward => String::new(),
        _ => pod_container(&pod, container_param(raw).as_deref())?,
    };
    let (host, port) = pod_agent(state, &pod, &format!("pod {name} does not have a host assigned")).await?;
    let path = agent_path(session, ns, name, &container, raw);
    let mut sender = state.agents.connect(&host, port).await.map_err(ApiError::Internal)?;
    let mut upstream = hyper::Request::builder().method(req.method().clone()).uri(&path);
    upstream = upstream.header(header::HOST, format!("{host}:{port}"));
    for name in FORWARDED {
        for value in req.headers().get_all(name) {
            upstream = upstream.header(HeaderName::from_static(name), value.clone());
        }
    }
    let upstream = upstream.body(Body::empty()).map_err(|e| ApiError::Internal(format!("agent request: {e}")))?;
    let mut answer = tokio::time::timeout(AGENT_ANSWER_TIMEOUT, sender.send_request(upstream))
        .await
        .map_err(|_| ApiError::Internal(format!("the agent at {host}:{port} did not answer in time")))?
        .map_err(|e| ApiError::Internal(format!("agent at {host}:{port}: {e}")))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = answer.status();
        let text = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&text).trim().to_string();
        return Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => ApiError::BadRequest(message),
            _ => ApiError::Internal(format!("error dialing backend: {message}")),
        });
    }
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let client_side = hyper::upgrade::on(&mut req);
    let agent_side = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(client_side, agent_side) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::warn!(client = ?c.err(), agent = ?a.err(), "a streaming upgrade failed");
                return;
            }
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    response.body(Body::empty()).map_err(|e| ApiError::Internal(format!("upgrade response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_paths_are_the_kubelets() {
        assert_eq!(
            agent_path(Session::Exec, "ns", "p", "c", Some("command=ls&stdout=true")),
            "/exec/ns/p/c?command=ls&stdout=true"
        );
        assert_eq!(agent_path(Session::PortForward, "ns", "p", "", None), "/portForward/ns/p");
        assert_eq!(container_param(Some("command=ls&container=web")).as_deref(), Some("web"));
    }
}
