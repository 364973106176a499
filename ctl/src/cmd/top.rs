//! `berthctl top node|pod`: resource usage from the `metrics.k8s.io` API, printed as
//! `kubectl top` prints it — `NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)` for nodes
//! (percent of allocatable, or capacity with `--show-capacity`; nodes without metrics as
//! `<unknown>`), `[NAMESPACE] [POD] NAME CPU(cores) MEMORY(bytes)` for pods (`-A`,
//! `--containers`, `--sum`), CPU in millicores rounded up and memory in whole Mi, sorted
//! by name or by `--sort-by cpu|memory` (largest first), with kubectl's errors (`Metrics
//! API not available`, `metrics not available yet`).
//!
//! The rendering functions are pure (metrics JSON in, text out) and golden-tested against
//! kubectl's layout (its tabwriter: every cell tab-terminated, so lines keep the padding
//! after the last column).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cmd::objects::{call, Request};
use crate::error::{CtlError, Result};
use crate::output::table::{render, Grid};
use crate::session::Session;
use crate::Out;
use berth_proto::Quantity;

const METRICS: &str = "/apis/metrics.k8s.io/v1beta1";

/// Flags of `top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(subcommand)]
    pub command: TopCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopCommand {
    /// Display resource (CPU/memory) usage of nodes.
    #[command(visible_aliases = ["nodes", "no"])]
    Node(TopNodeArgs),
    /// Display resource (CPU/memory) usage of pods.
    #[command(visible_aliases = ["pods", "po"])]
    Pod(TopPodArgs),
}

/// Flags of `top node`.
#[derive(Debug, clap::Args)]
pub struct TopNodeArgs {
    /// Only this node.
    pub name: Option<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// If present, print output without headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Sort nodes by 'cpu' or 'memory'.
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Print node resources based on Capacity instead of Allocatable (default).
    #[arg(long)]
    pub show_capacity: bool,
    /// Accepted for kubectl compatibility (Berth always uses JSON).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub use_protocol_buffers: bool,
}

/// Flags of `top pod`.
#[derive(Debug, clap::Args)]
pub struct TopPodArgs {
    /// Only this pod.
    pub name: Option<String>,
    /// List the pods across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print usage of containers within a pod.
    #[arg(long)]
    pub containers: bool,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// If present, print output without headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Sort pods by 'cpu' or 'memory'.
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Print the sum of the resource usage.
    #[arg(long)]
    pub sum: bool,
    /// Accepted for kubectl compatibility (Berth always uses JSON).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub use_protocol_buffers: bool,
}

/// (CPU, memory) of a `usage` map.
fn usage(u: &Value) -> (Quantity, Quantity) {
    let q = |k: &str| u[k].as_str().and_then(|text| Quantity::parse(text).ok()).unwrap_or_default();
    (q("cpu"), q("memory"))
}

fn cpu_text(q: &Quantity) -> String {
    format!("{}m", q.milli_value())
}

fn memory_text(q: &Quantity) -> String {
    format!("{}Mi", q.value() / (1024 * 1024))
}

/// kubectl's percentage: `int64(float64(usage.MilliValue()) / float64(available.MilliValue()) * 100)`.
fn percent(used: &Quantity, available: &Quantity) -> String {
    let available = available.milli_value();
    let fraction = if available == 0 { 0.0 } else { used.milli_value() as f64 / available as f64 * 100.0 };
    format!("{}%", fraction as i64)
}

/// Every row tab-terminated, as kubectl's tabwriter lays `top` out.
fn grid(header: Vec<&str>, rows: Vec<Vec<String>>, no_headers: bool) -> String {
    let close = |mut r: Vec<String>| {
        r.push(String::new());
        r
    };
    let header = if no_headers { Vec::new() } else { close(header.into_iter().map(String::from).collect()) };
    render(&Grid { header, rows: rows.into_iter().map(close).collect() })
}

fn check_sort(sort_by: &str) -> Result<()> {
    match sort_by {
        "" | "cpu" | "memory" => Ok(()),
        _ => Err(CtlError::usage("--sort-by accepts only cpu or memory")),
    }
}

/// Orders by `sort_by` (largest first), else by `name_key`; stable.
fn sort_rows<T>(
    items: &mut [T],
    sort_by: &str,
    totals: impl Fn(&T) -> (Quantity, Quantity),
    name_key: impl Fn(&T) -> String,
) {
    match sort_by {
        "cpu" => items.sort_by_key(|m| std::cmp::Reverse(totals(m).0.milli_value())),
        "memory" => items.sort_by_key(|m| std::cmp::Reverse(totals(m).1.value())),
        _ => items.sort_by_key(|a| name_key(a)),
    }
}

/// Renders `top node`: `metrics` are NodeMetrics, `available` the allocatable (or
/// capacity) of every node listed, by name.
pub fn render_nodes(
    metrics: &[Value],
    available: &BTreeMap<String, (Quantity, Quantity)>,
    no_headers: bool,
    sort_by: &str,
) -> String {
    let mut items: Vec<&Value> = metrics.iter().collect();
    sort_rows(
        &mut items,
        sort_by,
        |m| usage(&m["usage"]),
        |m| m["metadata"]["name"].as_str().unwrap_or("").to_string(),
    );
    let mut rows = Vec::new();
    let mut unseen = available.clone();
    for m in items {
        let name = m["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let (cpu, memory) = usage(&m["usage"]);
        let mut row = vec![name.clone(), cpu_text(&cpu)];
        let avail = unseen.remove(&name);
        if let Some((c, _)) = &avail {
            row.push(percent(&cpu, c));
        }
        row.push(memory_text(&memory));
        if let Some((_, mem)) = &avail {
            row.push(percent(&memory, mem));
        }
        rows.push(row);
    }
    for name in unseen.keys() {
        let unknown = "<unknown>".to_string();
        rows.push(vec![name.clone(), unknown.clone(), unknown.clone(), unknown.clone(), unknown]);
    }
    if rows.is_empty() {
        return String::new();
    }
    grid(vec!["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], rows, no_headers)
}

/// A pod's total usage (the sum of its containers').
fn pod_total(m: &Value) -> (Quantity, Quantity) {
    let (mut cpu, mut memory) = (Quantity::ZERO, Quantity::ZERO);
    for c in m["containers"].as_array().into_iter().flatten() {
        let (c_cpu, c_mem) = usage(&c["usage"]);
        cpu.add(&c_cpu);
        memory.add(&c_mem);
    }
    (cpu, memory)
}

/// Renders `top pod` from PodMetrics.
pub fn render_pods(
    metrics: &[Value],
    containers: bool,
    with_namespace: bool,
    no_headers: bool,
    sort_by: &str,
    sum: bool,
) -> String {
    if metrics.is_empty() {
        return String::new();
    }
    let mut header = Vec::new();
    // kubectl widens the sum line only for the columns it printed headers for.
    let mut width = 3;
    if !no_headers {
        if with_namespace {
            header.push("NAMESPACE");
            width += 1;
        }
        if containers {
            header.push("POD");
            width += 1;
        }
        header.extend(["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    }
    let mut items: Vec<&Value> = metrics.iter().collect();
    let name = |m: &&Value| {
        let ns = if with_namespace { m["metadata"]["namespace"].as_str().unwrap_or("") } else { "" };
        format!("{ns}\u{0}{}", m["metadata"]["name"].as_str().unwrap_or(""))
    };
    sort_rows(&mut items, sort_by, |m| pod_total(m), name);
    let mut rows = Vec::new();
    let (mut total_cpu, mut total_memory) = (Quantity::ZERO, Quantity::ZERO);
    for m in items {
        let namespace = m["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let pod = m["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let (cpu, memory) = pod_total(m);
        total_cpu.add(&cpu);
        total_memory.add(&memory);
        let prefix = |row: &mut Vec<String>| {
            if with_namespace {
                row.push(namespace.clone());
            }
        };
        if containers {
            let mut cs: Vec<&Value> = m["containers"].as_array().into_iter().flatten().collect();
            sort_rows(&mut cs, sort_by, |c| usage(&c["usage"]), |c| c["name"].as_str().unwrap_or("").to_string());
            for c in cs {
                let (c_cpu, c_mem) = usage(&c["usage"]);
                let mut row = Vec::new();
                prefix(&mut row);
                row.extend([pod.clone(), c["name"].as_str().unwrap_or_default().to_string()]);
                row.extend([cpu_text(&c_cpu), memory_text(&c_mem)]);
                rows.push(row);
            }
        } else {
            let mut row = Vec::new();
            prefix(&mut row);
            row.extend([pod, cpu_text(&cpu), memory_text(&memory)]);
            rows.push(row);
        }
    }
    if sum {
        let mut line: Vec<String> = vec![String::new(); width - 2];
        line.extend(["________".to_string(), "________".to_string()]);
        rows.push(line);
        let mut line: Vec<String> = vec![String::new(); width - 3];
        line.extend([String::new(), cpu_text(&total_cpu), memory_text(&total_memory)]);
        rows.push(line);
    }
    grid(header, rows, no_headers)
}

/// kubectl's check that the server serves the metrics API.
async fn require_metrics_api(s: &mut Session) -> Result<()> {
    let groups = call(s, Request::get("/apis")).await?;
    let served = groups["groups"].as_array().into_iter().flatten().any(|g| {
        g["name"] == "metrics.k8s.io"
            && g["versions"].as_array().into_iter().flatten().any(|v| v["version"] == "v1beta1")
    });
    if served {
        Ok(())
    } else {
        Err(CtlError::usage("Metrics API not available"))
    }
}

fn items(list: Value) -> Vec<Value> {
    match list.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// Runs `top`.
pub async fn run(s: &mut Session, args: TopArgs, out: &mut Out) -> Result<()> {
    match args.command {
        TopCommand::Node(a) => run_nodes(s, a, out).await,
        TopCommand::Pod(a) => run_pods(s, a, out).await,
    }
}

async fn run_nodes(s: &mut Session, a: TopNodeArgs, out: &mut Out) -> Result<()> {
    check_sort(&a.sort_by)?;
    let selector = a.selector.clone().unwrap_or_default();
    if a.name.is_some() && !selector.is_empty() {
        return Err(CtlError::usage("only one of NAME or --selector can be provided"));
    }
    require_metrics_api(s).await?;
    let metrics = match &a.name {
        Some(n) => vec![call(s, Request::get(format!("{METRICS}/nodes/{n}"))).await?],
        None => items(call(s, Request::get(format!("{METRICS}/nodes")).param("labelSelector", &selector)).await?),
    };
    if metrics.is_empty() {
        return Err(CtlError::usage("metrics not available yet"));
    }
    let nodes = match &a.name {
        Some(n) => vec![call(s, Request::get(format!("/api/v1/nodes/{n}"))).await?],
        None => items(call(s, Request::get("/api/v1/nodes").param("labelSelector", &selector)).await?),
    };
    let field = if a.show_capacity { "capacity" } else { "allocatable" };
    let available: BTreeMap<String, (Quantity, Quantity)> = nodes
        .iter()
        .map(|n| (n["metadata"]["name"].as_str().unwrap_or_default().to_string(), usage(&n["status"][field])))
        .collect();
    crate::emit(out, &render_nodes(&metrics, &available, a.no_headers, &a.sort_by))
}

async fn run_pods(s: &mut Session, a: TopPodArgs, out: &mut Out) -> Result<()> {
    check_sort(&a.sort_by)?;
    let selector = a.selector.clone().unwrap_or_default();
    let fields = a.field_selector.clone().unwrap_or_default();
    if a.name.is_some() && !selector.is_empty() {
        return Err(CtlError::usage("only one of NAME or --selector can be provided"));
    }
    let namespace = s.namespace()?;
    require_metrics_api(s).await?;
    let scope = if a.all_namespaces { String::new() } else { format!("/namespaces/{namespace}") };
    let metrics = match &a.name {
        Some(n) => vec![call(s, Request::get(format!("{METRICS}/namespaces/{namespace}/pods/{n}"))).await?],
        None => items(
            call(
                s,
                Request::get(format!("{METRICS}{scope}/pods"))
                    .param("labelSelector", &selector)
                    .param("fieldSelector", &fields),
            )
            .await?,
        ),
    };
    if metrics.is_empty() {
        // kubectl explains an empty answer: pods younger than its metrics delay have no
        // metrics yet; older ones should have had them.
        let pods = match &a.name {
            Some(n) => vec![call(s, Request::get(format!("/api/v1/namespaces/{namespace}/pods/{n}"))).await?],
            None => items(
                call(
                    s,
                    Request::get(format!("/api/v1/namespaces/{namespace}/pods"))
                        .param("labelSelector", &selector)
                        .param("fieldSelector", &fields),
                )
                .await?,
            ),
        };
        if !pods.is_empty() {
            check_pod_ages(&pods, chrono::Utc::now())?;
            return Err(CtlError::usage("metrics not available yet"));
        }
        let message = if a.all_namespaces {
            "No resources found\n".to_string()
        } else {
            format!("No resources found in {namespace} namespace.\n")
        };
        eprint!("{message}");
        return Ok(());
    }
    let text = render_pods(&metrics, a.containers, a.all_namespaces, a.no_headers, &a.sort_by, a.sum);
    crate::emit(out, &text)
}

/// kubectl's `metricsCreationDelay`: a pod this old should have metrics.
const METRICS_CREATION_DELAY_SECS: i64 = 120;

/// kubectl's `checkPodAge` over `pods`: an error for the first pod old enough to have had
/// metrics.
fn check_pod_ages(pods: &[Value], now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    for pod in pods {
        let created = pod["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let Some(created) = created else { continue };
        let age = now - created;
        if age.num_seconds() > METRICS_CREATION_DELAY_SECS {
            return Err(CtlError::usage(format!(
                "Metrics not available for pod {}/{}, age: {}",
                pod["metadata"]["namespace"].as_str().unwrap_or_default(),
                pod["metadata"]["name"].as_str().unwrap_or_default(),
                go_age(age)
            )));
        }
    }
    Ok(())
}

/// Go's `Duration.String()` for an age (`2m30.5s`, `1h0m0s`).
fn go_age(age: chrono::TimeDelta) -> String {
    let ms = age.num_milliseconds().max(0);
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, memory: &str) -> Value {
        json!({"metadata": {"name": name}, "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
            "usage": {"cpu": cpu, "memory": memory}})
    }

    fn pod(ns: &str, name: &str, containers: &[(&str, &str, &str)]) -> Value {
        let cs: Vec<Value> =
            containers.iter().map(|(n, c, m)| json!({"name": n, "usage": {"cpu": c, "memory": m}})).collect();
        json!({"metadata": {"name": name, "namespace": ns}, "containers": cs})
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    /// kubectl v1.32's `top node` layout, byte for byte (cells tab-terminated: trailing padding).
    #[test]
    fn nodes_golden() {
        let metrics = vec![node("node-2", "329087452n", "2748180Ki"), node("node-1", "1500m", "1Gi")];
        let mut available = BTreeMap::new();
        available.insert("node-1".to_string(), (q("2"), q("4Gi")));
        available.insert("node-2".to_string(), (q("3800m"), q("8049056Ki")));
        available.insert("node-3".to_string(), (q("2"), q("4Gi")));
        let want = "\
NAME     CPU(cores)   CPU(%)      MEMORY(bytes)   MEMORY(%)   
node-1   1500m        75%         1024Mi          25%         
node-2   330m         8%          2683Mi          34%         
node-3   <unknown>    <unknown>   <unknown>       <unknown>   
";
        assert_eq!(render_nodes(&metrics, &available, false, ""), want);
        let by_cpu = render_nodes(&metrics[..], &BTreeMap::new(), true, "memory");
        assert_eq!(by_cpu, "node-2   330m    2683Mi   \nnode-1   1500m   1024Mi   \n");
    }

    /// kubectl's `top pod` layouts: plain, -A, --containers, --sum, --sort-by.
    #[test]
    fn pods_golden() {
        let metrics = vec![
            pod("default", "web", &[("app", "2403929n", "7Mi"), ("sidecar", "1m", "1536Ki")]),
            pod("kube-system", "dns", &[("dns", "12345u", "20Mi")]),
            pod("default", "burn", &[("burn", "998765432n", "512Ki")]),
        ];
        let plain = render_pods(&metrics[..1], false, false, false, "", false);
        assert_eq!(plain, "NAME   CPU(cores)   MEMORY(bytes)   \nweb    4m           8Mi             \n");
        let all = render_pods(&metrics, false, true, false, "", false);
        assert_eq!(
            all,
            "\
NAMESPACE     NAME   CPU(cores)   MEMORY(bytes)   
default       burn   999m         0Mi             
default       web    4m           8Mi             
kube-system   dns    13m          20Mi            
"
        );
        let containers = render_pods(&metrics[..1], true, false, false, "cpu", false);
        assert_eq!(
            containers,
            "\
POD   NAME      CPU(cores)   MEMORY(bytes)   
web   app       3m           7Mi             
web   sidecar   1m           1Mi             
"
        );
        let sum = render_pods(&metrics, false, false, false, "cpu", true);
        assert_eq!(
            sum,
            "\
NAME   CPU(cores)   MEMORY(bytes)   
burn   999m         0Mi             
dns    13m          20Mi            
web    4m           8Mi             
       ________     ________        
       1015m        29Mi            
"
        );
        assert_eq!(render_pods(&metrics[2..], false, false, true, "", false), "burn   999m   0Mi   \n");
        assert_eq!(render_pods(&[], false, false, false, "", false), "");
    }

    #[test]
    fn errors_read_like_kubectl() {
        assert_eq!(check_sort("disk").unwrap_err().to_string(), "error: --sort-by accepts only cpu or memory");
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z").unwrap().with_timezone(&chrono::Utc);
        let young =
            json!({"metadata": {"name": "a", "namespace": "default", "creationTimestamp": "2026-01-01T00:09:00Z"}});
        assert!(check_pod_ages(std::slice::from_ref(&young), now).is_ok());
        let old =
            json!({"metadata": {"name": "b", "namespace": "default", "creationTimestamp": "2026-01-01T00:05:30Z"}});
        assert_eq!(
            check_pod_ages(&[young, old], now).unwrap_err().to_string(),
            "error: Metrics not available for pod default/b, age: 4m30s"
        );
        assert_eq!(percent(&q("0"), &q("0")), "0%");
    }
}
