//! `berthctl api-resources`, `version` and `cluster-info`: what the server serves, which
//! versions are talking, and where the control plane is, in kubectl's layouts.

use berth_proto::model::well_known::{LABEL_CLUSTER_SERVICE, LABEL_CLUSTER_SERVICE_NAME};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cmd::describe::fetch::{self, ListOptions};
use crate::error::{CtlError, Result};
use crate::output::table::{render, Grid};
use crate::output::use_color;
use crate::resources::ResourceInfo;
use crate::session::Session;
use crate::{emit, Out};

/// Flags of `api-resources`.
#[derive(Debug, clap::Args)]
pub struct ApiResourcesArgs {
    /// Output format: wide or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// If false, non-namespaced resources will be returned, otherwise namespaced resources.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub namespaced: Option<bool>,
    /// Limit to resources in the specified API group.
    #[arg(long)]
    pub api_group: Option<String>,
    /// When using the default or custom-column output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// If non-empty, sort list of resources using specified field: name or kind.
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Limit to resources that support the specified verbs.
    #[arg(long, value_delimiter = ',')]
    pub verbs: Vec<String>,
    /// Limit to resources that belong to the specified categories.
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Use the cached list of resources if available (discovery is always fresh here).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cached: Option<bool>,
}

/// The `api-resources` rows for these flags, filtered and in kubectl's order.
pub fn api_resource_rows<'a>(resources: &'a [ResourceInfo], args: &ApiResourcesArgs) -> Result<Vec<&'a ResourceInfo>> {
    let mut rows: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| args.api_group.as_ref().is_none_or(|g| &r.group == g))
        .filter(|r| args.namespaced.is_none_or(|n| r.namespaced == n))
        .filter(|r| args.verbs.iter().all(|v| r.verbs.contains(v)))
        .filter(|r| args.categories.iter().all(|c| r.categories.contains(c)))
        .collect();
    let key = |r: &ResourceInfo| -> Result<String> {
        Ok(match args.sort_by.as_deref() {
            None | Some("") => r.group.clone(),
            Some("name") => r.plural.clone(),
            Some("kind") => r.kind.clone(),
            Some(other) => {
                return Err(CtlError::usage(format!("--sort-by accepts only name or kind, got {other:?}")));
            }
        })
    };
    for r in &rows {
        key(r)?;
    }
    // kubectl: by the sort field (the group by default), then by resource name.
    rows.sort_by(|a, b| {
        let (ka, kb) = (key(a).unwrap_or_default(), key(b).unwrap_or_default());
        ka.cmp(&kb).then_with(|| a.plural.cmp(&b.plural))
    });
    Ok(rows)
}

/// Renders `api-resources` output.
pub fn render_api_resources(rows: &[&ResourceInfo], args: &ApiResourcesArgs) -> Result<String> {
    let wide = match args.output.as_deref() {
        None | Some("") => false,
        Some("wide") => true,
        Some("name") => {
            return Ok(rows.iter().map(|r| format!("{}\n", r.qualified_plural())).collect());
        }
        Some(other) => {
            return Err(CtlError::usage(format!("--output {other} is not available")));
        }
    };
    let mut header: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"].map(String::from).to_vec();
    if wide {
        header.extend(["VERBS", "CATEGORIES"].map(String::from));
    }
    let grid_rows = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.plural.clone(),
                r.short_names.join(","),
                r.api_version(),
                r.namespaced.to_string(),
                r.kind.clone(),
            ];
            if wide {
                let mut verbs = r.verbs.clone();
                verbs.sort();
                verbs.dedup();
                row.push(verbs.join(","));
                row.push(r.categories.join(","));
            }
            row
        })
        .collect();
    Ok(render(&Grid { header: if args.no_headers { vec![] } else { header }, rows: grid_rows }))
}

/// Runs `api-resources`.
pub async fn run_api_resources(session: &mut Session, args: ApiResourcesArgs, out: &mut Out) -> Result<()> {
    let resolver = session.resolver().await?;
    let rows = api_resource_rows(&resolver.resources, &args)?;
    emit(out, &render_api_resources(&rows, &args)?)
}

/// Flags of `version`.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// If true, shows client version only (no server required).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub client: bool,
    /// One of 'yaml' or 'json'.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// The Kubernetes minor version berthctl speaks (k8s-openapi's `v1_33`, as the server's
/// `/version` reports).
const KUBE_MINOR: &str = "33";

/// apimachinery's `version.Info`, fields in kubectl's JSON order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    #[serde(default)]
    pub major: String,
    #[serde(default)]
    pub minor: String,
    #[serde(default)]
    pub git_version: String,
    #[serde(default)]
    pub git_commit: String,
    #[serde(default)]
    pub git_tree_state: String,
    #[serde(default)]
    pub build_date: String,
    #[serde(default)]
    pub go_version: String,
    #[serde(default)]
    pub compiler: String,
    #[serde(default)]
    pub platform: String,
}

/// kubectl's `version.Version` output object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub client_version: VersionInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<VersionInfo>,
}

/// This berthctl's version, shaped like the server's (`v1.33.0-berth.<crate version>`).
pub fn client_version() -> VersionInfo {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    VersionInfo {
        major: "1".into(),
        minor: KUBE_MINOR.into(),
        git_version: format!("v1.{KUBE_MINOR}.0-berth.{}", env!("CARGO_PKG_VERSION")),
        git_commit: "berth".into(),
        git_tree_state: "clean".into(),
        build_date: "2026-01-01T00:00:00Z".into(),
        go_version: "rustc".into(),
        compiler: "rustc".into(),
        platform: format!("{}/{arch}", std::env::consts::OS),
    }
}

/// Renders `version` output (`-o` None = text).
pub fn render_version(v: &Versions, output: Option<&str>) -> Result<String> {
    match output {
        None | Some("") => {
            let mut text = format!("Client Version: {}\n", v.client_version.git_version);
            if let Some(server) = &v.server_version {
                text.push_str(&format!("Server Version: {}\n", server.git_version));
            }
            Ok(text)
        }
        Some("json") => {
            let mut text = serde_json::to_string_pretty(v).map_err(|e| CtlError::usage(e.to_string()))?;
            text.push('\n');
            Ok(text)
        }
        // sigs.k8s.io/yaml goes through a map, so YAML keys come out sorted.
        Some("yaml") => {
            let value = serde_json::to_value(v).map_err(|e| CtlError::usage(e.to_string()))?;
            Ok(serde_yaml::to_string(&value).map_err(|e| CtlError::usage(e.to_string()))?)
        }
        Some(other) => Err(CtlError::usage(format!("--output must be 'yaml' or 'json', got {other:?}"))),
    }
}

/// Runs `version`.
pub async fn run_version(session: &mut Session, args: VersionArgs, out: &mut Out) -> Result<()> {
    if let Some(o) = args.output.as_deref().filter(|o| !matches!(*o, "" | "json" | "yaml")) {
        return Err(CtlError::usage(format!("--output must be 'yaml' or 'json', got {o:?}")));
    }
    let mut versions = Versions { client_version: client_version(), server_version: None };
    if args.client {
        return emit(out, &render_version(&versions, args.output.as_deref())?);
    }
    match fetch::get(session, "/version").await {
        Ok(v) => {
            versions.server_version =
                Some(serde_json::from_value(v).map_err(|e| CtlError::usage(format!("decoding /version: {e}")))?);
            emit(out, &render_version(&versions, args.output.as_deref())?)
        }
        Err(e) => {
            // kubectl still prints what it knows before the connection error.
            emit(out, &render_version(&versions, args.output.as_deref())?)?;
            Err(e)
        }
    }
}

/// Flags of `cluster-info`.
#[derive(Debug, clap::Args)]
pub struct ClusterInfoArgs {
    #[command(subcommand)]
    pub command: Option<ClusterInfoCommand>,
}

/// `cluster-info` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterInfoCommand {
    /// Dump relevant information for debugging and diagnosis.
    Dump(DumpArgs),
}

/// Flags of `cluster-info dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Where to write files (standard output when empty or `-`).
    #[arg(long, default_value = "")]
    pub output_directory: String,
    /// A comma separated list of namespaces to dump.
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// If true, dump all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// kubectl's `printService`: `NAME is running at LINK` (coloured on a terminal).
pub fn service_line(name: &str, link: &str, color: bool) -> String {
    if color {
        format!("{GREEN}{name}{RESET} is running at {YELLOW}{link}{RESET}\n")
    } else {
        format!("{name} is running at {link}\n")
    }
}

/// The proxy link kubectl prints for a `kubernetes.io/cluster-service` Service.
pub fn cluster_service_link(host: &str, svc: &Value) -> String {
    let ingress = &svc["status"]["loadBalancer"]["ingress"][0];
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if ingress.is_object() {
        let ip = ingress["ip"].as_str().filter(|i| !i.is_empty()).or(ingress["hostname"].as_str()).unwrap_or("");
        return ports.iter().map(|p| format!("http://{ip}:{} ", p["port"].as_i64().unwrap_or(0))).collect();
    }
    let svc_name = svc["metadata"]["name"].as_str().unwrap_or("");
    let mut name = svc_name.to_string();
    if let Some(port) = ports.first() {
        let port_name = port["name"].as_str().unwrap_or("");
        let scheme = if port_name == "https" || port["port"].as_i64() == Some(443) { "https" } else { "" };
        name = match (scheme, port_name) {
            ("", "") => svc_name.to_string(),
            ("", p) => format!("{svc_name}:{p}"),
            (s, p) => format!("{s}:{svc_name}:{p}"),
        };
    }
    let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
    format!("{}/api/v1/namespaces/{ns}/services/{name}/proxy", host.trim_end_matches('/'))
}

/// Runs `cluster-info`.
pub async fn run_cluster_info(session: &mut Session, args: ClusterInfoArgs, out: &mut Out) -> Result<()> {
    if let Some(ClusterInfoCommand::Dump(dump)) = args.command {
        return run_dump(session, dump, out).await;
    }
    // Like kubectl, make sure the server answers before claiming it runs.
    fetch::get(session, "/version").await?;
    let host = session.server_url()?;
    let color = use_color();
    let mut text = service_line("Kubernetes control plane", &host, color);
    let resolver = session.resolver().await?;
    if let Ok(svc_info) = resolver.resolve("services") {
        let opts = ListOptions { label_selector: Some(format!("{LABEL_CLUSTER_SERVICE}=true")), field_selector: None };
        for svc in fetch::list(session, svc_info, Some("kube-system"), &opts).await? {
            let name = svc["metadata"]["labels"][LABEL_CLUSTER_SERVICE_NAME]
                .as_str()
                .or(svc["metadata"]["name"].as_str())
                .unwrap_or("")
                .to_string();
            text.push_str(&service_line(&name, &cluster_service_link(&host, &svc), color));
        }
    }
    text.push_str("\nTo further debug and diagnose cluster problems, use 'berthctl cluster-info dump'.\n");
    emit(out, &text)
}

/// The per-namespace lists kubectl's dump writes (file name, resource), where served.
const DUMP_TYPES: &[(&str, &str)] = &[
    ("events", "events"),
    ("replication-controllers", "replicationcontrollers"),
    ("services", "services"),
    ("daemonsets", "daemonsets.apps"),
    ("deployments", "deployments.apps"),
    ("replicasets", "replicasets.apps"),
    ("pods", "pods"),
];

/// Where one part of the dump goes: standard output, or a file under the directory.
struct DumpSink {
    dir: Option<std::path::PathBuf>,
}

impl DumpSink {
    fn write(&self, out: &mut Out, relative: &str, text: &str) -> Result<()> {
        match &self.dir {
            None => emit(out, text),
            Some(dir) => {
                let path = dir.join(relative);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| CtlError::io(parent.display().to_string(), e))?;
                }
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| CtlError::io(path.display().to_string(), e))?;
                f.write_all(text.as_bytes()).map_err(|e| CtlError::io(path.display().to_string(), e))
            }
        }
    }
}

/// `cluster-info dump`: nodes, then per namespace its events, services, workloads, pods
/// (as JSON lists) and every container's logs, like kubectl's dump (types the server does
/// not serve are left out instead of failing the dump).
async fn run_dump(session: &mut Session, args: DumpArgs, out: &mut Out) -> Result<()> {
    let resolver = session.resolver().await?;
    let sink = DumpSink {
        dir: match args.output_directory.as_str() {
            "" | "-" => None,
            dir => Some(std::path::PathBuf::from(dir)),
        },
    };
    let nodes = fetch::get(session, "/api/v1/nodes").await?;
    sink.write(out, "nodes.json", &crate::output::to_json(&nodes))?;
    let namespaces: Vec<String> = if args.all_namespaces {
        let list = fetch::get(session, "/api/v1/namespaces").await?;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect()
    } else if args.namespaces.is_empty() {
        vec!["kube-system".to_string(), session.namespace()?]
    } else {
        args.namespaces.clone()
    };
    for ns in &namespaces {
        let mut pods = Value::Null;
        for (file, word) in DUMP_TYPES {
            let Ok(info) = resolver.resolve(word) else { continue };
            let list = fetch::get(session, &info.url_path(Some(ns), None)).await?;
            sink.write(out, &format!("{ns}/{file}.json"), &crate::output::to_json(&list))?;
            if *file == "pods" {
                pods = list;
            }
        }
        for pod in pods["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"].as_str().unwrap_or("");
            let containers = ["initContainers", "containers"]
                .iter()
                .flat_map(|f| pod["spec"][*f].as_array().cloned().unwrap_or_default());
            for c in containers {
                let container = c["name"].as_str().unwrap_or("");
                let mut text = format!("==== START logs for container {container} of pod {ns}/{name} ====\n");
                let path = format!("/api/v1/namespaces/{ns}/pods/{name}/log?container={container}");
                match session
                    .call(|client| {
                        let path = path.clone();
                        async move {
                            let req = http::Request::get(path).body(Vec::new()).expect("a GET request builds");
                            client.request_text(req).await
                        }
                    })
                    .await
                {
                    Ok(logs) => text.push_str(&logs),
                    Err(e) => text.push_str(&format!("Request log error: {e}\n")),
                }
                text.push_str(&format!("==== END logs for container {container} of pod {ns}/{name} ====\n"));
                sink.write(out, &format!("{ns}/{name}/logs.txt"), &text)?;
            }
        }
    }
    if let Some(dir) = &sink.dir {
        emit(out, &format!("Cluster info dumped to {}\n", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(group: &str, kind: &str, plural: &str, short: &[&str], namespaced: bool) -> ResourceInfo {
        ResourceInfo {
            verbs: vec!["list".into(), "get".into(), "create".into()],
            categories: if kind == "Pod" { vec!["all".into()] } else { vec![] },
            ..ResourceInfo::for_test(group, kind, plural, short, namespaced)
        }
    }

    fn args() -> ApiResourcesArgs {
        ApiResourcesArgs {
            output: None,
            namespaced: None,
            api_group: None,
            no_headers: false,
            sort_by: None,
            verbs: vec![],
            categories: vec![],
            cached: None,
        }
    }

    fn resources() -> Vec<ResourceInfo> {
        vec![
            info("", "Pod", "pods", &["po"], true),
            info("apps", "Deployment", "deployments", &["deploy"], true),
            info("", "Node", "nodes", &["no"], false),
            info("coordination.k8s.io", "Lease", "leases", &[], true),
        ]
    }

    #[test]
    fn api_resources_table_matches_kubectl() {
        let all = resources();
        let rows = api_resource_rows(&all, &args()).unwrap();
        assert_eq!(
            render_api_resources(&rows, &args()).unwrap(),
            "NAME          SHORTNAMES   APIVERSION               NAMESPACED   KIND\n\
             nodes         no           v1                       false        Node\n\
             pods          po           v1                       true         Pod\n\
             deployments   deploy       apps/v1                  true         Deployment\n\
             leases                     coordination.k8s.io/v1   true         Lease\n"
        );
        let mut wide = args();
        wide.output = Some("wide".into());
        wide.namespaced = Some(true);
        wide.api_group = Some(String::new());
        let rows = api_resource_rows(&all, &wide).unwrap();
        assert_eq!(
            render_api_resources(&rows, &wide).unwrap(),
            "NAME   SHORTNAMES   APIVERSION   NAMESPACED   KIND   VERBS             CATEGORIES\n\
             pods   po           v1           true         Pod    create,get,list   all\n"
        );
        let mut name = args();
        name.output = Some("name".into());
        name.sort_by = Some("kind".into());
        let rows = api_resource_rows(&all, &name).unwrap();
        assert_eq!(
            render_api_resources(&rows, &name).unwrap(),
            "deployments.apps\nleases.coordination.k8s.io\nnodes\npods\n"
        );
    }

    #[test]
    fn version_output_shapes() {
        let client = client_version();
        assert!(client.git_version.starts_with("v1.33.0-berth."));
        let server = VersionInfo { git_version: "v1.33.0-berth.9".into(), ..client.clone() };
        let v = Versions { client_version: client.clone(), server_version: Some(server) };
        assert_eq!(
            render_version(&v, None).unwrap(),
            format!("Client Version: {}\nServer Version: v1.33.0-berth.9\n", client.git_version)
        );
        let json = render_version(&v, Some("json")).unwrap();
        assert!(
            json.starts_with("{\n  \"clientVersion\": {\n    \"major\": \"1\",\n    \"minor\": \"33\",\n"),
            "{json}"
        );
        assert!(json.contains("\"serverVersion\": {"));
        let yaml = render_version(&Versions { client_version: client, server_version: None }, Some("yaml")).unwrap();
        assert!(yaml.starts_with("clientVersion:\n  buildDate:"), "{yaml}");
        assert!(!yaml.contains("serverVersion"));
    }

    #[test]
    fn cluster_info_lines() {
        assert_eq!(
            service_line("Kubernetes control plane", "http://127.0.0.1:6443", false),
            "Kubernetes control plane is running at http://127.0.0.1:6443\n"
        );
        assert_eq!(service_line("CoreDNS", "x", true), "\x1b[32mCoreDNS\x1b[0m is running at \x1b[33mx\x1b[0m\n");
        let svc = json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                         "spec": {"ports": [{"name": "dns", "port": 53}]}});
        assert_eq!(
            cluster_service_link("http://h:6443", &svc),
            "http://h:6443/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy"
        );
    }
}
