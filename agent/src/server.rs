//! The kubelet-style HTTP endpoint of an agent (one per process, shared by hollow nodes):
//! `/healthz`, and `/containerLogs/{ns}/{pod}/{container}` with `follow`, `tailLines`,
//! `timestamps`, `previous`, `sinceSeconds`/`sinceTime` and `limitBytes`, which the API server proxies for
//! `pods/{name}/log`; and `/stats/summary`, shaped like the kubelet's Summary API (node,
//! then pods[].containers[] with `cpu.usageNanoCores`/`usageCoreNanoSeconds` and
//! `memory.workingSetBytes`; rates come from the previous sample, or from a second sample
//! taken 100 ms after the first when there is none).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::stats::{node_usage, PodUsage};
use crate::runtime::{logline, LogLine, LogSource, Runtime};
use k8s_openapi::jiff::Timestamp;

/// How often a followed log file is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<String>,
    tail_lines: Option<i64>,
    timestamps: Option<String>,
    previous: Option<String>,
    limit_bytes: Option<usize>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| matches!(v, "true" | "1" | "True"))
}

/// The endpoint's routes over `runtime`; `node_name` names the node in `/stats/summary`.
pub fn router(runtime: Arc<dyn Runtime>, node_name: String) -> Router {
    let stats = Arc::new(StatsState { runtime: runtime.clone(), node_name, samples: Mutex::default() });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .with_state(runtime.clone())
        .merge(Router::new().route("/stats/summary", get(summary)).with_state(stats))
        .merge(crate::streaming::router(runtime))
}

/// From the first byte of a request head to its end; in hyper this also bounds how long
/// an idle keep-alive connection stays open (the API server's port has a separate,
/// longer idle timeout: see `berth_control::serve`, not shared because the agent does not
/// depend on the control crate and `proto` holds no I/O).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the port is protected (see [`crate::endpoint_auth`]); `None` on an `--insecure`
/// cluster's agents.
pub struct Security {
    pub tls: crate::endpoint_auth::Tls,
    pub authorizer: Arc<crate::endpoint_auth::Authorizer>,
}

/// How long a TLS handshake on the port may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router(runtime, node_name)` on `listener` until `cancel`: over TLS with every
/// request authorized when `security` is given, else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<dyn Runtime>,
    node_name: String,
    security: Option<Security>,
    cancel: CancellationToken,
) {
    let mut routes = router(runtime, node_name);
    let tls = security.map(|s| {
        routes = routes
            .clone()
            .layer(axum::middleware::from_fn_with_state(s.authorizer.clone(), crate::endpoint_auth::middleware));
        Arc::new(s.tls)
    });
    serve_router(listener, routes, HEADER_READ_TIMEOUT, tls, cancel).await
}

/// Serves `router` with a header-read timeout (`axum::serve` has none: a client sending
/// half a request head held its connection forever), then waits for open connections.
/// With `tls`, each connection's handshake runs (bounded) in its own task and its requests
/// carry the caller's certificate verdict ([`crate::endpoint_auth::Caller`]).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    header_read: Duration,
    tls: Option<Arc<crate::endpoint_auth::Tls>>,
    cancel: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    // Every connection task holds a sender; when all are gone, `recv` returns None.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (builder, cancel, open) = (builder.clone(), cancel.clone(), open_tx.clone());
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => serve_io(builder, stream, router, cancel).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await;
                    let stream = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::info!(error = %e, "kubelet endpoint: TLS handshake failed"),
                        Err(_) => return tracing::info!("kubelet endpoint: TLS handshake timed out"),
                    };
                    let caller = stream.get_ref().1.peer_certificates().map(|chain| tls.clients.user(chain));
                    let router = router.layer(axum::Extension(crate::endpoint_auth::Caller(caller)));
                    serve_io(builder, stream, router, cancel).await
                }
            }
        });
    }
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// Serves `router` on one connection until it ends, or shuts it down gracefully on
/// `cancel`.
async fn serve_io<I>(
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    io: I,
    router: Router,
    cancel: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// How stored lines are shown to the client: with or without their time, and only those
/// written at or after `since`.
#[derive(Debug, Clone, Copy)]
struct Rendering {
    timestamps: bool,
    since: Option<Timestamp>,
}

impl Rendering {
    fn of(q: &LogQuery) -> Result<Rendering, String> {
        let since = match (&q.since_time, q.since_seconds) {
            (Some(t), _) => Some(t.parse::<Timestamp>().map_err(|e| format!("sinceTime {t:?}: {e}"))?),
            (None, Some(s)) if s > 0 => Some(Timestamp::now() - std::time::Duration::from_secs(s as u64)),
            (None, Some(s)) => return Err(format!("sinceSeconds must be greater than 0, not {s}")),
            (None, None) => None,
        };
        Ok(Rendering { timestamps: flag(&q.timestamps), since })
    }

    /// One stored line as the client sees it (`None`: before `since`). A partial line
    /// gets no newline: the next one continues it.
    fn line(&self, stored: &str) -> Option<String> {
        let l = logline::parse(stored);
        if let Some(since) = self.since {
            if l.timestamp().is_some_and(|t| t < since) {
                return None;
            }
        }
        let end = if l.partial { "" } else { "\n" };
        Some(if self.timestamps { format!("{} {}{end}", l.time, l.text) } else { format!("{}{end}", l.text) })
    }

    fn lines<'a>(&self, stored: impl Iterator<Item = &'a str>) -> String {
        stored.filter_map(|l| self.line(l)).collect()
    }
}

struct StatsState {
    runtime: Arc<dyn Runtime>,
    node_name: String,
    /// The previous cumulative CPU sample per container run (`{uid}/{id}`, `node` for the
    /// node): (when, nanoseconds).
    samples: Mutex<HashMap<String, (std::time::Instant, u64)>>,
}

impl StatsState {
    /// Nanocores since the previous sample of `key` (None without one), recording this one.
    fn rate(&self, key: &str, now: std::time::Instant, cpu: u64) -> Option<u64> {
        let mut samples = self.samples.lock().unwrap();
        let prev = samples.insert(key.to_string(), (now, cpu));
        let (t, c) = prev?;
        let secs = now.duration_since(t).as_secs_f64();
        (secs > 0.0).then(|| (cpu.saturating_sub(c) as f64 / secs) as u64)
    }

    fn sample(&self) -> (std::time::Instant, (u64, u64), Vec<PodUsage>) {
        (std::time::Instant::now(), node_usage(), self.runtime.stats())
    }
}

async fn summary(State(st): State<Arc<StatsState>>) -> Response {
    let has_samples = !st.samples.lock().unwrap().is_empty();
    if !has_samples {
        let (now, node, pods) = st.sample();
        st.rate("node", now, node.0);
        for p in &pods {
            for c in &p.containers {
                st.rate(&format!("{}/{}", p.uid, c.id), now, c.usage_core_nano_seconds);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (now, node, pods) = st.sample();
    let time = k8s_openapi::jiff::Timestamp::now().to_string();
    let live: std::collections::HashSet<String> =
        pods.iter().flat_map(|p| p.containers.iter().map(move |c| format!("{}/{}", p.uid, c.id))).collect();
    let node_rate = st.rate("node", now, node.0);
    let pods_json: Vec<serde_json::Value> = pods
        .iter()
        .map(|p| {
            let mut pod_cpu = 0u64;
            let mut pod_rate = 0u64;
            let mut pod_mem = 0u64;
            let containers: Vec<serde_json::Value> = p
                .containers
                .iter()
                .map(|c| {
                    let rate = st.rate(&format!("{}/{}", p.uid, c.id), now, c.usage_core_nano_seconds).unwrap_or(0);
                    pod_cpu += c.usage_core_nano_seconds;
                    pod_rate += rate;
                    pod_mem += c.working_set_bytes;
                    serde_json::json!({
                        "name": c.name,
                        "cpu": {"time": time, "usageNanoCores": rate, "usageCoreNanoSeconds": c.usage_core_nano_seconds},
                        "memory": {"time": time, "workingSetBytes": c.working_set_bytes, "rssBytes": c.working_set_bytes,
                            "usageBytes": c.working_set_bytes},
                    })
                })
                .collect();
            serde_json::json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "containers": containers,
                "cpu": {"time": time, "usageNanoCores": pod_rate, "usageCoreNanoSeconds": pod_cpu},
                "memory": {"time": time, "workingSetBytes": pod_mem, "usageBytes": pod_mem},
            })
        })
        .collect();
    // Forget finished runs.
    st.samples.lock().unwrap().retain(|k, _| k == "node" || live.contains(k));
    let body = serde_json::json!({
        "node": {
            "nodeName": st.node_name,
            "cpu": {"time": time, "usageNanoCores": node_rate.unwrap_or(0), "usageCoreNanoSeconds": node.0},
            "memory": {"time": time, "workingSetBytes": node.1, "usageBytes": node.1},
        },
        "pods": pods_json,
    });
    axum::Json(body).into_response()
}

async fn container_logs(
    State(runtime): State<Arc<dyn Runtime>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let previous = flag(&q.previous);
    let Some(source) = runtime.logs(&ns, &pod, &container, previous) else {
        let what = if previous { "previous terminated container" } else { "container" };
        return (StatusCode::NOT_FOUND, format!("{what} \"{container}\" in pod \"{pod}\" not found")).into_response();
    };
    let rendering = match Rendering::of(&q) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let tail = q.tail_lines.filter(|n| *n >= 0).map(|n| n as usize);
    let text_response =
        |body: Body| Response::builder().header(header::CONTENT_TYPE, "text/plain; charset=utf-8").body(body).unwrap();
    let limit = |mut s: String| {
        if let Some(max) = q.limit_bytes {
            let mut cut = max.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    };
    match source {
        LogSource::Memory(lines) => {
            let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
            let body: String = lines
                .iter()
                .skip(skip)
                .filter(|LogLine { time, .. }| rendering.since.is_none_or(|since| *time >= since))
                .map(
                    |LogLine { time, text }| {
                        if rendering.timestamps {
                            format!("{time} {text}\n")
                        } else {
                            format!("{text}\n")
                        }
                    },
                )
                .collect();
            text_response(Body::from(limit(body)))
        }
        LogSource::File { path, finished } => {
            let (existing, offset) = match read_tail(&path, tail).await {
                Ok(r) => r,
                Err(e) => {
                    return (StatusCode::NOT_FOUND, format!("reading logs of container \"{container}\": {e}"))
                        .into_response()
                }
            };
            let first = rendering.lines(existing.iter().map(String::as_str));
            if !flag(&q.follow) || previous {
                return text_response(Body::from(limit(first)));
            }
            text_response(Body::from_stream(follow(path, offset, finished, first, rendering)))
        }
    }
}

/// The last `tail` complete lines of the file (all without `tail`) and the offset after them.
async fn read_tail(path: &PathBuf, tail: Option<usize>) -> std::io::Result<(Vec<String>, u64)> {
    let data = tokio::fs::read(path).await?;
    let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&data[..end]);
    let mut lines: VecDeque<String> = VecDeque::new();
    for l in text.lines() {
        lines.push_back(l.to_string());
        if tail.is_some_and(|t| lines.len() > t) {
            lines.pop_front();
        }
    }
    Ok((lines.into(), end as u64))
}

/// Stored lines rendered for the client.
fn render(stored: &[u8], rendering: Rendering) -> String {
    rendering.lines(String::from_utf8_lossy(stored).lines())
}

/// The complete lines of `path` after `offset` (empty if it cannot be read).
async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    let Ok(data) = tokio::fs::read(path).await else { return Vec::new() };
    let start = (offset as usize).min(data.len());
    let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1).max(start);
    data[start..end].to_vec()
}

/// The `first` chunk, then new complete lines as they are appended (across rotations),
/// until the container has finished and everything is sent.
fn follow(
    path: PathBuf,
    offset: u64,
    finished: Arc<AtomicBool>,
    first: String,
    rendering: Rendering,
) -> impl futures::Stream<Item = std::io::Result<String>> {
    struct St {
        path: PathBuf,
        offset: u64,
        finished: Arc<AtomicBool>,
        first: Option<String>,
        done: bool,
    }
    let st = St { path, offset, finished, first: Some(first), done: false };
    futures::stream::unfold(st, move |mut st| async move {
        if let Some(f) = st.first.take() {
            return Some((Ok(f), st));
        }
        loop {
            if st.done {
                return None;
            }
            let was_finished = st.finished.load(Ordering::SeqCst);
            // Rotated since the last read (the file is now shorter than what was sent):
            // finish the rotated file from where we were, then start the new one.
            let len = tokio::fs::metadata(&st.path).await.map(|m| m.len()).unwrap_or(0);
            if len < st.offset {
                let rotated = crate::runtime::process::RotatingLog::rotated(&st.path);
                let rest = read_from(&rotated, st.offset).await;
                st.offset = 0;
                if !rest.is_empty() {
                    return Some((Ok(render(&rest, rendering)), st));
                }
            }
            let mut file = match tokio::fs::File::open(&st.path).await {
                Ok(f) => f,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            if let Err(e) = file.seek(std::io::SeekFrom::Start(st.offset)).await {
                st.done = true;
                return Some((Err(e), st));
            }
            let mut buf = Vec::new();
            let _ = file.read_to_end(&mut buf).await;
            let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if end > 0 {
                st.offset += end as u64;
                return Some((Ok(render(&buf[..end], rendering)), st));
            }
            if was_finished {
                return None;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lines_render_with_times_partials_and_since() {
        let plain = Rendering { timestamps: false, since: None };
        let timed = Rendering { timestamps: true, since: None };
        assert_eq!(plain.line("2025-01-01T00:00:00.1Z stdout F hello world").unwrap(), "hello world\n");
        assert_eq!(timed.line("2025-01-01T00:00:00.1Z stdout F x").unwrap(), "2025-01-01T00:00:00.1Z x\n");
        assert_eq!(plain.lines(["T stdout P ab", "T stdout F cd"].into_iter()), "abcd\n");
        let since = Rendering { timestamps: false, since: Some("2025-01-01T00:00:01Z".parse().unwrap()) };
        assert_eq!(
            since.lines(["2025-01-01T00:00:00Z stdout F old", "2025-01-01T00:00:02Z stdout F new"].into_iter()),
            "new\n"
        );
        let bad = LogQuery { since_seconds: Some(0), ..Default::default() };
        assert!(Rendering::of(&bad).unwrap_err().contains("sinceSeconds"));
    }

    #[tokio::test]
    async fn file_tail_and_follow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "t1 stdout a\nt2 stderr b\nt3 stdout c\nt4 std").unwrap();
        let (lines, offset) = read_tail(&path, Some(2)).await.unwrap();
        assert_eq!(lines, vec!["t2 stderr b", "t3 stdout c"]);
        assert_eq!(offset, 36);
        let finished = Arc::new(AtomicBool::new(false));
        let s =
            follow(path.clone(), offset, finished.clone(), String::new(), Rendering { timestamps: false, since: None });
        futures::pin_mut!(s);
        use futures::StreamExt;
        assert_eq!(s.next().await.unwrap().unwrap(), "");
        std::fs::write(&path, "t1 stdout a\nt2 stderr b\nt3 stdout c\nt4 stdout d e\n").unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), "d e\n");
        finished.store(true, Ordering::SeqCst);
        assert!(s.next().await.is_none());
    }

    /// Issue 15: half a request head held the connection forever under `axum::serve`.
    #[tokio::test]
    async fn a_partial_request_head_is_cut_off_and_a_full_one_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let server = tokio::spawn(serve_router(listener, router, Duration::from_millis(500), None, cancel.clone()));

        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("closed").unwrap();
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("ok"), "{out}");

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("stops on cancel").unwrap();
    }
}
