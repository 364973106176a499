//! Node maintenance: `berthctl taint` (add `key=value:Effect` / `key:Effect`, remove `key-` /
//! `key:Effect-`, `--overwrite`), `cordon` / `uncordon` (`spec.unschedulable`) and `drain`
//! (cordon, then evict the node's pods through `pods/eviction`, refusing DaemonSet-managed,
//! local-storage and unmanaged pods unless told otherwise, and waiting until they are gone).
//! Decisions (taint edits, which pods a drain may evict) are pure functions with kubectl's
//! messages; the commands only read, patch and evict.

use std::time::Duration;

use berth_proto::model::names::{is_label_value, is_qualified_name};
use berth_proto::model::well_known::ANNOTATION_MIRROR_POD;
use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{self, call, get_opt, DryRun, DryRunArg, Obj, Request, MERGE_PATCH};
use crate::error::{CtlError, Result};
use crate::resources::ResourceInfo;
use crate::session::{parse_duration, Session};
use crate::Out;

const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

// ---------------------------------------------------------------------------------------
// taint

/// Flags of `taint`.
#[derive(Debug, clap::Args)]
pub struct TaintArgs {
    /// `node NAME… KEY[=VALUE]:EFFECT… KEY[:EFFECT]-…`
    pub args: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all nodes in the cluster.
    #[arg(long)]
    pub all: bool,
    /// Allow taints to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
    /// Output format: name, yaml, json or jsonpath=….
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

/// One taint as the command line gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    /// Kubernetes' `Taint.ToString()`.
    pub fn to_spec(&self) -> String {
        match (self.effect.is_empty(), self.value.is_empty()) {
            (true, true) => self.key.clone(),
            (true, false) => format!("{}={}:", self.key, self.value),
            (false, true) => format!("{}:{}", self.key, self.effect),
            (false, false) => format!("{}={}:{}", self.key, self.value, self.effect),
        }
    }

    fn to_json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if !self.value.is_empty() {
            t["value"] = json!(self.value);
        }
        t
    }

    fn matches(&self, t: &Value) -> bool {
        t["key"].as_str() == Some(&self.key) && t["effect"].as_str() == Some(&self.effect)
    }
}

fn taint_usage(message: String) -> CtlError {
    CtlError::usage(format!("{message}\nSee 'berthctl taint -h' for help and examples"))
}

/// kubectl's `parseTaint`: `key`, `key:Effect` or `key=value:Effect`.
fn parse_taint(spec: &str) -> Result<Taint> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (key, value, effect) = match parts.as_slice() {
        [key] => (*key, "", ""),
        [kv, effect] => {
            if !EFFECTS.contains(effect) {
                return Err(taint_usage(format!("invalid taint effect: {effect}, unsupported taint effect")));
            }
            let kv: Vec<&str> = kv.split('=').collect();
            match kv.as_slice() {
                [key] => (*key, "", *effect),
                [key, value] => {
                    let errs = is_label_value(value);
                    if !errs.is_empty() {
                        return Err(taint_usage(format!("invalid taint spec: {spec}, {}", errs.join("; "))));
                    }
                    (*key, *value, *effect)
                }
                _ => return Err(taint_usage(format!("invalid taint spec: {spec}"))),
            }
        }
        _ => return Err(taint_usage(format!("invalid taint spec: {spec}"))),
    };
    let errs = is_qualified_name(key);
    if !errs.is_empty() {
        return Err(taint_usage(format!("invalid taint spec: {spec}, {}", errs.join("; "))));
    }
    Ok(Taint { key: key.into(), value: value.into(), effect: effect.into() })
}

/// Splits taint specs into additions and removals, with kubectl's checks.
pub fn parse_taints(specs: &[String]) -> Result<(Vec<Taint>, Vec<Taint>)> {
    let mut add: Vec<Taint> = Vec::new();
    let mut remove = Vec::new();
    for spec in specs {
        if let Some(s) = spec.strip_suffix('-') {
            let t = parse_taint(s)?;
            remove.push(Taint { value: String::new(), ..t });
        } else {
            let t = parse_taint(spec)?;
            if t.effect.is_empty() {
                return Err(taint_usage(format!("invalid taint spec: {spec}")));
            }
            if add.iter().any(|a| a.key == t.key && a.effect == t.effect) {
                return Err(taint_usage(format!(
                    "duplicated taints with the same key and effect: {{{} {} {} <nil>}}",
                    t.key, t.value, t.effect
                )));
            }
            add.push(t);
        }
    }
    let conflicts: Vec<String> = remove
        .iter()
        .filter(|r| add.iter().any(|a| a.key == r.key && (r.effect.is_empty() || a.effect == r.effect)))
        .map(|r| format!("{}={}", r.key, r.effect))
        .collect();
    if !conflicts.is_empty() {
        return Err(CtlError::usage(format!(
            "can not both modify and remove the following taint(s) in the same command: {}",
            conflicts.join(", ")
        )));
    }
    Ok((add, remove))
}

/// kubectl's `reorganizeTaints`: the node's new taint list and the word for what happened
/// (`tainted`, `untainted` or `modified`).
pub fn reorganize(
    node: &str,
    old: &[Value],
    add: &[Taint],
    remove: &[Taint],
    overwrite: bool,
) -> Result<(&'static str, Vec<Value>)> {
    if !overwrite {
        let exists: Vec<&str> =
            add.iter().filter(|a| old.iter().any(|o| a.matches(o))).map(|a| a.key.as_str()).collect();
        if !exists.is_empty() {
            return Err(CtlError::usage(format!(
                "node {node} already has {} taint(s) with same effect(s) and --overwrite is false",
                exists.join(",")
            )));
        }
    }
    let mut new: Vec<Value> = add.iter().map(Taint::to_json).collect();
    for o in old {
        if !add.iter().any(|a| a.matches(o)) {
            new.push(o.clone());
        }
    }
    let added = old.len() != new.len();
    let mut errors = Vec::new();
    let mut deleted = false;
    for r in remove {
        let before = new.len();
        new.retain(|t| {
            !(t["key"].as_str() == Some(&r.key) && (r.effect.is_empty() || t["effect"].as_str() == Some(&r.effect)))
        });
        deleted = new.len() != before;
        if !deleted {
            errors.push(format!("taint {:?} not found", r.to_spec()));
        }
    }
    match errors.len() {
        0 => {}
        1 => return Err(CtlError::usage(errors.remove(0))),
        _ => return Err(CtlError::usage(format!("[{}]", errors.join(", ")))),
    }
    let word = if (added && deleted) || overwrite {
        "modified"
    } else if added {
        "tainted"
    } else {
        "untainted"
    };
    Ok((word, new))
}

/// The Node resource type (from discovery).
async fn node_info(s: &mut Session) -> Result<ResourceInfo> {
    Ok(s.resolver().await?.resolve("nodes")?.clone())
}

/// Node names from `NAME…` / `node/NAME`, or every node matching `-l` (all with `all`).
async fn nodes(s: &mut Session, names: &[String], selector: Option<&str>, all: bool) -> Result<Vec<Obj>> {
    let info = node_info(s).await?;
    if names.is_empty() && (selector.is_some() || all) {
        let items = objects::list(s, &info, None, selector, None).await?;
        return Ok(items
            .into_iter()
            .map(|object| {
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
                Obj { info: info.clone(), namespace: None, name, object, source: None }
            })
            .collect());
    }
    let mut out = Vec::new();
    for n in names {
        let name = n.strip_prefix("nodes/").or_else(|| n.strip_prefix("node/")).unwrap_or(n).to_string();
        let object = get_opt(s, &info, None, &name).await?.ok_or_else(|| CtlError::not_found("nodes", &name))?;
        out.push(Obj { info: info.clone(), namespace: None, name, object, source: None });
    }
    Ok(out)
}

/// kubectl's split of `taint` arguments: resources first, then taints.
fn split_taint_args(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut resources = Vec::new();
    let mut taints = Vec::new();
    for a in args {
        let is_taint = a.contains('=') || a.contains(':') || a.ends_with('-');
        match (taints.is_empty(), is_taint) {
            (_, true) => taints.push(a.clone()),
            (true, false) => resources.push(a.clone()),
            (false, false) => {
                return Err(CtlError::usage(format!("all resources must be specified before taint changes: {a}")))
            }
        }
    }
    Ok((resources, taints))
}

/// Runs `taint`.
pub async fn run_taint(s: &mut Session, args: TaintArgs, out: &mut Out) -> Result<()> {
    let dry = args.dry_run.get()?;
    let format = objects::output_format(args.output.as_deref())?;
    let (resources, specs) = split_taint_args(&args.args)?;
    if specs.is_empty() {
        return Err(taint_usage("at least one taint update is required".into()));
    }
    let (add, remove) = parse_taints(&specs)?;
    let Some(kind_word) = resources.first() else {
        return Err(CtlError::usage("at least one resource name must be specified since 'all' parameter is not set"));
    };
    let (type_word, first_name) = match kind_word.split_once('/') {
        Some((t, n)) => (t.to_string(), Some(n.to_string())),
        None => (kind_word.clone(), None),
    };
    let info = s.resolver().await?.resolve(&type_word)?.clone();
    if info.kind != "Node" {
        return Err(CtlError::usage(format!("invalid resource type {kind_word}, only \"node/nodes\" are supported")));
    }
    if args.all && args.selector.is_some() {
        return Err(CtlError::usage("setting 'all' parameter with a non empty selector is prohibited"));
    }
    let names: Vec<String> = first_name.into_iter().chain(resources[1..].iter().cloned()).collect();
    if names.is_empty() && !args.all && args.selector.is_none() {
        return Err(CtlError::usage("at least one resource name must be specified since 'all' parameter is not set"));
    }
    for node in nodes(s, &names, args.selector.as_deref(), args.all).await? {
        let old = node.object["spec"]["taints"].as_array().cloned().unwrap_or_default();
        let (word, new) = reorganize(&node.name, &old, &add, &remove, args.overwrite)?;
        let result = if dry == DryRun::Client {
            let mut o = node.object.clone();
            o["spec"]["taints"] = json!(new);
            o
        } else {
            let req = Request::new(Method::PATCH, node.path())
                .param("fieldManager", "kubectl-taint")
                .body(MERGE_PATCH, json!({"spec": {"taints": new}}))
                .dry_run(dry);
            call(s, req).await?
        };
        objects::report(out, format.as_ref(), &node, &result, &format!("{} {word}{}", node.type_name(), dry.suffix()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// cordon / uncordon

/// Flags of `cordon` and `uncordon`.
#[derive(Debug, clap::Args)]
pub struct CordonArgs {
    /// Node names.
    pub nodes: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

/// Sets `spec.unschedulable`; prints kubectl's `cordoned` / `already cordoned` lines.
async fn set_unschedulable(s: &mut Session, node: &Obj, cordon: bool, dry: DryRun, out: &mut Out) -> Result<()> {
    let (done, already) = if cordon { ("cordoned", "already cordoned") } else { ("uncordoned", "already uncordoned") };
    let current = node.object["spec"]["unschedulable"].as_bool().unwrap_or(false);
    if current == cordon {
        return crate::emit(out, &format!("{} {already}\n", node.type_name()));
    }
    if dry != DryRun::Client {
        // Uncordon removes the field, as kubectl's patch does.
        let value = if cordon { json!(true) } else { Value::Null };
        let req = Request::new(Method::PATCH, node.path())
            .param("fieldManager", "kubectl-cordon")
            .body(MERGE_PATCH, json!({"spec": {"unschedulable": value}}))
            .dry_run(dry);
        call(s, req).await?;
    }
    crate::emit(out, &format!("{} {done}{}\n", node.type_name(), dry.suffix()))
}

/// Runs `cordon` (`cordon = true`) or `uncordon`.
pub async fn run_cordon(s: &mut Session, args: CordonArgs, cordon: bool, out: &mut Out) -> Result<()> {
    let dry = args.dry_run.get()?;
    if args.nodes.is_empty() && args.selector.is_none() {
        return Err(CtlError::usage("USAGE: cordon NODE [flags]\nSee 'berthctl cordon -h' for help and examples"));
    }
    for node in nodes(s, &args.nodes, args.selector.as_deref(), false).await? {
        set_unschedulable(s, &node, cordon, dry, out).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// drain

/// Flags of `drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Node names.
    pub nodes: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Label selector to filter pods on the node.
    #[arg(long)]
    pub pod_selector: Option<String>,
    /// Continue even if there are pods that do not declare a controller.
    #[arg(long)]
    pub force: bool,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will be deleted).
    #[arg(long, alias = "delete-local-data")]
    pub delete_emptydir_data: bool,
    /// Seconds given to each pod to terminate gracefully (negative: the pod's own).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// How long to wait before giving up (0: infinite).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Delete pods instead of evicting them (bypasses disruption checks).
    #[arg(long)]
    pub disable_eviction: bool,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

/// What a drain does with one pod (kubectl's PodDeleteStatus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodVerdict {
    /// Evict, silently.
    Evict,
    /// Leave alone, silently (mirror pods).
    Skip,
    /// Evict (`true`) or leave alone, with a warning.
    Warn(bool, String),
    /// Refuse the drain.
    Refuse(String),
}

impl PodVerdict {
    fn evicts(&self) -> bool {
        matches!(self, PodVerdict::Evict | PodVerdict::Warn(true, _))
    }
}

/// The drain flags the pod filters read.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainRules {
    pub force: bool,
    pub ignore_daemonsets: bool,
    pub delete_emptydir_data: bool,
}

fn controller_of(pod: &Value) -> Option<&Value> {
    pod["metadata"]["ownerReferences"].as_array()?.iter().find(|o| o["controller"].as_bool() == Some(true))
}

fn finished(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// kubectl's drain filters, in its order; as in kubectl the last filter that runs decides
/// (a filter that does not evict stops the chain). `daemonset` is the result of looking up
/// the pod's DaemonSet: `Ok(())` found, `Err(message)` the lookup's error and whether it was a 404.
pub fn classify(
    pod: &Value,
    rules: DrainRules,
    daemonset: Option<std::result::Result<(), (bool, String)>>,
) -> PodVerdict {
    let filters: [&dyn Fn() -> PodVerdict; 4] = [
        &|| {
            if controller_of(pod).is_none_or(|c| c["kind"] != "DaemonSet") || finished(pod) {
                return PodVerdict::Evict;
            }
            match &daemonset {
                Some(Err((true, message))) if rules.force => PodVerdict::Warn(true, message.clone()),
                Some(Err((_, message))) => PodVerdict::Refuse(message.clone()),
                _ if !rules.ignore_daemonsets => {
                    PodVerdict::Refuse("DaemonSet-managed Pods (use --ignore-daemonsets to ignore)".into())
                }
                _ => PodVerdict::Warn(false, "ignoring DaemonSet-managed Pods".into()),
            }
        },
        &|| {
            if pod["metadata"]["annotations"][ANNOTATION_MIRROR_POD].is_string() {
                PodVerdict::Skip
            } else {
                PodVerdict::Evict
            }
        },
        &|| {
            let local = pod["spec"]["volumes"].as_array().into_iter().flatten().any(|v| v.get("emptyDir").is_some());
            if !local || finished(pod) {
                PodVerdict::Evict
            } else if !rules.delete_emptydir_data {
                PodVerdict::Refuse("Pods with local storage (use --delete-emptydir-data to override)".into())
            } else {
                PodVerdict::Warn(true, "deleting Pods with local storage".into())
            }
        },
        &|| {
            if finished(pod) || controller_of(pod).is_some() {
                PodVerdict::Evict
            } else if rules.force {
                PodVerdict::Warn(true, "deleting Pods that declare no controller".into())
            } else {
                PodVerdict::Refuse("cannot delete Pods that declare no controller (use --force to override)".into())
            }
        },
    ];
    let mut verdict = PodVerdict::Evict;
    for f in filters {
        verdict = f();
        if !verdict.evicts() {
            break;
        }
    }
    verdict
}

/// kubectl's summary lines: warnings (`msg: ns/a, ns/b` joined by `; `) and errors
/// (`cannot delete msg: ns/a`), each grouped by message in the order the pods came.
pub fn summarize(verdicts: &[(String, PodVerdict)]) -> (Option<String>, Vec<String>) {
    fn group<'a>(groups: &mut Vec<(&'a str, Vec<&'a str>)>, message: &'a str, pod: &'a str) {
        match groups.iter_mut().find(|(m, _)| *m == message) {
            Some((_, pods)) => pods.push(pod),
            None => groups.push((message, vec![pod])),
        }
    }
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (pod, v) in verdicts {
        match v {
            PodVerdict::Warn(_, m) => group(&mut warnings, m, pod),
            PodVerdict::Refuse(m) => group(&mut errors, m, pod),
            _ => {}
        }
    }
    let warning = (!warnings.is_empty())
        .then(|| warnings.iter().map(|(m, pods)| format!("{m}: {}", pods.join(", "))).collect::<Vec<_>>().join("; "));
    let errors = errors.iter().map(|(m, pods)| format!("cannot delete {m}: {}", pods.join(", "))).collect();
    (warning, errors)
}

/// Runs `drain`.
pub async fn run_drain(s: &mut Session, args: DrainArgs, out: &mut Out) -> Result<()> {
    let dry = args.dry_run.get()?;
    let timeout = parse_duration(&args.timeout)
        .ok_or_else(|| CtlError::usage(format!("invalid --timeout {:?}", args.timeout)))?;
    if args.nodes.is_empty() && args.selector.is_none() {
        return Err(CtlError::usage("USAGE: drain NODE [flags]\nSee 'berthctl drain -h' for help and examples"));
    }
    let mut failed = Vec::new();
    let mut fatal = None;
    for node in nodes(s, &args.nodes, args.selector.as_deref(), false).await? {
        set_unschedulable(s, &node, true, dry, out).await?;
        match drain_node(s, &args, &node, dry, timeout, out).await {
            Ok(()) => crate::emit(out, &format!("{} drained{}\n", node.type_name(), dry.suffix()))?,
            Err(message) => {
                eprintln!("error: unable to drain node {:?} due to error: {message}, continuing command...", node.name);
                failed.push(node.name.clone());
                fatal = Some(message);
            }
        }
    }
    if let Some(message) = fatal {
        eprintln!("There are pending nodes to be drained:");
        for n in &failed {
            eprintln!(" {n}");
        }
        eprintln!("{message}");
        return Err(CtlError::Exit(1));
    }
    Ok(())
}

/// Evicts the node's pods; `Err` carries kubectl's message for the node.
async fn drain_node(
    s: &mut Session,
    args: &DrainArgs,
    node: &Obj,
    dry: DryRun,
    timeout: Duration,
    out: &mut Out,
) -> std::result::Result<(), String> {
    let pods_info = s.resolver().await.map_err(|e| e.to_string())?.resolve("pods").map_err(|e| e.to_string())?.clone();
    let field = format!("spec.nodeName={}", node.name);
    let pods = objects::list(s, &pods_info, None, args.pod_selector.as_deref(), Some(&field))
        .await
        .map_err(|e| e.to_string())?;
    let rules = DrainRules {
        force: args.force,
        ignore_daemonsets: args.ignore_daemonsets,
        delete_emptydir_data: args.delete_emptydir_data,
    };
    let mut verdicts = Vec::new();
    for pod in &pods {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let daemonset = match controller_of(pod).filter(|c| c["kind"] == "DaemonSet") {
            None => None,
            Some(c) => {
                let info = s.resolver().await.map_err(|e| e.to_string())?;
                let ds = info.resolve("daemonsets").map_err(|e| e.to_string())?.clone();
                let name = c["name"].as_str().unwrap_or_default();
                Some(match call(s, Request::get(ds.url_path(Some(ns), Some(name)))).await {
                    Ok(_) => Ok(()),
                    Err(e @ CtlError::Server { .. }) => {
                        let not_found = e.is_not_found();
                        let CtlError::Server { message, .. } = e else { unreachable!("matched above") };
                        Err((not_found, message))
                    }
                    Err(e) => return Err(e.to_string()),
                })
            }
        };
        let name = format!("{ns}/{}", pod["metadata"]["name"].as_str().unwrap_or_default());
        verdicts.push((name, classify(pod, rules, daemonset)));
    }
    let (warning, errors) = summarize(&verdicts);
    if !errors.is_empty() {
        return Err(if errors.len() == 1 { errors[0].clone() } else { format!("[{}]", errors.join(", ")) });
    }
    if let Some(w) = warning {
        eprintln!("Warning: {w}");
    }
    let to_evict: Vec<&Value> = pods.iter().zip(&verdicts).filter(|(_, (_, v))| v.evicts()).map(|(p, _)| p).collect();
    if dry == DryRun::Client {
        for p in &to_evict {
            let line = format!(
                "evicting pod {}/{} (dry run)\n",
                p["metadata"]["namespace"].as_str().unwrap_or_default(),
                p["metadata"]["name"].as_str().unwrap_or_default()
            );
            crate::emit(out, &line).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut waiting = Vec::new();
    for pod in to_evict {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let obj = Obj {
            info: pods_info.clone(),
            namespace: Some(ns.clone()),
            name: name.clone(),
            object: Value::Null,
            source: None,
        };
        if args.disable_eviction {
            let mut opts = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
            if args.grace_period >= 0 {
                opts["gracePeriodSeconds"] = json!(args.grace_period);
            }
            match call(s, Request::new(Method::DELETE, obj.path()).body("application/json", opts).dry_run(dry)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.to_string()),
            }
        } else {
            crate::emit(out, &format!("evicting pod {ns}/{name}\n")).map_err(|e| e.to_string())?;
            evict(s, &obj, args.grace_period, dry, deadline).await?;
        }
        waiting.push((obj, pod["metadata"]["uid"].as_str().map(str::to_string)));
    }
    if dry == DryRun::Server {
        return Ok(());
    }
    let verb = if args.disable_eviction { "deleted" } else { "evicted" };
    // Report each pod as it disappears, like kubectl's per-pod waits.
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (obj, uid) in waiting {
            match get_opt(s, &obj.info, obj.namespace.as_deref(), &obj.name).await.map_err(|e| e.to_string())? {
                Some(live) if live["metadata"]["uid"].as_str().map(str::to_string) == uid => still.push((obj, uid)),
                _ => crate::emit(out, &format!("pod/{} {verb}\n", obj.name)).map_err(|e| e.to_string())?,
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let (obj, _) = &waiting[0];
            return Err(format!(
                "error when waiting for pod {:?} in namespace {:?} to terminate: global timeout reached: {}",
                obj.name,
                obj.namespace.clone().unwrap_or_default(),
                args.timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// POSTs a policy/v1 Eviction, retrying while a disruption budget says 429.
async fn evict(
    s: &mut Session,
    pod: &Obj,
    grace: i64,
    dry: DryRun,
    deadline: Option<tokio::time::Instant>,
) -> std::result::Result<(), String> {
    let ns = pod.namespace.clone().unwrap_or_default();
    let mut body =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod.name, "namespace": ns}});
    if grace >= 0 {
        body["deleteOptions"] = json!({"gracePeriodSeconds": grace});
    }
    loop {
        let req = Request::new(Method::POST, format!("{}/eviction", pod.path()))
            .body("application/json", body.clone())
            .dry_run(dry);
        match call(s, req).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(CtlError::Server { code: 429, message, .. }) => {
                eprintln!("error when evicting pods/{:?} -n {ns:?} (will retry after 5s): {message}", pod.name);
                if deadline.is_some_and(|d| tokio::time::Instant::now() + Duration::from_secs(5) >= d) {
                    return Err(format!("error when evicting pods/{:?} -n {ns:?}: global timeout reached", pod.name));
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => return Err(format!("error when evicting pods/{:?} -n {ns:?}: {}", pod.name, strip_error(&e))),
        }
    }
}

/// An error's text without kubectl's `error: ` prefix (it is embedded in a longer message).
fn strip_error(e: &CtlError) -> String {
    let text = e.to_string();
    text.strip_prefix("error: ").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn t(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into() }
    }

    #[test]
    fn taint_specs_parse_like_kubectl() {
        let (add, remove) =
            parse_taints(&specs(&["k=v:NoSchedule", "k2:PreferNoSchedule", "a-", "b:NoExecute-"])).unwrap();
        assert_eq!(add, vec![t("k", "v", "NoSchedule"), t("k2", "", "PreferNoSchedule")]);
        assert_eq!(remove, vec![t("a", "", ""), t("b", "", "NoExecute")]);
        assert_eq!(
            parse_taints(&specs(&["k=v:Bad"])).unwrap_err().to_string(),
            "error: invalid taint effect: Bad, unsupported taint effect\nSee 'berthctl taint -h' for help and examples"
        );
        assert_eq!(
            parse_taints(&specs(&["k=v"])).unwrap_err().to_string(),
            "error: invalid taint spec: k=v, name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')\nSee 'berthctl taint -h' for help and examples"
        );
        assert_eq!(
            parse_taints(&specs(&["k=v:NoSchedule", "k-"])).unwrap_err().to_string(),
            "error: can not both modify and remove the following taint(s) in the same command: k="
        );
        assert!(parse_taints(&specs(&["example.com/gpu=true:NoSchedule"])).is_ok());
        assert!(parse_taints(&specs(&["a=1:NoSchedule", "a=2:NoSchedule"])).is_err());
    }

    #[test]
    fn taint_edits_and_words() {
        let old = vec![json!({"key": "k", "value": "v", "effect": "NoSchedule"})];
        let (add, _) = parse_taints(&specs(&["k=w:NoSchedule"])).unwrap();
        assert_eq!(
            reorganize("n1", &old, &add, &[], false).unwrap_err().to_string(),
            "error: node n1 already has k taint(s) with same effect(s) and --overwrite is false"
        );
        let (word, new) = reorganize("n1", &old, &add, &[], true).unwrap();
        assert_eq!((word, new), ("modified", vec![json!({"key": "k", "value": "w", "effect": "NoSchedule"})]));
        let (add, _) = parse_taints(&specs(&["e=1:NoExecute"])).unwrap();
        let (word, new) = reorganize("n1", &old, &add, &[], false).unwrap();
        assert_eq!(word, "tainted");
        assert_eq!(
            new,
            vec![
                json!({"key": "e", "value": "1", "effect": "NoExecute"}),
                json!({"key": "k", "value": "v", "effect": "NoSchedule"})
            ]
        );
        let (_, remove) = parse_taints(&specs(&["k-"])).unwrap();
        assert_eq!(reorganize("n1", &old, &[], &remove, false).unwrap(), ("untainted", vec![]));
        let (_, remove) = parse_taints(&specs(&["k:NoExecute-"])).unwrap();
        assert_eq!(
            reorganize("n1", &old, &[], &remove, false).unwrap_err().to_string(),
            "error: taint \"k:NoExecute\" not found"
        );
    }

    fn pod(name: &str, extra: Value) -> Value {
        let mut p =
            json!({"metadata": {"name": name, "namespace": "default"}, "spec": {}, "status": {"phase": "Running"}});
        merge(&mut p, &extra);
        p
    }

    fn merge(doc: &mut Value, patch: &Value) {
        match (doc, patch) {
            (Value::Object(d), Value::Object(p)) => {
                for (k, v) in p {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (doc, patch) => *doc = patch.clone(),
        }
    }

    #[test]
    fn drain_filters_follow_kubectl() {
        let rules = DrainRules::default();
        let managed = pod(
            "web",
            json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": true}]}}),
        );
        let solo = pod("solo", json!({}));
        let ds = pod(
            "ds",
            json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "name": "d", "controller": true}]}}),
        );
        let local = pod(
            "local",
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}, "metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": true}]}}),
        );
        let mirror = pod("mirror", json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}));
        let done = pod("done", json!({"status": {"phase": "Succeeded"}}));
        assert_eq!(classify(&managed, rules, None), PodVerdict::Evict);
        assert_eq!(classify(&done, rules, None), PodVerdict::Evict);
        assert_eq!(classify(&mirror, rules, None), PodVerdict::Skip);
        let refuse = |m: &str| PodVerdict::Refuse(m.into());
        assert_eq!(
            classify(&solo, rules, None),
            refuse("cannot delete Pods that declare no controller (use --force to override)")
        );
        assert_eq!(
            classify(&ds, rules, Some(Ok(()))),
            refuse("DaemonSet-managed Pods (use --ignore-daemonsets to ignore)")
        );
        assert_eq!(
            classify(&local, rules, None),
            refuse("Pods with local storage (use --delete-emptydir-data to override)")
        );
        let all = DrainRules { force: true, ignore_daemonsets: true, delete_emptydir_data: true };
        assert_eq!(
            classify(&solo, all, None),
            PodVerdict::Warn(true, "deleting Pods that declare no controller".into())
        );
        assert_eq!(classify(&ds, all, Some(Ok(()))), PodVerdict::Warn(false, "ignoring DaemonSet-managed Pods".into()));
        // As in kubectl, a later filter's verdict replaces an earlier warning.
        assert_eq!(classify(&local, all, None), PodVerdict::Evict);
        // An orphan of a deleted DaemonSet: refused, unless --force (whose warning, as in
        // kubectl, the later filters then replace).
        let gone = || Some(Err((true, "daemonsets.apps \"d\" not found".to_string())));
        assert_eq!(classify(&ds, rules, gone()), refuse("daemonsets.apps \"d\" not found"));
        assert_eq!(classify(&ds, all, gone()), PodVerdict::Evict);

        let (warning, errors) = summarize(&[
            ("default/ds".into(), classify(&ds, all, Some(Ok(())))),
            ("default/solo".into(), classify(&solo, all, None)),
            ("default/web".into(), classify(&managed, all, None)),
        ]);
        assert_eq!(
            warning.unwrap(),
            "ignoring DaemonSet-managed Pods: default/ds; deleting Pods that declare no controller: default/solo"
        );
        assert!(errors.is_empty());
        let (_, errors) = summarize(&[
            ("default/solo".into(), classify(&solo, rules, None)),
            ("default/solo2".into(), classify(&solo, rules, None)),
        ]);
        assert_eq!(
            errors,
            vec!["cannot delete cannot delete Pods that declare no controller (use --force to override): default/solo, default/solo2"]
        );
    }
}
