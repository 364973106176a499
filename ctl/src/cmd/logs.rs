//! `berthctl logs`: container logs through the API server's `pods/{name}/log`
//! subresource. Which pod (`POD`, `TYPE/NAME` → the best pod of its selector, `-l` → every
//! match) and which containers (`-c`, the default-container annotation, the first one,
//! `--all-containers`) follow kubectl's rules and messages; `-f` streams (several streams
//! in parallel, line by line, optionally `[pod/NAME/CONTAINER]`-prefixed).

use std::time::Duration;

use berth_proto::model::well_known;
use chrono::{DateTime, Utc};
use futures::io::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use serde_json::Value;

use crate::cmd::describe::fetch::{self, ListOptions};
use crate::cmd::describe::writer::format_label_selector;
use crate::error::{CtlError, Result};
use crate::resources::parse_targets;
use crate::session::{parse_duration, Session};
use crate::{emit, Out};

/// Flags of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// POD or TYPE/NAME, optionally followed by a CONTAINER.
    pub args: Vec<String>,
    /// Print the logs of this container.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Specify if the logs should be streamed.
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub follow: bool,
    /// Lines of recent log file to display. Defaults to -1 with no selector, showing all log
    /// lines otherwise 10, if a selector is provided.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// If true, print the logs for the previous instance of the container in a pod if it exists.
    #[arg(short = 'p', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub previous: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Prefix each log line with the log source (pod name and container name).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub prefix: bool,
    /// Maximum number of concurrent logs to follow when using by a selector.
    #[arg(long, default_value_t = 5)]
    pub max_log_requests: usize,
    /// Get all containers' logs in the pod(s).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub all_containers: bool,
    /// Include timestamps on each line in the log output.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub timestamps: bool,
    /// Only return logs newer than a relative duration like 5s, 2m, or 3h.
    #[arg(long)]
    pub since: Option<String>,
    /// Only return logs after a specific date (RFC3339).
    #[arg(long)]
    pub since_time: Option<String>,
    /// Maximum bytes of logs to return.
    #[arg(long)]
    pub limit_bytes: Option<i64>,
    /// How long to wait for at least one pod of TYPE/NAME to exist (e.g. 5s, 2m).
    #[arg(long, default_value = "20s")]
    pub pod_running_timeout: String,
    /// When following several streams, keep going when one of them fails.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub ignore_errors: bool,
}

/// One stream to read: a container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl LogRequest {
    /// kubectl's `--prefix` text.
    fn prefix(&self) -> String {
        format!("[pod/{}/{}] ", self.pod, self.container)
    }
}

const USAGE: &str = "expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\nPOD or TYPE/NAME is a required argument for the logs command\nSee 'berthctl logs -h' for help and examples";

/// kubectl's `podcmd.AllContainerNames`: `init (init), a, b, dbg (ephem)`.
pub fn all_container_names(pod: &Value) -> String {
    let names = |field: &str, suffix: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .map(|n| format!("{n}{suffix}"))
            .collect()
    };
    [names("initContainers", " (init)"), names("containers", ""), names("ephemeralContainers", " (ephem)")]
        .concat()
        .join(", ")
}

fn has_container(pod: &Value, name: &str) -> bool {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
        .any(|c| c["name"].as_str() == Some(name))
}

/// The containers to read from one pod, and the notices kubectl prints on stderr while
/// choosing (`Defaulted container "a" out of: a, b`).
pub fn choose_containers(
    pod: &Value,
    requested: Option<&str>,
    all: bool,
) -> std::result::Result<(Vec<String>, Vec<String>), String> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let mut notices = Vec::new();
    if all {
        let names: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|f| pod["spec"][*f].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        return Ok((names, notices));
    }
    let mut container = requested.map(str::to_string);
    if container.is_none() {
        if let Some(default) =
            pod["metadata"]["annotations"][well_known::ANNOTATION_DEFAULT_CONTAINER].as_str().filter(|d| !d.is_empty())
        {
            if has_container(pod, default) {
                container = Some(default.to_string());
            } else {
                notices.push(format!("Default container name {default:?} not found in pod {pod_name}"));
            }
        }
    }
    let container = match container {
        Some(c) => c,
        None => {
            let first = pod["spec"]["containers"][0]["name"]
                .as_str()
                .ok_or_else(|| format!("pod {pod_name} has no containers"))?
                .to_string();
            let count = |f: &str| pod["spec"][f].as_array().map_or(0, Vec::len);
            if count("containers") > 1 || count("initContainers") > 0 || count("ephemeralContainers") > 0 {
                notices.push(format!("Defaulted container {first:?} out of: {}", all_container_names(pod)));
            }
            first
        }
    };
    if !has_container(pod, &container) {
        return Err(format!("container {container} is not valid for pod {pod_name}"));
    }
    Ok((vec![container], notices))
}

/// kubectl's `podutils.ByLogging` order: the pod `logs TYPE/NAME` picks comes first
/// (scheduled, running, ready for longest, most restarts, oldest).
pub fn sort_for_logging(pods: &mut [Value]) {
    fn ready_since(pod: &Value) -> Option<String> {
        pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .map(|c| c["lastTransitionTime"].as_str().unwrap_or("").to_string())
    }
    pods.sort_by_cached_key(|pod| {
        let phase_rank = match pod["status"]["phase"].as_str().unwrap_or("") {
            "Unknown" => 1,
            "Pending" => 2,
            _ => 0,
        };
        let ready = ready_since(pod);
        let restarts = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["restartCount"].as_i64().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let created = pod["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string();
        (
            pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty(),
            phase_rank,
            ready.is_none(),
            // Empty times sort last, as apimachinery's afterOrZero orders them.
            ready.as_ref().map(|t| (t.is_empty(), t.clone())),
            -restarts,
            (created.is_empty(), created),
        )
    });
}

/// Runs `logs`.
pub async fn run(session: &mut Session, args: LogsArgs, out: &mut Out) -> Result<()> {
    let mut container = args.container.clone();
    match (args.args.len(), &args.selector) {
        (0, None) => return Err(CtlError::usage(USAGE)),
        (0, Some(_)) => {}
        (_, Some(_)) => return Err(CtlError::usage("only a selector (-l) or a POD name is allowed")),
        (1, None) => {}
        (2, None) => {
            if container.is_some() {
                return Err(CtlError::usage("only one of -c or an inline [CONTAINER] arg is allowed"));
            }
            container = Some(args.args[1].clone());
        }
        _ => return Err(CtlError::usage(USAGE)),
    }
    if args.since.is_some() && args.since_time.is_some() {
        return Err(CtlError::usage("at most one of `sinceTime` or `sinceSeconds` may be specified"));
    }
    let since = since_cutoff(&args)?;
    let namespace = session.namespace()?;
    let pods = find_pods(session, &args, &namespace).await?;
    if pods.is_empty() {
        eprintln!("No resources found in {namespace} namespace.");
        return Ok(());
    }
    let mut requests = Vec::new();
    for pod in &pods {
        let (containers, notices) =
            choose_containers(pod, container.as_deref(), args.all_containers).map_err(CtlError::Usage)?;
        for n in notices {
            eprintln!("{n}");
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        requests.extend(containers.into_iter().map(|c| LogRequest {
            namespace: namespace.clone(),
            pod: name.clone(),
            container: c,
        }));
    }
    if args.follow && requests.len() > args.max_log_requests {
        return Err(CtlError::usage(format!(
            "you are attempting to follow {} log streams, but maximum allowed concurrency is {}, use --max-log-requests to increase the limit",
            requests.len(),
            args.max_log_requests
        )));
    }
    let tail = if args.tail < 0 && args.selector.is_some() { 10 } else { args.tail };
    let params = LogParams {
        container: None,
        follow: args.follow,
        limit_bytes: args.limit_bytes,
        pretty: false,
        previous: args.previous,
        since_seconds: since.map(|c| (Utc::now() - c).num_seconds().max(1)),
        since_time: None,
        tail_lines: (tail >= 0).then_some(tail),
        // With --since the lines carry their time so older ones can be dropped here too.
        timestamps: args.timestamps || since.is_some(),
    };
    let filter = LineFilter { since, keep_timestamps: args.timestamps };
    if args.follow && requests.len() > 1 {
        return follow_parallel(session, requests, params, filter, args.prefix, args.ignore_errors, out).await;
    }
    for req in requests {
        stream_one(session, &req, &params, &filter, args.prefix, out).await?;
    }
    Ok(())
}

/// The earliest log time wanted (`--since` / `--since-time`).
fn since_cutoff(args: &LogsArgs) -> Result<Option<DateTime<Utc>>> {
    if let Some(d) = &args.since {
        let d =
            parse_duration(d).ok_or_else(|| CtlError::usage(format!("invalid argument {d:?} for \"--since\" flag")))?;
        let d = chrono::Duration::from_std(d).map_err(|e| CtlError::usage(e.to_string()))?;
        return Ok(Some(Utc::now() - d));
    }
    if let Some(t) = &args.since_time {
        let t = DateTime::parse_from_rfc3339(t)
            .map_err(|e| CtlError::usage(format!("invalid argument {t:?} for \"--since-time\" flag: {e}")))?;
        return Ok(Some(t.with_timezone(&Utc)));
    }
    Ok(None)
}

/// The pods `args` name, in the order their logs are printed.
async fn find_pods(session: &mut Session, args: &LogsArgs, namespace: &str) -> Result<Vec<Value>> {
    let resolver = session.resolver().await?;
    let pod_info = resolver.resolve("pods")?.clone();
    if let Some(selector) = &args.selector {
        let opts = ListOptions { label_selector: Some(selector.clone()), field_selector: None };
        return fetch::list(session, &pod_info, Some(namespace), &opts).await;
    }
    let arg = &args.args[0];
    let (info, name) = if arg.contains('/') {
        let group = parse_targets(std::slice::from_ref(arg))?.remove(0);
        (resolver.resolve(&group.type_word)?.clone(), group.names[0].clone())
    } else {
        (pod_info.clone(), arg.clone())
    };
    let ns = info.namespaced.then_some(namespace);
    let object = match fetch::get(session, &info.url_path(ns, Some(&name))).await {
        Ok(o) => o,
        // kubectl's builder words a missing pod this way.
        Err(e) if e.is_not_found() => {
            return Err(CtlError::usage(format!(
                "error from server (NotFound): {} {name:?} not found in namespace {namespace:?}",
                info.qualified_plural()
            )))
        }
        Err(e) => return Err(e),
    };
    if info.group.is_empty() && info.kind == "Pod" {
        return Ok(vec![object]);
    }
    // A controller (or Service): the best of the pods its selector matches.
    let selector = match &object["spec"]["selector"] {
        Value::Null => {
            return Err(CtlError::usage(format!(
                "cannot get the logs from {}: selector for {} not implemented",
                info.kind, info.kind
            )))
        }
        // Services (and ReplicationControllers) select with a plain map.
        sel if sel.get("matchLabels").is_none() && sel.get("matchExpressions").is_none() => {
            crate::cmd::describe::writer::format_labels(sel)
        }
        sel => format_label_selector(sel),
    };
    let timeout = parse_duration(&args.pod_running_timeout).ok_or_else(|| {
        CtlError::usage(format!("invalid argument {:?} for \"--pod-running-timeout\"", args.pod_running_timeout))
    })?;
    let deadline = tokio::time::Instant::now() + timeout;
    let opts = ListOptions { label_selector: Some(selector), field_selector: None };
    loop {
        let mut pods = fetch::list(session, &pod_info, Some(namespace), &opts).await?;
        if !pods.is_empty() {
            sort_for_logging(&mut pods);
            let count = pods.len();
            let first = pods.swap_remove(0);
            if count > 1 {
                eprintln!("Found {count} pods, using pod/{}", first["metadata"]["name"].as_str().unwrap_or(""));
            }
            return Ok(vec![first]);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CtlError::usage("timed out waiting for the condition"));
        }
        // No pod yet (a Deployment just created): look again shortly, until the timeout.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Client-side handling of `--since` (servers may ignore `sinceSeconds`).
#[derive(Debug, Clone, Copy)]
struct LineFilter {
    since: Option<DateTime<Utc>>,
    keep_timestamps: bool,
}

impl LineFilter {
    /// The line to print, or None when it is older than `--since`.
    fn apply(&self, line: &str) -> Option<String> {
        let Some(cutoff) = self.since else { return Some(line.to_string()) };
        let (stamp, rest) = line.split_once(' ').unwrap_or((line, ""));
        match DateTime::parse_from_rfc3339(stamp) {
            Ok(t) if t.with_timezone(&Utc) < cutoff => None,
            Ok(_) if !self.keep_timestamps => Some(rest.to_string()),
            _ => Some(line.to_string()),
        }
    }
}

async fn open_stream(
    session: &mut Session,
    req: &LogRequest,
    params: &LogParams,
) -> Result<impl futures::io::AsyncBufRead + Unpin + Send + 'static> {
    let mut params = params.clone();
    params.container = Some(req.container.clone());
    tracing::debug!(pod = %req.pod, container = %req.container, follow = params.follow, "opening log stream");
    let stream = session
        .call(|client| {
            let (ns, pod, params) = (req.namespace.clone(), req.pod.clone(), params.clone());
            async move { kube::Api::<Pod>::namespaced(client, &ns).log_stream(&pod, &params).await }
        })
        .await?;
    Ok(Box::pin(stream))
}

/// Copies one stream to `out`, line by line (flushed, so `-f` output appears at once).
async fn stream_one(
    session: &mut Session,
    req: &LogRequest,
    params: &LogParams,
    filter: &LineFilter,
    prefix: bool,
    out: &mut Out,
) -> Result<()> {
    let mut reader = open_stream(session, req, params).await?;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).await.map_err(|e| CtlError::io("reading logs", e))?;
        if n == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&buf);
        if let Some(text) = filter.apply(&line) {
            let text = if prefix { format!("{}{text}", req.prefix()) } else { text };
            emit(out, &text)?;
        }
    }
}

/// Follows several streams at once; lines are written whole, in arrival order.
async fn follow_parallel(
    session: &mut Session,
    requests: Vec<LogRequest>,
    params: LogParams,
    filter: LineFilter,
    prefix: bool,
    ignore_errors: bool,
    out: &mut Out,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::result::Result<String, String>>(256);
    for req in &requests {
        let mut reader = match open_stream(session, req, &params).await {
            Ok(r) => r,
            Err(e) if ignore_errors => {
                eprintln!("{e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let tx = tx.clone();
        let label = prefix.then(|| req.prefix());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        if let Some(text) = filter.apply(&line) {
                            let text = match &label {
                                Some(p) => format!("{p}{text}"),
                                None => text,
                            };
                            if tx.send(Ok(text)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("error: reading logs: {e}"))).await;
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    while let Some(item) = rx.recv().await {
        match item {
            Ok(text) => emit(out, &text)?,
            Err(e) if ignore_errors => eprintln!("{e}"),
            Err(e) => return Err(CtlError::usage(e.trim_start_matches("error: ").to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
            "initContainers": init.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()}})
    }

    #[test]
    fn containers_default_like_kubectl() {
        assert_eq!(choose_containers(&pod(&["a"], &[]), None, false).unwrap(), (vec!["a".into()], vec![]));
        assert_eq!(
            choose_containers(&pod(&["a", "b"], &[]), None, false).unwrap(),
            (vec!["a".into()], vec!["Defaulted container \"a\" out of: a, b".to_string()])
        );
        assert_eq!(
            choose_containers(&pod(&["a"], &["i"]), None, false).unwrap().1,
            vec!["Defaulted container \"a\" out of: i (init), a".to_string()]
        );
        assert_eq!(choose_containers(&pod(&["a", "b"], &[]), Some("b"), false).unwrap().0, vec!["b".to_string()]);
        assert_eq!(
            choose_containers(&pod(&["a", "b"], &[]), Some("zz"), false).unwrap_err(),
            "container zz is not valid for pod p"
        );
        assert_eq!(
            choose_containers(&pod(&["a", "b"], &["i"]), None, true).unwrap().0,
            vec!["i".to_string(), "a".into(), "b".into()]
        );
        let mut annotated = pod(&["a", "b"], &[]);
        annotated["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(choose_containers(&annotated, None, false).unwrap(), (vec!["b".into()], vec![]));
    }

    #[test]
    fn logging_order_prefers_running_ready_pods() {
        let mut pods = vec![
            json!({"metadata": {"name": "pending", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}, "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "young", "creationTimestamp": "2024-01-03T00:00:00Z"}, "spec": {"nodeName": "n"},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-03T00:00:00Z"}]}}),
            json!({"metadata": {"name": "old", "creationTimestamp": "2024-01-02T00:00:00Z"}, "spec": {"nodeName": "n"},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T00:00:00Z"}]}}),
        ];
        sort_for_logging(&mut pods);
        let names: Vec<&str> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["old", "young", "pending"]);
    }

    #[test]
    fn since_filter_drops_old_lines_and_strips_times() {
        let cutoff = DateTime::parse_from_rfc3339("2024-01-01T00:00:10Z").unwrap().with_timezone(&Utc);
        let f = LineFilter { since: Some(cutoff), keep_timestamps: false };
        assert_eq!(f.apply("2024-01-01T00:00:05.1Z old\n"), None);
        assert_eq!(f.apply("2024-01-01T00:00:11Z new\n").as_deref(), Some("new\n"));
        let keep = LineFilter { since: Some(cutoff), keep_timestamps: true };
        assert_eq!(keep.apply("2024-01-01T00:00:11Z new\n").as_deref(), Some("2024-01-01T00:00:11Z new\n"));
        let none = LineFilter { since: None, keep_timestamps: false };
        assert_eq!(none.apply("x\n").as_deref(), Some("x\n"));
    }
}
