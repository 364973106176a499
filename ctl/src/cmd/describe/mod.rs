//! `berthctl describe`: kubectl's describers. Finds the objects (`TYPE`, `TYPE NAME…`,
//! `TYPE/NAME…`, `-l`, `-A`, and kubectl's name-prefix fallback for `TYPE NAME`), fetches
//! what each describer shows besides the object (its Events, a Deployment's ReplicaSets,
//! a ReplicaSet's pods, a Service's Endpoints, a Node's pods and Lease, a Namespace's
//! quotas), then renders with the pure per-kind renderers in the submodules.

pub mod cluster;
pub mod fetch;
pub mod generic;
pub mod pod;
pub mod service;
pub mod workload;
pub mod writer;

use serde_json::Value;

use crate::error::{CtlError, Result};
use crate::resources::{parse_targets, ResourceInfo};
use crate::session::Session;
use crate::{emit, Out};
pub use generic::describe_events;
use writer::{format_label_selector, Clock, Prefix};

/// Flags of `describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// TYPE [NAME_PREFIX…] or TYPE/NAME…
    pub args: Vec<String>,
    /// Selector (label query) to filter on, e.g. -l key1=value1,key2=value2.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// If true, display events related to the described object.
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub show_events: bool,
}

/// What a describer shows besides the object itself (each describer reads its part).
#[derive(Debug, Default)]
pub struct Related {
    /// Events about the object; None with `--show-events=false`.
    pub events: Option<Vec<Value>>,
    /// A Deployment's ReplicaSets.
    pub replica_sets: Vec<Value>,
    /// A ReplicaSet's pods (by selector), or a Node's non-terminated pods.
    pub pods: Vec<Value>,
    /// A Service's Endpoints.
    pub endpoints: Option<Value>,
    /// A Node's Lease, or the error message fetching it.
    pub lease: Option<std::result::Result<Value, String>>,
    /// A Namespace's ResourceQuotas (None when the server does not serve them).
    pub quotas: Option<Vec<Value>>,
    /// A Namespace's LimitRanges (None when the server does not serve them).
    pub limit_ranges: Option<Vec<Value>>,
}

/// Renders one object with the describer for its kind (the generic one otherwise).
pub fn render(object: &Value, related: &Related, clock: Clock) -> String {
    let mut w = Prefix::new(clock);
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, object["kind"].as_str().unwrap_or("")) {
        ("", "Pod") => pod::describe_pod(&mut w, object, related),
        ("apps", "Deployment") => workload::describe_deployment(&mut w, object, related),
        ("apps", "ReplicaSet") => workload::describe_replica_set(&mut w, object, related),
        ("", "Service") => service::describe_service(&mut w, object, related),
        ("", "Endpoints") => service::describe_endpoints(&mut w, object, related),
        ("", "ConfigMap") => service::describe_config_map(&mut w, object, related),
        ("", "Secret") => service::describe_secret(&mut w, object),
        ("", "Node") => cluster::describe_node(&mut w, object, related),
        ("", "Namespace") => cluster::describe_namespace(&mut w, object, related),
        _ => generic::describe_generic(&mut w, object, related),
    }
    w.finish()
}

/// Runs `describe`.
pub async fn run(session: &mut Session, args: DescribeArgs, out: &mut Out) -> Result<()> {
    if args.args.is_empty() {
        return Err(CtlError::usage(
            "You must specify the type of resource to describe. Use \"berthctl api-resources\" for a complete list of supported resources.",
        ));
    }
    let slash_form = args.args[0].contains('/');
    let groups = parse_targets(&args.args)?;
    if args.selector.is_some() && groups.iter().any(|g| !g.names.is_empty()) {
        return Err(CtlError::usage("name cannot be provided when a selector is specified"));
    }
    let resolver = session.resolver().await?;
    let namespace = session.namespace()?;
    let list_ns = if args.all_namespaces { None } else { Some(namespace.as_str()) };
    let mut objects: Vec<(ResourceInfo, Value)> = Vec::new();
    let mut errors: Vec<CtlError> = Vec::new();
    for group in &groups {
        let info = resolver.resolve(&group.type_word)?.clone();
        let ns = if info.namespaced { list_ns } else { None };
        if group.names.is_empty() {
            let opts = fetch::ListOptions { label_selector: args.selector.clone(), field_selector: None };
            objects.extend(fetch::list(session, &info, ns, &opts).await?.into_iter().map(|o| (info.clone(), o)));
            continue;
        }
        let get_ns = if info.namespaced { Some(namespace.as_str()) } else { None };
        for name in &group.names {
            match fetch::get(session, &info.url_path(get_ns, Some(name))).await {
                Ok(o) => objects.push((info.clone(), o)),
                Err(e) if e.is_not_found() && !slash_form && group.names.len() == 1 => {
                    // kubectl's DescribeMatchingResources: `describe pods web` shows web-*.
                    let all = fetch::list(session, &info, get_ns, &fetch::ListOptions::default()).await?;
                    let matching: Vec<Value> =
                        all.into_iter().filter(|o| fetch::ns_name(o).1.starts_with(name.as_str())).collect();
                    if matching.is_empty() {
                        errors.push(e);
                    }
                    objects.extend(matching.into_iter().map(|o| (info.clone(), o)));
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if objects.is_empty() && errors.is_empty() {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
        return Ok(());
    }
    let mut first = true;
    for (info, object) in &objects {
        let related = related(session, info, object, args.show_events).await?;
        let text = render(object, &related, Clock::system());
        if first {
            first = false;
            emit(out, &text)?;
        } else {
            emit(out, &format!("\n\n{text}"))?;
        }
    }
    // kubectl reports every failed lookup after describing the rest; the last decides the exit.
    let last = errors.pop();
    for e in errors {
        eprintln!("{e}");
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Fetches what `object`'s describer shows besides the object.
async fn related(session: &mut Session, info: &ResourceInfo, object: &Value, show_events: bool) -> Result<Related> {
    let resolver = session.resolver().await?;
    let (ns, name) = fetch::ns_name(object);
    let (ns, name) = (ns.map(str::to_string), name.to_string());
    let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let mut related = Related::default();
    let events_info = resolver.resolve("events").ok().filter(|e| e.group.is_empty()).cloned();
    if show_events {
        if let Some(events_info) = &events_info {
            // Pods are matched without kind (kubectl clears it so mirror pods match too);
            // nodes are also matched by name as uid (the kubelet's convention).
            let kind = if info.kind == "Pod" { None } else { Some(info.kind.as_str()) };
            let mut uids = vec![uid.clone()];
            if info.kind == "Node" {
                uids.push(name.clone());
            }
            let mut events = Vec::new();
            for uid in uids {
                let selector = events_selector(&name, ns.as_deref(), kind, &uid);
                let opts = fetch::ListOptions { label_selector: None, field_selector: Some(selector) };
                // Events are best effort, as in kubectl: a failed search shows none.
                events.extend(fetch::list(session, events_info, ns.as_deref(), &opts).await.unwrap_or_default());
            }
            related.events = Some(events);
        } else {
            related.events = Some(Vec::new());
        }
    }
    let selector = format_label_selector(&object["spec"]["selector"]);
    match (info.group.as_str(), info.kind.as_str()) {
        ("apps", "Deployment") => {
            if let Ok(rs_info) = resolver.resolve("replicasets.apps") {
                let opts = fetch::ListOptions { label_selector: Some(selector), field_selector: None };
                let all = fetch::list(session, rs_info, ns.as_deref(), &opts).await.unwrap_or_default();
                related.replica_sets = all.into_iter().filter(|rs| is_controlled_by(rs, &uid)).collect();
            }
        }
        ("apps", "ReplicaSet") => {
            if let Ok(pod_info) = resolver.resolve("pods") {
                let opts = fetch::ListOptions { label_selector: Some(selector), field_selector: None };
                related.pods = fetch::list(session, pod_info, ns.as_deref(), &opts).await.unwrap_or_default();
            }
        }
        ("", "Service") => {
            if let Ok(ep_info) = resolver.resolve("endpoints") {
                related.endpoints = fetch::get(session, &ep_info.url_path(ns.as_deref(), Some(&name))).await.ok();
            }
        }
        ("", "Node") => {
            if let Ok(pod_info) = resolver.resolve("pods") {
                let field = format!("spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed");
                let opts = fetch::ListOptions { label_selector: None, field_selector: Some(field) };
                related.pods = fetch::list(session, pod_info, None, &opts).await?;
            }
            if let Ok(lease_info) = resolver.resolve("leases.coordination.k8s.io") {
                let path = lease_info.url_path(Some("kube-node-lease"), Some(&name));
                // client-go's error text is the server's message (`leases… "x" not found`).
                related.lease = Some(fetch::get(session, &path).await.map_err(|e| match e {
                    CtlError::Server { message, .. } => message,
                    other => other.to_string(),
                }));
            }
        }
        ("", "Namespace") => {
            for (word, slot) in [("resourcequotas", &mut related.quotas), ("limitranges", &mut related.limit_ranges)] {
                if let Some(i) = resolver.resources.iter().find(|r| r.group.is_empty() && r.plural == word) {
                    *slot = Some(fetch::list(session, i, Some(&name), &fetch::ListOptions::default()).await?);
                }
            }
        }
        _ => {}
    }
    Ok(related)
}

/// The events field selector kubectl's `GetFieldSelector` builds for an object reference.
pub fn events_selector(name: &str, namespace: Option<&str>, kind: Option<&str>, uid: &str) -> String {
    let mut parts = vec![format!("involvedObject.name={name}")];
    if let Some(ns) = namespace {
        parts.push(format!("involvedObject.namespace={ns}"));
    }
    if let Some(kind) = kind {
        parts.push(format!("involvedObject.kind={kind}"));
    }
    if !uid.is_empty() {
        parts.push(format!("involvedObject.uid={uid}"));
    }
    parts.join(",")
}

/// True when `object`'s controller owner has this uid.
pub fn is_controlled_by(object: &Value, uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"].as_bool() == Some(true) && r["uid"].as_str() == Some(uid))
}

#[cfg(test)]
mod golden;
